//! The blob index: where every blob of the repository lives, which packs exist and what they
//! hold, and which index files have been merged or superseded.
//!
//! Its rows live in the local cache's database ([`store`]); the repository's index files
//! (`repo::index_files`) are merged into them. The one way in from above is
//! `Repository::index()`, which merges the index files first (once per session), so holding an
//! [`Index`] means holding an index that has been brought up to date with the repository in
//! this session: the rule is a type, not a convention. A session on a read-only cache (the
//! mount's secondary instance) gets an [`Index`] too: what the primary merged, never written.
//!
//! ```text
//! repo (sync, index files) ─▶ index (rows, queries, marks) ─▶ cache (the database)
//! ```

pub mod store;

pub use store::{BlobLocation, IndexStore, PackInfo};

use crate::error::{Error, Result};
use crate::id::Id;

/// A value of the index's generation counter: it grows whenever the index may have lost a blob
/// (an index file disappeared, or a pack was marked for deletion). While it stays the same,
/// every blob the index once confirmed is still in the repository.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub(crate) u64);

/// The blob index of an open repository, up to date with its index files (see the module
/// documentation). Cheap to get and to copy: it borrows the repository's cache.
#[derive(Debug, Clone, Copy)]
pub struct Index<'r> {
    store: IndexStore<'r>,
}

impl<'r> Index<'r> {
    /// The index of a store that has been synced (only the repository, which syncs it, makes
    /// one).
    pub(crate) fn synced(store: IndexStore<'r>) -> Index<'r> {
        Index { store }
    }

    /// Where a blob is stored (an unmarked location when there is one), or `NotFound`.
    pub fn locate(&self, id: &Id) -> Result<BlobLocation> {
        self.store
            .blob(id)?
            .ok_or_else(|| Error::not_found(format!("blob {} is not in the index", id.short())))
    }

    /// Where a blob is, if the index knows it: an unmarked location when there is one.
    pub fn blob(&self, id: &Id) -> Result<Option<BlobLocation>> {
        self.store.blob(id)
    }

    /// Every location of a blob, unmarked ones first.
    pub fn locations(&self, id: &Id) -> Result<Vec<BlobLocation>> {
        self.store.locations(id)
    }

    /// The packs that hold a blob, in id order.
    pub fn location_packs(&self, id: &Id) -> Result<Vec<Id>> {
        self.store.location_packs(id)
    }

    /// What the index knows about a pack.
    pub fn pack(&self, id: &Id) -> Result<Option<PackInfo>> {
        self.store.pack(id)
    }

    /// Every pack the index knows, in id order.
    pub fn for_each_pack(&self, f: impl FnMut(PackInfo) -> Result<()>) -> Result<()> {
        self.store.for_each_pack(f)
    }

    /// The blobs of a pack, with their locations in it, in offset order.
    pub fn blobs_in(&self, pack: &Id) -> Result<Vec<(Id, BlobLocation)>> {
        self.store.blobs_in(pack)
    }

    /// Every (blob, location) of the index, sorted by blob id; the marked flag is not filled in
    /// (it is a property of the pack: see [`Self::pack`]).
    pub fn for_each_location(&self, f: impl FnMut(&Id, BlobLocation) -> Result<()>) -> Result<()> {
        self.store.for_each_location(f)
    }

    /// The index files merged.
    pub fn index_files(&self) -> Result<Vec<Id>> {
        self.store.known_index_files()
    }

    /// Whether a merged index file superseded `file`: it is never merged again, even while it
    /// is listed (an interrupted prune left it).
    pub fn is_superseded(&self, file: &Id) -> Result<bool> {
        self.store.is_superseded(file)
    }

    /// The current generation (see [`Generation`]).
    pub fn generation(&self) -> Result<Generation> {
        self.store.generation()
    }

    /// Whether every blob `snapshot` references is known to be present now.
    pub fn is_complete(&self, snapshot: &Id) -> Result<bool> {
        self.store.is_complete(snapshot)
    }

    /// Remember that every blob `snapshot` references was present at `generation`.
    pub fn mark_complete(&self, snapshot: &Id, generation: Generation) -> Result<()> {
        self.store.mark_complete(snapshot, generation)
    }
}
