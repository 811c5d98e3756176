//! The object-store adapter: the repository's layout of names, create-only puts, ranged gets and
//! listings over any `object_store::ObjectStore`, exposed as blocking calls on a private tokio
//! runtime so the pipeline's threads need no async code.
//!
//! Every object is immutable: written once with `PutMode::Create` (whole or not at all), read
//! many times, deleted only by prune.

use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::ops::Range;
use std::sync::Arc;

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
}

/// A repository location in an object store.
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    location: String,
    rt: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.location)
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
            std::fs::create_dir_all(&local)
                .map_err(|e| Error::io(format!("cannot create {}", local.display()), e))?;
        } else if !local.is_dir() {
            return Err(Error::not_found(format!(
                "repository {location} does not exist"
            )));
        }
        let store = object_store::local::LocalFileSystem::new_with_prefix(&local)
            .map_err(|e| map_err(e, "repository folder"))?
            .with_automatic_cleanup(true);
        Self::from_store(Arc::new(store), Path::default(), location.to_string())
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
        let path = self.path(t, name);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.rt
            .block_on(self.store.put_opts(&path, PutPayload::from(data), opts))
            .map(|_| ())
            .map_err(|e| map_err(e, &Self::what(t, name)))
    }

    /// Create a content-named object; if it already exists it holds the same bytes, so that is fine.
    pub fn create_named(&self, t: FileType, id: &Id, data: Bytes) -> Result<()> {
        match self.create(t, &id.to_hex(), data) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    }

    /// Read a whole object.
    pub fn get(&self, t: FileType, name: &str) -> Result<Bytes> {
        let path = self.path(t, name);
        let what = Self::what(t, name);
        self.rt
            .block_on(async { self.store.get(&path).await?.bytes().await })
            .map_err(|e| map_err(e, &what))
    }

    /// Read a byte range of an object; a short answer is reported as corruption.
    pub fn get_range(&self, t: FileType, name: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(t, name);
        let want = range.end - range.start;
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

    /// Names and sizes of all objects of a type; names that are not ids are skipped.
    pub fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>> {
        let prefix = self.prefix.clone().join(t.dir());
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.store.list(Some(&prefix)).try_collect())
            .map_err(|e| map_err(e, t.dir()))?;
        let mut out: Vec<(Id, u64)> = metas
            .into_iter()
            .filter_map(|m| {
                m.location
                    .filename()
                    .and_then(|n| Id::from_hex(n).ok())
                    .map(|id| (id, m.size))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Delete an object (missing is fine).
    pub fn delete(&self, t: FileType, name: &str) -> Result<()> {
        let path = self.path(t, name);
        match self.rt.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(e, &Self::what(t, name))),
        }
    }
}
