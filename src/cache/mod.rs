//! The local cache: a RocksDB database per repository that remembers what the repository holds.
//!
//! Column families:
//! - `blobs`: blob id → [`BlobLocation`] (46 bytes), with a bloom filter (most lookups of a
//!   first backup are misses);
//! - `index_files`: ids of the index files already merged;
//! - `trees`: tree id → decrypted, verified tree plaintext;
//! - `snapshots`: snapshot id → decrypted snapshot plaintext.
//!
//! Everything here is derived from the repository, so deleting the cache is always safe: the
//! next open rebuilds it. Nothing about the repository needs to fit in memory.

use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::BlobKind;
use crate::id::Id;
use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, DB, Options, WriteBatch};
use std::path::{Path, PathBuf};

const CF_BLOBS: &str = "blobs";
const CF_INDEX_FILES: &str = "index_files";
const CF_TREES: &str = "trees";
const CF_SNAPSHOTS: &str = "snapshots";
/// Default column family: the index generation (see [`Cache::generation`]).
const KEY_GENERATION: &[u8] = b"generation";

fn complete_key(snapshot: &Id) -> Vec<u8> {
    let mut k = b"complete/".to_vec();
    k.extend_from_slice(&snapshot.0);
    k
}

/// Where a blob lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Pack holding it.
    pub pack: Id,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Raw length.
    pub raw_length: u32,
    /// Blob kind.
    pub kind: BlobKind,
    /// The pack is marked for deletion by a prune: do not deduplicate against it.
    pub marked: bool,
}

impl BlobLocation {
    fn encode(&self) -> [u8; 46] {
        let mut b = [0u8; 46];
        b[..32].copy_from_slice(&self.pack.0);
        b[32..36].copy_from_slice(&self.offset.to_le_bytes());
        b[36..40].copy_from_slice(&self.length.to_le_bytes());
        b[40..44].copy_from_slice(&self.raw_length.to_le_bytes());
        b[44] = match self.kind {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        };
        b[45] = u8::from(self.marked);
        b
    }
    fn decode(v: &[u8]) -> Option<BlobLocation> {
        if v.len() != 46 {
            return None;
        }
        let u = |r: std::ops::Range<usize>| u32::from_le_bytes(v[r].try_into().unwrap_or([0; 4]));
        Some(BlobLocation {
            pack: Id(v[..32].try_into().ok()?),
            offset: u(32..36),
            length: u(36..40),
            raw_length: u(40..44),
            kind: if v[44] == 1 {
                BlobKind::Tree
            } else {
                BlobKind::Data
            },
            marked: v[45] == 1,
        })
    }
}

/// The cache of one repository.
pub struct Cache {
    db: DB,
    path: PathBuf,
    temporary: bool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({})", self.path.display())
    }
}

fn db_err(e: rocksdb::Error) -> Error {
    Error::new(ErrorKind::Io, "local cache error").with_source(e)
}

/// The default cache folder: `$CAIRN_CACHE_DIR`, else `$XDG_CACHE_HOME/cairn`, else `~/.cache/cairn`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CAIRN_CACHE_DIR") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("cairn");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/cairn")
}

impl Cache {
    /// Open (or create) the cache of repository `repo_id` under `dir`. When another process
    /// holds it, a private temporary cache is used instead (correct, only slower).
    pub fn open(dir: &Path, repo_id: &Id) -> Result<Cache> {
        let path = dir.join(repo_id.to_hex());
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("cannot create cache {}", path.display()), e))?;
        // The cache holds decrypted trees and snapshots: file names, sizes, owners. Owner only.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
        match Self::open_at(&path) {
            Ok(db) => Ok(Cache {
                db,
                path,
                temporary: false,
            }),
            Err(e) if e.to_string().contains("lock") => {
                let tmp = std::env::temp_dir().join(format!(
                    "cairn-cache-{}-{}",
                    repo_id.short(),
                    std::process::id()
                ));
                let db = Self::open_at(&tmp).map_err(db_err)?;
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700));
                Ok(Cache {
                    db,
                    path: tmp,
                    temporary: true,
                })
            }
            Err(e) => Err(db_err(e)),
        }
    }

    fn open_at(path: &Path) -> std::result::Result<DB, rocksdb::Error> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(2);
        opts.set_max_log_file_size(1 << 20);
        let cache = rocksdb::Cache::new_lru_cache(64 << 20);
        let mut blobs_opts = Options::default();
        let mut bb = BlockBasedOptions::default();
        bb.set_bloom_filter(10.0, false);
        bb.set_block_cache(&cache);
        bb.set_cache_index_and_filter_blocks(true);
        bb.set_pin_l0_filter_and_index_blocks_in_cache(true);
        blobs_opts.set_block_based_table_factory(&bb);
        blobs_opts.set_compression_type(rocksdb::DBCompressionType::None);
        blobs_opts.set_write_buffer_size(16 << 20);
        let mut tree_opts = Options::default();
        let mut tb = BlockBasedOptions::default();
        tb.set_block_cache(&cache);
        // Each backup adds a level-0 file of new trees; without a filter every lookup of a
        // parent tree searches each of them.
        tb.set_bloom_filter(10.0, false);
        tree_opts.set_block_based_table_factory(&tb);
        // Trees are read on every incremental backup and restore: keep blocks uncompressed so a
        // block-cache miss costs no decompression.
        tree_opts.set_compression_type(rocksdb::DBCompressionType::None);
        tree_opts.set_write_buffer_size(8 << 20);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_BLOBS, blobs_opts),
            ColumnFamilyDescriptor::new(CF_INDEX_FILES, Options::default()),
            ColumnFamilyDescriptor::new(CF_TREES, tree_opts.clone()),
            ColumnFamilyDescriptor::new(CF_SNAPSHOTS, tree_opts),
        ];
        DB::open_cf_descriptors(&opts, path, cfs)
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::new(ErrorKind::Io, format!("cache lacks column family {name}")))
    }

    /// Where a blob is, if the cache knows it.
    pub fn blob(&self, id: &Id) -> Result<Option<BlobLocation>> {
        let v = self
            .db
            .get_pinned_cf(self.cf(CF_BLOBS)?, id.0)
            .map_err(db_err)?;
        Ok(v.and_then(|v| BlobLocation::decode(&v)))
    }

    /// Index files already merged.
    pub fn known_index_files(&self) -> Result<Vec<Id>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_INDEX_FILES)?, rocksdb::IteratorMode::Start)
        {
            let (k, _) = item.map_err(db_err)?;
            if let Ok(a) = <[u8; 32]>::try_from(&k[..]) {
                out.push(Id(a));
            }
        }
        Ok(out)
    }

    /// Record an index file's blobs and mark the file as merged, atomically.
    pub fn add_index_file(&self, index_id: &Id, blobs: &[(Id, BlobLocation)]) -> Result<()> {
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_BLOBS)?;
        for (id, loc) in blobs {
            batch.put_cf(cf, id.0, loc.encode());
        }
        batch.put_cf(self.cf(CF_INDEX_FILES)?, index_id.0, []);
        if blobs.iter().any(|(_, l)| l.marked) {
            // Blobs marked for deletion no longer count as present.
            batch.put(KEY_GENERATION, (self.generation()? + 1).to_le_bytes());
        }
        self.db.write(batch).map_err(db_err)?;
        Ok(())
    }

    /// Forget every blob and index file (before a full re-merge).
    pub fn clear_index(&self) -> Result<()> {
        // The generation moves first: a crash between the writes must not leave the cache
        // rebuilt under the old generation.
        self.db
            .put(KEY_GENERATION, (self.generation()? + 1).to_le_bytes())
            .map_err(db_err)?;
        for name in [CF_BLOBS, CF_INDEX_FILES] {
            let cf = self.cf(name)?;
            self.db
                .delete_range_cf(cf, &[][..] as &[u8], &[0xffu8; 33][..])
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// The index generation: it grows whenever the cache may have lost a blob (an index file
    /// disappeared, or a pack was marked for deletion). While it stays the same, every blob the
    /// cache once confirmed is still in the repository.
    pub fn generation(&self) -> Result<u64> {
        Ok(self.get_u64(KEY_GENERATION)?.unwrap_or(0))
    }

    /// A u64le value of the default column family (absent or malformed: `None`).
    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        Ok(self
            .db
            .get_pinned(key)
            .map_err(db_err)?
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map(u64::from_le_bytes))
    }

    /// Remember that every blob `snapshot` references was present at index `generation`.
    pub fn mark_complete(&self, snapshot: &Id, generation: u64) -> Result<()> {
        self.db
            .put(complete_key(snapshot), generation.to_le_bytes())
            .map_err(db_err)
    }

    /// Whether every blob `snapshot` references is known to be present now: it was confirmed
    /// at the current index generation.
    pub fn is_complete(&self, snapshot: &Id) -> Result<bool> {
        Ok(self.get_u64(&complete_key(snapshot))? == Some(self.generation()?))
    }

    /// Flush what was written without the write-ahead log (trees), so the next process sees
    /// it even after a crash. The rest is in the log; flushing it too would leave a tiny
    /// level-0 file per column family after every run.
    pub fn flush(&self) -> Result<()> {
        self.db.flush_cf(self.cf(CF_TREES)?).map_err(db_err)
    }

    /// Compact the blob column family into sorted runs (after merging many index files), so
    /// point lookups probe one file per level instead of every L0 file.
    pub fn compact_blobs(&self) -> Result<()> {
        self.db
            .compact_range_cf(self.cf(CF_BLOBS)?, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// A cached tree's plaintext.
    pub fn tree(&self, id: &Id) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(CF_TREES)?, id.0).map_err(db_err)
    }

    /// Cache a verified tree's plaintext.
    pub fn put_tree(&self, id: &Id, plain: &[u8]) -> Result<()> {
        let mut w = rocksdb::WriteOptions::default();
        w.disable_wal(true);
        self.db
            .put_cf_opt(self.cf(CF_TREES)?, id.0, plain, &w)
            .map_err(db_err)
    }

    /// A cached snapshot's plaintext.
    pub fn snapshot(&self, id: &Id) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(CF_SNAPSHOTS)?, id.0).map_err(db_err)
    }

    /// Cache a snapshot's plaintext.
    pub fn put_snapshot(&self, id: &Id, plain: &[u8]) -> Result<()> {
        self.db
            .put_cf(self.cf(CF_SNAPSHOTS)?, id.0, plain)
            .map_err(db_err)
    }

    /// Ids of cached snapshots.
    pub fn snapshot_ids(&self) -> Result<Vec<Id>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_SNAPSHOTS)?, rocksdb::IteratorMode::Start)
        {
            let (k, _) = item.map_err(db_err)?;
            if let Ok(a) = <[u8; 32]>::try_from(&k[..]) {
                out.push(Id(a));
            }
        }
        Ok(out)
    }

    /// Forget a snapshot.
    pub fn delete_snapshot(&self, id: &Id) -> Result<()> {
        self.db
            .delete_cf(self.cf(CF_SNAPSHOTS)?, id.0)
            .map_err(db_err)
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let _ = self.flush();
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Id::of_stored(b"repo");
        let loc = BlobLocation {
            pack: Id::of_stored(b"p"),
            offset: 7,
            length: 100,
            raw_length: 90,
            kind: BlobKind::Tree,
            marked: false,
        };
        let blob = Id::of_stored(b"b");
        {
            let c = Cache::open(dir.path(), &repo).unwrap();
            assert_eq!(c.blob(&blob).unwrap(), None);
            c.add_index_file(&Id::of_stored(b"i"), &[(blob, loc)])
                .unwrap();
            assert_eq!(c.blob(&blob).unwrap(), Some(loc));
        }
        let c = Cache::open(dir.path(), &repo).unwrap();
        assert_eq!(c.blob(&blob).unwrap(), Some(loc));
        assert_eq!(c.known_index_files().unwrap(), vec![Id::of_stored(b"i")]);
        c.clear_index().unwrap();
        assert_eq!(c.blob(&blob).unwrap(), None);
        assert!(c.known_index_files().unwrap().is_empty());
    }
}
