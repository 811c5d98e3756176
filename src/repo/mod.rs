//! The repository: opening and creating it, its keys, and reading and writing its objects.
//!
//! This is the only module that holds keys or talks to the backend; the layers above see blobs,
//! trees and snapshots by id.

pub mod index_files;
pub mod keys;
pub mod lock;
pub mod reader;
mod store;
mod trees;
pub mod wal;
pub mod warnings;
pub mod writer;

pub use trees::TREE_PREFETCH;

use crate::backend::{Backend, FileType};
use crate::cache::Cache;
use crate::chunker::Chunker;
use crate::crypto::kdf::KdfParams;
use crate::crypto::{MasterKey, Sealer, label};
use crate::error::{Error, ErrorKind, Result};
use crate::format;
use crate::format::config::{CONFIG_VERSION, ChunkerParams, Config};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::index::{Index, IndexStore};
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;
use warnings::{Warning, Warnings};

#[cfg(test)]
impl InitOptions {
    /// Defaults with a cheap KDF (1 MiB, one pass), for unit tests that make repositories.
    pub(crate) fn for_test() -> InitOptions {
        InitOptions {
            kdf: KdfParams {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            ..InitOptions::default()
        }
    }
}

/// Options for `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// Pack size target in bytes.
    pub pack_size: u32,
    /// zstd level (0 = none).
    pub compression_level: i32,
    /// KDF parameters for the first key.
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            pack_size: 16 << 20,
            compression_level: 3,
            kdf: KdfParams::default(),
        }
    }
}

/// Everything an open repository shares between threads.
pub struct Repository {
    backend: Backend,
    master: MasterKey,
    sealer: Sealer,
    config: Config,
    cache: Cache,
    chunker: Chunker,
    key_id: Id,
    key_hint: keys::KeyHint,
    warnings: Warnings,
    /// Whether the cache's index has been brought up to date in this session (see
    /// [`Repository::index`]).
    indexed: std::sync::atomic::AtomicBool,
    /// Held while merging; holds what the last merge saw.
    index_lock: std::sync::Mutex<index_files::SyncOutcome>,
}

/// Which cache an open repository uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// The regular cache under the cache folder (a private temporary one when another process
    /// holds it).
    Shared,
    /// A fresh temporary cache, removed at the end: nothing already cached is trusted
    /// (`check`), and the regular cache is left alone.
    Throwaway,
    /// The regular cache, only if no other process holds it (else a `Locked` error): a short
    /// session that merges the index into it for a reader (the mount's refresh).
    Primary,
    /// The regular cache as a read-only RocksDB secondary instance ([`Cache::open_secondary`]):
    /// it never stands in the way of a backup or prune on this host. Its index is what the
    /// primary merged, up to the last [`Cache::catch_up`]; this session never merges itself.
    Secondary,
    /// [`CacheMode::Secondary`] when the regular cache exists with the current layout, else
    /// [`CacheMode::Shared`] (the mount: no lock taken when the cache is there already).
    SecondaryElseShared,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({})", self.backend.location())
    }
}

impl Repository {
    /// Create a repository at `backend` with its first password. Everything that can be
    /// refused (chunker and KDF parameters, an empty password, an existing repository) is
    /// checked before anything is written; the key file and the config are then read back and
    /// opened as a later `open` would.
    pub fn init(
        backend: Backend,
        password: &[u8],
        opts: &InitOptions,
        cache_dir: &Path,
    ) -> Result<Arc<Repository>> {
        Self::init_with(backend, password, opts, cache_dir, None)
    }

    /// [`Self::init`] for a repository that shares `other`'s blob ids (`init
    /// --copy-chunker-params --from-repo OTHER`): the same id key, chunker key and chunker
    /// parameters, a fresh encryption key and repository id. Snapshots then copy between the
    /// two without re-chunking or rewriting trees (see [`crate::commands::copy`]).
    pub fn init_sharing_ids(
        backend: Backend,
        password: &[u8],
        opts: &InitOptions,
        cache_dir: &Path,
        other: &Repository,
    ) -> Result<Arc<Repository>> {
        let mut opts = opts.clone();
        opts.chunker = other.config.chunker;
        Self::init_with(backend, password, &opts, cache_dir, Some(other))
    }

    /// Whether this repository and `other` give every blob the same id and cut files the same
    /// way (same id key, chunker key and chunker parameters).
    pub fn shares_ids_with(&self, other: &Repository) -> bool {
        self.master.id == other.master.id
            && self.master.chunker == other.master.chunker
            && self.config.chunker == other.config.chunker
    }

    fn init_with(
        backend: Backend,
        password: &[u8],
        opts: &InitOptions,
        cache_dir: &Path,
        ids_from: Option<&Repository>,
    ) -> Result<Arc<Repository>> {
        opts.chunker.validate()?;
        keys::check_new_key(password, &opts.kdf)?;
        if backend.exists(FileType::Config, "config")? {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} already holds a repository", backend.location()),
            ));
        }
        let mut master = MasterKey::generate()?;
        if let Some(other) = ids_from {
            master.id = other.master.id;
            master.chunker = other.master.chunker;
        }
        let mut rid = [0u8; 32];
        crate::crypto::random_bytes(&mut rid)?;
        let config = Config {
            version: CONFIG_VERSION,
            repository_id: Id(rid),
            chunker: opts.chunker,
            pack_size: opts.pack_size,
            compression_level: opts.compression_level,
            created_ns: keys::now_ns(),
        };
        let key_id = keys::write_key(&backend, &config.repository_id, &master, password, opts.kdf)?;
        let sealer = master.sealer();
        let sealed = sealer.seal(label::CONFIG, &format::encode(&config)?)?;
        backend.create(FileType::Config, "config", Bytes::from(sealed))?;
        verify_key(&backend, &key_id, password, &master, &config.repository_id)?;
        let hint = keys::KeyHint::new(cache_dir, backend.location());
        hint.set(&key_id);
        Self::assemble(
            backend,
            master,
            config,
            key_id,
            cache_dir,
            hint,
            CacheMode::Shared,
        )
    }

    /// Open a repository with a password: unlock a key and read the config. The index is
    /// merged into the cache only when a command first needs it ([`Self::index`]), so
    /// `snapshots`, `forget`, `key` and `cat` never read index files.
    pub fn open(backend: Backend, password: &[u8], cache_dir: &Path) -> Result<Arc<Repository>> {
        Self::open_with(backend, password, cache_dir, CacheMode::Shared)
    }

    /// [`Self::open`] with a choice of cache.
    pub fn open_with(
        backend: Backend,
        password: &[u8],
        cache_dir: &Path,
        mode: CacheMode,
    ) -> Result<Arc<Repository>> {
        let (key_id, master, config) = Self::unlock_config(&backend, password, cache_dir)?;
        let hint = keys::KeyHint::new(cache_dir, backend.location());
        Self::assemble(backend, master, config, key_id, cache_dir, hint, mode)
    }

    /// Find the key `password` opens (the hint in `cache_dir` first) and read the config with
    /// it: the key's id, the master key and the config.
    pub(crate) fn unlock_config(
        backend: &Backend,
        password: &[u8],
        cache_dir: &Path,
    ) -> Result<(Id, MasterKey, Config)> {
        if !backend.exists(FileType::Config, "config")? {
            return Err(Error::new(
                ErrorKind::NoRepository,
                format!(
                    "{} is not a cairn repository (no config)",
                    backend.location()
                ),
            ));
        }
        let sealed = backend.get(FileType::Config, "config")?;
        let opens = |rid: &Id, mk: &MasterKey| {
            mk.sealer()
                .open(label::CONFIG, &sealed, &"config")
                .ok()
                .and_then(|p| Config::decode(&p).ok())
                .is_some_and(|c| c.repository_id == *rid)
        };
        let hint = keys::KeyHint::new(cache_dir, backend.location());
        let (key_id, _, master) = keys::unlock(backend, password, hint.get(), &opens)?;
        hint.set(&key_id);
        let plain = master.sealer().open(label::CONFIG, &sealed, &"config")?;
        let config = Config::decode(&plain)?;
        Ok((key_id, master, config))
    }

    /// The blob index, brought up to date with the repository's index files first (once per
    /// session: later calls are cheap). This is the only way to the index, so holding an
    /// [`Index`] means it was synced. On a read-only (secondary) cache it is what the primary
    /// merged (see [`CacheMode::Secondary`]), never written.
    pub fn index(&self) -> Result<Index<'_>> {
        use std::sync::atomic::Ordering;
        if !self.indexed.load(Ordering::Acquire) && !self.cache.is_secondary() {
            let mut g = self
                .index_lock
                .lock()
                .map_err(|_| Error::new(ErrorKind::Internal, "an index sync panicked"))?;
            if !self.indexed.load(Ordering::Acquire) {
                *g = index_files::sync_cache(self)?;
                self.indexed.store(true, Ordering::Release);
            }
        }
        Ok(Index::synced(self.index_store()))
    }

    /// The index's rows, synced or not (for the merge itself).
    pub(crate) fn index_store(&self) -> IndexStore<'_> {
        IndexStore::opened(&self.cache)
    }

    /// Merge the repository's index files again now (after taking a lock, or to see what
    /// other processes added since the first sync).
    pub fn refresh_index(&self) -> Result<index_files::SyncOutcome> {
        if self.cache.is_secondary() {
            return Err(Error::usage(
                "a session on a read-only (secondary) cache cannot merge the index",
            ));
        }
        let mut g = self
            .index_lock
            .lock()
            .map_err(|_| Error::new(ErrorKind::Internal, "an index sync panicked"))?;
        *g = index_files::sync_cache(self)?;
        self.indexed
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(g.clone())
    }

    fn assemble(
        backend: Backend,
        master: MasterKey,
        config: Config,
        key_id: Id,
        cache_dir: &Path,
        key_hint: keys::KeyHint,
        mode: CacheMode,
    ) -> Result<Arc<Repository>> {
        let rid = &config.repository_id;
        // Each cache is opened with its index made ready (IndexStore::open): a half-updated or
        // old-layout index is dropped, or, on a secondary, refused.
        let prepared = |c: Cache| -> Result<Cache> {
            IndexStore::open(&c)?;
            Ok(c)
        };
        let cache = match mode {
            CacheMode::Shared => prepared(Cache::open(cache_dir, rid)?)?,
            CacheMode::Throwaway => prepared(Cache::open_temporary(cache_dir, rid)?)?,
            CacheMode::Primary => prepared(Cache::open_primary(cache_dir, rid)?)?,
            CacheMode::Secondary => prepared(Cache::open_secondary(cache_dir, rid)?)?,
            CacheMode::SecondaryElseShared => {
                match Cache::open_secondary(cache_dir, rid).and_then(prepared) {
                    Ok(c) => c,
                    Err(_) => prepared(Cache::open(cache_dir, rid)?)?,
                }
            }
        };
        let chunker = Chunker::new(config.chunker, &master.chunker);
        let sealer = master.sealer();
        Ok(Arc::new(Repository {
            backend,
            master,
            sealer,
            config,
            cache,
            chunker,
            key_id,
            key_hint,
            warnings: Warnings::default(),
            indexed: Default::default(),
            index_lock: Default::default(),
        }))
    }

    /// Another session on the same repository and keys (no password, no key derivation)
    /// with a cache opened in `mode`: the mount merges the index through a short
    /// [`CacheMode::Primary`] session and reads through a [`CacheMode::Secondary`] one.
    pub fn reopen(&self, cache_dir: &Path, mode: CacheMode) -> Result<Arc<Repository>> {
        Self::assemble(
            self.backend.clone(),
            self.master.clone(),
            self.config.clone(),
            self.key_id,
            cache_dir,
            self.key_hint.clone(),
            mode,
        )
    }

    /// The backend: reached from above only through the methods of [`store`] and the others
    /// of this type.
    fn backend(&self) -> &Backend {
        &self.backend
    }
    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The local cache (the index's rows, cached trees and snapshots): reached from above only
    /// through [`Self::index`] and the tree and snapshot methods.
    fn cache(&self) -> &Cache {
        &self.cache
    }
    /// Whether this session's cache is a read-only secondary instance ([`CacheMode::Secondary`]):
    /// its index is what a primary merged, and [`Self::refresh_index`] is refused.
    pub fn is_read_only_cache(&self) -> bool {
        self.cache.is_secondary()
    }
    /// A read-only session: catch up with what the primary has written to the cache since
    /// (index files merged, trees, snapshots). Nothing for any other session.
    pub fn catch_up(&self) -> Result<()> {
        self.cache.catch_up()
    }
    /// This session made into one fit for a long-lived reader (the mount) that never stands in
    /// the way of a backup or prune on this host: a session on a secondary or a private
    /// temporary cache is kept as it is; one on the regular cache merges the index and caches
    /// the snapshots (for the secondary to find), then is reopened as a secondary and dropped
    /// (the caller must hold no other reference to it, or the regular cache stays busy).
    pub fn into_reader(self: Arc<Self>, cache_dir: &Path) -> Result<Arc<Repository>> {
        if self.cache.is_secondary() || self.cache.is_temporary() {
            return Ok(self);
        }
        self.index()?;
        // Cached for the secondary to find (snapshots through the log, trees by the flush).
        self.snapshots()?;
        self.cache.flush()?;
        let secondary = self.reopen(cache_dir, CacheMode::Secondary)?;
        drop(self);
        Ok(secondary)
    }
    /// The chunker (backup's pipelines cut files with it).
    pub(crate) fn chunker(&self) -> &Chunker {
        &self.chunker
    }
    /// The key file this session was opened with.
    pub fn key_id(&self) -> Id {
        self.key_id
    }
    /// Keyed id of a blob's plaintext.
    pub fn blob_id(&self, plain: &[u8]) -> Id {
        self.master.blob_id(plain)
    }
    pub(crate) fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Send each warning about a skipped object (see [`warnings`]) to `handler` as it happens,
    /// starting with those collected so far (for example during the index merge of `open`).
    pub fn set_warning_handler(&self, handler: impl Fn(&Warning) + Send + Sync + 'static) {
        self.warnings.set_handler(Box::new(handler));
    }
    /// The warnings collected so far that no handler has received; they are handed out once.
    pub fn take_warnings(&self) -> Vec<Warning> {
        self.warnings.take()
    }
    /// How many objects this session skipped with a warning.
    pub fn warning_count(&self) -> usize {
        self.warnings.count()
    }
    /// Report a skipped object.
    pub(crate) fn warn(&self, w: Warning) {
        self.warnings.push(w);
    }

    /// Add a key file for another password. The parameters and the password are checked
    /// before anything is written; the new key file is then read back from the store and
    /// opened with `password` (it must seal this repository's master key and open its config),
    /// and deleted again if it does not.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        let id = keys::write_key(
            &self.backend,
            &self.config.repository_id,
            &self.master,
            password,
            kdf,
        )?;
        if let Err(e) = verify_key(
            &self.backend,
            &id,
            password,
            &self.master,
            &self.config.repository_id,
        ) {
            let _ = self.backend.delete(FileType::Key, &id.to_hex());
            return Err(Error::new(
                e.kind(),
                format!(
                    "the new key {} failed its check after writing and was removed, nothing else changed: {e}",
                    id.short()
                ),
            ));
        }
        Ok(id)
    }

    /// Change the password in use: write a key file for `password`, read it back and open it
    /// (as [`add_key`](Self::add_key)), and only then delete the current one. Returns the new
    /// key's id.
    pub fn change_password(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        let id = self.add_key(password, kdf)?;
        self.backend.delete(FileType::Key, &self.key_id.to_hex())?;
        self.key_hint.set(&id);
        Ok(id)
    }

    /// Remove a key file; the one in use and the last one cannot be removed. The key in use
    /// is read back from the store first: it must still be there, intact (its content still
    /// matches its name, so it still opens with this session's password), or nothing is
    /// removed.
    pub fn remove_key(&self, id: &Id) -> Result<()> {
        if *id == self.key_id {
            return Err(Error::usage(
                "refusing to remove the key this session was opened with",
            ));
        }
        let all = self.backend.list(FileType::Key)?;
        if !all.iter().any(|(k, _)| k == id) {
            return Err(Error::not_found(format!("key {} not found", id.short())));
        }
        if let Err(e) = keys::read_key_file(&self.backend, &self.key_id) {
            return Err(Error::new(
                e.kind(),
                format!(
                    "refusing to remove key {}: the key in use ({}) cannot be read back: {e}",
                    id.short(),
                    self.key_id.short()
                ),
            ));
        }
        self.backend.delete(FileType::Key, &id.to_hex())
    }

    /// Seal and store an object of a type named by its content hash.
    pub(crate) fn save_sealed(&self, t: FileType, aad: &[u8], plain: &[u8]) -> Result<Id> {
        // What every reader refuses by size (backend::max_size) is never written.
        let sealed_len = (plain.len() + crate::crypto::SEAL_OVERHEAD) as u64;
        let limit = match t {
            FileType::Index => crate::backend::MAX_INDEX_SIZE,
            FileType::Snapshot => crate::backend::MAX_SNAPSHOT_SIZE,
            _ => u64::MAX,
        };
        if sealed_len > limit {
            return Err(Error::usage(format!(
                "refusing to write a {} of {sealed_len} bytes: readers accept at most {limit}",
                t.noun()
            )));
        }
        let sealed = self.sealer.seal(aad, plain)?;
        let id = Id::of_stored(&sealed);
        self.backend.create_named(t, &id, Bytes::from(sealed))?;
        Ok(id)
    }

    /// Fetch an object named by its content hash, check the name, open it. With the size a
    /// listing gave (`listed_size`), an object over its type's size limit is refused as corrupt
    /// before it is fetched; the fetch checks the size again before reading either way.
    pub(crate) fn load_sealed(
        &self,
        t: FileType,
        id: &Id,
        aad: &[u8],
        listed_size: Option<u64>,
    ) -> Result<Vec<u8>> {
        let what = format!("{} {}", t.noun(), id.short());
        let max = t.max_whole_size();
        if let Some(size) = listed_size.filter(|&s| s > max) {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: {size} bytes, over the limit of {max} for its type"
            )));
        }
        let bytes = self.backend.get_max(t, &id.to_hex(), max).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::not_found(format!("{what} not found"))
            } else {
                e
            }
        })?;
        if Id::of_stored(&bytes) != *id {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: content does not match its name"
            )));
        }
        self.sealer.open(aad, &bytes, &what)
    }

    /// Write a snapshot (always the last object of a backup).
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<Id> {
        let plain = snap.encode()?;
        let id = self.save_sealed(FileType::Snapshot, label::SNAPSHOT, &plain)?;
        self.cache.put_snapshot(&id, &plain)?;
        Ok(id)
    }

    /// Delete snapshot `id` from the store (missing is fine) and from the cache. Its trees and
    /// data stay until a prune.
    pub fn delete_snapshot(&self, id: &Id) -> Result<()> {
        self.backend.delete(FileType::Snapshot, &id.to_hex())?;
        self.cache.delete_snapshot(id)
    }

    /// Read one snapshot. The cached copy is used only while the repository holds an object of
    /// the matching size (one size request), so a damaged or deleted object is noticed.
    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let size = self
            .backend
            .size(FileType::Snapshot, &id.to_hex())
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Error::not_found(format!("snapshot {} not found", id.short()))
                } else {
                    e
                }
            })?;
        self.load_snapshot_sized(id, size)
    }

    /// Read one snapshot; the cached copy is used only when it matches the stored object's
    /// size (`stored_size`, from a listing or a size request), so a truncated or replaced
    /// object is noticed.
    pub fn load_snapshot_sized(&self, id: &Id, stored_size: u64) -> Result<Snapshot> {
        let what = format!("snapshot {}", id.short());
        if let Some(plain) = self.cache.snapshot(id)? {
            let size_ok = stored_size == (plain.len() + crate::crypto::SEAL_OVERHEAD) as u64;
            if let (true, Ok(s)) = (size_ok, Snapshot::decode(&plain, &what)) {
                return Ok(s);
            }
        }
        let plain = self.load_sealed(FileType::Snapshot, id, label::SNAPSHOT, Some(stored_size))?;
        let s = Snapshot::decode(&plain, &what)?;
        self.cache.put_snapshot(id, &plain)?;
        Ok(s)
    }

    /// All readable snapshots with their ids, oldest first. A snapshot that is damaged (or
    /// listed, then gone) is skipped with a warning ([`Self::set_warning_handler`]); a failure
    /// of the store itself still stops the listing.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let listed = self.backend.list(FileType::Snapshot)?;
        for cached in self.cache.snapshot_ids()? {
            if listed.binary_search_by(|(i, _)| i.cmp(&cached)).is_err() {
                self.cache.delete_snapshot(&cached)?;
            }
        }
        let mut out = Vec::with_capacity(listed.len());
        for (id, size) in listed {
            match self.load_snapshot_sized(&id, size) {
                Ok(s) => out.push((id, s)),
                Err(e) if warnings::skippable(&e) => {
                    self.warn(Warning::skipped(FileType::Snapshot, id, &e));
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Read, decode and validate an index file: every entry must fit its pack
    /// ([`IndexFile::validate`](crate::format::index::IndexFile::validate)), else the whole
    /// file is corrupt.
    pub fn load_index_file(&self, id: &Id) -> Result<crate::format::index::IndexFile> {
        self.load_index_file_sized(id, None)
    }

    /// [`Self::load_index_file`] with the size a listing gave (an oversized file is refused
    /// before it is fetched).
    pub(crate) fn load_index_file_sized(
        &self,
        id: &Id,
        listed_size: Option<u64>,
    ) -> Result<crate::format::index::IndexFile> {
        let what = format!("index file {}", id.short());
        let plain = self.load_sealed(FileType::Index, id, label::INDEX, listed_size)?;
        let f = crate::format::index::IndexFile::decode(&plain, &what)?;
        f.validate(&what)?;
        Ok(f)
    }
}

/// Read key file `id` back from the store and check that `password` opens it, that it seals
/// `master` for repository `repo_id`, and that its master key opens the stored config: what a
/// later `open` will need. Nothing is deleted or replaced before this holds.
fn verify_key(
    backend: &Backend,
    id: &Id,
    password: &[u8],
    master: &MasterKey,
    repo_id: &Id,
) -> Result<()> {
    let kf = keys::read_key_file(backend, id)?;
    let (rid, mk) = keys::try_key(&kf, password)?.ok_or_else(|| {
        Error::crypto(format!(
            "key {} does not open with its password when read back",
            id.short()
        ))
    })?;
    if rid != *repo_id || !mk.same_as(master) {
        return Err(Error::crypto(format!(
            "key {} holds other key material when read back",
            id.short()
        )));
    }
    let sealed = backend.get(FileType::Config, "config")?;
    let plain = mk.sealer().open(label::CONFIG, &sealed, &"config")?;
    if Config::decode(&plain)?.repository_id != rid {
        return Err(Error::corrupt(
            "config is corrupt: its repository id is not the key's",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        InitOptions::for_test().kdf
    }

    fn new_repo(dir: &Path) -> Arc<Repository> {
        let backend = Backend::open(dir.join("repo").to_str().unwrap(), true).unwrap();
        Repository::init(backend, b"pw", &InitOptions::for_test(), &dir.join("cache")).unwrap()
    }

    fn key_path(dir: &Path, id: &Id) -> std::path::PathBuf {
        dir.join("repo/keys").join(id.to_hex())
    }

    /// What `add_key` and `change_password` check before deleting anything: each way a written
    /// key file can fail to come back is caught.
    #[test]
    fn verify_key_catches_every_bad_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let repo = new_repo(dir.path());
        let (b, m, rid) = (repo.backend(), &repo.master, &repo.config.repository_id);
        let id = keys::write_key(b, rid, m, b"new", cheap()).unwrap();
        verify_key(b, &id, b"new", m, rid).unwrap();
        // The wrong password.
        assert_eq!(
            verify_key(b, &id, b"other", m, rid).unwrap_err().kind(),
            ErrorKind::Crypto
        );
        // Other key material under the right password (a writer bug).
        let other = MasterKey::generate().unwrap();
        let id2 = keys::write_key(b, rid, &other, b"new", cheap()).unwrap();
        assert!(verify_key(b, &id2, b"new", m, rid).is_err());
        // Another repository id.
        let id3 = keys::write_key(b, &Id([9; 32]), m, b"new", cheap()).unwrap();
        assert!(verify_key(b, &id3, b"new", m, rid).is_err());
        // The stored bytes changed (or never arrived whole).
        let p = key_path(dir.path(), &id);
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(
            verify_key(b, &id, b"new", m, rid).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        std::fs::remove_file(&p).unwrap();
        assert_eq!(
            verify_key(b, &id, b"new", m, rid).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn key_changes_refuse_before_writing_and_keep_the_key_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let repo = new_repo(dir.path());
        let count = || repo.backend().list(FileType::Key).unwrap().len();
        for bad in [
            KdfParams {
                iterations: 65,
                ..cheap()
            },
            KdfParams {
                memory_kib: 2 << 20,
                ..cheap()
            },
        ] {
            assert_eq!(
                repo.change_password(b"new", bad).unwrap_err().kind(),
                ErrorKind::Usage
            );
            assert!(repo.add_key(b"new", bad).is_err());
        }
        assert!(repo.change_password(b"", cheap()).is_err());
        assert_eq!(count(), 1);
        // remove_key: the key in use must read back intact first.
        let other = repo.add_key(b"second", cheap()).unwrap();
        assert_eq!(count(), 2);
        let current = key_path(dir.path(), &repo.key_id());
        let saved = std::fs::read(&current).unwrap();
        std::fs::write(&current, b"damaged").unwrap();
        let e = repo.remove_key(&other).unwrap_err();
        assert!(e.to_string().contains("cannot be read back"), "{e}");
        assert_eq!(count(), 2);
        std::fs::write(&current, &saved).unwrap();
        repo.remove_key(&other).unwrap();
        assert_eq!(count(), 1);
        // passwd: the new key opens, the old one is gone.
        let new = repo.change_password(b"new", cheap()).unwrap();
        let listed: Vec<Id> = repo
            .backend()
            .list(FileType::Key)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(listed, vec![new]);
    }
}
