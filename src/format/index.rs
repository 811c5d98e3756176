//! Index files `index/<id>`: which blobs each pack holds.

use super::blob::{MAX_RAW_LEN, MIN_SEALED_LEN, SEALED_OVERHEAD};
use super::pack::{PackEntry, TRAILER_LEN};
use crate::error::{Error, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};

/// One pack and its blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// The pack's name.
    pub id: Id,
    /// Its size in bytes.
    pub size: u64,
    /// When set, the time (ns) a prune marked this pack for deletion.
    pub marked_ns: Option<i64>,
    /// The pack's blobs (same entries as its header).
    pub blobs: Vec<PackEntry>,
}

/// The plaintext of an index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndexFile {
    /// Format version.
    pub version: u8,
    /// Index files this one replaces (written by prune; readers ignore superseded files).
    pub supersedes: Vec<Id>,
    /// Packs.
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    /// Decode an index file's plaintext.
    pub fn decode(bytes: &[u8], what: &dyn std::fmt::Display) -> Result<IndexFile> {
        super::decode(bytes, what)
    }

    /// Check every entry of every pack ([`IndexPack::validate`]). An index file with one
    /// invalid entry is corrupt as a whole (format.md §11); the error names the pack and blob.
    pub fn validate(&self, what: &dyn std::fmt::Display) -> Result<()> {
        // A pack listed twice in one file: our writers never do it, and the cache keeps one
        // row per (pack, file).
        let mut ids: Vec<&Id> = self.packs.iter().map(|p| &p.id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: it lists pack {} twice",
                w[0].short()
            )));
        }
        for p in &self.packs {
            p.validate()
                .map_err(|why| Error::corrupt(format!("{what} is corrupt: {why}")))?;
        }
        Ok(())
    }
}

impl IndexPack {
    /// Check that every blob can be where the entry says, in 64-bit arithmetic:
    /// `offset + length ≤ size − 4` (before the pack's trailer), `length ≥ 29` (the seal and the
    /// compression tag), `length ≤ raw_length + 29` (compression is only kept when it saves
    /// space) and `raw_length ≤ 1 GiB` ([`MAX_RAW_LEN`]). Returns why not, naming the pack and
    /// the blob. Pure: used when index files are merged and by the `index_validate` fuzz target.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let end = self.size.checked_sub(TRAILER_LEN as u64).ok_or_else(|| {
            format!(
                "pack {} has size {}, too small for its trailer",
                self.id.short(),
                self.size
            )
        })?;
        for b in &self.blobs {
            let bad = |why: String| {
                format!(
                    "pack {} {} blob {}: {why}",
                    self.id.short(),
                    b.kind.name(),
                    b.id.short()
                )
            };
            let (offset, length, raw) = (
                u64::from(b.offset),
                u64::from(b.length),
                u64::from(b.raw_length),
            );
            if offset + length > end {
                return Err(bad(format!(
                    "offset {offset} + length {length} exceeds the pack's {end} bytes before its trailer"
                )));
            }
            if length < MIN_SEALED_LEN as u64 {
                return Err(bad(format!(
                    "length {length} is below the minimum of {MIN_SEALED_LEN}"
                )));
            }
            if raw > MAX_RAW_LEN as u64 {
                return Err(bad(format!(
                    "raw length {raw} is over the maximum of {MAX_RAW_LEN}"
                )));
            }
            if length > raw + SEALED_OVERHEAD as u64 {
                return Err(bad(format!(
                    "length {length} is more than raw length {raw} + {SEALED_OVERHEAD}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobKind;

    fn pack(size: u64, offset: u32, length: u32, raw_length: u32) -> IndexPack {
        IndexPack {
            id: Id::of_stored(b"p"),
            size,
            marked_ns: None,
            blobs: vec![PackEntry {
                kind: BlobKind::Data,
                id: Id::of_stored(b"b"),
                offset,
                length,
                raw_length,
            }],
        }
    }

    #[test]
    fn entries_are_checked_against_the_pack() {
        assert!(pack(29 + 4 + 40, 0, 29, 0).validate().is_ok());
        assert!(pack(100 + 4, 71, 29, 10).validate().is_ok());
        // One byte into the trailer, and an offset that wraps u32 arithmetic.
        assert!(pack(100 + 4, 72, 29, 10).validate().is_err());
        assert!(pack(1029, u32::MAX - 10, 1100, 2000).validate().is_err());
        assert!(pack(3, 0, 0, 0).validate().is_err());
        assert!(pack(1 << 20, 0, 28, 100).validate().is_err());
        assert!(pack(u64::MAX, 0, 100, (1 << 30) + 1).validate().is_err());
        assert!(pack(1 << 20, 0, 1000, 10).validate().is_err());
        let mut second = pack(104, 72, 29, 1);
        second.id = Id::of_stored(b"q");
        let f = IndexFile {
            version: 1,
            supersedes: vec![],
            packs: vec![pack(1 << 20, 0, 100, 100), second],
        };
        // The same pack twice in one file is refused as a whole.
        let twice = IndexFile {
            version: 1,
            supersedes: vec![],
            packs: vec![pack(1 << 20, 0, 100, 100), pack(1 << 20, 0, 100, 100)],
        };
        let e = twice.validate(&"index file 1234").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = f.validate(&"index file 1234").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Corrupt);
        assert!(
            e.to_string()
                .starts_with("index file 1234 is corrupt: pack "),
            "{e}"
        );
    }
}
