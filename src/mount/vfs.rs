//! The file system the mount shows, without FUSE: inodes over the virtual folders and the
//! snapshots' trees, attributes, listings, links, extended attributes and reads.
//!
//! **Inodes.** 1 is the root; `snapshots`, `ids`, `hosts`, `tags` are 2–5. Every other inode
//! number is a hash of (parent inode, name), probed to the next free number on a collision, so
//! the same path gets the same number again after the kernel forgot it, and a listing can give
//! each entry its number without remembering anything. The table keeps an inode while the
//! kernel holds a reference to it (lookup counts, [`Vfs::forget`]), so its memory follows the
//! kernel's dentry cache, not the size of the repository.

pub use super::attr::{Attr, DirEntry, FileKind, VfsError, VfsResult, Volatility, node_attr};
use super::listing::{LATEST, Listing, SnapshotEntry};
use super::reader::{Data, OpenFile, SIBLING_BLOBS, SIBLING_BLOBS_PER_FILE, Source};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::Id;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Inode of the root folder.
pub const ROOT: u64 = 1;
const SNAPSHOTS: u64 = 2;
const IDS: u64 = 3;
const HOSTS: u64 = 4;
const TAGS: u64 = 5;
/// Numbers below this are reserved for the fixed folders.
const FIRST_DYNAMIC: u64 = 16;

/// What an inode stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Inode {
    Root,
    Snapshots,
    Ids,
    Hosts,
    Tags,
    Host(String),
    Tag(String),
    /// A `latest` link with its target.
    Latest(Vec<u8>),
    /// The root folder of a snapshot.
    SnapRoot {
        tree: Id,
        time_ns: i64,
    },
    /// An entry of a snapshot's tree.
    Node(Arc<Node>),
}

struct Slot {
    parent: u64,
    name: Vec<u8>,
    inode: Inode,
    /// References the kernel holds (lookups not yet forgotten).
    lookups: u64,
    /// A file's blob offsets once read without an open handle ([`Vfs::read_inode`]).
    file: Option<Arc<OpenFile>>,
    /// A snapshot folder's listing once read without an open handle.
    entries: Option<Arc<Vec<DirEntry>>>,
}

/// The file system over a repository's snapshots, reading through `S`.
pub struct Vfs<S> {
    source: S,
    listing: RwLock<Arc<Listing>>,
    table: Mutex<HashMap<u64, Slot>>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    next_handle: AtomicU64,
    uid: u32,
    gid: u32,
}

/// The hash inode number of `name` in folder `parent`, before probing.
fn hashed_ino(parent: u64, name: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    parent.hash(&mut h);
    name.hash(&mut h);
    let n = h.finish();
    if n < FIRST_DYNAMIC {
        n + FIRST_DYNAMIC
    } else {
        n
    }
}

/// The inode of a fixed folder: `name` in the root.
fn fixed_ino(parent: u64, name: &[u8]) -> Option<u64> {
    match (parent, name) {
        (ROOT, b"snapshots") => Some(SNAPSHOTS),
        (ROOT, b"ids") => Some(IDS),
        (ROOT, b"hosts") => Some(HOSTS),
        (ROOT, b"tags") => Some(TAGS),
        _ => None,
    }
}

fn next_ino(n: u64) -> u64 {
    n.checked_add(1).unwrap_or(FIRST_DYNAMIC)
}

impl<S: Source> Vfs<S> {
    /// A file system reading through `source`, its virtual folders owned by `uid`/`gid`, with
    /// no snapshots yet ([`Vfs::set_snapshots`]).
    pub fn new(source: S, uid: u32, gid: u32) -> Self {
        let mut table = HashMap::new();
        for (ino, inode, name) in [
            (ROOT, Inode::Root, ""),
            (SNAPSHOTS, Inode::Snapshots, "snapshots"),
            (IDS, Inode::Ids, "ids"),
            (HOSTS, Inode::Hosts, "hosts"),
            (TAGS, Inode::Tags, "tags"),
        ] {
            table.insert(
                ino,
                Slot {
                    parent: ROOT,
                    name: name.as_bytes().to_vec(),
                    inode,
                    lookups: u64::MAX / 2,
                    file: None,
                    entries: None,
                },
            );
        }
        Vfs {
            source,
            listing: RwLock::new(Arc::new(Listing::default())),
            table: Mutex::new(table),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            uid,
            gid,
        }
    }

    /// The source reads go through.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Show these snapshots (replacing the ones shown before).
    pub fn set_snapshots(&self, listing: Listing) {
        *self.listing.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(listing);
    }

    /// The snapshots shown now.
    pub fn listing(&self) -> Arc<Listing> {
        self.listing
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn inode(&self, ino: u64) -> VfsResult<Inode> {
        self.table()
            .get(&ino)
            .map(|s| s.inode.clone())
            .ok_or(VfsError::NotFound)
    }

    fn tree_of(&self, inode: &Inode) -> VfsResult<Option<Arc<Tree>>> {
        let id = match inode {
            Inode::SnapRoot { tree, .. } => *tree,
            Inode::Node(n) if n.kind == NodeKind::Dir => match n.subtree {
                Some(t) => t,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        Ok(Some(self.source.tree(&id)?))
    }

    fn snapshot_inode(e: &SnapshotEntry) -> Inode {
        Inode::SnapRoot {
            tree: e.tree,
            time_ns: e.time_ns,
        }
    }

    /// Every child of `inode` (names and inodes; tree nodes are shared, not copied).
    fn children(&self, inode: &Inode) -> VfsResult<Vec<(Vec<u8>, Inode)>> {
        let l = self.listing();
        let folder = |f: &super::listing::Folder| {
            let mut v: Vec<(Vec<u8>, Inode)> = f
                .names
                .iter()
                .map(|(n, &i)| (n.as_bytes().to_vec(), Self::snapshot_inode(&l.snapshots[i])))
                .collect();
            if let Some(t) = &f.latest {
                v.push((
                    LATEST.as_bytes().to_vec(),
                    Inode::Latest(t.as_bytes().to_vec()),
                ));
            }
            v
        };
        Ok(match inode {
            Inode::Root => vec![
                (b"snapshots".to_vec(), Inode::Snapshots),
                (b"ids".to_vec(), Inode::Ids),
                (b"hosts".to_vec(), Inode::Hosts),
                (b"tags".to_vec(), Inode::Tags),
            ],
            Inode::Snapshots => folder(&l.all),
            Inode::Ids => folder(&l.ids),
            Inode::Hosts => l
                .hosts
                .keys()
                .map(|h| (h.as_bytes().to_vec(), Inode::Host(h.clone())))
                .collect(),
            Inode::Tags => l
                .tags
                .keys()
                .map(|t| (t.as_bytes().to_vec(), Inode::Tag(t.clone())))
                .collect(),
            Inode::Host(h) => l.hosts.get(h).map(folder).unwrap_or_default(),
            Inode::Tag(t) => l.tags.get(t).map(folder).unwrap_or_default(),
            other => match self.tree_of(other)? {
                Some(t) => t
                    .nodes
                    .iter()
                    .map(|n| (n.name.clone(), Inode::Node(Arc::new(n.clone()))))
                    .collect(),
                None => return Err(VfsError::NotDir),
            },
        })
    }

    /// The child `name` of `inode`, without listing a whole tree into inodes.
    fn child(&self, inode: &Inode, name: &[u8]) -> VfsResult<Inode> {
        match inode {
            Inode::SnapRoot { .. } | Inode::Node(_) => {
                let tree = self.tree_of(inode)?.ok_or(VfsError::NotDir)?;
                let n = tree.find(name).ok_or(VfsError::NotFound)?;
                Ok(Inode::Node(Arc::new(n.clone())))
            }
            Inode::Latest(_) => Err(VfsError::NotDir),
            _ => self
                .children(inode)?
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, i)| i)
                .ok_or(VfsError::NotFound),
        }
    }

    /// A snapshot's root counts as changing: its name in a virtual folder goes away with the
    /// snapshot.
    fn volatility(inode: &Inode) -> Volatility {
        match inode {
            Inode::Node(_) => Volatility::Fixed,
            _ => Volatility::Changing,
        }
    }

    fn attr_of(&self, ino: u64, inode: &Inode) -> Attr {
        let l = self.listing();
        let virt = |kind, size, perm| Attr {
            ino,
            kind,
            size,
            perm,
            nlink: if kind == FileKind::Dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            atime_ns: l.newest_ns,
            mtime_ns: l.newest_ns,
            ctime_ns: l.newest_ns,
        };
        match inode {
            Inode::Latest(t) => virt(FileKind::Symlink, t.len() as u64, 0o777),
            Inode::SnapRoot { time_ns, .. } => Attr {
                atime_ns: *time_ns,
                mtime_ns: *time_ns,
                ctime_ns: *time_ns,
                ..virt(FileKind::Dir, 0, 0o555)
            },
            Inode::Node(n) => node_attr(ino, n),
            _ => virt(FileKind::Dir, 0, 0o555),
        }
    }

    /// Look `name` up in folder `parent`; the kernel now holds one more reference to it.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> VfsResult<(Attr, Volatility)> {
        if let Some(ino) = fixed_ino(parent, name) {
            return self.getattr(ino);
        }
        let p = self.inode(parent)?;
        let inode = self.child(&p, name)?;
        let vol = Self::volatility(&inode);
        let mut table = self.table();
        let mut ino = hashed_ino(parent, name);
        loop {
            match table.get_mut(&ino) {
                Some(s) if s.parent == parent && s.name == name => {
                    if s.inode != inode {
                        s.file = None;
                        s.entries = None;
                    }
                    s.inode = inode;
                    s.lookups += 1;
                    let attr = self.attr_of(ino, &s.inode);
                    return Ok((attr, vol));
                }
                Some(_) => ino = next_ino(ino),
                None => {
                    let attr = self.attr_of(ino, &inode);
                    table.insert(
                        ino,
                        Slot {
                            parent,
                            name: name.to_vec(),
                            inode,
                            lookups: 1,
                            file: None,
                            entries: None,
                        },
                    );
                    return Ok((attr, vol));
                }
            }
        }
    }

    /// The kernel dropped `n` references to `ino`; at none, the inode is forgotten.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut table = self.table();
        if let Some(s) = table.get_mut(&ino) {
            s.lookups = s.lookups.saturating_sub(n);
            if s.lookups == 0 && ino >= FIRST_DYNAMIC {
                table.remove(&ino);
            }
        }
    }

    /// How many inodes are remembered (the fixed folders included).
    pub fn inode_count(&self) -> usize {
        self.table().len()
    }

    /// The attributes of `ino`.
    pub fn getattr(&self, ino: u64) -> VfsResult<(Attr, Volatility)> {
        let inode = self.inode(ino)?;
        Ok((self.attr_of(ino, &inode), Self::volatility(&inode)))
    }

    /// The target of link `ino`.
    pub fn readlink(&self, ino: u64) -> VfsResult<Vec<u8>> {
        match self.inode(ino)? {
            Inode::Latest(t) => Ok(t),
            Inode::Node(n) if n.kind == NodeKind::Symlink => Ok(n.link_target.clone()),
            _ => Err(VfsError::NotLink),
        }
    }

    /// Open folder `ino`: its listing (`.` and `..` first) is fixed now and read from the
    /// handle ([`Vfs::readdir`]) until [`Vfs::releasedir`].
    pub fn opendir(&self, ino: u64) -> VfsResult<u64> {
        let entries = self.list(ino)?;
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, Arc::new(entries));
        Ok(fh)
    }

    /// The listing of folder `ino` without an open handle (the kernel's no-opendir mode): a
    /// snapshot folder's is kept with the inode, a virtual folder's made again each time.
    pub fn readdir_inode(&self, ino: u64) -> VfsResult<Arc<Vec<DirEntry>>> {
        if let Some(e) = self.table().get(&ino).and_then(|s| s.entries.clone()) {
            return Ok(e);
        }
        let (_, vol) = self.getattr(ino)?;
        let entries = Arc::new(self.list(ino)?);
        if vol == Volatility::Fixed {
            if let Some(s) = self.table().get_mut(&ino) {
                s.entries = Some(entries.clone());
            }
        }
        Ok(entries)
    }

    /// Up to `size` bytes at `offset` of file `ino` without an open handle (the kernel's
    /// no-open mode); the file's blob offsets are kept with the inode.
    pub fn read_inode(&self, ino: u64, offset: u64, size: usize) -> VfsResult<Data> {
        let cached = self.table().get(&ino).and_then(|s| s.file.clone());
        let f = match cached {
            Some(f) => f,
            None => {
                let f = Arc::new(self.open_file(ino)?);
                if let Some(s) = self.table().get_mut(&ino) {
                    s.file = Some(f.clone());
                }
                f
            }
        };
        Ok(f.read_at(&self.source, offset, size)?)
    }

    /// The entries of folder `ino`, `.` and `..` first.
    fn list(&self, ino: u64) -> VfsResult<Vec<DirEntry>> {
        let inode = self.inode(ino)?;
        let parent = self.table().get(&ino).map_or(ROOT, |s| s.parent);
        let mut entries = vec![
            DirEntry {
                ino,
                name: b".".to_vec(),
                kind: FileKind::Dir,
            },
            DirEntry {
                ino: parent,
                name: b"..".to_vec(),
                kind: FileKind::Dir,
            },
        ];
        if let Some(tree) = self.tree_of(&inode)? {
            // A snapshot's folder: names and kinds straight from the tree, no node copied.
            entries.extend(tree.nodes.iter().map(|n| DirEntry {
                ino: hashed_ino(ino, &n.name),
                name: n.name.clone(),
                kind: n.kind.into(),
            }));
        } else {
            for (name, child) in self.children(&inode)? {
                let kind = match &child {
                    Inode::Latest(_) => FileKind::Symlink,
                    Inode::Node(n) => n.kind.into(),
                    _ => FileKind::Dir,
                };
                entries.push(DirEntry {
                    ino: fixed_ino(ino, &name).unwrap_or_else(|| hashed_ino(ino, &name)),
                    name,
                    kind,
                });
            }
        }
        Ok(entries)
    }

    /// The entries of open folder `fh` (the caller continues at its offset).
    pub fn readdir(&self, fh: u64) -> VfsResult<Arc<Vec<DirEntry>>> {
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
            .cloned()
            .ok_or(VfsError::NotFound)
    }

    /// Close folder handle `fh`.
    pub fn releasedir(&self, fh: u64) {
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh);
    }

    /// Open file `ino` for reading; `write` = the caller asked for write access (refused).
    pub fn open(&self, ino: u64, write: bool) -> VfsResult<u64> {
        if write {
            return Err(VfsError::ReadOnly);
        }
        let f = self.open_file(ino)?;
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, Arc::new(f));
        Ok(fh)
    }

    /// The first blobs of the files after `name` in folder `parent` (read-ahead hint).
    fn siblings(&self, parent: u64, name: &[u8]) -> Vec<Id> {
        let Ok(p) = self.inode(parent) else {
            return Vec::new();
        };
        let Ok(Some(tree)) = self.tree_of(&p) else {
            return Vec::new();
        };
        let from = tree.nodes.partition_point(|n| n.name.as_slice() <= name);
        tree.nodes[from..]
            .iter()
            .filter(|n| n.kind == NodeKind::File)
            .flat_map(|n| n.content.iter().take(SIBLING_BLOBS_PER_FILE))
            .take(SIBLING_BLOBS)
            .copied()
            .collect()
    }

    /// File `ino`'s content, ready to read.
    fn open_file(&self, ino: u64) -> VfsResult<OpenFile> {
        let (parent, name) = self
            .table()
            .get(&ino)
            .map(|s| (s.parent, s.name.clone()))
            .ok_or(VfsError::NotFound)?;
        let node = match self.inode(ino)? {
            Inode::Node(n) if n.kind == NodeKind::File => n,
            Inode::Node(n) if n.kind != NodeKind::Dir => return Err(VfsError::NoContent),
            Inode::Latest(_) => return Err(VfsError::NotFound),
            _ => return Err(VfsError::IsDir),
        };
        Ok(OpenFile::new(&self.source, node)?.with_siblings(self.siblings(parent, &name)))
    }

    /// Read up to `size` bytes at `offset` of open file `fh` (fewer only at the end).
    pub fn read(&self, fh: u64, offset: u64, size: usize) -> VfsResult<Data> {
        let f = self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
            .cloned()
            .ok_or(VfsError::NotFound)?;
        Ok(f.read_at(&self.source, offset, size)?)
    }

    /// Close file handle `fh`.
    pub fn release(&self, fh: u64) {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh);
    }

    /// The names of `ino`'s extended attributes.
    pub fn listxattr(&self, ino: u64) -> VfsResult<Vec<Vec<u8>>> {
        Ok(match self.inode(ino)? {
            Inode::Node(n) => n.xattrs.iter().map(|x| x.name.clone()).collect(),
            _ => Vec::new(),
        })
    }

    /// The value of `ino`'s extended attribute `name`.
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> VfsResult<Vec<u8>> {
        match self.inode(ino)? {
            Inode::Node(n) => n
                .xattrs
                .iter()
                .find(|x| x.name == name)
                .map(|x| x.value.clone())
                .ok_or(VfsError::NoAttr),
            _ => Err(VfsError::NoAttr),
        }
    }
}

#[cfg(test)]
#[path = "vfs_tests.rs"]
mod tests;
