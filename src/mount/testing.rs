//! An in-memory [`Source`] for the unit tests of the file system and the reader.

use super::reader::{Next, Source};
use crate::error::{Error, Result};
use crate::format::tree::Tree;
use crate::id::Id;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Trees and blobs in maps; counts what was asked for.
#[derive(Default)]
pub struct MemSource {
    trees: Mutex<HashMap<Id, Arc<Tree>>>,
    blobs: Mutex<HashMap<Id, Arc<Vec<u8>>>>,
    lengths: Mutex<HashMap<Id, u64>>,
    fetched: AtomicUsize,
    last_ahead: AtomicUsize,
}

impl MemSource {
    /// Add a blob; its id is the unkeyed hash of its bytes.
    pub fn add_blob(&self, b: &[u8]) -> Id {
        let id = Id::of_stored(b);
        self.blobs.lock().unwrap().insert(id, Arc::new(b.to_vec()));
        self.lengths.lock().unwrap().insert(id, b.len() as u64);
        id
    }

    /// Add a tree (nodes must be sorted by name).
    pub fn add_tree(&self, t: Tree) -> Id {
        let id = Id::of_stored(&t.encode().unwrap());
        self.trees.lock().unwrap().insert(id, Arc::new(t));
        id
    }

    /// Make the index claim another length for blob `id`.
    pub fn lie_about_length(&self, id: &Id, len: u64) {
        self.lengths.lock().unwrap().insert(*id, len);
    }

    /// Blobs fetched since the last reset.
    pub fn fetched(&self) -> usize {
        self.fetched.load(Ordering::Relaxed)
    }

    /// What the last fetch was told: how many blobs a sequential reader wants next (0 for a
    /// random read), `None` for a one-blob file's neighbours.
    pub fn last_next(&self) -> Option<usize> {
        match self.last_ahead.load(Ordering::Relaxed) {
            usize::MAX => None,
            n => Some(n),
        }
    }

    /// Start counting again.
    pub fn reset_counts(&self) {
        self.fetched.store(0, Ordering::Relaxed);
    }
}

impl Source for MemSource {
    fn tree(&self, id: &Id) -> Result<Arc<Tree>> {
        self.trees
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("tree {} not found", id.short())))
    }

    fn raw_lengths(&self, ids: &[Id]) -> Result<Vec<u64>> {
        let l = self.lengths.lock().unwrap();
        ids.iter()
            .map(|id| {
                l.get(id)
                    .copied()
                    .ok_or_else(|| Error::not_found("blob not in the index"))
            })
            .collect()
    }

    fn blob(&self, id: &Id, next: Next<'_>) -> Result<Arc<Vec<u8>>> {
        self.fetched.fetch_add(1, Ordering::Relaxed);
        let n = match next {
            Next::Blobs(b) => b.len(),
            Next::Nothing => 0,
            Next::Neighbours => usize::MAX,
        };
        self.last_ahead.store(n, Ordering::Relaxed);
        self.blobs
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found("blob not found"))
    }
}
