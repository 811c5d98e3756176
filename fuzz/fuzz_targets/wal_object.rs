#![no_main]
//! A WAL object: its framing (`header_len || sealed header || sealed body`) and its header's
//! plaintext (after opening).
use cairn::format::wal::{WalHeader, split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, b)) = split(data, &"wal") {
        assert_eq!(4 + h.len() + b.len(), data.len());
    }
    if let Ok(h) = WalHeader::decode(data, &"wal header") {
        assert!(!h.name.is_empty() && !h.name.contains('/'));
        let again = cairn::format::encode(&h).expect("re-encode WAL header");
        assert_eq!(WalHeader::decode(&again, &"wal header").expect("round trip"), h);
    }
});
