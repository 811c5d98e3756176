//! The object-store adapter: the repository's layout of names, create-only puts, ranged gets and
//! listings over any `object_store::ObjectStore`, exposed as blocking calls on a private tokio
//! runtime so the pipeline's threads need no async code.
//!
//! Every object is immutable: written once with `PutMode::Create` (whole or not at all), read
//! many times, deleted only by prune.
//!
//! Local repositories (a path or `file://`) use `LocalFileSystem` with `with_fsync(true)`: a put
//! returns only once the object and its folder entry are on stable storage, so an index file or
//! snapshot never names an object a power loss could take back. `LocalFileSystem` has no option
//! for file modes, so [`Backend`] adds the one local step object_store cannot do (format.md §1):
//! before a put it creates missing folders itself with mode 0700 (fsyncing their parent), and
//! after a put it sets the new object to 0600. All object I/O still goes through object_store.

use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Largest config read whole (the real one is about a hundred bytes).
pub const MAX_CONFIG_SIZE: u64 = 1 << 20;
/// Largest key file read whole: a loose backstop; key files are a few hundred bytes.
pub const MAX_KEY_SIZE: u64 = 1 << 20;
/// Largest snapshot read whole (host, paths and tags: a few KiB in practice).
pub const MAX_SNAPSHOT_SIZE: u64 = 16 << 20;
/// Largest index file read whole (a batch of packs: a few hundred KiB in practice).
pub const MAX_INDEX_SIZE: u64 = 256 << 20;
/// Largest lock object read whole.
pub const MAX_LOCK_SIZE: u64 = 1 << 20;

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

/// The kinds of object in a repository, each under its own prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// `config`
    Config,
    /// `keys/<id>`
    Key,
    /// `data/<2 hex>/<id>`
    Pack,
    /// `index/<id>`
    Index,
    /// `snapshots/<id>`
    Snapshot,
    /// `locks/<id>`
    Lock,
}

impl FileType {
    /// The prefix (folder) of this type.
    pub fn dir(self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Pack => "data",
            FileType::Index => "index",
            FileType::Snapshot => "snapshots",
            FileType::Lock => "locks",
        }
    }
    /// What users call it in messages.
    pub fn noun(self) -> &'static str {
        match self {
            FileType::Config => "config",
            FileType::Key => "key",
            FileType::Pack => "pack",
            FileType::Index => "index file",
            FileType::Snapshot => "snapshot",
            FileType::Lock => "lock",
        }
    }
    /// The largest object of this type [`Backend::get`] reads whole; a larger one is reported as
    /// corrupt before any of it is read (packs are only read by range).
    pub fn max_whole_size(self) -> u64 {
        match self {
            FileType::Config => MAX_CONFIG_SIZE,
            FileType::Key => MAX_KEY_SIZE,
            FileType::Pack => u64::from(u32::MAX),
            FileType::Index => MAX_INDEX_SIZE,
            FileType::Snapshot => MAX_SNAPSHOT_SIZE,
            FileType::Lock => MAX_LOCK_SIZE,
        }
    }
}

/// A repository location in an object store.
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    location: String,
    rt: Arc<tokio::runtime::Runtime>,
    local: Option<Arc<LocalDirs>>,
}

/// The file modes of a local repository (see the module docs): folders 0700, objects 0600.
#[derive(Debug)]
struct LocalDirs {
    /// The repository folder.
    root: PathBuf,
    /// Folders known to exist (created or seen by this process), so each costs one `mkdir`.
    made: Mutex<HashSet<PathBuf>>,
}

impl LocalDirs {
    /// Create the missing folders between the root and the object `rel` (a `/`-separated path
    /// below the root), each with mode 0700, fsyncing the parent of each folder created.
    fn prepare(&self, rel: &str) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let mut parts: Vec<&str> = rel.split('/').collect();
        parts.pop();
        let mut dir = self.root.clone();
        // Held while creating, so a second thread waits until the folder is durable.
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        for part in parts {
            dir.push(part);
            if made.contains(&dir) {
                continue;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    if let Some(parent) = dir.parent() {
                        // Some file systems cannot fsync a folder (EINVAL): nothing to make
                        // durable there, as PostgreSQL also concludes.
                        match std::fs::File::open(parent)?.sync_all() {
                            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                            r => r?,
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            made.insert(dir.clone());
        }
        Ok(())
    }

    /// Make the object `rel`, just created, readable and writable by its owner only. Best
    /// effort: the object is already stored whole, and a file system that cannot hold modes
    /// (FAT, some network or FUSE shares) or refuses the change must not fail the write.
    fn finish(&self, rel: &str) -> std::io::Result<()> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.root.join(rel))
            .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o600)));
        match r {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM | libc::EACCES | libc::ENOTSUP | libc::ENOSYS)
                ) =>
            {
                Ok(())
            }
            r => r,
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.location)
    }
}

/// The id of a listed object when its location is exactly where `t`'s objects live.
fn listed_id(t: FileType, dir: &Path, location: &Path) -> Option<Id> {
    let parts: Vec<String> = location
        .prefix_match(dir)?
        .map(|p| p.as_ref().to_string())
        .collect();
    match (t, parts.as_slice()) {
        (FileType::Pack, [sub, name]) if sub.len() == 2 && name.starts_with(sub.as_str()) => {
            Id::from_name(name)
        }
        (FileType::Pack, _) => None,
        (_, [name]) => Id::from_name(name),
        _ => None,
    }
}

/// The error for an object over its type's size limit.
fn too_large(what: &str, size: u64, max: u64) -> Error {
    Error::corrupt(format!(
        "{what} is corrupt: {size} bytes, over the limit of {max} for its type"
    ))
}

/// Create a repository folder (and missing parents); the folder itself gets mode 0700 when it
/// is created here. An existing folder keeps its mode.
fn create_private_root(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        r => r,
    }
}

fn map_err(e: object_store::Error, what: &str) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::not_found(format!("{what} not found")),
        object_store::Error::AlreadyExists { .. } => {
            Error::new(ErrorKind::AlreadyExists, format!("{what} already exists"))
        }
        e => Error::backend(format!("storage error on {what}")).with_source(e),
    }
}

impl Backend {
    /// Open a repository location: a plain path or a `file://` URL. With `create`, a local
    /// folder is created when missing (object stores have no folders to create).
    pub fn open(location: &str, create: bool) -> Result<Backend> {
        let local: std::path::PathBuf = if let Some(rest) = location.strip_prefix("file://") {
            url::Url::parse(location)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .unwrap_or_else(|| rest.into())
        } else if location.contains("://") {
            let scheme = location.split("://").next().unwrap_or_default();
            return Err(Error::usage(format!(
                "repository scheme {scheme}:// is not supported by this build (use a path or file://)"
            )));
        } else {
            location.into()
        };
        if location.is_empty() {
            return Err(Error::usage(
                "no repository given: use -r/--repo or CAIRN_REPOSITORY",
            ));
        }
        if create {
            create_private_root(&local)
                .map_err(|e| Error::io(format!("cannot create {}", local.display()), e))?;
        } else if !local.is_dir() {
            return Err(Error::new(
                ErrorKind::NoRepository,
                format!("repository {location} does not exist"),
            ));
        }
        let store = object_store::local::LocalFileSystem::new_with_prefix(&local)
            .map_err(|e| map_err(e, "repository folder"))?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        let mut b = Self::from_store(Arc::new(store), Path::default(), location.to_string())?;
        b.local = Some(Arc::new(LocalDirs {
            root: local,
            made: Mutex::new(HashSet::new()),
        }));
        Ok(b)
    }

    /// Wrap any object store; `prefix` is the repository's folder inside it.
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        location: String,
    ) -> Result<Backend> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("cairn-io")
            .build()
            .map_err(|e| Error::io("cannot start the I/O runtime", e))?;
        Ok(Backend {
            store,
            prefix,
            location,
            rt: Arc::new(rt),
            local: None,
        })
    }

    /// Where the repository is, as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, t: FileType, name: &str) -> Path {
        let mut p = self.prefix.clone();
        match t {
            FileType::Config => return p.join("config"),
            FileType::Pack => {
                p = p.join("data").join(&name[..2.min(name.len())]);
            }
            _ => p = p.join(t.dir()),
        }
        p.join(name)
    }

    fn what(t: FileType, name: &str) -> String {
        if t == FileType::Config {
            "config".into()
        } else {
            format!("{} {name}", t.noun())
        }
    }

    /// Create an object; fails with `AlreadyExists` if it is there.
    pub fn create(&self, t: FileType, name: &str, data: Bytes) -> Result<()> {
        fault_point();
        let path = self.path(t, name);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let local_err = |e| Error::io(format!("cannot store {}", Self::what(t, name)), e);
        if let Some(l) = &self.local {
            l.prepare(path.as_ref()).map_err(local_err)?;
        }
        self.rt
            .block_on(self.store.put_opts(&path, PutPayload::from(data), opts))
            .map_err(|e| map_err(e, &Self::what(t, name)))?;
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
        self.rt.block_on(async {
            let r = self.store.get(&path).await.map_err(|e| map_err(e, &what))?;
            if r.meta.size > max {
                return Err(too_large(&what, r.meta.size, max));
            }
            let b = r.bytes().await.map_err(|e| map_err(e, &what))?;
            if b.len() as u64 > max {
                return Err(too_large(&what, b.len() as u64, max));
            }
            Ok(b)
        })
    }

    /// Read a byte range of an object; a short answer is reported as corruption.
    pub fn get_range(&self, t: FileType, name: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(t, name);
        let want = range.end.saturating_sub(range.start);
        let what = Self::what(t, name);
        let b = self
            .rt
            .block_on(self.store.get_range(&path, range.clone()))
            .map_err(|e| map_err(e, &what))?;
        if b.len() as u64 != want {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: truncated (wanted bytes {}..{})",
                range.start, range.end
            )));
        }
        Ok(b)
    }

    /// Size of an object.
    pub fn size(&self, t: FileType, name: &str) -> Result<u64> {
        let path = self.path(t, name);
        self.rt
            .block_on(self.store.head(&path))
            .map(|m| m.size)
            .map_err(|e| map_err(e, &Self::what(t, name)))
    }

    /// Whether an object exists.
    pub fn exists(&self, t: FileType, name: &str) -> Result<bool> {
        match self.size(t, name) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
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
        let dir = self.prefix.clone().join(t.dir());
        let metas: Vec<object_store::ObjectMeta> = if t == FileType::Pack {
            self.rt
                .block_on(self.store.list(Some(&dir)).try_collect())
                .map_err(|e| map_err(e, t.dir()))?
        } else {
            // One level only: junk folders below are never walked.
            self.rt
                .block_on(self.store.list_with_delimiter(Some(&dir)))
                .map_err(|e| map_err(e, t.dir()))?
                .objects
        };
        let mut out: Vec<(Id, u64, i64)> = metas
            .into_iter()
            .filter_map(|m| {
                let modified = m.last_modified.timestamp_nanos_opt().unwrap_or(0);
                listed_id(t, &dir, &m.location).map(|id| (id, m.size, modified))
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
            l.made.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        match self.rt.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(e, &Self::what(t, name))),
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
