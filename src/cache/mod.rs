//! The local cache: a RocksDB database per repository that remembers what the repository holds.
//!
//! Column families:
//! - the repository index ([`crate::index`] gives them their meaning): `blobs` (blob id →
//!   preferred location, with a bloom filter: most lookups of a first backup are misses),
//!   `locations` (every location of every blob), `pack_blobs`, `packs`, `index_files`;
//! - `trees`: tree id → decrypted, verified tree plaintext;
//! - `snapshots`: snapshot id → decrypted snapshot plaintext.
//!
//! Everything here is derived from the repository, so deleting the cache is always safe: the
//! next open rebuilds it. Nothing about the repository needs to fit in memory.
//!
//! Trust: cached trees and snapshots are used without recomputing their ids, so whoever can
//! write the cache could change what a restore writes. The cache is therefore only ever opened
//! in private folders ([`ensure_private_dir`]: ours, not a symlink, no group or other access),
//! and a cache that others can write is refused rather than trusted (format.md §16, §17).

use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, DB, Options};
use std::path::{Path, PathBuf};

pub mod blobset;

pub use blobset::BlobSet;

/// The index's column families (their rows are [`crate::index`]'s business; their tuning is
/// the cache's, see [`Cache::descriptors`]).
pub(crate) const CF_BLOBS: &str = "blobs";
pub(crate) const CF_LOCATIONS: &str = "locations";
pub(crate) const CF_PACK_BLOBS: &str = "pack_blobs";
pub(crate) const CF_PACKS: &str = "packs";
pub(crate) const CF_INDEX_FILES: &str = "index_files";
const CF_TREES: &str = "trees";
const CF_SNAPSHOTS: &str = "snapshots";

/// The cache of one repository.
pub struct Cache {
    // Declared before `temp`: the database closes before its temporary folder is removed.
    db: DB,
    path: PathBuf,
    /// The private temporary folder of a fallback cache, removed when the cache is dropped.
    temp: Option<tempfile::TempDir>,
    /// For a secondary instance ([`Cache::open_secondary`]): its own private folder (RocksDB's
    /// info log and the secondary's state), removed when the cache is dropped.
    secondary: Option<tempfile::TempDir>,
    /// An exclusive `flock` on `<secondary folder>/owner`, held while open: a folder whose
    /// lock can be taken was left by a process that died, and is removed.
    _secondary_owner: Option<std::fs::File>,
}

/// Prefix of a secondary instance's own folder inside the cache folder.
const SECONDARY_PREFIX: &str = ".secondary-";

/// Take an exclusive `flock` on `file` without waiting.
fn try_flock(file: &std::fs::File) -> bool {
    crate::sys::fs::try_flock(file)
}

/// Remove the folders of secondary instances of repository `short` under `dir` whose owner
/// is gone (its lock on `owner` can be taken, or it never made one). Errors are ignored: a
/// leftover folder costs only space.
fn remove_stale_secondaries(dir: &Path, short: &str) {
    let prefix = format!("{SECONDARY_PREFIX}{short}-");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if !e.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let p = e.path();
        let stale = match std::fs::File::open(p.join("owner")) {
            Ok(f) => try_flock(&f),
            // Made by a process that died before locking it (or long ago).
            Err(_) => std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|d| d.as_secs() > 60)),
        };
        if stale {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({})", self.path.display())
    }
}

pub(crate) fn db_err(e: rocksdb::Error) -> Error {
    Error::new(ErrorKind::Io, "local cache error").with_source(e)
}

/// The default cache folder: `$CAIRN_CACHE_DIR`, else `$XDG_CACHE_HOME/cairn`, else
/// `$HOME/.cache/cairn` (empty or relative values of `XDG_CACHE_HOME` and `HOME` are ignored).
/// Without any of them there is no private place to put it, and this is a usage error: a
/// shared temporary folder is never used (format.md §17).
pub fn default_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(d) = var("CAIRN_CACHE_DIR") {
        return Ok(d.into());
    }
    let absolute = |name: &str| var(name).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(d) = absolute("XDG_CACHE_HOME") {
        return Ok(d.join("cairn"));
    }
    if let Some(h) = absolute("HOME") {
        return Ok(h.join(".cache/cairn"));
    }
    // No HOME (a systemd unit without User=, `env -i` in cron): the user's home folder from the
    // password database, which is private to them, as HOME would have been.
    if let Some(h) = passwd_home().filter(|p| p.is_absolute() && p != Path::new("/")) {
        return Ok(h.join(".cache/cairn"));
    }
    Err(Error::usage(
        "no cache folder: HOME and XDG_CACHE_HOME are not set; set CAIRN_CACHE_DIR (or --cache-dir) \
         to a folder only this user can access",
    ))
}

/// The effective user's home folder from the password database (`getpwuid_r`).
fn passwd_home() -> Option<PathBuf> {
    crate::sys::user::passwd_home()
}

/// Make sure `dir` is a private folder: create it (and missing parents) with mode 0700, then
/// check with `lstat` that it is a real folder (not a symlink) owned by the effective uid,
/// with no group or other write access. A folder of ours with only group/other *read* access
/// (the parent cache folder of earlier versions, made with the default mode) is tightened to
/// 0700, since nobody else could have written into it; anything else is refused.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let shown = dir.display();
    match std::fs::DirBuilder::new()
        .recursive(false)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(format!("cannot create cache folder {shown}"), e))?;
        }
        Err(e) => return Err(Error::io(format!("cannot create cache folder {shown}"), e)),
    }
    let m = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io(format!("cannot inspect cache folder {shown}"), e))?;
    let euid = crate::sys::user::euid();
    let refuse = |why: String| {
        Err(Error::usage(format!(
            "refusing to use cache folder {shown}: {why}; remove it or choose another with \
             --cache-dir or CAIRN_CACHE_DIR"
        )))
    };
    if m.file_type().is_symlink() {
        return refuse("it is a symbolic link".into());
    }
    if !m.is_dir() {
        return refuse("it is not a folder".into());
    }
    if m.uid() != euid {
        return refuse(format!("it belongs to uid {}, not to uid {euid}", m.uid()));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return refuse(format!("others may write into it (mode {mode:04o})"));
    }
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("cannot make cache folder {shown} private"), e))?;
    }
    Ok(())
}

/// Whether a RocksDB error is the "another process has this database open" error: the
/// `LOCK` file could not be locked (`IO error: While lock file: <dir>/LOCK: <errno text>`), or
/// this process holds it already (`IO error: lock hold by current process, …: <dir>/LOCK: …`).
/// Nothing else (for example "Corruption: block checksum mismatch") counts.
fn is_lock_busy(msg: &str) -> bool {
    (msg.starts_with("IO error: While lock file: ")
        || msg.starts_with("IO error: lock hold by current process"))
        && msg.contains("/LOCK: ")
}

/// Whether a RocksDB open error is the race of two processes rotating the info log (`LOG` →
/// `LOG.old.<time>`, old ones deleted) in the same folder: a file the other process renamed or
/// deleted first (`IO error: No such file or directory: while unlink() file: <dir>/LOG.old.…`,
/// or `while rename …/LOG`).
fn is_log_race(msg: &str) -> bool {
    msg.starts_with("IO error: ")
        && (msg.contains("/LOG.old.") || msg.contains("/LOG: ") || msg.contains("/LOG to "))
        && !msg.contains("/LOCK")
}

impl Cache {
    /// Open (or create) the cache of repository `repo_id` under `dir`. Both `dir` and its
    /// per-repository folder must be private ([`ensure_private_dir`]); otherwise this refuses.
    /// When another process holds the database, a fresh cache in a random private folder
    /// inside `dir` is used instead (correct, only slower) and removed when dropped.
    pub fn open(dir: &Path, repo_id: &Id) -> Result<Cache> {
        Self::open_shared(dir, repo_id, true)
    }

    /// Open the regular cache of repository `repo_id` under `dir` only if no other process
    /// holds it: a `Locked` error instead of [`Cache::open`]'s temporary fallback.
    pub fn open_primary(dir: &Path, repo_id: &Id) -> Result<Cache> {
        Self::open_shared(dir, repo_id, false)
    }

    /// A fresh cache in a random private folder inside `dir`, removed when dropped: for
    /// commands that must not trust (or disturb) the regular cache, such as `check`.
    pub fn open_temporary(dir: &Path, repo_id: &Id) -> Result<Cache> {
        ensure_private_dir(dir)?;
        Self::temporary(dir, repo_id)
    }

    fn temporary(dir: &Path, repo_id: &Id) -> Result<Cache> {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::Builder::new()
            .prefix(&format!(".tmp-{}-", repo_id.short()))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(dir)
            .map_err(|e| {
                Error::io(
                    format!("cannot create a temporary cache in {}", dir.display()),
                    e,
                )
            })?;
        ensure_private_dir(temp.path())?;
        let path = temp.path().to_path_buf();
        let db = Self::open_at(&path).map_err(db_err)?;
        Ok(Cache {
            db,
            path,
            temp: Some(temp),
            secondary: None,
            _secondary_owner: None,
        })
    }

    /// Open the regular cache of repository `repo_id` under `dir` as a RocksDB *secondary*
    /// instance: read-only, never locking the database, so the process that holds it (or
    /// opens it later: a backup, a prune) works as if this one were not there. It sees what
    /// the primary wrote up to its last [`Cache::catch_up`]. Writes of trees and snapshots
    /// are dropped (they are only a speed-up); the index cannot be changed through it.
    /// The cache must exist (a primary open created it).
    pub fn open_secondary(dir: &Path, repo_id: &Id) -> Result<Cache> {
        use std::os::unix::fs::PermissionsExt;
        ensure_private_dir(dir)?;
        let path = dir.join(repo_id.to_hex());
        ensure_private_dir(&path)?;
        remove_stale_secondaries(dir, &repo_id.short());
        let own = tempfile::Builder::new()
            .prefix(&format!("{SECONDARY_PREFIX}{}-", repo_id.short()))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(dir)
            .map_err(|e| {
                Error::io(
                    format!(
                        "cannot create a secondary cache folder in {}",
                        dir.display()
                    ),
                    e,
                )
            })?;
        ensure_private_dir(own.path())?;
        let owner = std::fs::File::create(own.path().join("owner"))
            .map_err(|e| Error::io("cannot create the secondary cache's owner file", e))?;
        if !try_flock(&owner) {
            return Err(Error::new(
                ErrorKind::Io,
                "cannot lock the secondary cache's owner file",
            ));
        }
        let (mut opts, cfs) = Self::descriptors();
        opts.create_if_missing(false);
        opts.create_missing_column_families(false);
        // A secondary keeps every table file it uses open (the primary may delete them).
        opts.set_max_open_files(-1);
        let db = DB::open_cf_descriptors_as_secondary(&opts, &path, &own.path().to_path_buf(), cfs)
            .map_err(db_err)?;
        Ok(Cache {
            db,
            path,
            temp: None,
            secondary: Some(own),
            _secondary_owner: Some(owner),
        })
    }

    /// Whether this is a read-only secondary instance ([`Cache::open_secondary`]).
    pub fn is_secondary(&self) -> bool {
        self.secondary.is_some()
    }

    /// A secondary instance: catch up with what the primary has written since (new index
    /// files, trees, snapshots). Nothing for a primary.
    pub fn catch_up(&self) -> Result<()> {
        if self.is_secondary() {
            self.db.try_catch_up_with_primary().map_err(db_err)?;
        }
        Ok(())
    }

    fn open_shared(dir: &Path, repo_id: &Id, fallback: bool) -> Result<Cache> {
        ensure_private_dir(dir)?;
        let path = dir.join(repo_id.to_hex());
        ensure_private_dir(&path)?;
        let mut attempt = 0;
        loop {
            match Self::open_at(&path) {
                Ok(db) => {
                    return Ok(Cache {
                        db,
                        path,
                        temp: None,
                        secondary: None,
                        _secondary_owner: None,
                    });
                }
                Err(e) if is_lock_busy(e.as_ref()) && !fallback => {
                    return Err(Error::new(
                        ErrorKind::Locked,
                        "another process holds the local cache",
                    ));
                }
                Err(e) if is_lock_busy(e.as_ref()) => return Self::temporary(dir, repo_id),
                // Two processes opening at once race on RocksDB's rotation of its info log
                // (done before the lock is taken): try again, then use a temporary cache.
                Err(e) if is_log_race(e.as_ref()) => {
                    attempt += 1;
                    if attempt >= 5 && !fallback {
                        return Err(db_err(e));
                    }
                    if attempt >= 5 {
                        return Self::temporary(dir, repo_id);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20 * attempt));
                }
                Err(e) => return Err(db_err(e)),
            }
        }
    }

    /// Whether this is a temporary cache (the regular one was busy).
    pub fn is_temporary(&self) -> bool {
        self.temp.is_some()
    }

    fn open_at(path: &Path) -> std::result::Result<DB, rocksdb::Error> {
        let (opts, cfs) = Self::descriptors();
        DB::open_cf_descriptors(&opts, path, cfs)
    }

    /// The database's options and column families (the same for primary and secondary opens).
    pub(crate) fn descriptors() -> (Options, Vec<ColumnFamilyDescriptor>) {
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
        // Partitioned filters and a two-level index, the top level pinned: a lookup loads one
        // small filter partition, not a whole file's filter, so random misses stay cheap when
        // the filters no longer fit the block cache (10^7 blobs and more).
        bb.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
        bb.set_partition_filters(true);
        bb.set_pin_top_level_index_and_filter(true);
        blobs_opts.set_block_based_table_factory(&bb);
        blobs_opts.set_compression_type(rocksdb::DBCompressionType::None);
        blobs_opts.set_write_buffer_size(16 << 20);
        // Scanned more than probed (a blob's locations, a pack's rows): no bloom filter.
        let mut plain_opts = Options::default();
        let mut pb = BlockBasedOptions::default();
        // A block cache of their own: scans of every location (merges, prune, check) would
        // otherwise push the blob lookups' bloom filters and index blocks out of the shared one
        // (misses at 10^7 blobs fell from ~880 k/s to ~56 k/s).
        pb.set_block_cache(&rocksdb::Cache::new_lru_cache(16 << 20));
        plain_opts.set_block_based_table_factory(&pb);
        plain_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        plain_opts.set_write_buffer_size(8 << 20);
        // Every location of every blob (ids and offsets: nothing to compress), scanned by prune
        // and check.
        let mut loc_opts = plain_opts.clone();
        loc_opts.set_compression_type(rocksdb::DBCompressionType::None);
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
            ColumnFamilyDescriptor::new(CF_LOCATIONS, loc_opts),
            ColumnFamilyDescriptor::new(CF_PACK_BLOBS, plain_opts.clone()),
            ColumnFamilyDescriptor::new(CF_PACKS, plain_opts.clone()),
            ColumnFamilyDescriptor::new(CF_INDEX_FILES, plain_opts),
            ColumnFamilyDescriptor::new(CF_TREES, tree_opts.clone()),
            ColumnFamilyDescriptor::new(CF_SNAPSHOTS, tree_opts),
        ];
        (opts, cfs)
    }

    /// The database (for [`crate::index`], which keeps its rows in it).
    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    /// A column family by name.
    pub(crate) fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::new(ErrorKind::Io, format!("cache lacks column family {name}")))
    }

    /// Flush what was written without the write-ahead log (trees), so the next process sees
    /// it even after a crash. The rest is in the log; flushing it too would leave a tiny
    /// level-0 file per column family after every run.
    pub fn flush(&self) -> Result<()> {
        if self.is_secondary() {
            return Ok(());
        }
        self.db.flush_cf(self.cf(CF_TREES)?).map_err(db_err)
    }

    /// A cached tree's plaintext.
    pub fn tree(&self, id: &Id) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(CF_TREES)?, id.0).map_err(db_err)
    }

    /// Cache a verified tree's plaintext (dropped by a secondary instance).
    pub fn put_tree(&self, id: &Id, plain: &[u8]) -> Result<()> {
        if self.is_secondary() {
            return Ok(());
        }
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

    /// Cache a snapshot's plaintext (dropped by a secondary instance).
    pub fn put_snapshot(&self, id: &Id, plain: &[u8]) -> Result<()> {
        if self.is_secondary() {
            return Ok(());
        }
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

    /// Forget a snapshot (left to the primary by a secondary instance).
    pub fn delete_snapshot(&self, id: &Id) -> Result<()> {
        if self.is_secondary() {
            return Ok(());
        }
        self.db
            .delete_cf(self.cf(CF_SNAPSHOTS)?, id.0)
            .map_err(db_err)
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // A temporary cache is removed with its folder (the `temp` field) right after.
        if self.temp.is_none() && self.secondary.is_none() {
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn only_the_lock_error_means_busy() {
        assert!(is_lock_busy(
            "IO error: While lock file: /c/x/LOCK: Resource temporarily unavailable"
        ));
        assert!(is_lock_busy(
            "IO error: lock hold by current process, acquire time 1 acquiring thread 2: \
             /c/x/LOCK: No locks available"
        ));
        assert!(!is_lock_busy(
            "Corruption: block checksum mismatch: expected 1, got 2"
        ));
        assert!(!is_lock_busy(
            "IO error: No space left on device: /c/x/000012.log"
        ));
        assert!(!is_lock_busy(
            "IO error: while open a file for lock: /c/x/LOCK: Permission denied"
        ));
    }

    #[test]
    fn only_log_rotation_races_are_retried() {
        assert!(is_log_race(
            "IO error: No such file or directory: while unlink() file: /c/x/LOG.old.1764490000123456: No such file or directory"
        ));
        assert!(is_log_race(
            "IO error: No such file or directory: While renaming a file to /c/x/LOG.old.17: /c/x/LOG: No such file or directory"
        ));
        assert!(!is_log_race(
            "IO error: While lock file: /c/x/LOCK: Resource temporarily unavailable"
        ));
        assert!(!is_log_race("Corruption: block checksum mismatch"));
    }

    #[test]
    fn cache_folders_are_private_or_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Id::of_stored(b"repo");
        // Created here: 0700, parents included.
        let dir = tmp.path().join("a/b/cache");
        drop(Cache::open(&dir, &repo).unwrap());
        for p in [tmp.path().join("a"), dir.clone(), dir.join(repo.to_hex())] {
            assert_eq!(mode(&p), 0o700, "{}", p.display());
        }
        // Ours and only readable by others (an older version's default): tightened.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        drop(Cache::open(&dir, &repo).unwrap());
        assert_eq!(mode(&dir), 0o700);
        // Writable by others: refused, for the parent and for the repository's folder.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Cache::open(&dir, &repo).unwrap_err();
        assert!(e.to_string().contains("others may write"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let sub = dir.join(repo.to_hex());
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(Cache::open(&dir, &repo).is_err());
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        // A symlink in place of the folder: refused, even to a private folder of ours.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let e = Cache::open(&link, &repo).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn a_busy_cache_falls_back_to_a_private_temporary_one() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Id::of_stored(b"repo");
        let first = Cache::open(tmp.path(), &repo).unwrap();
        assert!(!first.is_temporary());
        let second = Cache::open(tmp.path(), &repo).unwrap();
        assert!(second.is_temporary());
        let temp = second.path.clone();
        assert_eq!(temp.parent(), Some(tmp.path()));
        assert_eq!(mode(&temp), 0o700);
        drop(second);
        assert!(!temp.exists(), "the temporary cache was not removed");
        drop(first);
    }

    #[test]
    fn a_secondary_follows_the_primary_without_taking_it() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Id::of_stored(b"repo");
        let (a, b) = (Id::of_stored(b"a"), Id::of_stored(b"b"));
        // No cache yet: nothing to follow.
        assert!(Cache::open_secondary(tmp.path(), &repo).is_err());
        drop(Cache::open(tmp.path(), &repo).unwrap());
        let sec = Cache::open_secondary(tmp.path(), &repo).unwrap();
        assert!(sec.is_secondary());
        // The primary is free for the next process (not a temporary fallback).
        let primary = Cache::open(tmp.path(), &repo).unwrap();
        assert!(!primary.is_temporary());
        let e = Cache::open_primary(tmp.path(), &repo).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Locked);
        primary.put_snapshot(&a, b"one").unwrap();
        assert_eq!(sec.snapshot(&a).unwrap(), None);
        sec.catch_up().unwrap();
        assert_eq!(sec.snapshot(&a).unwrap().as_deref(), Some(&b"one"[..]));
        // Writes through the secondary are dropped, never errors.
        sec.put_snapshot(&b, b"two").unwrap();
        sec.put_tree(&b, b"t").unwrap();
        sec.delete_snapshot(&a).unwrap();
        assert_eq!(sec.snapshot(&b).unwrap(), None);
        primary.catch_up().unwrap();
        assert_eq!(primary.snapshot(&a).unwrap().as_deref(), Some(&b"one"[..]));
        drop(primary);
        let own = sec.secondary.as_ref().unwrap().path().to_path_buf();
        assert!(own.exists());
        // A folder left by a dead secondary is removed by the next open; a live one is kept.
        let dead = tmp
            .path()
            .join(format!("{SECONDARY_PREFIX}{}-dead", repo.short()));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("owner"), b"").unwrap();
        let other = Cache::open_secondary(tmp.path(), &repo).unwrap();
        assert!(!dead.exists(), "a dead secondary's folder was left");
        assert!(own.exists(), "a live secondary's folder was removed");
        drop(other);
        drop(sec);
        assert!(!own.exists(), "the secondary's folder was not removed");
    }
}
