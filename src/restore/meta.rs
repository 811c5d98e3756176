//! Applying metadata and creating special files at the restore target.

use crate::format::tree::{ATIME_NOT_RECORDED, Node, NodeKind};
use crate::sys::fs::{self, DirFd};
use std::ffi::CStr;
use std::os::fd::BorrowedFd;
use std::path::Path;

/// The atime to restore: the recorded one, or the mtime when none was recorded.
pub fn restore_atime(node: &Node) -> i64 {
    if node.atime_ns == ATIME_NOT_RECORDED {
        node.mtime_ns
    } else {
        node.atime_ns
    }
}

/// Metadata calls [`apply_fd`] may leave out because creating the file already did them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Skip {
    /// The owner is already right.
    pub owner: bool,
    /// The mode is already right.
    pub mode: bool,
}

/// The process's umask, from `/proc/self/status` (reading it with `umask(2)` would change it
/// for a moment under the other threads).
pub fn umask() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let v = s.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(v.trim(), 8).ok()
}

/// Effective user id.
pub fn euid() -> u32 {
    crate::sys::user::euid()
}

/// Effective group id.
pub fn egid() -> u32 {
    crate::sys::user::egid()
}

/// Whether we run as root (owners and devices are restored only then).
pub fn is_root() -> bool {
    euid() == 0
}

/// Which metadata a restore applies.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaOptions {
    /// Set owners (only root can; off with `--no-owner`).
    pub owner: bool,
    /// `--no-owner`: a file that keeps the restoring user as owner must not keep the privileges
    /// the snapshot gave its real owner, so setuid/setgid bits of non-folders and the
    /// `security.*` and `trusted.*` attributes (file capabilities, SELinux labels) are dropped.
    /// The same happens to one file whose owner could not be set.
    pub strip_privileges: bool,
}

impl MetaOptions {
    fn stripped(self) -> MetaOptions {
        MetaOptions {
            strip_privileges: true,
            ..self
        }
    }
}

/// The permission bits to restore for `node`.
pub fn mode_of(node: &Node, o: MetaOptions) -> u32 {
    let m = node.mode & 0o7777;
    if o.strip_privileges && node.kind != NodeKind::Dir {
        m & !0o6000
    } else {
        m
    }
}

fn xattr_wanted(name: &[u8], o: MetaOptions) -> bool {
    !(o.strip_privileges && (name.starts_with(b"security.") || name.starts_with(b"trusted.")))
}

/// One failure, worded for a warning.
fn note(first: &mut Option<String>, what: &str, path: &Path, e: std::io::Error) {
    if first.is_none() {
        *first = Some(format!("cannot set {what} of {}: {e}", path.display()));
    }
}

/// Owner, xattrs, mode, times — in this order (chown clears setuid bits, so mode comes after
/// it; times last) — through an open file or folder. `path` is for messages only.
pub fn apply_fd(
    fd: BorrowedFd<'_>,
    path: &Path,
    node: &Node,
    o: MetaOptions,
    skip: Skip,
) -> Result<(), String> {
    let mut first: Option<String> = None;
    let mut o = o;
    if o.owner && !skip.owner {
        if let Err(e) = fs::chown_fd(fd, node.uid, node.gid) {
            note(&mut first, "owner", path, e);
            // Still owned by whoever restores (root, say): never with the snapshot's setuid.
            o = o.stripped();
        }
    }
    for x in node.xattrs.iter().filter(|x| xattr_wanted(&x.name, o)) {
        let r = fs::fsetxattr(fd, &x.name, &x.value);
        if let Err(e) = r {
            note(&mut first, "extended attributes", path, e);
        }
    }
    if !skip.mode {
        if let Err(e) = fs::chmod_fd(fd, mode_of(node, o)) {
            note(&mut first, "mode", path, e);
        }
    }
    if let Err(e) = fs::set_times_fd(fd, restore_atime(node), node.mtime_ns) {
        note(&mut first, "times", path, e);
    }
    first.map_or(Ok(()), Err)
}

/// The same for a symlink, fifo or device `name` in `dir`, never following a symlink: owner and
/// times with the `*at` calls, xattrs through the folder's descriptor, and the mode (not for
/// symlinks, which have none) through an `O_PATH` handle checked to be the kind we made.
pub fn apply_at(
    dir: &DirFd,
    name: &CStr,
    path: &Path,
    node: &Node,
    o: MetaOptions,
) -> Result<(), String> {
    let mut first: Option<String> = None;
    let mut o = o;
    let symlink = node.kind == NodeKind::Symlink;
    if o.owner {
        if let Err(e) = fs::chown_at(dir, name, node.uid, node.gid) {
            note(&mut first, "owner", path, e);
            o = o.stripped();
        }
    }
    if !node.xattrs.is_empty() {
        let p = dir.proc_path(name.to_bytes());
        for x in node.xattrs.iter().filter(|x| xattr_wanted(&x.name, o)) {
            let r = p
                .as_ref()
                .map_err(|e| std::io::Error::new(e.kind(), e.to_string()))
                .and_then(|p| fs::lsetxattr(p, &x.name, &x.value));
            // Symlinks refuse user.* attributes: expected, not worth a warning.
            if let (Err(e), false) = (r, symlink) {
                note(&mut first, "extended attributes", path, e);
            }
        }
    }
    if !symlink {
        let r = dir.open_path_at(name).and_then(|h| {
            let st = fs::fstat(std::os::fd::AsFd::as_fd(&h))?;
            if st.kind() != type_bits(node.kind) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "replaced during the restore",
                ));
            }
            fs::chmod_path_fd(std::os::fd::AsFd::as_fd(&h), mode_of(node, o))
        });
        if let Err(e) = r {
            note(&mut first, "mode", path, e);
        }
    }
    if let Err(e) = fs::set_times_at(dir, name, restore_atime(node), node.mtime_ns) {
        note(&mut first, "times", path, e);
    }
    first.map_or(Ok(()), Err)
}

/// The `st_mode` type bits of a node kind.
pub fn type_bits(kind: NodeKind) -> u32 {
    match kind {
        NodeKind::File => libc::S_IFREG,
        NodeKind::Dir => libc::S_IFDIR,
        NodeKind::Symlink => libc::S_IFLNK,
        NodeKind::Fifo => libc::S_IFIFO,
        NodeKind::CharDevice => libc::S_IFCHR,
        NodeKind::BlockDevice => libc::S_IFBLK,
        NodeKind::Socket => libc::S_IFSOCK,
    }
}
