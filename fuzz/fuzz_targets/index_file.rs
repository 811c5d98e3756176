#![no_main]
//! An index file's plaintext (after opening).
use cairn::format::index::IndexFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(i) = IndexFile::decode(data, &"index") {
        let again = cairn::format::encode(&i).expect("re-encode index file");
        assert_eq!(IndexFile::decode(&again, &"index").expect("round trip"), i);
    }
});
