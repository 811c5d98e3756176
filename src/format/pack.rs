//! Packs: `blob* || sealed header || header length (u32 LE)`.
//!
//! The header lists every blob so the index can always be rebuilt from the packs alone. It is
//! sealed: blob sizes never appear in clear.

use crate::error::{Error, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};

/// The two kinds of blob; each goes to its own packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum BlobKind {
    /// File content.
    Data,
    /// A directory listing.
    Tree,
}

impl BlobKind {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Data => "data",
            BlobKind::Tree => "tree",
        }
    }
}

/// Where one blob sits in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Blob kind.
    pub kind: BlobKind,
    /// Blob id (keyed hash of the raw chunk).
    pub id: Id,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the raw (decompressed) blob.
    pub raw_length: u32,
}

/// The plaintext of a pack header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackHeader {
    /// Format version.
    pub version: u8,
    /// The pack's blobs, in order.
    pub entries: Vec<PackEntry>,
}

/// Bytes of the trailing header-length field.
pub const TRAILER_LEN: usize = 4;

impl PackHeader {
    /// Decode a header's plaintext and check that every entry lies before `header_start`.
    pub fn decode(
        bytes: &[u8],
        header_start: u64,
        what: &dyn std::fmt::Display,
    ) -> Result<PackHeader> {
        let h: PackHeader = super::decode(bytes, what)?;
        for e in &h.entries {
            if u64::from(e.offset) + u64::from(e.length) > header_start {
                return Err(Error::corrupt(format!(
                    "{what} is corrupt: blob {} lies past the header",
                    e.id
                )));
            }
        }
        Ok(h)
    }
}

/// Given a pack's total length and its last 4 bytes, the range of the sealed header.
pub fn header_range(
    pack_len: u64,
    trailer: &[u8],
    what: &dyn std::fmt::Display,
) -> Result<std::ops::Range<u64>> {
    let t: [u8; 4] = trailer
        .try_into()
        .map_err(|_| Error::corrupt(format!("{what} is corrupt: truncated")))?;
    let hlen = u64::from(u32::from_le_bytes(t));
    let end = pack_len
        .checked_sub(TRAILER_LEN as u64)
        .ok_or_else(|| Error::corrupt(format!("{what} is corrupt: truncated")))?;
    let start = end.checked_sub(hlen).ok_or_else(|| {
        Error::corrupt(format!(
            "{what} is corrupt: header length {hlen} exceeds the pack"
        ))
    })?;
    Ok(start..end)
}
