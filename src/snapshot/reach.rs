//! Reachability: every tree and data blob that snapshots reference, each visited once, in an
//! on-disk set ([`BlobSet`]) so memory stays flat however large the repository is. Prune keeps
//! what is in the set; check verifies it.

use crate::cache::BlobSet;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;

/// What a reachability walk saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReachStats {
    /// Distinct trees loaded.
    pub trees: u64,
    /// Distinct data blobs referenced.
    pub data_blobs: u64,
    /// Trees that could not be loaded.
    pub tree_errors: u64,
}

/// Callbacks of a walk.
pub trait Visitor {
    /// A tree could not be loaded (missing, damaged): return `Err` to stop the walk, `Ok` to
    /// go on without what is below it.
    fn tree_error(&mut self, id: &Id, error: Error) -> Result<()>;
    /// A data blob was referenced for the first time.
    fn new_data_blob(&mut self, _id: &Id) -> Result<()> {
        Ok(())
    }
}

/// Add every tree reachable from `roots`, and every data blob those trees reference, to `set`.
/// Trees already in the set are not loaded again, so shared subtrees (the common case between
/// snapshots) cost nothing, and several calls can share one set.
pub fn walk(
    repo: &Repository,
    roots: impl IntoIterator<Item = Id>,
    set: &mut BlobSet,
    visitor: &mut dyn Visitor,
) -> Result<ReachStats> {
    let mut stats = ReachStats::default();
    let mut stack: Vec<Id> = Vec::new();
    for root in roots {
        stack.push(root);
        while let Some(id) = stack.pop() {
            if !set.insert(&id)? {
                continue;
            }
            let tree = match repo.load_tree(&id) {
                Ok(t) => t,
                Err(e) => {
                    stats.tree_errors += 1;
                    visitor.tree_error(&id, e)?;
                    continue;
                }
            };
            stats.trees += 1;
            for node in &tree.nodes {
                for blob in &node.content {
                    if set.insert(blob)? {
                        stats.data_blobs += 1;
                        visitor.new_data_blob(blob)?;
                    }
                }
                if let Some(sub) = node.subtree {
                    stack.push(sub);
                }
            }
        }
    }
    Ok(stats)
}

/// A visitor that stops at the first tree that cannot be loaded (prune: never delete on an
/// incomplete picture).
pub struct StopOnError;

impl Visitor for StopOnError {
    fn tree_error(&mut self, id: &Id, error: Error) -> Result<()> {
        Err(Error::new(
            error.kind(),
            format!(
                "tree {} cannot be read ({error}); nothing was changed: run `cairn check`, then \
                 `cairn repair index` or `cairn repair snapshots`",
                id.short()
            ),
        ))
    }
}
