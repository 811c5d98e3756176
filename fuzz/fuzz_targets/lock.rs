#![no_main]
//! A lock object's plaintext (after opening).
use cairn::format::lock::Lock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = Lock::decode(data, &"lock") {
        let again = cairn::format::encode(&l).expect("re-encode lock");
        assert_eq!(Lock::decode(&again, &"lock").expect("round trip"), l);
    }
});
