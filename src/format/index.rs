//! Index files `index/<id>`: which blobs each pack holds.

use super::pack::PackEntry;
use crate::error::Result;
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
}
