//! What the file system reports: entry kinds, attributes, listing entries, and its errors
//! with the errno each becomes.

use crate::format::tree::{ATIME_NOT_RECORDED, Node, NodeKind};

/// Why an operation failed; [`VfsError::errno`] is what the kernel hears.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    /// No entry by that name, or an inode or handle the file system does not know.
    #[error("no such file or folder")]
    NotFound,
    /// A folder operation on something else.
    #[error("not a folder")]
    NotDir,
    /// A file operation on a folder.
    #[error("is a folder")]
    IsDir,
    /// `readlink` on something that is not a link.
    #[error("not a symbolic link")]
    NotLink,
    /// No extended attribute by that name.
    #[error("no such attribute")]
    NoAttr,
    /// Anything that would change the file system.
    #[error("read-only file system")]
    ReadOnly,
    /// Opening a fifo, socket or device: the mount has no content for them.
    #[error("no content to read")]
    NoContent,
    /// Reading the repository failed (missing pack, damaged blob, store error).
    #[error(transparent)]
    Repo(#[from] crate::Error),
}

impl VfsError {
    /// The errno for the kernel.
    pub fn errno(&self) -> i32 {
        match self {
            VfsError::NotFound => libc::ENOENT,
            VfsError::NotDir => libc::ENOTDIR,
            VfsError::IsDir => libc::EISDIR,
            VfsError::NotLink => libc::EINVAL,
            VfsError::NoAttr => libc::ENODATA,
            VfsError::ReadOnly => libc::EROFS,
            VfsError::NoContent => libc::ENXIO,
            VfsError::Repo(_) => libc::EIO,
        }
    }
}

/// Shorthand for the file system's results.
pub type VfsResult<T> = std::result::Result<T, VfsError>;

/// The kind of an entry, as listings and attributes report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Folder.
    Dir,
    /// Regular file.
    File,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Unix socket.
    Socket,
}

impl From<NodeKind> for FileKind {
    fn from(k: NodeKind) -> Self {
        match k {
            NodeKind::File => FileKind::File,
            NodeKind::Dir => FileKind::Dir,
            NodeKind::Symlink => FileKind::Symlink,
            NodeKind::Fifo => FileKind::Fifo,
            NodeKind::CharDevice => FileKind::CharDevice,
            NodeKind::BlockDevice => FileKind::BlockDevice,
            NodeKind::Socket => FileKind::Socket,
        }
    }
}

/// An entry's attributes (what `stat` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`mode & 0o7777`).
    pub perm: u16,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number (devices).
    pub rdev: u32,
    /// Access time, ns since the epoch (the mtime when it was not recorded).
    pub atime_ns: i64,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Status change time, ns.
    pub ctime_ns: i64,
}

/// One listing entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number (the one a lookup of the name gives, but for a hash collision).
    pub ino: u64,
    /// Name.
    pub name: Vec<u8>,
    /// Kind.
    pub kind: FileKind,
}

/// Whether an entry is a virtual folder or link, or a snapshot's root (its listing or its
/// name changes as snapshots come and go: the kernel should not cache it for long), or lies
/// inside a snapshot (immutable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    /// Virtual: may change with the next refresh.
    Changing,
    /// Inside a snapshot: never changes.
    Fixed,
}

/// The attributes of a snapshot's node.
pub fn node_attr(ino: u64, n: &Node) -> Attr {
    let size = match n.kind {
        NodeKind::Symlink => n.link_target.len() as u64,
        _ => n.size,
    };
    Attr {
        ino,
        kind: n.kind.into(),
        size,
        perm: (n.mode & 0o7777) as u16,
        nlink: u32::try_from(n.nlink.max(1)).unwrap_or(u32::MAX),
        uid: n.uid,
        gid: n.gid,
        rdev: u32::try_from(n.rdev).unwrap_or(0),
        atime_ns: if n.atime_ns == ATIME_NOT_RECORDED {
            n.mtime_ns
        } else {
            n.atime_ns
        },
        mtime_ns: n.mtime_ns,
        ctime_ns: n.ctime_ns,
    }
}
