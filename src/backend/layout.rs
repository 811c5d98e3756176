//! The repository's layout in a store (format.md §1): the kinds of object, where each lives
//! (`config`, `keys/<id>`, `data/<2 hex>/<id>`, …), what users call it in messages, and which
//! listed names count as objects.

use crate::id::Id;
use object_store::path::Path;

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
/// Largest WAL object read whole: a segment of PostgreSQL's largest size (1 GiB), its header
/// and the sealing.
pub const MAX_WAL_SIZE: u64 = (1 << 30) + (2 << 20);

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
    /// `wal/<system id>/<WAL file name>`: a PostgreSQL cluster's archived WAL (format.md §13a);
    /// the name the layers see is `<system id>/<WAL file name>`.
    Wal,
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
            FileType::Wal => "wal",
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
            FileType::Wal => "WAL file",
        }
    }
    /// Whether objects of this type are named by (a hash of) their content: writing one again
    /// can only write the same bytes, so a plain overwriting put is safe. `config`, keys and
    /// locks are created only if absent.
    pub fn content_named(self) -> bool {
        matches!(self, FileType::Pack | FileType::Index | FileType::Snapshot)
    }
    /// The largest object of this type [`Backend::get`](super::Backend::get) reads whole; a
    /// larger one is reported as corrupt before any of it is read (packs are only read by
    /// range).
    pub fn max_whole_size(self) -> u64 {
        match self {
            FileType::Config => MAX_CONFIG_SIZE,
            FileType::Key => MAX_KEY_SIZE,
            FileType::Pack => u64::from(u32::MAX),
            FileType::Index => MAX_INDEX_SIZE,
            FileType::Snapshot => MAX_SNAPSHOT_SIZE,
            FileType::Lock => MAX_LOCK_SIZE,
            FileType::Wal => MAX_WAL_SIZE,
        }
    }
}

/// One object of the repository, as the layers of the stack see it: its type and name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handle<'a> {
    pub t: FileType,
    pub name: &'a str,
}

impl Handle<'_> {
    /// Where the object lives below the repository's folder `prefix`.
    pub fn path(&self, prefix: &Path) -> Path {
        let p = prefix.clone();
        match self.t {
            FileType::Config => p.join("config"),
            FileType::Pack => p
                .join("data")
                .join(&self.name[..2.min(self.name.len())])
                .join(self.name),
            FileType::Wal => self
                .name
                .split('/')
                .fold(p.join(FileType::Wal.dir()), |p, part| p.join(part)),
            t => p.join(t.dir()).join(self.name),
        }
    }

    /// What messages call it: `config`, `pack <id>`, `index file <id>`, ….
    pub fn what(&self) -> String {
        if self.t == FileType::Config {
            "config".into()
        } else {
            format!("{} {}", self.t.noun(), self.name)
        }
    }
}

/// What messages call a listing of `t`'s folder, or of the repository's folder (`None`).
pub(crate) fn listing_what(t: Option<FileType>) -> &'static str {
    match t {
        Some(t) => t.dir(),
        None => "the repository folder",
    }
}

/// The folder of `t`'s objects below `prefix`.
pub(crate) fn dir(prefix: &Path, t: FileType) -> Path {
    prefix.clone().join(t.dir())
}

/// The id of a listed object when its location is exactly where `t`'s objects live.
pub(crate) fn listed_id(t: FileType, dir: &Path, location: &Path) -> Option<Id> {
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
