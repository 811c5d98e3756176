//! Files a backup adds after its walk, whose content is only known at the end (a PostgreSQL
//! base backup's `backup_label` comes from `pg_backup_stop`, which must run after every file
//! was read), and what the snapshot carries besides its files. The walk's root tree is edited
//! along the path to each added file; everything else is shared with it.

use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::snapshot::PgBase;
use crate::format::tree::{Node, NodeKind, Tree, is_valid_name};
use crate::id::Id;
use crate::repo::writer::BlobWriter;

/// The type bits of a regular file in `st_mode`.
const S_IFREG: u32 = 0o100000;

/// A file added to a backup after its walk.
#[derive(Debug, Clone)]
pub struct AddedFile {
    /// The absolute path of the folder it goes in: a folder of the snapshot (a backed-up path
    /// or below one).
    pub dir: Vec<u8>,
    /// Its name.
    pub name: Vec<u8>,
    /// Its content.
    pub content: Vec<u8>,
    /// Permission bits (the type bits are added).
    pub mode: u32,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
}

/// What the end of a backup adds: files, and the snapshot's PostgreSQL part.
#[derive(Debug, Clone, Default)]
pub struct Amendment {
    /// Files added after the walk; the owner is the folder's.
    pub files: Vec<AddedFile>,
    /// Stored in the snapshot (which then has version 2).
    pub pg: Option<PgBase>,
}

/// Add `files` to the tree `root`, storing the new trees and file content through `writer`;
/// the new root.
pub(crate) fn add_files(writer: &BlobWriter, root: Id, files: &[AddedFile]) -> Result<Id> {
    let mut root = root;
    for f in files {
        let comps: Vec<&[u8]> = f
            .dir
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        if !is_valid_name(&f.name) {
            return Err(Error::usage(format!(
                "cannot add {:?}: not a file name",
                String::from_utf8_lossy(&f.name)
            )));
        }
        root = insert(writer, root, &comps, f, None)?;
    }
    Ok(root)
}

fn insert(
    writer: &BlobWriter,
    tree_id: Id,
    comps: &[&[u8]],
    f: &AddedFile,
    dir: Option<&Node>,
) -> Result<Id> {
    let repo = writer.repo();
    let mut tree: Tree = repo.load_tree(&tree_id)?;
    match comps.split_first() {
        Some((first, rest)) => {
            let node = tree
                .nodes
                .iter_mut()
                .find(|n| n.name == *first && n.kind == NodeKind::Dir)
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "cannot add {}: folder {} is not in the snapshot",
                        String::from_utf8_lossy(&f.name),
                        String::from_utf8_lossy(&f.dir)
                    ))
                })?;
            let sub = node
                .subtree
                .ok_or_else(|| Error::corrupt("a folder without a tree"))?;
            let parent = node.clone();
            node.subtree = Some(insert(writer, sub, rest, f, Some(&parent))?);
        }
        None => {
            let mut node = Node::new(f.name.clone(), NodeKind::File);
            node.mode = S_IFREG | (f.mode & 0o7777);
            if let Some(d) = dir {
                node.uid = d.uid;
                node.gid = d.gid;
                node.user = d.user.clone();
                node.group = d.group.clone();
                node.device = d.device;
            }
            node.mtime_ns = f.mtime_ns;
            node.ctime_ns = f.mtime_ns;
            node.nlink = 1;
            node.size = f.content.len() as u64;
            let chunker = repo.chunker();
            let mut rest: &[u8] = &f.content;
            while !rest.is_empty() {
                let cut = chunker.cut(rest).clamp(1, rest.len());
                let (chunk, tail) = rest.split_at(cut);
                let (id, _) = writer.add(BlobKind::Data, bytes::Bytes::copy_from_slice(chunk))?;
                node.content.push(id);
                rest = tail;
            }
            tree.nodes.retain(|n| n.name != f.name);
            let at = tree.nodes.partition_point(|n| n.name < f.name);
            tree.nodes.insert(at, node);
        }
    }
    let bytes = bytes::Bytes::from(tree.encode()?);
    let (id, _) = writer.add(BlobKind::Tree, bytes.clone())?;
    repo.cache_tree(&id, &bytes)?;
    Ok(id)
}
