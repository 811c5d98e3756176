#![no_main]
//! A blob's plaintext (`tag || payload`, after opening) with the raw length its index entry
//! claims: the first 3 input bytes (little endian, < 1 MiB) are the raw length, the rest the blob.
use cairn::format::blob::{MAX_RAW_LEN, TAG_STORED, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, plain)) = data.split_first_chunk::<3>() else {
        return;
    };
    let raw_len = (usize::from(len[0]) | usize::from(len[1]) << 8 | usize::from(len[2]) << 16) & 0xf_ffff;
    if let Ok(raw) = decode(plain, raw_len, &"blob") {
        assert_eq!(raw.len(), raw_len);
        if plain[0] == TAG_STORED {
            assert_eq!(raw, &plain[1..]);
        }
    }
    // A claimed length over the bound is refused before anything is allocated or decompressed.
    assert!(decode(plain, MAX_RAW_LEN + 1, &"blob").is_err());
});
