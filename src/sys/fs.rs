//! Files and folders through descriptors.
//!
//! Restore's file-system layer ([`DirFd`]): every operation is relative to an open directory descriptor and
//! never follows a symlink, so nothing in the target — a symlink planted in the snapshot, one
//! already there, one a local user swaps in while the restore runs, or two names that collide on
//! a case-insensitive file system — can redirect a write outside the folder it belongs to.
//!
//! - folders are opened with `O_DIRECTORY|O_NOFOLLOW` from their parent's descriptor;
//! - files are created with `O_CREAT|O_EXCL|O_NOFOLLOW` (an existing name is an error, never
//!   written through) and finished through the descriptor that created them;
//! - symlinks, fifos and devices are made with `symlinkat`/`mknodat`, and their metadata is set
//!   with the `*at` calls and `AT_SYMLINK_NOFOLLOW`, or through `/proc/self/fd` of a descriptor
//!   checked to be what was created.
//!
//! Backup's race-safe open (`backup/open.rs`) takes an `O_PATH|O_NOFOLLOW` handle
//! ([`open_handle_nofollow`]), checks it with [`fstat`] and clears `O_NONBLOCK`
//! ([`clear_nonblock`]); the cache locks its folders with [`try_flock`]; the mount detaches
//! with [`umount_detach`].

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use std::path::Path;

use super::{check, check_fd};

/// A name inside a folder as a C string.
pub fn cname(name: &[u8]) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))
}

/// What is at a name, without following a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Device and inode.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Owner.
    pub uid: u32,
    /// Number of hard links.
    pub nlink: u64,
}

impl Stat {
    fn of(st: &libc::stat) -> Stat {
        Stat {
            mode: st.st_mode,
            size: st.st_size as u64,
            mtime_ns: st
                .st_mtime
                .saturating_mul(1_000_000_000)
                .saturating_add(st.st_mtime_nsec),
            dev: st.st_dev,
            ino: st.st_ino,
            uid: st.st_uid,
            nlink: st.st_nlink,
        }
    }
    /// The file type bits.
    pub fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
    /// A folder.
    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.kind() == libc::S_IFREG
    }
}

/// `fstat` of an open descriptor.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    // SAFETY: `st` is written by the kernel before being read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open; `st` is a valid out pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(Stat::of(&st))
}

/// An open folder of the target.
#[derive(Debug)]
pub struct DirFd(OwnedFd);

impl AsFd for DirFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl DirFd {
    /// Open the restore target itself (a path the user gave; its own components may be
    /// symlinks, as the user chose them).
    pub fn open_path(path: &Path) -> io::Result<DirFd> {
        use std::os::unix::ffi::OsStrExt;
        let c = cname(path.as_os_str().as_bytes())?;
        // SAFETY: valid NUL-terminated path.
        check_fd(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })
        .map(DirFd)
    }

    fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Path that reaches `name` inside this folder through the descriptor (for the few calls
    /// that have no `*at` form: the `l*xattr` family, `read_dir`).
    pub fn proc_path(&self, name: &[u8]) -> io::Result<CString> {
        let mut p = format!("/proc/self/fd/{}", self.raw()).into_bytes();
        if !name.is_empty() {
            p.push(b'/');
            p.extend_from_slice(name);
        }
        cname(&p)
    }

    /// What is at `name`, not following a symlink; `None` when nothing is.
    pub fn stat_at(&self, name: &CStr) -> io::Result<Option<Stat>> {
        // SAFETY: `st` is written by the kernel before being read.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: open descriptor, valid name, valid out pointer.
        let r = unsafe {
            libc::fstatat(
                self.raw(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        match check(r) {
            Ok(()) => Ok(Some(Stat::of(&st))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create folder `name` with `mode` (restore uses 0700 and widens it at the end).
    pub fn mkdir_at(&self, name: &CStr, mode: u32) -> io::Result<()> {
        // SAFETY: open descriptor, valid name.
        check(unsafe { libc::mkdirat(self.raw(), name.as_ptr(), mode as libc::mode_t) })
    }

    /// Open folder `name`, refusing a symlink or anything that is not a folder.
    pub fn open_dir_at(&self, name: &CStr) -> io::Result<DirFd> {
        // SAFETY: open descriptor, valid name.
        check_fd(unsafe {
            libc::openat(
                self.raw(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })
        .map(DirFd)
    }

    /// Create a new regular file `name` (never an existing one, never through a symlink), open
    /// for reading and writing.
    pub fn create_file_at(&self, name: &CStr, mode: u32) -> io::Result<File> {
        // SAFETY: open descriptor, valid name.
        check_fd(unsafe {
            libc::openat(
                self.raw(),
                name.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        })
        .map(File::from)
    }

    /// Open an existing regular file `name` for reading (no symlink, no blocking on a fifo);
    /// anything but a regular file is refused.
    pub fn open_file_at(&self, name: &CStr) -> io::Result<File> {
        // SAFETY: open descriptor, valid name.
        let f = File::from(check_fd(unsafe {
            libc::openat(
                self.raw(),
                name.as_ptr(),
                libc::O_RDONLY
                    | libc::O_NOFOLLOW
                    | libc::O_NONBLOCK
                    | libc::O_NOCTTY
                    | libc::O_CLOEXEC,
            )
        })?);
        if !fstat(f.as_fd())?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(f)
    }

    /// Open `name` as an `O_PATH` handle to the entry itself (a symlink is not followed).
    pub fn open_path_at(&self, name: &CStr) -> io::Result<OwnedFd> {
        // SAFETY: open descriptor, valid name.
        check_fd(unsafe {
            libc::openat(
                self.raw(),
                name.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })
    }

    /// Create symlink `name` pointing to `target`.
    pub fn symlink_at(&self, target: &[u8], name: &CStr) -> io::Result<()> {
        let t = cname(target)?;
        // SAFETY: valid strings, open descriptor.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.raw(), name.as_ptr()) })
    }

    /// Create a fifo or device node (`mode` holds the type bits).
    pub fn mknod_at(&self, name: &CStr, mode: u32, dev: u64) -> io::Result<()> {
        // SAFETY: open descriptor, valid name, plain integers.
        check(unsafe {
            libc::mknodat(
                self.raw(),
                name.as_ptr(),
                mode as libc::mode_t,
                dev as libc::dev_t,
            )
        })
    }

    /// Hard link `name` in this folder to `from_name` in `from` (the source is not followed).
    pub fn link_at(&self, name: &CStr, from: &DirFd, from_name: &CStr) -> io::Result<()> {
        // SAFETY: open descriptors, valid names; flags 0 = do not follow a symlink source.
        check(unsafe { libc::linkat(from.raw(), from_name.as_ptr(), self.raw(), name.as_ptr(), 0) })
    }

    /// Hard link `name` in this folder to the very inode `from` holds (an `O_PATH` handle
    /// checked by the caller), through its `/proc/self/fd` link: no name is looked up again.
    pub fn link_fd_at(&self, name: &CStr, from: BorrowedFd<'_>) -> io::Result<()> {
        let p = cname(format!("/proc/self/fd/{}", from.as_raw_fd()).as_bytes())?;
        // SAFETY: valid path and name, open descriptor.
        check(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                p.as_ptr(),
                self.raw(),
                name.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        })
    }

    /// Remove a non-folder `name`.
    pub fn unlink_at(&self, name: &CStr) -> io::Result<()> {
        // SAFETY: open descriptor, valid name.
        check(unsafe { libc::unlinkat(self.raw(), name.as_ptr(), 0) })
    }

    fn rmdir_at(&self, name: &CStr) -> io::Result<()> {
        // SAFETY: open descriptor, valid name.
        check(unsafe { libc::unlinkat(self.raw(), name.as_ptr(), libc::AT_REMOVEDIR) })
    }

    /// Remove whatever is at `name`, a folder with everything in it included. Iterative (a deep
    /// tree planted in the target cannot overflow the stack) and never following a symlink.
    pub fn remove_at(&self, name: &CStr) -> io::Result<()> {
        match self.unlink_at(name) {
            Ok(()) => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR) | Some(libc::EPERM)) => {}
            Err(e) => return Err(e),
        }
        // (folder, its name in the folder below it in the stack). Never crosses into another
        // file system: a mount point inside is an error, not something to empty.
        let first = self.open_dir_at(name)?;
        let dev = fstat(self.as_fd())?.dev;
        let other_fs = || io::Error::other("a mount point is in the way");
        if fstat(first.as_fd())?.dev != dev {
            return Err(other_fs());
        }
        let mut stack: Vec<(DirFd, CString)> = vec![(first, name.to_owned())];
        while let Some((dir, _)) = stack.last() {
            let mut sub = None;
            for entry in std::fs::read_dir(format!("/proc/self/fd/{}", dir.raw()))? {
                use std::os::unix::ffi::OsStrExt;
                let n = cname(entry?.file_name().as_bytes())?;
                match dir.unlink_at(&n) {
                    Ok(()) => {}
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::EISDIR) | Some(libc::EPERM)) =>
                    {
                        sub = Some(n);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            match sub {
                Some(n) => {
                    let d = dir.open_dir_at(&n)?;
                    if fstat(d.as_fd())?.dev != dev {
                        return Err(other_fs());
                    }
                    stack.push((d, n));
                }
                None => {
                    let Some((d, n)) = stack.pop() else { break };
                    drop(d);
                    stack.last().map_or(self, |(p, _)| p).rmdir_at(&n)?;
                }
            }
        }
        Ok(())
    }
}

/// Set atime and mtime (ns) of `name` in `dir` without following a symlink.
pub fn set_times_at(dir: &DirFd, name: &CStr, atime_ns: i64, mtime_ns: i64) -> io::Result<()> {
    let ts = [timespec(atime_ns), timespec(mtime_ns)];
    // SAFETY: open descriptor, valid name, two timespecs.
    check(unsafe {
        libc::utimensat(
            dir.raw(),
            name.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Set atime and mtime (ns) of an open file or folder.
pub fn set_times_fd(fd: BorrowedFd<'_>, atime_ns: i64, mtime_ns: i64) -> io::Result<()> {
    let ts = [timespec(atime_ns), timespec(mtime_ns)];
    // SAFETY: the descriptor is open; `ts` holds two timespecs.
    check(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) })
}

/// Change the owner of `name` in `dir` without following a symlink.
pub fn chown_at(dir: &DirFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: open descriptor, valid name.
    check(unsafe {
        libc::fchownat(
            dir.raw(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Change the owner of an open file or folder.
pub fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: the descriptor is open.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })
}

/// Change the mode of an open file or folder.
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: the descriptor is open.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })
}

/// Change the mode of the entry an `O_PATH` handle holds (checked by the caller not to be a
/// symlink): `chmod` of its `/proc/self/fd` link reaches that very inode.
pub fn chmod_path_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let p = cname(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
    // SAFETY: valid path.
    check(unsafe { libc::chmod(p.as_ptr(), mode as libc::mode_t) })
}

fn timespec(ns: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

/// Set extended attribute `name` to `value` on an open file or folder (`fsetxattr`, flags 0).
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    let n = cname(name)?;
    // SAFETY: open descriptor, valid name, value pointer and length from one slice.
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// Set extended attribute `name` to `value` on the entry at `path`, not following a symlink in
/// its last component (`lsetxattr`, flags 0).
pub fn lsetxattr(path: &CStr, name: &[u8], value: &[u8]) -> io::Result<()> {
    let n = cname(name)?;
    // SAFETY: valid path and name; value pointer and length from one slice; lsetxattr does
    // not follow a symlink in the last component.
    check(unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// An `O_PATH|O_NOFOLLOW|O_CLOEXEC` handle on `path`: opens nothing (no device driver, no
/// fifo) and does not follow a symlink in the last component; good for [`fstat`] and for
/// reopening through `/proc/self/fd`.
pub fn open_handle_nofollow(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: valid NUL-terminated path.
    check_fd(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })
}

/// Clear `O_NONBLOCK` on an open descriptor (`fcntl` `F_GETFL`, then `F_SETFL`).
pub fn clear_nonblock(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on an open descriptor, with integer arguments only.
    let cleared = unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        fl >= 0 && libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK) == 0
    };
    if cleared {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The file status flags (`fcntl` `F_GETFL`) and the descriptor flags (`F_GETFD`) of an open
/// descriptor.
pub fn fd_flags(fd: BorrowedFd<'_>) -> io::Result<(libc::c_int, libc::c_int)> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on an open descriptor, with no argument.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let fdfl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if fdfl < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fl, fdfl))
}

/// Take an exclusive `flock` on `file` without waiting; whether it was taken.
pub fn try_flock(file: &File) -> bool {
    // SAFETY: a valid descriptor; flock has no other preconditions.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Make a fifo at `path` with permission bits `mode` (`mkfifo`).
pub fn mkfifo(path: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: a valid NUL-terminated path.
    check(unsafe { libc::mkfifo(path.as_ptr(), mode as libc::mode_t) })
}

/// The major and minor numbers of device number `dev`.
pub fn major_minor(dev: u64) -> (u32, u32) {
    (libc::major(dev), libc::minor(dev))
}

/// Detach the mount at `path` at once, even while files in it are open (`umount2` with
/// `MNT_DETACH`; root only).
pub fn umount_detach(path: &CStr) -> io::Result<()> {
    // SAFETY: a valid NUL-terminated path.
    check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_follows_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), b"precious").unwrap();
        let d = DirFd::open_path(t.path()).unwrap();
        let a = cname(b"A").unwrap();
        d.symlink_at(
            outside.path().join("victim").as_os_str().as_encoded_bytes(),
            &a,
        )
        .unwrap();
        // creating a file over the symlink fails, never truncates the victim
        assert!(d.create_file_at(&a, 0o666).is_err());
        assert!(d.open_dir_at(&a).is_err());
        assert!(d.open_file_at(&a).is_err());
        assert_eq!(
            std::fs::read(outside.path().join("victim")).unwrap(),
            b"precious"
        );
        // a symlink to a folder is not entered
        let b = cname(b"B").unwrap();
        d.symlink_at(outside.path().as_os_str().as_encoded_bytes(), &b)
            .unwrap();
        assert!(d.open_dir_at(&b).is_err());
        // removal removes the link, not the target
        d.remove_at(&b).unwrap();
        assert!(outside.path().join("victim").exists());
    }

    #[test]
    fn remove_at_removes_deep_trees_without_following() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let mut p = t.path().join("top");
        for i in 0..200 {
            p = p.join(format!("d{i}"));
        }
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("f"), b"y").unwrap();
        std::os::unix::fs::symlink(outside.path(), p.join("link")).unwrap();
        let d = DirFd::open_path(t.path()).unwrap();
        d.remove_at(&cname(b"top").unwrap()).unwrap();
        assert!(!t.path().join("top").exists());
        assert!(outside.path().join("keep").exists());
    }
}
