//! Local folders (a path or `file://`): `LocalFileSystem` with `with_fsync(true)`, so a put
//! returns only once the object and its folder entry are on stable storage, and an index file
//! or snapshot never names an object a power loss could take back. `LocalFileSystem` has no
//! option for file modes, so this adds the one local step object_store cannot do (format.md
//! §1): before a put it creates missing folders itself with mode 0700 (fsyncing their parent),
//! and after a put it sets the new object to 0600. All object I/O still goes through
//! object_store.

use super::layer::{Fut, Layer, Put, Store, generic_error};
use super::layout::Handle;
use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The file modes of a local repository (see the module docs): folders 0700, objects 0600.
#[derive(Debug)]
pub(crate) struct LocalDirs {
    /// The repository folder.
    root: PathBuf,
    /// Folders known to exist (created or seen by this process), so each costs one `mkdir`.
    made: Mutex<HashSet<PathBuf>>,
}

impl LocalDirs {
    /// Create the missing folders between the root and the object `rel` (a `/`-separated path
    /// below the root), each with mode 0700, fsyncing the parent of each folder created.
    pub(crate) fn prepare(&self, rel: &str) -> std::io::Result<()> {
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
    pub(crate) fn finish(&self, rel: &str) -> std::io::Result<()> {
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

    /// Forget the folders made: a delete's automatic cleanup may remove an emptied one.
    pub(crate) fn forget(&self) {
        self.made.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
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

/// The store of the local folder `path` (`location` as given, for messages) and its modes.
/// With `create`, a missing folder is created private; without, it is `NoRepository`.
pub(crate) fn open(
    path: PathBuf,
    location: &str,
    create: bool,
) -> Result<(Arc<dyn ObjectStore>, Arc<LocalDirs>)> {
    if create {
        create_private_root(&path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    } else if !path.is_dir() {
        return Err(Error::new(
            ErrorKind::NoRepository,
            format!("repository {location} does not exist"),
        ));
    }
    let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
        .map_err(|e| {
            Error::backend(format!(
                "cannot open folder {}: {}",
                path.display(),
                super::retry::root_cause(&e)
            ))
        })?
        .with_automatic_cleanup(true)
        .with_fsync(true);
    let dirs = LocalDirs {
        root: path,
        made: Mutex::new(HashSet::new()),
    };
    Ok((Arc::new(store), Arc::new(dirs)))
}

/// The local folder's modes as a layer: folders made private before a put, the object after
/// it; the folders known are forgotten before a delete.
pub(crate) struct Modes {
    pub inner: Arc<dyn Store>,
    pub dirs: Arc<LocalDirs>,
    /// The repository's folder in the store (empty: the store is rooted at the folder).
    pub prefix: Path,
}

/// A local step of a put that failed (a folder or a mode), reported as an I/O error.
#[derive(Debug)]
pub(crate) struct LocalStep(pub std::io::Error);

impl std::fmt::Display for LocalStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LocalStep {}

impl Layer for Modes {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn put<'a>(&'a self, h: Handle<'a>, data: Bytes, how: &'a Put) -> Fut<'a, ()> {
        Box::pin(async move {
            let path = h.path(&self.prefix);
            let local = |e| generic_error(LocalStep(e));
            self.dirs.prepare(path.as_ref()).map_err(local)?;
            self.inner.put(h, data, how).await?;
            self.dirs.finish(path.as_ref()).map_err(local)
        })
    }

    fn delete<'a>(&'a self, h: Handle<'a>) -> Fut<'a, ()> {
        // Automatic cleanup may remove the emptied folder: forget what was made.
        self.dirs.forget();
        self.inner.delete(h)
    }
}
