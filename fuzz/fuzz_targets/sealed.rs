#![no_main]
//! Opening arbitrary bytes as a sealed object must fail cleanly (nobody can forge a GCM-SIV tag),
//! and sealing the input must open back to it under the same associated data only.
use cairn::crypto::{SEAL_OVERHEAD, Sealer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = Sealer::new(&[7u8; 32]);
    assert!(s.open(b"aad", data, &"obj").is_err(), "forged object opened");
    let sealed = s.seal(b"aad", data).expect("seal");
    assert_eq!(sealed.len(), data.len() + SEAL_OVERHEAD);
    assert_eq!(s.open(b"aad", &sealed, &"obj").expect("open own seal"), data);
    assert!(s.open(b"other", &sealed, &"obj").is_err(), "opened under other associated data");
});
