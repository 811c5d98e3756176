//! One iterative, bottom-up rewrite of a snapshot's trees, for `copy` (re-hashed trees under the
//! destination's keys) and `repair snapshots` (missing content cut, unreadable folders emptied),
//! as restic's `walker.TreeRewriter` serves its `rewrite` and `repair snapshots`.
//!
//! [`rewrite`] walks a tree depth first with an explicit stack, like every walk
//! ([`super::walk`]): it never recurses and refuses trees nested deeper than [`MAX_DEPTH`]. Each
//! folder's nodes are handed to the user ([`Rewrite`]) in order; a node's subtree, when the user
//! asks for it to be walked, is finished (all its own subtrees first) before the folder goes on,
//! and a folder is finished ([`Rewrite::leave`]) once all its nodes are, so a tree is stored only
//! after everything below it. What to remember per tree (so a subtree shared by several
//! snapshots or paths is rewritten once) is the user's: [`Rewrite::known`].

use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Node, Tree};
use crate::id::Id;

use super::walk::MAX_DEPTH;

/// What loading a tree gave.
pub enum Opened<D> {
    /// The tree, to be walked.
    Tree(Tree),
    /// No walk: the tree's outcome as it is (e.g. a tree that cannot be read, to be replaced).
    Done(D),
}

/// What a user of [`rewrite`] does at each step.
pub trait Rewrite {
    /// The outcome of one tree: what its parent's node needs (e.g. the tree's new id).
    type Done;
    /// What is gathered while one folder's nodes are rewritten.
    type Folder;

    /// The outcome of tree `id` if it is already known (rewritten earlier in the run): it is
    /// not walked again.
    fn known(&mut self, id: &Id) -> Option<Self::Done>;

    /// Load tree `id` (not [`known`](Rewrite::known)) to walk it, or give its outcome without
    /// a walk. An error stops the rewrite.
    fn load(&mut self, id: &Id) -> Result<Opened<Self::Done>>;

    /// A folder is about to be walked (its depth was checked): `tree` is its tree as loaded.
    fn enter(&mut self, id: &Id, tree: &Tree) -> Result<Self::Folder>;

    /// One node of the current folder, in order, to be fixed in place. Returns the subtree to
    /// walk for it, if any; its outcome is then given to [`attach`](Rewrite::attach) before the
    /// node is added to the folder.
    fn node(&mut self, folder: &mut Self::Folder, node: &mut Node) -> Result<Option<Id>>;

    /// The outcome of `node`'s subtree, to be set into the node.
    fn attach(
        &mut self,
        folder: &mut Self::Folder,
        node: &mut Node,
        done: Self::Done,
    ) -> Result<()>;

    /// A folder is complete: `tree` is its tree with the nodes as rewritten (and its version as
    /// loaded). Gives the folder's outcome (e.g. the tree stored, and its new id).
    fn leave(&mut self, id: &Id, folder: Self::Folder, tree: Tree) -> Result<Self::Done>;

    /// The error for tree `deep`, found below `root` nested deeper than [`MAX_DEPTH`].
    fn too_deep(&self, _root: &Id, deep: &Id) -> Error {
        Error::corrupt(format!(
            "tree {} is nested deeper than {MAX_DEPTH} folders",
            deep.short()
        ))
    }
}

/// A folder being rewritten.
struct Frame<F> {
    /// Its tree as it was.
    old: Id,
    /// Its tree's format version.
    version: u8,
    /// The folder's node in its parent, whose subtree is set when the folder is done (`None`
    /// for the root).
    node: Option<Node>,
    /// Its remaining nodes.
    nodes: std::vec::IntoIter<Node>,
    /// Its nodes as rewritten.
    out: Vec<Node>,
    /// What the user gathers for it.
    folder: F,
}

impl<F> Frame<F> {
    fn new(old: Id, node: Option<Node>, tree: Tree, folder: F) -> Self {
        let n = tree.nodes.len();
        Frame {
            old,
            version: tree.version,
            node,
            nodes: tree.nodes.into_iter(),
            out: Vec::with_capacity(n),
            folder,
        }
    }
}

/// Rewrite the tree `root` bottom-up (see the module docs); returns its outcome.
pub fn rewrite<R: Rewrite + ?Sized>(r: &mut R, root: &Id) -> Result<R::Done> {
    if let Some(done) = r.known(root) {
        return Ok(done);
    }
    let tree = match r.load(root)? {
        Opened::Tree(t) => t,
        Opened::Done(done) => return Ok(done),
    };
    let folder = r.enter(root, &tree)?;
    let mut stack = vec![Frame::new(*root, None, tree, folder)];
    loop {
        let depth = stack.len();
        let Some(top) = stack.last_mut() else {
            return Err(Error::new(
                ErrorKind::Internal,
                "tree rewrite lost its root",
            ));
        };
        if let Some(mut node) = top.nodes.next() {
            let Some(sub) = r.node(&mut top.folder, &mut node)? else {
                top.out.push(node);
                continue;
            };
            let done = match r.known(&sub) {
                Some(done) => done,
                None => match r.load(&sub)? {
                    Opened::Done(done) => done,
                    Opened::Tree(tree) => {
                        if depth >= MAX_DEPTH {
                            return Err(r.too_deep(root, &sub));
                        }
                        let folder = r.enter(&sub, &tree)?;
                        stack.push(Frame::new(sub, Some(node), tree, folder));
                        continue;
                    }
                },
            };
            r.attach(&mut top.folder, &mut node, done)?;
            top.out.push(node);
            continue;
        }
        // The folder is complete.
        let Some(f) = stack.pop() else {
            continue;
        };
        let tree = Tree {
            version: f.version,
            nodes: f.out,
        };
        let done = r.leave(&f.old, f.folder, tree)?;
        let Some(parent) = stack.last_mut() else {
            return Ok(done);
        };
        let Some(mut node) = f.node else {
            return Err(Error::new(
                ErrorKind::Internal,
                "tree rewrite lost a folder",
            ));
        };
        r.attach(&mut parent.folder, &mut node, done)?;
        parent.out.push(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::NodeKind;
    use std::collections::HashMap;

    fn id(i: u32) -> Id {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_le_bytes());
        Id(b)
    }

    fn dir(name: &str, sub: Id) -> Node {
        let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
        n.subtree = Some(sub);
        n
    }

    /// Renames every file to upper case and gives each rewritten tree the id `old + 1000`,
    /// logging every step.
    struct Upper {
        trees: HashMap<Id, Tree>,
        memo: HashMap<Id, Id>,
        log: Vec<String>,
    }

    impl Rewrite for Upper {
        type Done = Id;
        type Folder = usize;

        fn known(&mut self, id: &Id) -> Option<Id> {
            self.memo.get(id).copied()
        }
        fn load(&mut self, id: &Id) -> Result<Opened<Id>> {
            match self.trees.get(id) {
                Some(t) => Ok(Opened::Tree(t.clone())),
                None => Ok(Opened::Done(Id([0xff; 32]))),
            }
        }
        fn enter(&mut self, id: &Id, _tree: &Tree) -> Result<usize> {
            self.log.push(format!("enter {}", id.0[0]));
            Ok(0)
        }
        fn node(&mut self, folder: &mut usize, node: &mut Node) -> Result<Option<Id>> {
            *folder += 1;
            node.name.make_ascii_uppercase();
            self.log
                .push(format!("node {}", String::from_utf8_lossy(&node.name)));
            Ok(node.subtree)
        }
        fn attach(&mut self, _folder: &mut usize, node: &mut Node, done: Id) -> Result<()> {
            node.subtree = Some(done);
            Ok(())
        }
        fn leave(&mut self, old: &Id, folder: usize, tree: Tree) -> Result<Id> {
            self.log
                .push(format!("leave {} ({folder} nodes)", old.0[0]));
            let new = id(u32::from(old.0[0]) + 100);
            self.trees.insert(new, tree);
            self.memo.insert(*old, new);
            Ok(new)
        }
    }

    #[test]
    fn small_tree_is_rewritten_bottom_up_once() {
        // 1: a/ -> 2 (x, b/ -> 3 (y)), c/ -> 3 (shared, rewritten once), d/ -> 9 (missing), z
        let mut trees = HashMap::new();
        let file = |n: &str| Node::new(n.as_bytes().to_vec(), NodeKind::File);
        trees.insert(
            id(3),
            Tree {
                version: 1,
                nodes: vec![file("y")],
            },
        );
        trees.insert(
            id(2),
            Tree {
                version: 1,
                nodes: vec![dir("b", id(3)), file("x")],
            },
        );
        trees.insert(
            id(1),
            Tree {
                version: 1,
                nodes: vec![dir("a", id(2)), dir("c", id(3)), dir("d", id(9)), file("z")],
            },
        );
        let mut u = Upper {
            trees,
            memo: HashMap::new(),
            log: Vec::new(),
        };
        let root = rewrite(&mut u, &id(1)).unwrap();
        assert_eq!(root, id(101));
        assert_eq!(
            u.log,
            [
                "enter 1",
                "node A",
                "enter 2",
                "node B",
                "enter 3",
                "node Y",
                "leave 3 (1 nodes)",
                "node X",
                "leave 2 (2 nodes)",
                "node C",
                "node D",
                "node Z",
                "leave 1 (4 nodes)",
            ]
        );
        let new = &u.trees[&id(101)];
        let subs: Vec<Option<Id>> = new.nodes.iter().map(|n| n.subtree).collect();
        assert_eq!(
            subs,
            [Some(id(102)), Some(id(103)), Some(Id([0xff; 32])), None]
        );
        assert_eq!(u.trees[&id(102)].nodes[0].subtree, Some(id(103)));
        assert_eq!(u.trees[&id(103)].nodes[0].name, b"Y");
        // Known trees are not walked again.
        u.log.clear();
        assert_eq!(rewrite(&mut u, &id(1)).unwrap(), id(101));
        assert!(u.log.is_empty());
    }

    /// A chain of `len` folders: tree `i` holds folder `d` → tree `i + 1`.
    fn chain(len: u32) -> HashMap<Id, Tree> {
        (0..len)
            .map(|i| {
                let nodes = if i + 1 < len {
                    vec![dir("d", id(i + 1))]
                } else {
                    vec![]
                };
                (id(i), Tree { version: 1, nodes })
            })
            .collect()
    }

    struct Count(HashMap<Id, Tree>, usize);

    impl Rewrite for Count {
        type Done = ();
        type Folder = ();
        fn known(&mut self, _id: &Id) -> Option<()> {
            None
        }
        fn load(&mut self, id: &Id) -> Result<Opened<()>> {
            self.0
                .get(id)
                .cloned()
                .map(Opened::Tree)
                .ok_or_else(|| Error::not_found("tree"))
        }
        fn enter(&mut self, _id: &Id, _tree: &Tree) -> Result<()> {
            Ok(())
        }
        fn node(&mut self, _folder: &mut (), node: &mut Node) -> Result<Option<Id>> {
            Ok(node.subtree)
        }
        fn attach(&mut self, _folder: &mut (), _node: &mut Node, _done: ()) -> Result<()> {
            Ok(())
        }
        fn leave(&mut self, _id: &Id, _folder: (), _tree: Tree) -> Result<()> {
            self.1 += 1;
            Ok(())
        }
    }

    #[test]
    fn depth_is_bounded_and_the_walk_never_recurses() {
        // On a 64 KiB stack, which a recursion thousands of folders deep would overflow.
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| {
                let mut ok = Count(chain(MAX_DEPTH as u32), 0);
                rewrite(&mut ok, &id(0)).unwrap();
                assert_eq!(ok.1, MAX_DEPTH);
                let mut deep = Count(chain(100_000), 0);
                let err = rewrite(&mut deep, &id(0)).unwrap_err();
                assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt);
                assert!(err.to_string().contains("nested deeper than"), "{err}");
                assert_eq!(deep.1, 0);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
