#![no_main]
//! A pack: `blob* || sealed header || header length (u32 LE)`.
//!
//! The whole input stands for a pack: `header_range` reads its last 4 bytes, and the range it
//! returns (if any) is decoded as the header plaintext, as the reader does after opening it.
//! So that the header decoder is fuzzed even when the trailer does not fit, the bytes before
//! the trailer are also decoded as a header with the trailer's value as `header_start`.
use cairn::format::pack::{PackHeader, TRAILER_LEN, header_range};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8], header_start: u64) {
    if let Ok(h) = PackHeader::decode(bytes, header_start, &"pack") {
        for e in &h.entries {
            assert!(u64::from(e.offset) + u64::from(e.length) <= header_start, "{e:?} past header");
        }
        let again = cairn::format::encode(&h).expect("re-encode header");
        assert_eq!(PackHeader::decode(&again, header_start, &"pack").expect("round trip"), h);
    }
}

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let trailer = &data[data.len().saturating_sub(TRAILER_LEN)..];
    match header_range(len, trailer, &"pack") {
        Ok(r) => {
            assert!(data.len() >= TRAILER_LEN, "accepted a {len}-byte pack");
            assert!(r.start <= r.end && r.end == len - TRAILER_LEN as u64, "bad range {r:?} for {len} bytes");
            check(&data[r.start as usize..r.end as usize], r.start);
        }
        Err(_) => {
            // Only a truncated pack or a too-long header may be refused.
            if let Ok(t) = <[u8; 4]>::try_from(trailer) {
                assert!(u64::from(u32::from_le_bytes(t)) > len - TRAILER_LEN as u64);
            }
        }
    }
    if let Ok(t) = <[u8; 4]>::try_from(trailer) {
        check(&data[..data.len() - TRAILER_LEN], u64::from(u32::from_le_bytes(t)));
    }
});
