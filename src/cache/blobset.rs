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

/// A set of ids on disk.
pub struct BlobSet {
    // Declared before `_dir`: the database closes before its folder is removed.
    db: DB,
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
        // Most ids of a reachability walk are new: the bloom filters answer "absent" without a
        // full lookup.
        if self.db.key_may_exist(id.0) && self.contains(id)? {
            return Ok(false);
        }
        self.db
            .put_opt(id.0, [], &Self::write_opts())
            .map_err(db_err)?;
        self.len += 1;
        Ok(true)
    }

    /// Whether the set holds `id`.
    pub fn contains(&self, id: &Id) -> Result<bool> {
        Ok(self.db.get_pinned(id.0).map_err(db_err)?.is_some())
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
    pub fn iter(&self) -> impl Iterator<Item = Result<Id>> + '_ {
        self.db
            .iterator(IteratorMode::Start)
            .filter_map(|item| match item {
                Ok((k, _)) => <[u8; 32]>::try_from(&k[..]).ok().map(|a| Ok(Id(a))),
                Err(e) => Some(Err(db_err(e))),
            })
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
        let path = s._dir.path().to_path_buf();
        drop(s);
        assert!(!path.exists());
    }
}
