#![no_main]
//! The repository config's plaintext (after opening): decode and validate.
use cairn::format::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Config::decode(data) {
        assert!(c.chunker.validate().is_ok(), "accepted invalid chunker params {:?}", c.chunker);
        let again = cairn::format::encode(&c).expect("re-encode config");
        assert_eq!(Config::decode(&again).expect("round trip"), c);
    }
});
