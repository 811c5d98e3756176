//! Building trees bottom-up while files are still being read.
//!
//! The walker opens a directory, pushes its entries in name order (a file still being read is
//! pushed as *pending*), and closes it. A directory is complete when it is closed and nothing in
//! it is pending; its tree is then stored through a [`TreeSink`] and its id filled into the
//! parent's slot, which may complete the parent in turn. Pure: no I/O, tested on its own.

use crate::error::{Error, Result};
use crate::format::VERSION;
use crate::format::tree::{Node, Tree};
use crate::id::Id;

/// Where finished trees go.
pub trait TreeSink {
    /// Store a tree and return its id.
    fn store_tree(&mut self, tree: &Tree) -> Result<Id>;

    /// Whether an existing tree `id` (the previous snapshot's version of a directory, found
    /// identical) may be referenced as it is: it is known to be in the repository.
    fn reuse_tree(&mut self, _id: &Id) -> Result<bool> {
        Ok(false)
    }
}

/// A directory being built.
pub type DirHandle = usize;

struct DirState {
    nodes: Vec<Option<Node>>,
    pending: usize,
    closed: bool,
    parent: Option<(DirHandle, usize)>,
    /// The previous snapshot's tree of this directory, with its id.
    previous: Option<(Id, Tree)>,
}

/// The set of directories under construction.
#[derive(Default)]
pub struct TreeBuilder {
    dirs: Vec<Option<DirState>>,
    free: Vec<usize>,
    root: Option<Id>,
}

impl std::fmt::Debug for TreeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TreeBuilder({} open)",
            self.dirs.iter().filter(|d| d.is_some()).count()
        )
    }
}

fn gone() -> Error {
    Error::usage("internal error: tree builder used a finished directory")
}

impl TreeBuilder {
    /// A new builder.
    pub fn new() -> TreeBuilder {
        TreeBuilder::default()
    }

    /// Open a directory whose node sits at `parent` (dir, slot); `None` for the root.
    pub fn open_dir(&mut self, parent: Option<(DirHandle, usize)>) -> DirHandle {
        let st = DirState {
            nodes: Vec::new(),
            pending: 0,
            closed: false,
            parent,
            previous: None,
        };
        match self.free.pop() {
            Some(i) => {
                self.dirs[i] = Some(st);
                i
            }
            None => {
                self.dirs.push(Some(st));
                self.dirs.len() - 1
            }
        }
    }

    /// Append a node (callers push in name order). A pending node waits for
    /// [`fill_file`](Self::fill_file) or, for a directory, for its own completion.
    pub fn push(&mut self, dir: DirHandle, node: Node, pending: bool) -> Result<usize> {
        let d = self
            .dirs
            .get_mut(dir)
            .and_then(|d| d.as_mut())
            .ok_or_else(gone)?;
        d.nodes.push(Some(node));
        if pending {
            d.pending += 1;
        }
        Ok(d.nodes.len() - 1)
    }

    /// Nothing more will be pushed into `dir`.
    pub fn close_dir(&mut self, dir: DirHandle, sink: &mut dyn TreeSink) -> Result<()> {
        self.close_dir_like(dir, None, sink)
    }

    /// [`close_dir`](Self::close_dir), with the previous snapshot's tree of this directory:
    /// when the finished nodes equal it, its id is reused (if the sink agrees) instead of
    /// encoding, hashing and storing the same tree again.
    pub fn close_dir_like(
        &mut self,
        dir: DirHandle,
        previous: Option<(Id, Tree)>,
        sink: &mut dyn TreeSink,
    ) -> Result<()> {
        let d = self
            .dirs
            .get_mut(dir)
            .and_then(|d| d.as_mut())
            .ok_or_else(gone)?;
        d.closed = true;
        d.previous = previous;
        self.try_complete(dir, sink)
    }

    /// A pending file's result: its content and size, or `None` to drop it (unreadable).
    pub fn fill_file(
        &mut self,
        dir: DirHandle,
        slot: usize,
        result: Option<(Vec<Id>, u64)>,
        sink: &mut dyn TreeSink,
    ) -> Result<()> {
        let d = self
            .dirs
            .get_mut(dir)
            .and_then(|d| d.as_mut())
            .ok_or_else(gone)?;
        let cell = d.nodes.get_mut(slot).ok_or_else(gone)?;
        match result {
            Some((content, size)) => {
                if let Some(n) = cell.as_mut() {
                    n.content = content;
                    n.size = size;
                }
            }
            None => *cell = None,
        }
        d.pending -= 1;
        self.try_complete(dir, sink)
    }

    /// Drop a pending directory slot (its walk failed).
    pub fn drop_dir_slot(
        &mut self,
        dir: DirHandle,
        slot: usize,
        sink: &mut dyn TreeSink,
    ) -> Result<()> {
        self.fill_file(dir, slot, None, sink)
    }

    fn try_complete(&mut self, mut dir: DirHandle, sink: &mut dyn TreeSink) -> Result<()> {
        loop {
            let d = self
                .dirs
                .get(dir)
                .and_then(|d| d.as_ref())
                .ok_or_else(gone)?;
            if !d.closed || d.pending > 0 {
                return Ok(());
            }
            let d = self.dirs[dir].take().ok_or_else(gone)?;
            self.free.push(dir);
            let tree = Tree {
                version: VERSION,
                nodes: d.nodes.into_iter().flatten().collect(),
            };
            let id = match d.previous {
                Some((id, prev)) if prev == tree && sink.reuse_tree(&id)? => id,
                _ => sink.store_tree(&tree)?,
            };
            match d.parent {
                None => {
                    self.root = Some(id);
                    return Ok(());
                }
                Some((p, slot)) => {
                    let pd = self
                        .dirs
                        .get_mut(p)
                        .and_then(|d| d.as_mut())
                        .ok_or_else(gone)?;
                    if let Some(n) = pd.nodes.get_mut(slot).and_then(|n| n.as_mut()) {
                        n.subtree = Some(id);
                    }
                    pd.pending -= 1;
                    dir = p;
                }
            }
        }
    }

    /// The root tree's id once everything is complete.
    pub fn root(&self) -> Option<Id> {
        self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::NodeKind;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem(HashMap<Id, Tree>);
    impl TreeSink for Mem {
        fn store_tree(&mut self, t: &Tree) -> Result<Id> {
            let id = Id::of_stored(&t.encode()?);
            self.0.insert(id, t.clone());
            Ok(id)
        }
    }

    #[test]
    fn completes_out_of_order() {
        let mut b = TreeBuilder::new();
        let mut sink = Mem::default();
        let root = b.open_dir(None);
        let a = b
            .push(root, Node::new(b"a".to_vec(), NodeKind::File), true)
            .unwrap();
        let d = b
            .push(root, Node::new(b"d".to_vec(), NodeKind::Dir), true)
            .unwrap();
        let sub = b.open_dir(Some((root, d)));
        let x = b
            .push(sub, Node::new(b"x".to_vec(), NodeKind::File), true)
            .unwrap();
        b.push(sub, Node::new(b"y".to_vec(), NodeKind::File), true)
            .unwrap();
        b.close_dir(sub, &mut sink).unwrap();
        b.close_dir(root, &mut sink).unwrap();
        assert!(b.root().is_none());
        b.fill_file(root, a, Some((vec![Id::of_stored(b"c")], 5)), &mut sink)
            .unwrap();
        b.fill_file(sub, x, Some((vec![], 0)), &mut sink).unwrap();
        assert!(b.root().is_none());
        b.fill_file(sub, 1, None, &mut sink).unwrap();
        let r = b.root().expect("complete");
        let rt = &sink.0[&r];
        assert_eq!(rt.nodes.len(), 2);
        assert_eq!(rt.nodes[0].size, 5);
        let st = &sink.0[&rt.nodes[1].subtree.unwrap()];
        assert_eq!(st.nodes.len(), 1, "unreadable y dropped");
    }
}
