//! The repository: opening and creating it, its keys, and reading and writing its objects.
//!
//! This is the only module that holds keys or talks to the backend; the layers above see blobs,
//! trees and snapshots by id.

pub mod index;
pub mod keys;
pub mod reader;
pub mod warnings;
pub mod writer;

use crate::backend::{Backend, FileType};
use crate::cache::Cache;
use crate::chunker::Chunker;
use crate::crypto::kdf::KdfParams;
use crate::crypto::{MasterKey, Sealer, label};
use crate::error::{Error, ErrorKind, Result};
use crate::format::config::{ChunkerParams, Config};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::format::{self, VERSION};
use crate::id::Id;
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;
use warnings::{Warning, Warnings};

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
    warnings: Warnings,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({})", self.backend.location())
    }
}

impl Repository {
    /// Create a repository at `backend` with its first password.
    pub fn init(
        backend: Backend,
        password: &[u8],
        opts: &InitOptions,
        cache_dir: &Path,
    ) -> Result<Arc<Repository>> {
        opts.chunker.validate()?;
        if backend.exists(FileType::Config, "config")? {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} already holds a repository", backend.location()),
            ));
        }
        let master = MasterKey::generate()?;
        let mut rid = [0u8; 32];
        crate::crypto::random_bytes(&mut rid)?;
        let config = Config {
            version: VERSION,
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
        Self::assemble(backend, master, config, key_id, cache_dir)
    }

    /// Open a repository with a password and bring the cache up to date with its index.
    pub fn open(backend: Backend, password: &[u8], cache_dir: &Path) -> Result<Arc<Repository>> {
        if !backend.exists(FileType::Config, "config")? {
            return Err(Error::not_found(format!(
                "{} is not a cairn repository (no config)",
                backend.location()
            )));
        }
        let sealed = backend.get(FileType::Config, "config")?;
        let opens = |rid: &Id, mk: &MasterKey| {
            mk.sealer()
                .open(label::CONFIG, &sealed, &"config")
                .ok()
                .and_then(|p| Config::decode(&p).ok())
                .is_some_and(|c| c.repository_id == *rid)
        };
        let (key_id, _, master) = keys::unlock(&backend, password, &opens)?;
        let plain = master.sealer().open(label::CONFIG, &sealed, &"config")?;
        let config = Config::decode(&plain)?;
        let repo = Self::assemble(backend, master, config, key_id, cache_dir)?;
        index::sync_cache(&repo)?;
        Ok(repo)
    }

    fn assemble(
        backend: Backend,
        master: MasterKey,
        config: Config,
        key_id: Id,
        cache_dir: &Path,
    ) -> Result<Arc<Repository>> {
        let cache = Cache::open(cache_dir, &config.repository_id)?;
        let chunker = Chunker::new(config.chunker, master.chunker_seed);
        let sealer = master.sealer();
        Ok(Arc::new(Repository {
            backend,
            master,
            sealer,
            config,
            cache,
            chunker,
            key_id,
            warnings: Warnings::default(),
        }))
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }
    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The local cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
    /// The chunker.
    pub fn chunker(&self) -> &Chunker {
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

    /// Add a key file for another password.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        keys::write_key(
            &self.backend,
            &self.config.repository_id,
            &self.master,
            password,
            kdf,
        )
    }

    /// Change the password in use: write a key file for `password`, then delete the current
    /// one. Returns the new key's id.
    pub fn change_password(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        let id = self.add_key(password, kdf)?;
        self.backend.delete(FileType::Key, &self.key_id.to_hex())?;
        Ok(id)
    }

    /// Remove a key file; the one in use and the last one cannot be removed.
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
        self.backend.delete(FileType::Key, &id.to_hex())
    }

    /// Seal and store an object of a type named by its content hash.
    pub(crate) fn save_sealed(&self, t: FileType, aad: &[u8], plain: &[u8]) -> Result<Id> {
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
        let plain = format::encode(snap)?;
        let id = self.save_sealed(FileType::Snapshot, label::SNAPSHOT, &plain)?;
        self.cache.put_snapshot(&id, &plain)?;
        Ok(id)
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
    fn load_snapshot_sized(&self, id: &Id, stored_size: u64) -> Result<Snapshot> {
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

    /// Read and verify a tree (cache first).
    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let what = format!("tree {}", id.short());
        if let Some(plain) = self.cache.tree(id)? {
            if let Ok(t) = Tree::decode(&plain, &what) {
                return Ok(t);
            }
        }
        let plain = self.read_blob(id)?;
        let t = Tree::decode(&plain, &what)?;
        self.cache.put_tree(id, &plain)?;
        Ok(t)
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
