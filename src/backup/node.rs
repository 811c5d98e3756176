//! Turning a file's metadata into a tree node.

use crate::format::tree::{Node, NodeKind, Xattr};
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

/// Looks up user and group names, remembering answers.
#[derive(Debug, Default)]
pub struct Names {
    users: Mutex<HashMap<u32, String>>,
    groups: Mutex<HashMap<u32, String>>,
}

impl Names {
    /// User name of `uid` ("" when unknown).
    pub fn user(&self, uid: u32) -> String {
        let mut m = self.users.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(uid)
            .or_insert_with(|| crate::sys::user::name_of(uid, false))
            .clone()
    }
    /// Group name of `gid`.
    pub fn group(&self, gid: u32) -> String {
        let mut m = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(gid)
            .or_insert_with(|| crate::sys::user::name_of(gid, true))
            .clone()
    }
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Read a path's extended attributes (without following symlinks); unreadable ones are skipped.
pub fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let mut out = Vec::new();
    if let Ok(names) = xattr::list(path) {
        for name in names {
            if let Ok(Some(value)) = xattr::get(path, &name) {
                out.push(Xattr {
                    name: name.as_bytes().to_vec(),
                    value,
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The node for `path` (named `name`) with metadata `m` from `lstat`; the access time only
/// when `atime` is set. Returns `None` for types we do not know.
pub fn node_from(
    name: &[u8],
    path: &Path,
    m: &Metadata,
    names: &Names,
    atime: bool,
) -> std::io::Result<Option<Node>> {
    let ft = m.file_type();
    let kind = if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        return Ok(None);
    };
    let mut n = Node::new(name.to_vec(), kind);
    n.mode = m.mode();
    n.uid = m.uid();
    n.gid = m.gid();
    n.user = names.user(n.uid);
    n.group = names.group(n.gid);
    n.mtime_ns = ns(m.mtime(), m.mtime_nsec());
    if atime {
        n.atime_ns = ns(m.atime(), m.atime_nsec());
    }
    n.ctime_ns = ns(m.ctime(), m.ctime_nsec());
    n.inode = m.ino();
    n.device = m.dev();
    n.nlink = m.nlink();
    if kind == NodeKind::File {
        n.size = m.size();
    }
    if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        n.rdev = m.rdev();
    }
    if kind == NodeKind::Symlink {
        n.link_target = std::fs::read_link(path)?.as_os_str().as_bytes().to_vec();
    }
    n.xattrs = read_xattrs(path);
    Ok(Some(n))
}
