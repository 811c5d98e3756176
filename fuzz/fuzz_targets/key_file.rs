#![no_main]
//! Key files `keys/<id>` are read in clear, before any password is checked: the decoder must
//! reject anything malformed or out of bounds without panicking, and whatever it accepts must be
//! safe to hand to argon2 (bounded memory and iterations) and acceptable to the writer (the same
//! `KdfParams::validate` on both sides).
use cairn::format::keyfile::{KeyFile, MAX_KDF_ITERATIONS, MAX_KDF_MEMORY_KIB, MAX_KEY_FILE_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = KeyFile::decode(data, &"key") {
        let p = k.kdf;
        assert!(data.len() as u64 <= MAX_KEY_FILE_SIZE, "size bound not enforced");
        assert!(p.memory_kib <= MAX_KDF_MEMORY_KIB, "memory bound not enforced: {p:?}");
        assert!((1..=MAX_KDF_ITERATIONS).contains(&p.iterations), "iterations: {p:?}");
        assert!((1..=64).contains(&p.parallelism), "parallelism: {p:?}");
        assert!(p.validate().is_ok(), "decoder and validate disagree: {p:?}");
        let again = k.encode().expect("the writer accepts what the reader accepts");
        assert_eq!(KeyFile::decode(&again, &"key").expect("round trip"), k);
    }
});
