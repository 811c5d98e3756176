//! The thin FUSE adapter: each kernel request becomes one call of [`Vfs`]; every request that
//! would change something is answered `EROFS`.

use super::reader::Source;
use super::vfs::{Attr, FileKind, Vfs, VfsError, Volatility};
use crate::error::{Error, ErrorKind, Result};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may keep an entry or attributes of a virtual folder (listings change
/// with each refresh).
const TTL_CHANGING: Duration = Duration::from_secs(1);
/// … and of anything inside a snapshot (never changes).
const TTL_FIXED: Duration = Duration::from_secs(3600);

/// The adapter between fuser and a [`Vfs`].
pub struct FuseFs<S> {
    vfs: Arc<Vfs<S>>,
    /// The kernel accepts `ENOSYS` to open/opendir as "no handles needed": files and
    /// folders are then read by inode, which saves two requests per file and per folder.
    stateless: bool,
}

impl<S> FuseFs<S> {
    /// Serve `vfs`.
    pub fn new(vfs: Arc<Vfs<S>>) -> Self {
        FuseFs {
            vfs,
            stateless: false,
        }
    }
}

/// Read-ahead asked of the kernel: reads of large files come in pieces up to this size.
const READAHEAD: u32 = 1 << 20;

/// Handle 0 is never given out: a request with it comes from the kernel's no-open mode.
const NO_HANDLE: u64 = 0;

fn errno(e: &VfsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

fn kind(k: FileKind) -> FileType {
    match k {
        FileKind::Dir => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Socket => FileType::Socket,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: time(a.atime_ns),
        mtime: time(a.mtime_ns),
        ctime: time(a.ctime_ns),
        crtime: time(a.mtime_ns),
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn ttl(v: Volatility) -> Duration {
    match v {
        Volatility::Changing => TTL_CHANGING,
        Volatility::Fixed => TTL_FIXED,
    }
}

/// Reply to an extended-attribute request: the size when asked for it, the data when it fits,
/// else `ERANGE`.
fn xattr_reply(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(u32::try_from(data.len()).unwrap_or(u32::MAX));
    } else if data.len() <= size as usize {
        reply.data(data);
    } else {
        reply.error(Errno::ERANGE);
    }
}

impl<S: Source + 'static> Filesystem for FuseFs<S> {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        use fuser::InitFlags;
        let both = InitFlags::FUSE_NO_OPEN_SUPPORT | InitFlags::FUSE_NO_OPENDIR_SUPPORT;
        self.stateless = config.capabilities().contains(both);
        // Larger reads for large files (the kernel caps this at its own maximum).
        if let Err(max) = config.set_max_readahead(READAHEAD) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.vfs.lookup(parent.0, name.as_bytes()) {
            Ok((a, v)) => reply.entry(&ttl(v), &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.vfs.getattr(ino.0) {
            Ok((a, v)) => reply.attr(&ttl(v), &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY
            || flags.0 & (libc::O_TRUNC | libc::O_APPEND | libc::O_CREAT) != 0;
        if self.stateless && !write {
            // Once answered so, the kernel sends no more opens or releases of files.
            return reply.error(Errno::ENOSYS);
        }
        match self.vfs.open(ino.0, write) {
            // The content never changes: the page cache may keep it across opens.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let r = if fh.0 == NO_HANDLE {
            self.vfs.read_inode(ino.0, offset, size as usize)
        } else {
            self.vfs.read(fh.0, offset, size as usize)
        };
        match r {
            Ok(d) => reply.data(d.as_slice()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.vfs.release(fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.stateless {
            // Once answered so, the kernel sends no more opendirs or releasedirs.
            return reply.error(Errno::ENOSYS);
        }
        match self.vfs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let r = if fh.0 == NO_HANDLE {
            self.vfs.readdir_inode(ino.0)
        } else {
            self.vfs.readdir(fh.0)
        };
        let entries = match r {
            Ok(e) => e,
            Err(e) => return reply.error(errno(&e)),
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, e) in entries.iter().enumerate().skip(start) {
            // The offset given is the one of the next entry.
            if reply.add(
                INodeNo(e.ino),
                i as u64 + 1,
                kind(e.kind),
                OsStr::from_bytes(&e.name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.vfs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.vfs.getxattr(ino.0, name.as_bytes()) {
            Ok(v) => xattr_reply(reply, size, &v),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.vfs.listxattr(ino.0) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(&n);
                    buf.push(0);
                }
                xattr_reply(reply, size, &buf);
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    // Everything that would change the file system: EROFS.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }
}

/// Whether FUSE can work here: `/dev/fuse` must exist, and a user other than root needs the
/// `fusermount3` helper. The error is one line saying what is missing.
pub fn check_available() -> Result<()> {
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::usage(
            "FUSE is not available: /dev/fuse is missing (load the fuse module, or give the \
             container the device)",
        ));
    }
    let root = crate::sys::user::euid() == 0;
    let helper = std::env::var_os("FUSERMOUNT_PATH")
        .map(std::path::PathBuf::from)
        .or_else(|| find_in_path("fusermount3"))
        .or_else(|| find_in_path("fusermount"));
    if !root && helper.is_none() {
        return Err(Error::usage(
            "FUSE is not available: fusermount3 not found (install the fuse3 package)",
        ));
    }
    Ok(())
}

fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct FuseOptions {
    /// Let other users see the mount (`allow_other`; needs `user_allow_other` in
    /// /etc/fuse.conf for users other than root).
    pub allow_other: bool,
    /// Let the kernel check permissions against each node's owner and mode (on by default,
    /// as restic does); off, whoever may use the mount reads everything.
    pub default_permissions: bool,
    /// Threads serving kernel requests.
    pub threads: usize,
}

/// Mount `fs` at `mountpoint` and serve it on background threads until [`Mounted::unmount`]
/// or until it is unmounted from outside.
pub fn mount<S: Source + 'static>(
    fs: FuseFs<S>,
    mountpoint: &Path,
    opts: &FuseOptions,
) -> Result<Mounted> {
    use fuser::{MountOption, SessionACL};
    check_available()?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
        // Snapshots may hold set-uid programs and device nodes of another machine.
        MountOption::NoSuid,
        MountOption::NoDev,
    ];
    if opts.default_permissions {
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    if opts.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = opts.threads > 1;
    let mountpoint = mountpoint.canonicalize().map_err(|e| {
        Error::io(
            format!("cannot use {} as mount point", mountpoint.display()),
            e,
        )
    })?;
    let session = fuser::spawn_mount(fs, &mountpoint, &config).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot mount at {}: {e}", mountpoint.display()),
        )
    })?;
    Ok(Mounted {
        session,
        mountpoint,
    })
}

/// A mounted file system served in the background.
pub struct Mounted {
    session: fuser::BackgroundSession,
    mountpoint: std::path::PathBuf,
}

/// Detach the mount at `dir` from the file system tree at once, even while files in it are
/// open (`umount -l`): as root directly, otherwise through `fusermount3 -u -z`.
fn detach(dir: &Path) -> Result<()> {
    if crate::sys::user::euid() == 0 {
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| Error::usage("a mount point with a NUL byte"))?;
        return crate::sys::fs::umount_detach(&c)
            .map_err(|e| Error::io(format!("cannot unmount {}", dir.display()), e));
    }
    let helper = find_in_path("fusermount3").unwrap_or_else(|| "fusermount".into());
    let st = std::process::Command::new(helper)
        .arg("-u")
        .arg("-z")
        .arg(dir)
        .status()
        .map_err(|e| Error::io("cannot run fusermount3", e))?;
    if !st.success() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("fusermount3 -u -z {} failed ({st})", dir.display()),
        ));
    }
    Ok(())
}

impl Mounted {
    /// Whether the session has ended (unmounted from outside, e.g. `fusermount3 -u`).
    pub fn is_finished(&self) -> bool {
        self.session.guard.is_finished()
    }

    /// Unmount (if still mounted) and wait a little for the serving threads. The mount is
    /// detached even while files in it are open; those then fail with `ENOTCONN` once this
    /// process exits.
    pub fn unmount(self) -> Result<()> {
        if !self.is_finished() {
            detach(&self.mountpoint)?;
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while !self.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !self.is_finished() {
                // Files still open: leave the threads to the process's exit.
                return Ok(());
            }
        }
        self.session
            .join()
            .map_err(|e| Error::new(ErrorKind::Io, format!("the mount ended with an error: {e}")))
    }
}
