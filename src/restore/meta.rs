//! Applying metadata and creating special files at the restore target.

use crate::format::tree::{ATIME_NOT_RECORDED, Node, NodeKind};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cpath(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn timespec(ns: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

/// Set atime and mtime (ns) without following a symlink.
pub fn set_times(path: &Path, atime_ns: i64, mtime_ns: i64) -> std::io::Result<()> {
    let c = cpath(path)?;
    let ts = [timespec(atime_ns), timespec(mtime_ns)];
    // SAFETY: `c` is a valid NUL-terminated path and `ts` two initialized timespecs.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// The atime to restore: the recorded one, or the mtime when none was recorded.
pub fn restore_atime(node: &Node) -> i64 {
    if node.atime_ns == ATIME_NOT_RECORDED {
        node.mtime_ns
    } else {
        node.atime_ns
    }
}

/// Metadata calls [`apply_file`] may leave out because creating the file already did them.
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
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() }
}

/// Effective group id.
pub fn egid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::getegid() }
}

/// Whether we run as root (owners and devices are restored only then).
pub fn is_root() -> bool {
    euid() == 0
}

/// Create a fifo or device node.
pub fn make_special(path: &Path, node: &Node) -> std::io::Result<()> {
    let c = cpath(path)?;
    let perm = (node.mode & 0o7777) as libc::mode_t;
    // SAFETY: `c` is a valid path; mode and dev are plain integers.
    check(unsafe {
        match node.kind {
            NodeKind::Fifo => libc::mkfifo(c.as_ptr(), perm),
            NodeKind::CharDevice => {
                libc::mknod(c.as_ptr(), libc::S_IFCHR | perm, node.rdev as libc::dev_t)
            }
            NodeKind::BlockDevice => {
                libc::mknod(c.as_ptr(), libc::S_IFBLK | perm, node.rdev as libc::dev_t)
            }
            _ => 0,
        }
    })
}

/// [`apply`] for a regular file open for writing: the same steps through its descriptor, which
/// saves the path lookups (restoring many small files is syscall-bound).
pub fn apply_file(
    f: &std::fs::File,
    path: &Path,
    node: &Node,
    root: bool,
    skip: Skip,
) -> Result<(), String> {
    apply_to(Target::File(f), path, node, root, skip)
}

/// Apply owner (when root), mode, xattrs and times. Returns the first failure's message.
pub fn apply(path: &Path, node: &Node, root: bool) -> Result<(), String> {
    apply_to(Target::Path, path, node, root, Skip::default())
}

/// What metadata is applied through: the path (never following a symlink) or an open file.
enum Target<'a> {
    Path,
    File(&'a std::fs::File),
}

/// Owner, xattrs, mode, times — in this order (chown clears setuid bits, so mode comes after
/// it; times last) — through `target`, collecting the first failure.
fn apply_to(
    target: Target<'_>,
    path: &Path,
    node: &Node,
    root: bool,
    skip: Skip,
) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    use xattr::FileExt;
    let mut first: Option<String> = None;
    let mut note = |what: &str, e: std::io::Error| {
        if first.is_none() {
            first = Some(format!("cannot set {what} of {}: {e}", path.display()));
        }
    };
    // Symlinks take no mode, and their xattr failures are expected (user.* is refused).
    let symlink = node.kind == NodeKind::Symlink;
    if root && !skip.owner {
        let r = match target {
            Target::File(f) => std::os::unix::fs::fchown(f, Some(node.uid), Some(node.gid)),
            // SAFETY: valid NUL-terminated path; lchown does not follow symlinks.
            Target::Path => cpath(path)
                .and_then(|c| check(unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) })),
        };
        if let Err(e) = r {
            note("owner", e);
        }
    }
    for x in &node.xattrs {
        let name = std::ffi::OsStr::from_bytes(&x.name);
        let r = match target {
            Target::File(f) => f.set_xattr(name, &x.value),
            Target::Path => xattr::set(path, name, &x.value),
        };
        if let Err(e) = r {
            if !symlink {
                note("extended attributes", e);
            }
        }
    }
    if !symlink && !skip.mode {
        let perm = std::fs::Permissions::from_mode(node.mode & 0o7777);
        let r = match target {
            Target::File(f) => f.set_permissions(perm),
            Target::Path => std::fs::set_permissions(path, perm),
        };
        if let Err(e) = r {
            note("mode", e);
        }
    }
    let r = match target {
        Target::File(f) => {
            let ts = [timespec(restore_atime(node)), timespec(node.mtime_ns)];
            // SAFETY: the descriptor is open for the call; `ts` holds two timespecs.
            check(unsafe { libc::futimens(f.as_raw_fd(), ts.as_ptr()) })
        }
        Target::Path => set_times(path, restore_atime(node), node.mtime_ns),
    };
    if let Err(e) = r {
        note("times", e);
    }
    match first {
        Some(m) => Err(m),
        None => Ok(()),
    }
}
