//! The object-store adapter: the repository's objects (config, keys, packs, index files,
//! snapshots, locks) over any `object_store::ObjectStore`, exposed as blocking calls on one
//! process-wide tokio runtime so the pipeline's threads need no async code.
//!
//! Every object is immutable: written whole or not at all, read many times, deleted only by
//! prune. `config`, keys and locks are created with `PutMode::Create` (a second writer fails);
//! packs, index files and snapshots are named by their content, so on a remote store they are
//! plain (or multipart) puts: writing one again writes the same bytes (format.md §1a).
//!
//! [`Backend`] holds the put policy (which objects are created only if absent, multipart,
//! storage class), the size limits of whole reads and the mapping of store errors to the
//! library's; every operation then goes down a stack of small layers, each a file of its own
//! over one trait ([`layer`]: why not `ObjectStore` itself), stacked in one function,
//! [`open::stack`] (design.md §19), top first:
//! - a guard, when asked for: [`readonly`] (a write is a bug) or [`dryrun`] (writes dropped);
//! - with the `test-hooks` feature only, the crash hook ([`hooks`]);
//! - [`local`]: a local folder's modes (folders 0700, objects 0600, fsynced folders);
//! - [`stats`]: bytes sent and the upload phase;
//! - [`create_only`]: a create-only put that finds its own bytes succeeded;
//! - [`limit`]: the bandwidth limits;
//! - [`retry`]: per-attempt timeouts, retries with backoff;
//! - [`stats`]: each request, as it reaches the store;
//! - [`store`]: the provider's calls, with names from [`layout`] — and below it, with the
//!   `test-hooks` feature, the fault injector ([`fault`]), then object_store's own quick HTTP
//!   retries.

mod create_only;
pub mod dryrun;
#[cfg(feature = "test-hooks")]
pub mod fault;
#[cfg(feature = "test-hooks")]
mod hooks;
mod layer;
mod layout;
mod limit;
mod local;
pub mod open;
mod readonly;
mod retry;
mod stats;
mod store;

pub use dryrun::DroppedWrites;
pub use layout::{
    FileType, MAX_CONFIG_SIZE, MAX_INDEX_SIZE, MAX_KEY_SIZE, MAX_LOCK_SIZE, MAX_SNAPSHOT_SIZE,
    MAX_WAL_SIZE,
};
pub use open::{BackendOptions, StoreKind};
pub use stats::BackendStats;

use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use bytes::Bytes;
use layer::{Fut, OsResult, Put, Store, TooLarge, find_cause, generic_error, take_error};
use layout::Handle;
use object_store::ObjectStore;
use object_store::path::Path;
use open::{Guard, Parts};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// Packs larger than this go up as multipart uploads (to remote stores), in parts of
/// [`MULTIPART_PART`] sent side by side. Well above the default pack size (16 MiB, which packs
/// exceed by a little): a default pack is one PUT, not four requests.
pub const MULTIPART_THRESHOLD: usize = 48 << 20;
/// The part size of a multipart upload.
pub const MULTIPART_PART: usize = 16 << 20;

/// A repository location in an object store.
#[derive(Clone)]
pub struct Backend {
    /// The top of the stack: every operation goes down it.
    top: Arc<dyn Store>,
    /// What the stack is built from, kept to build it again changed ([`Self::with_tuning`],
    /// [`Self::read_only`], …).
    parts: Parts,
}

/// The one tokio runtime of the process: every backend's calls run on it.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("cairn-io")
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the I/O runtime: {e}")))
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.parts.location)
    }
}

impl Backend {
    /// Open a repository location with default options: a path, `file://`, `s3://`, `gs://` or
    /// `az://` URL (see [`open`]). With `create`, a local folder is created when missing (object
    /// stores have no folders to create).
    pub fn open(location: &str, create: bool) -> Result<Backend> {
        Self::open_with(location, &BackendOptions::default(), create)
    }

    /// [`Self::open`] with `-o` options and bandwidth limits.
    pub fn open_with(location: &str, opts: &BackendOptions, create: bool) -> Result<Backend> {
        runtime()?;
        Ok(Self::build(Parts::open(location, opts, create)?))
    }

    /// Wrap any object store; `prefix` is the repository's folder inside it. It is treated as a
    /// remote store (plain puts for content-named objects, retries on transient errors).
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        location: String,
    ) -> Result<Backend> {
        runtime()?;
        Ok(Self::build(Parts::remote(store, prefix, location)))
    }

    fn build(parts: Parts) -> Backend {
        Backend {
            top: open::stack(&parts),
            parts,
        }
    }

    /// This backend with faults injected by a [`fault::FaultStore`] (tests; `spec` in the
    /// syntax of `CAIRN_TEST_FAULTS`). Statistics and the retry state start afresh.
    #[cfg(feature = "test-hooks")]
    pub fn with_faults(&self, spec: &str) -> Result<Backend> {
        let mut p = self.parts.clone();
        p.store = Arc::new(fault::FaultStore::new(Arc::clone(&p.store), spec)?);
        p.stats = Arc::default();
        p.answered = Arc::default();
        Ok(Self::build(p))
    }

    /// This backend with cairn's own tuning changed by `-o`-style options (`retries`,
    /// `timeout`, `connections`, `storage_class`).
    pub fn with_tuning(&self, options: &[(&str, &str)]) -> Result<Backend> {
        let mut t = (*self.parts.tuning).clone();
        for (k, v) in options {
            t.apply(k, v)?;
        }
        let mut p = self.parts.clone();
        p.tuning = Arc::new(t);
        Ok(Self::build(p))
    }

    /// This backend for a command that only reads (`check`, `mount`): a write or delete fails
    /// as an internal error naming the object ([`readonly`]). Statistics are shared.
    pub fn read_only(&self) -> Backend {
        let mut p = self.parts.clone();
        p.guard = Guard::ReadOnly;
        Self::build(p)
    }

    /// This backend with writes and deletes counted and dropped ([`dryrun`]; see
    /// [`Self::dropped_writes`]). Reads see the store as it is. Statistics are shared.
    pub fn dry_run(&self) -> Backend {
        let mut p = self.parts.clone();
        p.guard = Guard::DryRun(Arc::default());
        Self::build(p)
    }

    /// What a [`Self::dry_run`] backend dropped so far; `None` for any other.
    pub fn dropped_writes(&self) -> Option<DroppedWrites> {
        match &self.parts.guard {
            Guard::DryRun(d) => Some(d.snapshot()),
            _ => None,
        }
    }

    /// Where the repository is, as given.
    pub fn location(&self) -> &str {
        &self.parts.location
    }

    /// What kind of store this is.
    pub fn kind(&self) -> StoreKind {
        self.parts.kind
    }

    /// Uploads to keep in flight (`-o connections=N`).
    pub fn connections(&self) -> usize {
        self.parts.tuning.connections
    }

    /// Requests made and bytes moved so far.
    pub fn stats(&self) -> BackendStats {
        self.parts.stats.snapshot()
    }

    /// Where to report retries (one line each: what failed, why, when the next attempt is).
    pub fn set_notice_handler(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        if let Ok(mut g) = self.parts.notice.lock() {
            *g = Some(Arc::new(f));
        }
    }

    /// Run one operation of the stack to its end on the runtime.
    fn block<T>(&self, f: Fut<'_, T>) -> OsResult<T> {
        match runtime() {
            Ok(rt) => rt.block_on(f),
            Err(e) => Err(generic_error(e)),
        }
    }

    /// Turn a store error into the library's, in one line naming the object and the location.
    fn map_err(&self, e: object_store::Error, what: &str, writing: bool) -> Error {
        use object_store::Error as E;
        let e = match take_error::<local::LocalStep>(e) {
            Ok(local::LocalStep(io)) => return Error::io(format!("cannot store {what}"), io),
            Err(e) => e,
        };
        if let Some(r) = find_cause::<readonly::WriteRefused>(&e) {
            return Error::new(ErrorKind::Internal, r.to_string());
        }
        let p = &self.parts;
        let cause = retry::root_cause(&e);
        let remote = p.local.is_none();
        // A missing bucket or container: a typed NotFound on a put, a 404 status on a listing.
        let no_container = ["NoSuchBucket", "ContainerNotFound", "status code: 404"]
            .iter()
            .any(|m| cause.contains(m));
        match e {
            E::NotFound { .. } if writing && remote => Error::new(
                ErrorKind::NoRepository,
                format!(
                    "cannot store {what}: the bucket or container of {} does not exist",
                    p.location
                ),
            ),
            _ if writing && remote && no_container => Error::new(
                ErrorKind::NoRepository,
                format!("the bucket or container of {} does not exist", p.location),
            ),
            E::NotFound { .. } => Error::not_found(format!("{what} not found")),
            E::AlreadyExists { .. } | E::Precondition { .. } => {
                Error::new(ErrorKind::AlreadyExists, format!("{what} already exists"))
            }
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => Error::backend(format!(
                "access to {what} at {} denied (check the credentials): {cause}",
                p.location
            )),
            e if retry::is_transient(&e) && !p.answered.load(Ordering::Relaxed) => {
                Error::backend(format!("cannot reach {}: {cause}", p.location))
            }
            e if retry::is_transient(&e) => Error::backend(format!(
                "storage error on {what} at {} (gave up after {} retries): {cause}",
                p.location, p.tuning.retries
            )),
            _ => Error::backend(format!(
                "storage error on {what} at {}: {cause}",
                p.location
            )),
        }
    }

    /// Create an object. `config`, keys and locks fail with `AlreadyExists` if it is there;
    /// content-named objects ([`FileType::content_named`]) may be written again.
    pub fn create(&self, t: FileType, name: &str, data: Bytes) -> Result<()> {
        let h = Handle { t, name };
        // Locally, create-only for every type: a hard link, atomic, never over a file.
        let overwrite = t.content_named() && self.parts.local.is_none();
        let mut attributes = object_store::Attributes::new();
        if t == FileType::Pack {
            if let Some(class) = &self.parts.tuning.storage_class {
                attributes.insert(object_store::Attribute::StorageClass, class.clone().into());
            }
        }
        let how = Put {
            overwrite,
            multipart: overwrite && data.len() > MULTIPART_THRESHOLD,
            attributes,
        };
        match self.block(self.top.put(h, data, &how)) {
            Ok(()) => Ok(()),
            // An overwriting put never asks whether the object exists: a 409 or 412 here is a
            // refusal (an aborted operation, a container being deleted), not "already there".
            Err(
                e @ (object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }),
            ) if overwrite => Err(Error::backend(format!(
                "the store refused {} at {}: {}",
                h.what(),
                self.parts.location,
                retry::root_cause(&e)
            ))),
            Err(e) => Err(self.map_err(e, &h.what(), true)),
        }
    }

    /// Create a content-named object; if it already exists it holds the same bytes, so that is fine.
    pub fn create_named(&self, t: FileType, id: &Id, data: Bytes) -> Result<()> {
        match self.create(t, &id.to_hex(), data) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    }

    /// Read a whole object of at most [`FileType::max_whole_size`] bytes.
    pub fn get(&self, t: FileType, name: &str) -> Result<Bytes> {
        self.get_max(t, name, t.max_whole_size())
    }

    /// Read a whole object of at most `max` bytes. The size the store reports when the read
    /// starts is checked before any content is read: a larger object is `Corrupt`, in one line.
    pub fn get_max(&self, t: FileType, name: &str, max: u64) -> Result<Bytes> {
        let h = Handle { t, name };
        self.block(self.top.get(h, max)).map_err(|e| {
            let what = h.what();
            match find_cause::<TooLarge>(&e) {
                Some(TooLarge { size, max }) => Error::corrupt(format!(
                    "{what} is corrupt: {size} bytes, over the limit of {max} for its type"
                )),
                None => self.map_err(e, &what, false),
            }
        })
    }

    /// Read a byte range of an object. A short answer is tried again like any transient
    /// failure (a body cut short is often the network's doing); one that stays short is
    /// reported as corruption.
    pub fn get_range(&self, t: FileType, name: &str, range: Range<u64>) -> Result<Bytes> {
        let h = Handle { t, name };
        self.block(self.top.get_range(h, range.clone()))
            .map_err(|e| {
                if find_cause::<store::ShortRead>(&e).is_some() {
                    Error::corrupt(format!(
                        "{} is corrupt: truncated (wanted bytes {}..{})",
                        h.what(),
                        range.start,
                        range.end
                    ))
                } else {
                    self.map_err(e, &h.what(), false)
                }
            })
    }

    /// Size of an object.
    pub fn size(&self, t: FileType, name: &str) -> Result<u64> {
        let h = Handle { t, name };
        self.block(self.top.head(h))
            .map_err(|e| self.map_err(e, &h.what(), false))
    }

    /// Whether an object exists. A missing `config` on a remote store is told apart from a
    /// missing bucket or container (which is `NoRepository` with a message saying so).
    pub fn exists(&self, t: FileType, name: &str) -> Result<bool> {
        match self.size(t, name) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if t == FileType::Config && self.parts.local.is_none() {
                    self.block(self.top.list(None))
                        .map_err(|e| self.map_err(e, layout::listing_what(None), true))?;
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Names and sizes of all objects of a type, sorted by name. Only objects named exactly as
    /// the repository names them count (format.md §1): 64 lower-case hex digits, a direct
    /// child of the type's folder, and for packs exactly `data/<first 2 hex>/<64 hex>`.
    /// Anything else (sub-folders, upper-case copies, temporary `#` files) is ignored.
    pub fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>> {
        Ok(self
            .list_meta(t)?
            .into_iter()
            .map(|(id, size, _)| (id, size))
            .collect())
    }

    /// [`Self::list`] with each object's last-modified time (ns since the epoch): how old an
    /// unindexed pack or a lock object is.
    pub fn list_meta(&self, t: FileType) -> Result<Vec<(Id, u64, i64)>> {
        let dir = layout::dir(&self.parts.prefix, t);
        let metas = self
            .block(self.top.list(Some(t)))
            .map_err(|e| self.map_err(e, t.dir(), false))?;
        let mut out: Vec<(Id, u64, i64)> = metas
            .into_iter()
            .filter_map(|m| {
                let modified = m.last_modified.timestamp_nanos_opt().unwrap_or(0);
                layout::listed_id(t, &dir, &m.location).map(|id| (id, m.size, modified))
            })
            .collect();
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    /// Names (relative to the type's folder, `/`-separated), sizes and last-modified times
    /// (ns since the epoch) of every object below `t`'s folder, sorted by name: for the types
    /// not named by ids ([`FileType::Wal`]). Names with empty or dot parts are left out.
    pub fn list_names(&self, t: FileType) -> Result<Vec<(String, u64, i64)>> {
        let dir = layout::dir(&self.parts.prefix, t);
        let metas = self
            .block(self.top.list(Some(t)))
            .map_err(|e| self.map_err(e, t.dir(), false))?;
        let mut out: Vec<(String, u64, i64)> = metas
            .into_iter()
            .filter_map(|m| {
                let parts: Vec<String> = m
                    .location
                    .prefix_match(&dir)?
                    .map(|p| p.as_ref().to_string())
                    .collect();
                if parts.is_empty()
                    || parts
                        .iter()
                        .any(|p| p.is_empty() || p.starts_with('.') || p.contains('#'))
                {
                    return None;
                }
                let modified = m.last_modified.timestamp_nanos_opt().unwrap_or(0);
                Some((parts.join("/"), m.size, modified))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Delete an object (missing is fine).
    pub fn delete(&self, t: FileType, name: &str) -> Result<()> {
        let h = Handle { t, name };
        match self.block(self.top.delete(h)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.map_err(e, &h.what(), false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn local_objects_are_private_and_listings_strict() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/repo");
        let b = Backend::open(root.to_str().unwrap(), true).unwrap();
        assert_eq!(mode(&root), 0o700, "repository folder");
        let snap = Id::of_stored(b"s");
        let pack = Id::of_stored(b"p");
        b.create_named(FileType::Snapshot, &snap, Bytes::from_static(b"s"))
            .unwrap();
        b.create_named(FileType::Pack, &pack, Bytes::from_static(b"p"))
            .unwrap();
        let hex = snap.to_hex();
        let phex = pack.to_hex();
        for (p, m) in [
            (root.join("snapshots"), 0o700),
            (root.join("snapshots").join(&hex), 0o600),
            (root.join("data"), 0o700),
            (root.join("data").join(&phex[..2]), 0o700),
            (root.join("data").join(&phex[..2]).join(&phex), 0o600),
        ] {
            assert_eq!(mode(&p), m, "{}", p.display());
        }

        // Junk: a nested copy, an upper-case copy, a short name, a pack in the wrong folder.
        let other = Id::of_stored(b"other").to_hex();
        std::fs::create_dir_all(root.join("snapshots/sub")).unwrap();
        std::fs::write(root.join("snapshots/sub").join(&other), b"x").unwrap();
        std::fs::write(root.join("snapshots").join(hex.to_uppercase()), b"s").unwrap();
        std::fs::write(root.join("snapshots/abc"), b"x").unwrap();
        std::fs::write(root.join("data").join(&other), b"x").unwrap();
        let wrong = if &phex[..2] == "00" { "01" } else { "00" };
        std::fs::create_dir_all(root.join("data").join(wrong)).unwrap();
        std::fs::write(root.join("data").join(wrong).join(&other), b"x").unwrap();
        assert_eq!(b.list(FileType::Snapshot).unwrap(), vec![(snap, 1)]);
        assert_eq!(b.list(FileType::Pack).unwrap(), vec![(pack, 1)]);
    }

    #[test]
    fn oversized_objects_are_refused_before_reading() {
        let tmp = tempfile::tempdir().unwrap();
        let b = Backend::open(tmp.path().join("r").to_str().unwrap(), true).unwrap();
        let id = Id::of_stored(b"big");
        b.create_named(FileType::Index, &id, Bytes::from(vec![7u8; 100]))
            .unwrap();
        assert_eq!(
            b.get_max(FileType::Index, &id.to_hex(), 100).unwrap().len(),
            100
        );
        let e = b.get_max(FileType::Index, &id.to_hex(), 99).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("over the limit"), "{e}");
        // A folder made before keeps its mode; its new objects are private all the same.
        let existing = tmp.path().join("shared");
        std::fs::create_dir(&existing).unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o750)).unwrap();
        let b = Backend::open(existing.to_str().unwrap(), true).unwrap();
        assert_eq!(mode(&existing), 0o750);
        b.create(FileType::Config, "config", Bytes::from_static(b"c"))
            .unwrap();
        assert_eq!(mode(&existing.join("config")), 0o600);
    }

    #[test]
    fn read_only_refuses_writes_and_dry_run_drops_them() {
        let tmp = tempfile::tempdir().unwrap();
        let b = Backend::open(tmp.path().join("r").to_str().unwrap(), true).unwrap();
        let snap = Id::of_stored(b"s");
        b.create_named(FileType::Snapshot, &snap, Bytes::from_static(b"s"))
            .unwrap();
        let other = Id::of_stored(b"other");
        let (hex, ohex) = (snap.to_hex(), other.to_hex());

        let ro = b.read_only();
        assert_eq!(ro.get(FileType::Snapshot, &hex).unwrap(), "s");
        assert_eq!(ro.list(FileType::Snapshot).unwrap(), vec![(snap, 1)]);
        let e = ro
            .create(FileType::Snapshot, &ohex, Bytes::from_static(b"o"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
        assert!(e.to_string().contains(&format!("snapshot {ohex}")), "{e}");
        let e = ro.delete(FileType::Snapshot, &hex).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
        assert!(e.to_string().contains(&hex), "{e}");
        assert_eq!(ro.dropped_writes(), None);

        let dry = b.dry_run();
        dry.create(FileType::Snapshot, &ohex, Bytes::from_static(b"other"))
            .unwrap();
        dry.delete(FileType::Snapshot, &hex).unwrap();
        assert_eq!(
            dry.dropped_writes(),
            Some(DroppedWrites {
                puts: 1,
                bytes: 5,
                deletes: 1
            })
        );
        // Nothing reached the store, and only the first put was counted as a request.
        assert_eq!(b.list(FileType::Snapshot).unwrap(), vec![(snap, 1)]);
        let s = b.stats();
        assert_eq!((s.put, s.delete, s.bytes_up), (1, 0, 1), "{s:?}");
    }
}
