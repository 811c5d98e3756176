//! The object-store adapter: the repository's layout of names, puts by type, ranged gets and
//! listings over any `object_store::ObjectStore`, exposed as blocking calls on one process-wide
//! tokio runtime so the pipeline's threads need no async code.
//!
//! Every object is immutable: written whole or not at all, read many times, deleted only by
//! prune. `config`, keys and locks are created with `PutMode::Create` (a second writer fails);
//! packs, index files and snapshots are named by their content, so on a remote store they are
//! plain (or multipart) puts: writing one again writes the same bytes (format.md §1a).
//!
//! Each call goes through one stack (design.md §19): request statistics ([`stats`]), the
//! bandwidth limits ([`limit`]), cairn's retry layer with a per-attempt timeout ([`retry`]),
//! then, in tests only, the fault injector ([`fault`]) and the provider's store with its own
//! quick HTTP retries. Names and paths are [`layout`]'s; local folders' modes are [`local`]'s.

pub mod fault;
mod layout;
mod limit;
mod local;
pub mod open;
mod retry;
mod stats;

pub use layout::{
    FileType, MAX_CONFIG_SIZE, MAX_INDEX_SIZE, MAX_KEY_SIZE, MAX_LOCK_SIZE, MAX_SNAPSHOT_SIZE,
};
pub use open::{BackendOptions, StoreKind};
pub use stats::BackendStats;

use layout::Handle;
use local::LocalDirs;
use stats::Counters;

use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Packs larger than this go up as multipart uploads (to remote stores), in parts of
/// [`MULTIPART_PART`] sent side by side. Well above the default pack size (16 MiB, which packs
/// exceed by a little): a default pack is one PUT, not four requests.
pub const MULTIPART_THRESHOLD: usize = 48 << 20;
/// The part size of a multipart upload.
pub const MULTIPART_PART: usize = 16 << 20;

/// Crash tests: with `CAIRN_TEST_KILL_AFTER_WRITES=N` in the environment, the process kills
/// itself with SIGKILL just before its N+1-th object write or delete, so a test can stop a
/// backup, prune or repair at every step it takes and then check what is left. Unset (always,
/// outside tests), this costs one atomic load per write.
fn fault_point() {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let limit = LIMIT.get_or_init(|| {
        std::env::var("CAIRN_TEST_KILL_AFTER_WRITES")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(n) = *limit {
        if COUNT.fetch_add(1, Ordering::SeqCst) >= n {
            // SAFETY: kill and getpid have no preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

/// A repository location in an object store.
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    location: String,
    kind: StoreKind,
    tuning: Arc<open::Tuning>,
    local: Option<Arc<LocalDirs>>,
    up: Option<Arc<limit::Limit>>,
    down: Option<Arc<limit::Limit>>,
    stats: Arc<Counters>,
    /// Whether the store has answered any request (see [`retry`]: a store that never answered
    /// is not retried).
    answered: Arc<AtomicBool>,
    notice: Arc<Mutex<Option<NoticeFn>>>,
}

type NoticeFn = Arc<dyn Fn(&str) + Send + Sync>;

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

#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Head,
    Put,
    List,
    Delete,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.location)
    }
}

/// The error for an object over its type's size limit.
fn too_large(what: &str, size: u64, max: u64) -> Error {
    Error::corrupt(format!(
        "{what} is corrupt: {size} bytes, over the limit of {max} for its type"
    ))
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
        let o = open::open(location, opts)?;
        let (store, local): (Arc<dyn ObjectStore>, Option<Arc<LocalDirs>>) = match o.local {
            Some(path) => {
                let (store, dirs) = local::open(path, location, create)?;
                (store, Some(dirs))
            }
            None => match o.store {
                Some(s) => (s, None),
                None => return Err(Error::new(ErrorKind::Internal, "no store built")),
            },
        };
        let store: Arc<dyn ObjectStore> = match std::env::var("CAIRN_TEST_FAULTS") {
            Ok(spec) if !spec.is_empty() => Arc::new(fault::FaultStore::new(store, &spec)?),
            _ => store,
        };
        let mut b = Self::from_store(store, o.prefix, location.to_string())?;
        b.kind = o.kind;
        b.tuning = Arc::new(o.tuning);
        b.local = local;
        b.up = opts.limit_upload.map(|r| Arc::new(limit::Limit::new(r)));
        b.down = opts.limit_download.map(|r| Arc::new(limit::Limit::new(r)));
        Ok(b)
    }

    /// Wrap any object store; `prefix` is the repository's folder inside it. It is treated as a
    /// remote store (plain puts for content-named objects, retries on transient errors).
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        location: String,
    ) -> Result<Backend> {
        runtime()?;
        let tuning = open::Tuning::defaults(StoreKind::S3);
        Ok(Backend {
            store,
            prefix,
            location,
            kind: StoreKind::S3,
            tuning: Arc::new(tuning),
            local: None,
            up: None,
            down: None,
            stats: Arc::default(),
            answered: Arc::default(),
            notice: Arc::default(),
        })
    }

    /// This backend with faults injected by a [`fault::FaultStore`] (tests; `spec` in the
    /// syntax of `CAIRN_TEST_FAULTS`). Statistics and the retry state start afresh.
    pub fn with_faults(&self, spec: &str) -> Result<Backend> {
        let mut b = self.clone();
        b.store = Arc::new(fault::FaultStore::new(Arc::clone(&self.store), spec)?);
        b.stats = Arc::default();
        b.answered = Arc::default();
        Ok(b)
    }

    /// This backend with cairn's own tuning changed by `-o`-style options (`retries`,
    /// `timeout`, `connections`, `storage_class`).
    pub fn with_tuning(&self, options: &[(&str, &str)]) -> Result<Backend> {
        let mut t = (*self.tuning).clone();
        for (k, v) in options {
            t.apply(k, v)?;
        }
        let mut b = self.clone();
        b.tuning = Arc::new(t);
        Ok(b)
    }

    /// Where the repository is, as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// What kind of store this is.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Uploads to keep in flight (`-o connections=N`).
    pub fn connections(&self) -> usize {
        self.tuning.connections
    }

    /// Requests made and bytes moved so far.
    pub fn stats(&self) -> BackendStats {
        self.stats.snapshot()
    }

    /// Where to report retries (one line each: what failed, why, when the next attempt is).
    pub fn set_notice_handler(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        if let Ok(mut g) = self.notice.lock() {
            *g = Some(Arc::new(f));
        }
    }

    fn notify(&self, msg: &str) {
        let f = self.notice.lock().ok().and_then(|g| g.clone());
        if let Some(f) = f {
            f(msg);
        }
    }

    fn path(&self, t: FileType, name: &str) -> Path {
        Handle { t, name }.path(&self.prefix)
    }

    fn what(t: FileType, name: &str) -> String {
        Handle { t, name }.what()
    }

    /// Run one store operation on the runtime: count it, time each attempt out, and repeat it
    /// after a transient error with backoff (see [`retry`]). `f` builds one attempt.
    fn run<T, F, Fut>(&self, op: Op, what: &str, bytes: u64, mut f: F) -> OsResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = OsResult<T>>,
    {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => return Err(generic_error(e)),
        };
        let counter = match op {
            Op::Get => &self.stats.get,
            Op::Head => &self.stats.head,
            Op::Put => &self.stats.put,
            Op::List => &self.stats.list,
            Op::Delete => &self.stats.delete,
        };
        // Local operations are not retried by default, and then run to the end (a slow NFS
        // listing is not a failure); remote ones, and local ones with `-o retries`, get the
        // backstop.
        let limit = retry::attempt_timeout(self.tuning.timeout, bytes, matches!(op, Op::Put));
        let local = self.local.is_some() && self.tuning.retries == 0;
        rt.block_on(async {
            let mut attempt = 0u32;
            loop {
                counter.fetch_add(1, Ordering::Relaxed);
                let r = if local {
                    f().await
                } else {
                    match tokio::time::timeout(limit, f()).await {
                        Ok(r) => r,
                        Err(_) => Err(generic_error(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no answer within {}s", limit.as_secs()),
                        ))),
                    }
                };
                let e = match r {
                    Ok(v) => {
                        self.answered.store(true, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Err(e) => e,
                };
                if !retry::is_transient(&e) {
                    // A definite answer (not found, exists, denied) is an answer.
                    self.answered.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                if retry::has_status(&e) {
                    // A 5xx or 429 is an answer too: the store is there, just busy.
                    self.answered.store(true, Ordering::Relaxed);
                }
                if !self.answered.load(Ordering::Relaxed) || attempt >= self.tuning.retries {
                    return Err(e);
                }
                attempt += 1;
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                let wait = retry::backoff(attempt);
                self.notify(&format!(
                    "{what}: {}; retrying in {:.1}s (retry {attempt} of {})",
                    retry::root_cause(&e),
                    wait.as_secs_f64(),
                    self.tuning.retries
                ));
                tokio::time::sleep(wait).await;
            }
        })
    }

    /// Turn a store error into the library's, in one line naming the object and the location.
    fn map_err(&self, e: object_store::Error, what: &str, writing: bool) -> Error {
        use object_store::Error as E;
        let cause = retry::root_cause(&e);
        let remote = self.local.is_none();
        // A missing bucket or container: a typed NotFound on a put, a 404 status on a listing.
        let no_container = ["NoSuchBucket", "ContainerNotFound", "status code: 404"]
            .iter()
            .any(|m| cause.contains(m));
        match e {
            E::NotFound { .. } if writing && remote => Error::new(
                ErrorKind::NoRepository,
                format!(
                    "cannot store {what}: the bucket or container of {} does not exist",
                    self.location
                ),
            ),
            _ if writing && remote && no_container => Error::new(
                ErrorKind::NoRepository,
                format!(
                    "the bucket or container of {} does not exist",
                    self.location
                ),
            ),
            E::NotFound { .. } => Error::not_found(format!("{what} not found")),
            E::AlreadyExists { .. } | E::Precondition { .. } => {
                Error::new(ErrorKind::AlreadyExists, format!("{what} already exists"))
            }
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => Error::backend(format!(
                "access to {what} at {} denied (check the credentials): {cause}",
                self.location
            )),
            e if retry::is_transient(&e) && !self.answered.load(Ordering::Relaxed) => {
                Error::backend(format!("cannot reach {}: {cause}", self.location))
            }
            e if retry::is_transient(&e) => Error::backend(format!(
                "storage error on {what} at {} (gave up after {} retries): {cause}",
                self.location, self.tuning.retries
            )),
            _ => Error::backend(format!(
                "storage error on {what} at {}: {cause}",
                self.location
            )),
        }
    }

    /// Create an object. `config`, keys and locks fail with `AlreadyExists` if it is there;
    /// content-named objects ([`FileType::content_named`]) may be written again.
    pub fn create(&self, t: FileType, name: &str, data: Bytes) -> Result<()> {
        fault_point();
        let path = self.path(t, name);
        let what = Self::what(t, name);
        let local_err = |e| Error::io(format!("cannot store {what}"), e);
        if let Some(l) = &self.local {
            l.prepare(path.as_ref()).map_err(local_err)?;
        }
        // Locally, create-only for every type: a hard link, atomic, never over a file.
        let overwrite = t.content_named() && self.local.is_none();
        let mut attributes = object_store::Attributes::new();
        if t == FileType::Pack {
            if let Some(class) = &self.tuning.storage_class {
                attributes.insert(object_store::Attribute::StorageClass, class.clone().into());
            }
        }
        let len = data.len() as u64;
        self.stats.first_put.get_or_init(std::time::Instant::now);
        if let Some(up) = &self.up {
            if let Ok(rt) = runtime() {
                rt.block_on(up.take(len));
            }
        }
        let multipart = overwrite && data.len() > MULTIPART_THRESHOLD;
        if multipart {
            // `run` counts one request per attempt; a multipart upload makes parts + 2.
            let parts = data.len().div_ceil(MULTIPART_PART) as u64;
            self.stats.put.fetch_add(parts + 1, Ordering::Relaxed);
        }
        let r = self.run(Op::Put, &what, len, || {
            let store = Arc::clone(&self.store);
            let path = path.clone();
            let data = data.clone();
            let attributes = attributes.clone();
            async move {
                if multipart {
                    put_multipart(store.as_ref(), &path, data, attributes).await
                } else {
                    let opts = PutOptions {
                        mode: if overwrite {
                            PutMode::Overwrite
                        } else {
                            PutMode::Create
                        },
                        attributes,
                        ..Default::default()
                    };
                    store
                        .put_opts(&path, PutPayload::from(data), opts)
                        .await
                        .map(|_| ())
                }
            }
        });
        match r {
            Ok(()) => {}
            // An overwriting put never asks whether the object exists: a 409 or 412 here is a
            // refusal (an aborted operation, a container being deleted), not "already there".
            Err(
                e @ (object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }),
            ) if overwrite => {
                return Err(Error::backend(format!(
                    "the store refused {what} at {}: {}",
                    self.location,
                    retry::root_cause(&e)
                )));
            }
            // A create-only object that exists: ours if it holds our bytes (an attempt whose
            // reply was lost, here or in object_store's own HTTP retries, stored it; key files
            // and the config carry random salts and nonces, so equal bytes can only be ours).
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) if self.get_max(t, name, len).ok().as_ref() == Some(&data) => {}
            Err(e) => return Err(self.map_err(e, &what, true)),
        }
        self.stats.bytes_up.fetch_add(len, Ordering::Relaxed);
        if let Ok(mut g) = self.stats.last_put_end.lock() {
            *g = Some(std::time::Instant::now());
        }
        if let Some(l) = &self.local {
            l.finish(path.as_ref()).map_err(local_err)?;
        }
        Ok(())
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
        let path = self.path(t, name);
        let what = Self::what(t, name);
        let r = self.run(Op::Get, &what, 0, || {
            let store = Arc::clone(&self.store);
            let path = path.clone();
            async move {
                let r = store.get(&path).await?;
                if r.meta.size > max {
                    return Ok(Err(r.meta.size));
                }
                r.bytes().await.map(Ok)
            }
        });
        let b = match r {
            Ok(Ok(b)) => b,
            Ok(Err(size)) => return Err(too_large(&what, size, max)),
            Err(e) => return Err(self.map_err(e, &what, false)),
        };
        if b.len() as u64 > max {
            return Err(too_large(&what, b.len() as u64, max));
        }
        self.received(b.len());
        Ok(b)
    }

    /// Count received bytes and hold the download limit.
    fn received(&self, n: usize) {
        self.stats.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(down) = &self.down {
            if let Ok(rt) = runtime() {
                rt.block_on(down.take(n as u64));
            }
        }
    }

    /// Read a byte range of an object. A short answer is tried again like any transient
    /// failure (a body cut short is often the network's doing); one that stays short is
    /// reported as corruption.
    pub fn get_range(&self, t: FileType, name: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(t, name);
        let want = range.end.saturating_sub(range.start);
        let what = Self::what(t, name);
        let b = self
            .run(Op::Get, &what, want, || {
                let store = Arc::clone(&self.store);
                let path = path.clone();
                let range = range.clone();
                async move {
                    let b = store.get_range(&path, range).await?;
                    if b.len() as u64 != want {
                        return Err(generic_error(ShortRead {
                            got: b.len() as u64,
                            want,
                        }));
                    }
                    Ok(b)
                }
            })
            .map_err(|e| {
                if find_cause::<ShortRead>(&e).is_some() {
                    Error::corrupt(format!(
                        "{what} is corrupt: truncated (wanted bytes {}..{})",
                        range.start, range.end
                    ))
                } else {
                    self.map_err(e, &what, false)
                }
            })?;
        self.received(b.len());
        Ok(b)
    }

    /// Size of an object.
    pub fn size(&self, t: FileType, name: &str) -> Result<u64> {
        let path = self.path(t, name);
        let what = Self::what(t, name);
        self.run(Op::Head, &what, 0, || {
            let store = Arc::clone(&self.store);
            let path = path.clone();
            async move { store.head(&path).await }
        })
        .map(|m| m.size)
        .map_err(|e| self.map_err(e, &what, false))
    }

    /// Whether an object exists. A missing `config` on a remote store is told apart from a
    /// missing bucket or container (which is `NoRepository` with a message saying so).
    pub fn exists(&self, t: FileType, name: &str) -> Result<bool> {
        match self.size(t, name) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if t == FileType::Config && self.local.is_none() {
                    let prefix = self.prefix.clone();
                    self.run(Op::List, "the repository folder", 0, || {
                        let store = Arc::clone(&self.store);
                        let prefix = prefix.clone();
                        async move { store.list_with_delimiter(Some(&prefix)).await }
                    })
                    .map_err(|e| self.map_err(e, "the repository folder", true))?;
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
        let dir = layout::dir(&self.prefix, t);
        let metas: Vec<object_store::ObjectMeta> = self
            .run(Op::List, t.dir(), 0, || {
                let store = Arc::clone(&self.store);
                let dir = dir.clone();
                async move {
                    if t == FileType::Pack {
                        store.list(Some(&dir)).try_collect().await
                    } else {
                        // One level only: junk folders below are never walked.
                        Ok(store.list_with_delimiter(Some(&dir)).await?.objects)
                    }
                }
            })
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

    /// Delete an object (missing is fine).
    pub fn delete(&self, t: FileType, name: &str) -> Result<()> {
        fault_point();
        let path = self.path(t, name);
        if let Some(l) = &self.local {
            // Automatic cleanup may remove the emptied folder: forget what was made.
            l.forget();
        }
        let what = Self::what(t, name);
        match self.run(Op::Delete, &what, 0, || {
            let store = Arc::clone(&self.store);
            let path = path.clone();
            async move { store.delete(&path).await }
        }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.map_err(e, &what, false)),
        }
    }
}

type OsResult<T> = std::result::Result<T, object_store::Error>;

/// A ranged read answered with fewer bytes than asked for: transient to the retry layer (an
/// `io::Error` underneath), corruption once the retries are spent.
#[derive(Debug)]
struct ShortRead {
    got: u64,
    want: u64,
}

impl std::fmt::Display for ShortRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "short read: {} of {} bytes", self.got, self.want)
    }
}

impl std::error::Error for ShortRead {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*SHORT_READ_IO)
    }
}

/// The cause [`retry::is_transient`] recognises a short read by: an I/O error, as a body
/// cut short by the transport is.
static SHORT_READ_IO: std::sync::LazyLock<std::io::Error> = std::sync::LazyLock::new(|| {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "body shorter than the range",
    )
});

/// The first cause of type `T` in `e`'s chain.
fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cur = c.source();
    }
    None
}

fn generic_error(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: "cairn",
        source: Box::new(e),
    }
}

/// Upload `data` in [`MULTIPART_PART`] parts sent side by side; on failure, or when the
/// attempt is dropped (timed out), the upload is aborted, so no part lingers (and nothing
/// appears at `path`).
async fn put_multipart(
    store: &dyn ObjectStore,
    path: &Path,
    data: Bytes,
    attributes: object_store::Attributes,
) -> OsResult<()> {
    let opts = object_store::PutMultipartOptions {
        attributes,
        ..Default::default()
    };
    let mut guard = AbortOnDrop(Some(store.put_multipart_opts(path, opts).await?));
    let Some(upload) = guard.0.as_mut() else {
        return Err(generic_error(std::io::Error::other(
            "multipart upload gone",
        )));
    };
    let mut parts = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let end = (at + MULTIPART_PART).min(data.len());
        parts.push(upload.put_part(PutPayload::from(data.slice(at..end))));
        at = end;
    }
    futures::future::try_join_all(parts).await?;
    upload.complete().await?;
    guard.0 = None;
    Ok(())
}

/// Aborts a multipart upload that did not complete (an error, or its future dropped by a
/// timeout), in the background on the runtime.
struct AbortOnDrop(Option<Box<dyn object_store::MultipartUpload>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(mut upload) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = upload.abort().await;
                });
            }
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
}
