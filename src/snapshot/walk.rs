//! One iterative walk over a snapshot's trees, in name order, depth first.
//!
//! The walk holds one decoded tree per level of the current path and nothing else, so memory is
//! bounded by the depth and the widest folder, never by the size of the snapshot. It never
//! recurses (a chain of 100 000 nested folders cannot overflow the stack) and it refuses trees
//! nested deeper than [`MAX_DEPTH`]. A tree that lists one subtree under several names (two
//! identical folders, or a hostile "billion laughs" made of 2^k paths over k blobs) is walked
//! once per path, as it must be for `ls` or a restore; the cost is proportional to the paths the
//! snapshot really holds and the memory stays flat. Walks that only need each tree once (check,
//! prune reachability) keep a visited set on top of [`TreeWalk::enter`].
//!
//! Callers see each node with [`Step::Node`] and decide whether to [`TreeWalk::enter`] a folder;
//! [`Step::Leave`] closes the folder entered last.

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::Id;

/// Deepest nesting of folders a walk accepts. Linux paths are at most 4096 bytes, so a deeper
/// tree could not have been backed up from, or restored to, a real file system by path.
pub const MAX_DEPTH: usize = 2048;

/// One step of a walk.
// `Leave` is one per folder and carries nothing; boxing every node would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step {
    /// A node of the current folder (any kind; folders are entered only on request).
    Node(Node),
    /// The folder entered last has no more nodes.
    Leave,
}

/// Something that yields trees by id (the repository, or a test double).
pub trait TreeSource {
    /// Load and verify the tree `id`.
    fn tree(&self, id: &Id) -> Result<crate::format::tree::Tree>;
}

#[cfg(feature = "engine")]
impl TreeSource for crate::repo::Repository {
    fn tree(&self, id: &Id) -> Result<crate::format::tree::Tree> {
        self.load_tree(id)
    }
}

/// An iterative, depth-first walk; see the module docs.
pub struct TreeWalk<'r, S: TreeSource + ?Sized> {
    source: &'r S,
    /// Remaining nodes of each entered folder, innermost last.
    stack: Vec<std::vec::IntoIter<Node>>,
    /// Snapshot path of the innermost entered folder (`/` separated, no trailing `/`).
    path: Vec<u8>,
    /// Length of `path` before each entered folder's name was appended.
    marks: Vec<usize>,
}

impl<'r, S: TreeSource + ?Sized> TreeWalk<'r, S> {
    /// A walk whose first steps are the nodes of tree `root`, found at snapshot path `path`
    /// (`/` or empty for the snapshot's root).
    pub fn new(source: &'r S, root: &Id, path: &[u8]) -> Result<Self> {
        let mut path = path.to_vec();
        while path.last() == Some(&b'/') {
            path.pop();
        }
        let mut w = TreeWalk {
            source,
            stack: Vec::new(),
            path,
            marks: Vec::new(),
        };
        let t = w.source.tree(root)?;
        w.stack.push(t.nodes.into_iter());
        w.marks.push(w.path.len());
        Ok(w)
    }

    /// A walk over one synthetic list of nodes (a single file restored on its own).
    pub fn of_nodes(source: &'r S, nodes: Vec<Node>, path: &[u8]) -> Self {
        let mut path = path.to_vec();
        while path.last() == Some(&b'/') {
            path.pop();
        }
        let marks = vec![path.len()];
        TreeWalk {
            source,
            stack: vec![nodes.into_iter()],
            path,
            marks,
        }
    }

    /// Snapshot path of the folder whose nodes are being returned (empty for the root).
    pub fn dir_path(&self) -> &[u8] {
        &self.path
    }

    /// Snapshot path of `name` inside the current folder.
    pub fn child_path(&self, name: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(self.path.len() + 1 + name.len());
        p.extend_from_slice(&self.path);
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }

    /// How many folders are entered (0 before the first `enter`, counting the root as 1).
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// Descend into folder node `dir` (just returned by [`TreeWalk::next_step`]): its nodes come
    /// next, then a [`Step::Leave`].
    pub fn enter(&mut self, dir: &Node) -> Result<()> {
        let sub = match (dir.kind, dir.subtree) {
            (NodeKind::Dir, Some(s)) => s,
            _ => {
                return Err(Error::corrupt(format!(
                    "directory {} has no subtree",
                    String::from_utf8_lossy(&self.child_path(&dir.name))
                )));
            }
        };
        if self.stack.len() >= MAX_DEPTH {
            return Err(Error::corrupt(format!(
                "tree {} is nested deeper than {MAX_DEPTH} folders",
                sub.short()
            )));
        }
        let t = self.source.tree(&sub)?;
        self.marks.push(self.path.len());
        self.path.push(b'/');
        self.path.extend_from_slice(&dir.name);
        self.stack.push(t.nodes.into_iter());
        Ok(())
    }

    /// The next step, or `None` when the walk is over. The root folder's end is not reported.
    pub fn next_step(&mut self) -> Option<Step> {
        let top = self.stack.last_mut()?;
        if let Some(n) = top.next() {
            return Some(Step::Node(n));
        }
        self.stack.pop();
        if let Some(m) = self.marks.pop() {
            self.path.truncate(m);
        }
        if self.stack.is_empty() {
            None
        } else {
            Some(Step::Leave)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::Tree;
    use std::collections::HashMap;

    struct Mem(HashMap<Id, Tree>);
    impl TreeSource for Mem {
        fn tree(&self, id: &Id) -> Result<Tree> {
            self.0
                .get(id)
                .cloned()
                .ok_or_else(|| Error::not_found("tree"))
        }
    }

    fn dir(name: &str, sub: Id) -> Node {
        let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
        n.subtree = Some(sub);
        n
    }

    #[test]
    fn deep_chain_is_refused_without_overflowing_the_stack() {
        let mut m = HashMap::new();
        let depth = 100_000u32;
        for i in 0..depth {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let mut next = [0u8; 32];
            next[..4].copy_from_slice(&(i + 1).to_le_bytes());
            let nodes = if i + 1 < depth {
                vec![dir("d", Id(next))]
            } else {
                vec![]
            };
            m.insert(Id(id), Tree { version: 1, nodes });
        }
        let src = Mem(m);
        let mut w = TreeWalk::new(&src, &Id([0; 32]), b"/").unwrap();
        let mut err = None;
        while let Some(s) = w.next_step() {
            if let Step::Node(n) = s {
                if let Err(e) = w.enter(&n) {
                    err = Some(e);
                    break;
                }
            }
        }
        let e = err.expect("refused");
        assert!(e.to_string().contains("nested deeper"), "{e}");
    }

    #[test]
    fn paths_and_leaves() {
        let mut m = HashMap::new();
        let leaf = Id([2; 32]);
        m.insert(
            leaf,
            Tree {
                version: 1,
                nodes: vec![Node::new(b"f".to_vec(), NodeKind::File)],
            },
        );
        m.insert(
            Id([1; 32]),
            Tree {
                version: 1,
                nodes: vec![dir("a", leaf), dir("b", leaf)],
            },
        );
        let src = Mem(m);
        let mut w = TreeWalk::new(&src, &Id([1; 32]), b"/").unwrap();
        let mut seen = Vec::new();
        while let Some(s) = w.next_step() {
            match s {
                Step::Node(n) => {
                    seen.push(String::from_utf8(w.child_path(&n.name)).unwrap());
                    if n.kind == NodeKind::Dir {
                        w.enter(&n).unwrap();
                    }
                }
                Step::Leave => seen.push("<".into()),
            }
        }
        assert_eq!(seen, ["/a", "/a/f", "<", "/b", "/b/f", "<"]);
    }
}
