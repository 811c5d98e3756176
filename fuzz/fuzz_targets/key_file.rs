#![no_main]
//! Key files `keys/<id>` are read in clear, before any password is checked: the decoder must
//! reject anything malformed or out of bounds without panicking, and whatever it accepts must be
//! safe to hand to argon2 (bounded memory and iterations).
use cairn::format::keyfile::{KeyFile, MAX_KDF_ITERATIONS, MAX_KDF_MEMORY_KIB};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = KeyFile::decode(data, &"key") {
        let p = k.kdf;
        assert!(p.memory_kib <= MAX_KDF_MEMORY_KIB, "memory bound not enforced: {p:?}");
        assert!((1..=MAX_KDF_ITERATIONS).contains(&p.iterations), "iterations: {p:?}");
        assert!((1..=64).contains(&p.parallelism), "parallelism: {p:?}");
        let again = cairn::format::encode(&k).expect("re-encode key file");
        assert_eq!(KeyFile::decode(&again, &"key").expect("round trip"), k);
    }
});
