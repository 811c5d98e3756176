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
    last_next: Mutex<String>,
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

    /// The hint of the last fetch: `blobs N`, `siblings N` or `nothing`.
    pub fn last_next(&self) -> String {
        self.last_next.lock().unwrap().clone()
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
        *self.last_next.lock().unwrap() = match next {
            Next::Blobs(b) => format!("blobs {}", b.len()),
            Next::Siblings(b) => format!("siblings {}", b.len()),
            Next::Nothing => "nothing".into(),
        };
        self.blobs
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found("blob not found"))
    }
}
