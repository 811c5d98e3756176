//! The store as the layers above the repository see it: listings, ranged reads of packs,
//! headers, the deletes of maintenance and the key listing. The backend itself stays inside
//! `repo` (the only module that touches it); what callers need of it is named here.

use super::Repository;
use super::keys::{self, KeyInfo};
use crate::backend::{FileType, StoreKind};
use crate::error::Result;
use crate::format::keyfile::KeyFile;
use crate::format::pack::PackHeader;
use crate::id::Id;
use bytes::Bytes;
use std::ops::Range;

impl Repository {
    /// The objects of type `t` in the store with their sizes, sorted by id (one listing;
    /// nothing is read).
    pub fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>> {
        self.backend.list(t)
    }

    /// [`Self::list`] with each object's last-modified time by the store's clock (ns).
    pub fn list_meta(&self, t: FileType) -> Result<Vec<(Id, u64, i64)>> {
        self.backend.list_meta(t)
    }

    /// Bytes `range` of pack `pack` (a short answer is retried, then reported as corrupt).
    pub fn read_pack_range(&self, pack: &Id, range: Range<u64>) -> Result<Bytes> {
        self.backend
            .get_range(FileType::Pack, &pack.to_hex(), range)
    }

    /// Pack `pack` whole, reading at most `max` bytes (more is corruption).
    pub fn read_pack(&self, pack: &Id, max: u64) -> Result<Bytes> {
        self.backend.get_max(FileType::Pack, &pack.to_hex(), max)
    }

    /// Read and open the header of pack `pack`, whose size a listing gave.
    pub fn read_pack_header_sized(&self, pack: &Id, size: u64) -> Result<PackHeader> {
        self.pack_header(pack, size, |range| self.read_pack_range(pack, range))
    }

    /// Read and open a pack's header (the list of its blobs).
    pub fn read_pack_header(&self, pack: &Id) -> Result<PackHeader> {
        let size = self.backend.size(FileType::Pack, &pack.to_hex())?;
        self.read_pack_header_sized(pack, size)
    }

    /// Delete object `id` of type `t` (prune and the repairs, under their lock; missing is
    /// fine).
    pub(crate) fn delete(&self, t: FileType, id: &Id) -> Result<()> {
        self.backend.delete(t, &id.to_hex())
    }

    /// How many requests the store takes at once (`-o connections`): for sizing pools of
    /// blocking readers and deleters.
    pub fn connections(&self) -> usize {
        self.backend.connections()
    }

    /// Whether the repository is a local folder (requests take microseconds).
    pub fn is_local(&self) -> bool {
        self.backend.kind() == StoreKind::Local
    }

    /// The key files, each read and decoded (a damaged one is listed with its problem).
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        keys::list(&self.backend)
    }

    /// Key file `id`, read and decoded (not opened).
    pub fn read_key_file(&self, id: &Id) -> Result<KeyFile> {
        keys::read_key_file(&self.backend, id)
    }
}
