//! Opening a file for backup: the file read must be the file the scan described.
//!
//! Between the scanner's `lstat` and the reader's `open`, anyone who can write the folder can
//! replace the entry. A plain `open` would then follow a symlink (and store, say, `/etc/shadow`
//! under the scanned file's name, owner and mode) or block forever on a fifo. So content is
//! opened with `O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC` (plus `O_NOATIME` where the
//! kernel allows it), and the descriptor's `fstat` must show a regular file with the device,
//! inode, permission bits and owner the scan saw. Anything else is [`OpenError::Changed`]:
//! the walker warns "changed during backup, skipped" and counts it as an unreadable file.
//!
//! `O_NOFOLLOW` only protects the last component. A folder above it swapped for a symlink is
//! still followed, but whatever that lookup reaches must be the very inode the scan `lstat`ed
//! (same device and inode, still a regular file, same mode and owner), so no content is ever
//! stored under metadata that is not its own.

use crate::sys;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the scan's `lstat` saw of a regular file, which the opened descriptor must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl Scanned {
    /// The fields of `m` (an `lstat` or `fstat` result).
    pub fn of(m: &Metadata) -> Scanned {
        Scanned {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
        }
    }
}

/// Why a file was not opened.
#[derive(Debug)]
pub enum OpenError {
    /// The entry is no longer the regular file the scan saw (what it is now, in words).
    Changed(String),
    /// `open` or `fstat` failed.
    Io(io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Changed(what) => write!(f, "changed during backup ({what}), skipped"),
            OpenError::Io(e) => e.fmt(f),
        }
    }
}

/// Set once `O_NOATIME` was refused although we are root (no `CAP_FOWNER`, as in some
/// containers): from then on this process opens without it, one syscall per file.
static NOATIME_REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether `O_NOATIME` is worth asking for on a file owned by `owner`: the kernel allows it
/// to the owner and to `CAP_FOWNER` only, and answers EPERM otherwise; predicting that from the
/// scanned owner spares a failed `open` per file of other users.
fn try_noatime(owner: u32) -> bool {
    if NOATIME_REFUSED.load(Ordering::Relaxed) {
        return false;
    }
    let me = sys::user::euid();
    me == 0 || me == owner
}

fn open_flags(path: &Path, noatime: bool) -> io::Result<File> {
    // `path` is the `/proc/self/fd` link of an `O_PATH` handle already checked to be the scanned
    // file (see `open_scanned`): following that one link reaches exactly that inode.
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if noatime {
        flags |= libc::O_NOATIME;
    }
    // std adds O_CLOEXEC itself; read(true) alone is O_RDONLY.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(path)
}

/// What a file type is, in words, for the warning.
fn describe_type(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "now a folder",
        libc::S_IFLNK => "now a symlink",
        libc::S_IFIFO => "now a fifo",
        libc::S_IFSOCK => "now a socket",
        libc::S_IFCHR => "now a character device",
        libc::S_IFBLK => "now a block device",
        _ => "now of an unknown type",
    }
}

/// Open the regular file at `path` that the scan saw as `want`, without following a symlink
/// in its last component and without blocking; returns it with its `fstat`, in blocking mode.
pub fn open_scanned(path: &Path, want: &Scanned) -> Result<(File, Metadata), OpenError> {
    // First an `O_PATH|O_NOFOLLOW` handle, which opens nothing (no device driver, no fifo), and
    // its `fstat`: only the very inode the scan saw is then opened for reading, through the
    // handle. A folder on the way swapped for a symlink to /dev can make the path reach a
    // device, but never makes us open one.
    let handle = {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| OpenError::Io(io::Error::other("path holds a NUL byte")))?;
        sys::fs::open_handle_nofollow(&c).map_err(OpenError::Io)?
    };
    {
        let st = sys::fs::fstat(handle.as_fd()).map_err(OpenError::Io)?;
        if st.kind() != libc::S_IFREG {
            return Err(OpenError::Changed(describe_type(st.mode).into()));
        }
        if (st.dev, st.ino) != (want.dev, want.ino) {
            return Err(OpenError::Changed("another file".into()));
        }
    }
    let via = std::path::PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&handle)
    ));
    let path = via.as_path();
    let noatime = try_noatime(want.uid);
    let opened = match open_flags(path, noatime) {
        Err(e) if noatime && e.raw_os_error() == Some(libc::EPERM) => {
            if sys::user::euid() == 0 {
                NOATIME_REFUSED.store(true, Ordering::Relaxed);
            }
            open_flags(path, false)
        }
        r => r,
    };
    let f = match opened {
        Ok(f) => f,
        // O_NOFOLLOW on a symlink: the scan saw a regular file here.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(OpenError::Changed("now a symlink".into()));
        }
        // A unix socket (or a device without a driver) cannot be opened: ENXIO. A fifo opens
        // at once, read-only and non-blocking, and fstat tells.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(OpenError::Changed("now a socket or a device".into()));
        }
        Err(e) => return Err(OpenError::Io(e)),
    };
    let m = f.metadata().map_err(OpenError::Io)?;
    let got = Scanned::of(&m);
    if got.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(OpenError::Changed(describe_type(got.mode).into()));
    }
    if (got.dev, got.ino) != (want.dev, want.ino) {
        return Err(OpenError::Changed("another file".into()));
    }
    if (got.mode, got.uid, got.gid) != (want.mode, want.uid, want.gid) {
        return Err(OpenError::Changed("mode or owner".into()));
    }
    // Reads of a regular file never return EAGAIN on Linux, but the descriptor is handed to a
    // blocking reader: say so rather than rely on it.
    sys::fs::clear_nonblock(f.as_fd()).map_err(OpenError::Io)?;
    Ok((f, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn scanned(p: &Path) -> Scanned {
        Scanned::of(&std::fs::symlink_metadata(p).expect("lstat"))
    }

    fn changed(r: Result<(File, Metadata), OpenError>) -> String {
        match r {
            Err(OpenError::Changed(what)) => what,
            Err(OpenError::Io(e)) => panic!("expected Changed, got I/O error {e}"),
            Ok(_) => panic!("expected Changed, the file was opened"),
        }
    }

    #[test]
    fn opens_the_scanned_file_in_blocking_mode() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("f");
        std::fs::write(&p, b"content").expect("write");
        let (mut f, m) = open_scanned(&p, &scanned(&p)).expect("open");
        assert_eq!(m.len(), 7);
        let (fl, fdfl) = sys::fs::fd_flags(f.as_fd()).expect("fcntl");
        assert!(fl & libc::O_NONBLOCK == 0, "O_NONBLOCK left set");
        assert!(fdfl & libc::FD_CLOEXEC != 0, "not close-on-exec");
        let mut s = String::new();
        f.read_to_string(&mut s).expect("read");
        assert_eq!(s, "content");
    }

    #[test]
    fn refuses_a_symlink_even_to_the_scanned_file() {
        let d = tempfile::tempdir().expect("tmp");
        let target = d.path().join("secret");
        std::fs::write(&target, b"secret").expect("write");
        let want = scanned(&target);
        let link = d.path().join("f");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert_eq!(changed(open_scanned(&link, &want)), "now a symlink");
    }

    #[test]
    fn refuses_a_fifo_without_blocking() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("f");
        std::fs::write(&p, b"x").expect("write");
        let want = scanned(&p);
        std::fs::remove_file(&p).expect("rm");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
        sys::fs::mkfifo(&c, 0o644).expect("mkfifo");
        // No writer ever opens it: a blocking open would never return.
        assert_eq!(changed(open_scanned(&p, &want)), "now a fifo");
        // Even when the fifo's inode is the one expected.
        assert_eq!(changed(open_scanned(&p, &scanned(&p))), "now a fifo");
    }

    #[test]
    fn refuses_a_socket() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("f");
        std::fs::write(&p, b"x").expect("write");
        let want = scanned(&p);
        std::fs::remove_file(&p).expect("rm");
        let _l = std::os::unix::net::UnixListener::bind(&p).expect("bind");
        assert_eq!(changed(open_scanned(&p, &want)), "now a socket");
    }

    #[test]
    fn refuses_another_inode_and_changed_permissions() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("f");
        std::fs::write(&p, b"old").expect("write");
        let want = scanned(&p);
        // Replaced by a new file under the same name (a new inode).
        let q = d.path().join("g");
        std::fs::write(&q, b"new").expect("write");
        std::fs::rename(&q, &p).expect("rename");
        assert_ne!(scanned(&p).ino, want.ino);
        assert_eq!(changed(open_scanned(&p, &want)), "another file");

        // Same inode, other permission bits: the node would describe a mode the content
        // did not have when it was read.
        let want = scanned(&p);
        use std::os::unix::fs::PermissionsExt;
        let mode = if want.mode & 0o777 == 0o600 {
            0o644
        } else {
            0o600
        };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        assert_eq!(changed(open_scanned(&p, &want)), "mode or owner");

        // A folder now.
        let want = scanned(&p);
        std::fs::remove_file(&p).expect("rm");
        std::fs::create_dir(&p).expect("mkdir");
        assert_eq!(changed(open_scanned(&p, &want)), "now a folder");
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("f");
        std::fs::write(&p, b"x").expect("write");
        let want = scanned(&p);
        std::fs::remove_file(&p).expect("rm");
        match open_scanned(&p, &want) {
            Err(OpenError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[test]
    fn noatime_is_asked_only_when_it_can_work() {
        let me = sys::user::euid();
        if !NOATIME_REFUSED.load(Ordering::Relaxed) {
            assert!(try_noatime(me));
        }
        if me != 0 {
            assert!(!try_noatime(me.wrapping_add(1)));
        }
    }
}
