//! Tree blobs: the name-sorted list of a directory's entries.

use crate::error::{Error, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// Regular file; `content` lists its blobs.
    File,
    /// Directory; `subtree` is its tree.
    Dir,
    /// Symbolic link; `link_target` is its target.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device; `rdev` is its number.
    CharDevice,
    /// Block device; `rdev` is its number.
    BlockDevice,
    /// Unix socket (restored as nothing; recorded for completeness).
    Socket,
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name (raw bytes).
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// Attribute value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// `atime_ns` of a node whose access time was not recorded; restore sets atime = mtime.
pub const ATIME_NOT_RECORDED: i64 = i64::MIN;

/// How far the raw lengths of a file's content list may run past its `size` before a reader
/// (`dump`, the mount) calls the list implausible and refuses to read past that point. A good
/// tree's content sums to exactly `size`; one listing far more (a node of size 1 whose content
/// repeats a large blob thousands of times) is damaged or was written to exhaust memory.
pub const CONTENT_SLACK: u64 = 1 << 20;

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name as raw bytes (need not be UTF-8).
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// Kind.
    pub kind: NodeKind,
    /// Permission and type bits as `st_mode`.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Owner name, when known.
    pub user: String,
    /// Group name, when known.
    pub group: String,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Access time, ns, or [`ATIME_NOT_RECORDED`] (the default: reading files moves their
    /// atime, so recording it would make every tree differ from the last backup's).
    pub atime_ns: i64,
    /// Status change time, ns.
    pub ctime_ns: i64,
    /// Size in bytes (files).
    pub size: u64,
    /// Inode number at backup time.
    pub inode: u64,
    /// Device id of the containing file system.
    pub device: u64,
    /// Hard link count at backup time.
    pub nlink: u64,
    /// Device number (char/block devices).
    pub rdev: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<Xattr>,
    /// Symlink target (raw bytes).
    #[serde(with = "serde_bytes")]
    pub link_target: Vec<u8>,
    /// Content blobs, in order (files).
    pub content: Vec<Id>,
    /// Subtree (directories).
    pub subtree: Option<Id>,
}

impl Node {
    /// A node with this name and kind, atime not recorded, and every other field zero.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            mtime_ns: 0,
            atime_ns: ATIME_NOT_RECORDED,
            ctime_ns: 0,
            size: 0,
            inode: 0,
            device: 0,
            nlink: 0,
            rdev: 0,
            xattrs: Vec::new(),
            link_target: Vec::new(),
            content: Vec::new(),
            subtree: None,
        }
    }
}

/// The plaintext of a tree blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tree {
    /// Format version.
    pub version: u8,
    /// Entries, sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

/// Whether `name` is a safe single path component: not empty, not `.` or `..`, no `/` or NUL.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

impl Tree {
    /// Encode (nodes must already be sorted).
    pub fn encode(&self) -> Result<Vec<u8>> {
        super::encode(self)
    }

    /// Decode and validate: names are safe path components, sorted and unique; kinds carry
    /// the fields they need. A tree that fails is corrupt — restoring it could escape the target.
    pub fn decode(bytes: &[u8], what: &dyn std::fmt::Display) -> Result<Tree> {
        let t: Tree = super::decode(bytes, what)?;
        let mut prev: Option<&[u8]> = None;
        for n in &t.nodes {
            if !is_valid_name(&n.name) {
                return Err(Error::corrupt(format!(
                    "{what} is corrupt: invalid entry name {:?}",
                    String::from_utf8_lossy(&n.name)
                )));
            }
            if prev.is_some_and(|p| p >= n.name.as_slice()) {
                return Err(Error::corrupt(format!(
                    "{what} is corrupt: entries not sorted or duplicated"
                )));
            }
            if (n.kind == NodeKind::Dir) != n.subtree.is_some() {
                return Err(Error::corrupt(format!(
                    "{what} is corrupt: directory without subtree"
                )));
            }
            prev = Some(&n.name);
        }
        Ok(t)
    }

    /// Find a node by name (binary search).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(names: &[&[u8]]) -> Tree {
        Tree {
            version: crate::format::VERSION,
            nodes: names
                .iter()
                .map(|n| Node::new(n.to_vec(), NodeKind::File))
                .collect(),
        }
    }

    #[test]
    fn round_trip_with_odd_names() {
        let mut t = tree(&[b"a b", b"caf\xe9", b"line\nbreak"]);
        t.nodes[0].xattrs.push(Xattr {
            name: b"user.x".to_vec(),
            value: vec![0, 1, 2],
        });
        t.nodes[1].content = vec![Id::of_stored(b"c")];
        let bytes = t.encode().unwrap();
        assert_eq!(Tree::decode(&bytes, &"t").unwrap(), t);
    }

    #[test]
    fn rejects_unsafe_unsorted_and_versioned_input() {
        for bad in [
            &[&b".."[..]][..],
            &[b"a/b"],
            &[b""],
            &[b"b", b"a"],
            &[b"a", b"a"],
        ] {
            let bytes = tree(bad).encode().unwrap();
            assert!(Tree::decode(&bytes, &"t").is_err(), "{bad:?} accepted");
        }
        let mut bytes = tree(&[b"a"]).encode().unwrap();
        bytes[0] = 9;
        assert!(Tree::decode(&bytes, &"t").is_err());
        let mut bytes = tree(&[b"a"]).encode().unwrap();
        bytes.push(0);
        assert!(Tree::decode(&bytes, &"t").is_err());
        let mut d = tree(&[b"d"]);
        d.nodes[0].kind = NodeKind::Dir;
        assert!(Tree::decode(&d.encode().unwrap(), &"t").is_err());
    }
}
