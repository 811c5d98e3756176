//! An on-disk set of ids: what a reachability walk has seen (trees visited, blobs used), so
//! prune's and check's memory stays flat however large the repository is.
//!
//! A throwaway RocksDB in a private temporary folder (inside the cache folder), written without
//! a log and removed when dropped. Iteration is in id order, so a set can be merge-joined with
//! the index's `locations` (also in blob-id order) without random lookups.

use super::{db_err, ensure_private_dir};
use crate::error::{Error, Result};
use crate::id::Id;
use rocksdb::{BlockBasedOptions, DB, IteratorMode, Options, WriteOptions};
use std::path::Path;

/// Ids kept in memory before they are written as one batch (2 MiB of ids).
const PENDING_MAX: usize = 65536;

/// A set of ids on disk.
pub struct BlobSet {
    // Declared before `_dir`: the database closes before its folder is removed.
    db: DB,
    /// Inserted ids not yet written (written as one batch every [`PENDING_MAX`]).
    pending: std::collections::HashSet<Id>,
    len: u64,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for BlobSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobSet({} ids)", self.len)
    }
}

impl BlobSet {
    /// An empty set in a new private folder inside `dir`.
    pub fn new(dir: &Path) -> Result<BlobSet> {
        use std::os::unix::fs::PermissionsExt;
        ensure_private_dir(dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(".set-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(dir)
            .map_err(|e| Error::io(format!("cannot create a set in {}", dir.display()), e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(16 << 20);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(1);
        let mut bb = BlockBasedOptions::default();
        bb.set_bloom_filter(10.0, false);
        bb.set_block_cache(&rocksdb::Cache::new_lru_cache(8 << 20));
        opts.set_block_based_table_factory(&bb);
        let db = DB::open(&opts, tmp.path()).map_err(db_err)?;
        Ok(BlobSet {
            db,
            pending: std::collections::HashSet::new(),
            len: 0,
            _dir: tmp,
        })
    }

    fn write_opts() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.disable_wal(true);
        w
    }

    /// Add an id; returns whether it was new.
    pub fn insert(&mut self, id: &Id) -> Result<bool> {
        if self.contains(id)? {
            return Ok(false);
        }
        self.pending.insert(*id);
        self.len += 1;
        if self.pending.len() >= PENDING_MAX {
            self.flush()?;
        }
        Ok(true)
    }

    /// Write the pending ids.
    fn flush(&mut self) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        for id in self.pending.drain() {
            batch.put(id.0, []);
        }
        self.db
            .write_opt(batch, &Self::write_opts())
            .map_err(db_err)
    }

    /// Whether the set holds `id`.
    pub fn contains(&self, id: &Id) -> Result<bool> {
        // Most ids of a reachability walk are new: the bloom filters answer "absent" without a
        // full lookup.
        Ok(self.pending.contains(id)
            || (self.db.key_may_exist(id.0) && self.db.get_pinned(id.0).map_err(db_err)?.is_some()))
    }

    /// Number of ids.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ids in order.
    pub fn iter(&mut self) -> impl Iterator<Item = Result<Id>> + '_ {
        let failed = self.flush().err().map(Err);
        failed
            .into_iter()
            .chain(
                self.db
                    .iterator(IteratorMode::Start)
                    .filter_map(|item| match item {
                        Ok((k, _)) => <[u8; 32]>::try_from(&k[..]).ok().map(|a| Ok(Id(a))),
                        Err(e) => Some(Err(db_err(e))),
                    }),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_iterate_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = BlobSet::new(dir.path()).unwrap();
        let ids: Vec<Id> = (0..1000u32)
            .map(|i| Id::of_stored(&i.to_le_bytes()))
            .collect();
        for id in &ids {
            assert!(s.insert(id).unwrap());
        }
        assert!(!s.insert(&ids[3]).unwrap());
        assert_eq!(s.len(), 1000);
        assert!(s.contains(&ids[999]).unwrap());
        assert!(!s.contains(&Id::of_stored(b"no")).unwrap());
        let mut sorted = ids.clone();
        sorted.sort();
        let got: Vec<Id> = s.iter().map(|r| r.unwrap()).collect();
        assert_eq!(got, sorted);
        // Past one batch: ids written to disk and pending ones both count.
        let more: Vec<Id> = (0..PENDING_MAX as u32 + 10)
            .map(|i| Id::of_stored(&u64::from(i).to_be_bytes()))
            .collect();
        for id in &more {
            assert!(s.insert(id).unwrap());
        }
        assert!(s.contains(&more[0]).unwrap() && s.contains(&more[more.len() - 1]).unwrap());
        assert!(!s.insert(&more[1]).unwrap());
        assert_eq!(s.iter().count() as u64, s.len());
        let path = s._dir.path().to_path_buf();
        drop(s);
        assert!(!path.exists());
    }
}
