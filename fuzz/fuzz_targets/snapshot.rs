#![no_main]
//! A snapshot's plaintext (after opening).
use cairn::format::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Snapshot::decode(data, &"snapshot") {
        assert_eq!(s.path_strings().len(), s.paths.len());
        let _ = s.kind.name();
        let again = s.encode().expect("re-encode snapshot");
        assert_eq!(Snapshot::decode(&again, &"snapshot").expect("round trip"), s);
    }
});
