#![no_main]
//! `IndexPack::validate` over packs built straight from the input, so every field value is
//! reachable (decoding postcard first would rarely produce big offsets): 8 bytes of pack size
//! (little endian), then 12 bytes per entry (offset, length, raw length, u32 LE each). Checks
//! that it never panics (overflow checks are on) and that an accepted entry really fits.
use cairn::Id;
use cairn::format::blob::{MAX_RAW_LEN, MIN_SEALED_LEN, SEALED_OVERHEAD};
use cairn::format::index::{IndexFile, IndexPack};
use cairn::format::pack::{BlobKind, PackEntry, TRAILER_LEN};
use libfuzzer_sys::fuzz_target;

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fuzz_target!(|data: &[u8]| {
    let Some((size, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let blobs: Vec<PackEntry> = rest
        .chunks_exact(12)
        .map(|c| PackEntry {
            kind: if c[0] & 1 == 0 {
                BlobKind::Data
            } else {
                BlobKind::Tree
            },
            id: Id::of_stored(c),
            offset: u32_at(c, 0),
            length: u32_at(c, 4),
            raw_length: u32_at(c, 8),
        })
        .collect();
    let pack = IndexPack {
        id: Id::of_stored(size),
        size: u64::from_le_bytes(*size),
        marked_ns: None,
        blobs,
    };
    let ok = pack.validate().is_ok();
    if ok {
        for b in &pack.blobs {
            let end = u128::from(b.offset) + u128::from(b.length);
            assert!(end + TRAILER_LEN as u128 <= u128::from(pack.size));
            assert!(b.length as usize >= MIN_SEALED_LEN);
            assert!(b.raw_length as usize <= MAX_RAW_LEN);
            assert!(u128::from(b.length) <= u128::from(b.raw_length) + SEALED_OVERHEAD as u128);
        }
    }
    // The file-level check agrees with the pack-level one.
    let file = IndexFile {
        version: 1,
        supersedes: Vec::new(),
        packs: vec![pack],
    };
    assert_eq!(file.validate(&"fuzz").is_ok(), ok);
});
