//! Snapshots and trees as the upper layers see them: building trees, finding a path in a
//! snapshot, choosing snapshots (`latest`, short ids, `--at`, host/tag/path filters),
//! grouping them by host, paths and tags, and retention (`policy`, `forget`).

#[cfg(feature = "engine")]
pub mod builder;
#[cfg(feature = "engine")]
pub mod diff;
#[cfg(feature = "engine")]
pub mod find;
#[cfg(feature = "engine")]
pub mod forget;
pub mod group;
#[cfg(feature = "engine")]
pub mod policy;
#[cfg(feature = "engine")]
pub mod reach;
pub mod rewrite;
#[cfg(feature = "engine")]
pub mod select;
#[cfg(feature = "engine")]
pub mod stats;
#[cfg(feature = "engine")]
pub mod tag;
pub mod walk;

#[cfg(feature = "engine")]
use crate::error::{Error, Result};
#[cfg(feature = "engine")]
use crate::format::tree::{Node, NodeKind};
#[cfg(feature = "engine")]
use crate::id::Id;
#[cfg(feature = "engine")]
use crate::repo::Repository;

/// Find the node at `path` (components separated by `/`) below the root tree `root`.
/// An empty path or `/` gives a synthetic directory node for the root itself.
#[cfg(feature = "engine")]
pub fn find_node(repo: &Repository, root: Id, path: &[u8]) -> Result<Node> {
    let mut node = Node::new(b"/".to_vec(), NodeKind::Dir);
    node.subtree = Some(root);
    node.mode = 0o40755;
    for comp in path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        let sub = match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(s)) => s,
            _ => {
                return Err(Error::not_found(format!(
                    "{} is not a directory in the snapshot",
                    String::from_utf8_lossy(&node.name)
                )));
            }
        };
        let tree = repo.load_tree(&sub)?;
        node = tree.find(comp).cloned().ok_or_else(|| {
            Error::not_found(format!(
                "path {} not found in the snapshot",
                String::from_utf8_lossy(path)
            ))
        })?;
    }
    Ok(node)
}
