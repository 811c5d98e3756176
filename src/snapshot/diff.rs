//! `diff`: what changed from one snapshot to another, restic's way.
//!
//! Both root trees are walked side by side in name order (one frame of merged entries per
//! level of the current path; never recursive, at most [`MAX_DEPTH`] levels). A folder whose
//! tree is the same on both sides is skipped without being read. Added and removed folders are
//! listed whole with [`TreeWalk`].
//!
//! Each change is one [`Change`]: `+` added, `-` removed, `M` a file's content changed, `T` the
//! kind changed (a file became a symlink…), `U` only metadata changed (with
//! [`DiffOptions::metadata`]); folders carry a trailing `/`. As in restic, only regular files
//! get `M`: a symlink's new target is metadata (`U`).
//!
//! The statistics count entries added and removed, and the blobs only one side references
//! (data blobs, tree blobs and their raw bytes). Blobs of the changed parts are collected in
//! memory; a blob that a changed part loses or gains may still be used in a folder that did
//! not change, so when there are any, the unchanged folders are read once each (trees come
//! from the cache) to take those out, as restic does, stopping as soon as nothing is left to
//! check.

use super::walk::{MAX_DEPTH, Step, TreeWalk};
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::tree::{Node, NodeKind};
use crate::id::Id;
use crate::repo::Repository;
use std::collections::HashSet;

/// Options of [`diff`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    /// Report entries whose metadata alone changed (`U`).
    pub metadata: bool,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Snapshot path (`/home/u/x`, raw bytes), with a trailing `/` for a folder.
    pub path: Vec<u8>,
    /// `+`, `-`, `M`, `T`, `U`, or `TU` (kind and metadata).
    pub modifier: String,
}

/// Entries and blobs on one side of a diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStat {
    /// Regular files.
    pub files: u64,
    /// Folders.
    pub dirs: u64,
    /// Other entries (symlinks, fifos, devices, sockets).
    pub others: u64,
    /// Data blobs only this side references.
    pub data_blobs: u64,
    /// Tree blobs only this side references.
    pub tree_blobs: u64,
    /// Raw bytes of those blobs.
    pub bytes: u64,
}

impl DiffStat {
    fn count(&mut self, n: &Node) {
        match n.kind {
            NodeKind::File => self.files += 1,
            NodeKind::Dir => self.dirs += 1,
            _ => self.others += 1,
        }
    }
}

/// What [`diff`] found besides the changes it reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffOutcome {
    /// Files with changed content (`M`).
    pub changed_files: u64,
    /// What the second snapshot adds.
    pub added: DiffStat,
    /// What the second snapshot no longer has.
    pub removed: DiffStat,
    /// Blobs whose size is unknown because the index lacks them (counted, not sized).
    pub missing_blobs: u64,
}

type BlobSet = HashSet<(BlobKind, Id)>;

fn add_blobs(set: &mut BlobSet, n: &Node) {
    match (n.kind, n.subtree) {
        (NodeKind::File, _) => {
            for b in &n.content {
                set.insert((BlobKind::Data, *b));
            }
        }
        (NodeKind::Dir, Some(s)) => {
            set.insert((BlobKind::Tree, s));
        }
        _ => {}
    }
}

/// Whether two nodes differ in anything but their content (blobs or subtree).
fn same_metadata(a: &Node, b: &Node) -> bool {
    a.kind == b.kind
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.user == b.user
        && a.group == b.group
        && a.mtime_ns == b.mtime_ns
        && a.atime_ns == b.atime_ns
        && a.ctime_ns == b.ctime_ns
        && a.size == b.size
        && a.inode == b.inode
        && a.device == b.device
        && a.nlink == b.nlink
        && a.rdev == b.rdev
        && a.xattrs == b.xattrs
        && a.link_target == b.link_target
}

/// One level of the side-by-side walk: the merged entries of two folders.
struct Frame {
    /// Path of the folder (no trailing `/`; empty for the root).
    path: Vec<u8>,
    entries: std::vec::IntoIter<(Option<Node>, Option<Node>)>,
}

/// Merge two name-sorted node lists into pairs by name.
fn merge(a: Vec<Node>, b: Vec<Node>) -> Vec<(Option<Node>, Option<Node>)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    loop {
        let ord = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match ord {
            std::cmp::Ordering::Less => out.push((a.next(), None)),
            std::cmp::Ordering::Greater => out.push((None, b.next())),
            std::cmp::Ordering::Equal => out.push((a.next(), b.next())),
        }
    }
    out
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn shown(mut path: Vec<u8>, n: &Node) -> Vec<u8> {
    if n.kind == NodeKind::Dir {
        path.push(b'/');
    }
    path
}

struct Differ<'r, 'o> {
    repo: &'r Repository,
    opts: DiffOptions,
    out: &'o mut dyn FnMut(&Change) -> Result<()>,
    outcome: DiffOutcome,
    before: BlobSet,
    after: BlobSet,
    /// Folders with the same tree on both sides (not walked).
    common: HashSet<Id>,
}

impl Differ<'_, '_> {
    fn emit(&mut self, path: Vec<u8>, modifier: &str) -> Result<()> {
        (self.out)(&Change {
            path,
            modifier: modifier.to_string(),
        })
    }

    /// Report `n` (at `path`) and, for a folder, everything below it, as added or removed.
    fn one_side(&mut self, n: &Node, path: Vec<u8>, added: bool) -> Result<()> {
        let modifier = if added { "+" } else { "-" };
        self.emit(shown(path.clone(), n), modifier)?;
        self.side(added).0.count(n);
        let (NodeKind::Dir, Some(sub)) = (n.kind, n.subtree) else {
            return Ok(());
        };
        let repo = self.repo;
        let mut walk = TreeWalk::new(repo, &sub, &path)?;
        while let Some(step) = walk.next_step() {
            let Step::Node(c) = step else { continue };
            self.emit(shown(walk.child_path(&c.name), &c), modifier)?;
            let (stat, set) = self.side(added);
            stat.count(&c);
            add_blobs(set, &c);
            if c.kind == NodeKind::Dir {
                walk.enter(&c)?;
            }
        }
        Ok(())
    }

    fn side(&mut self, added: bool) -> (&mut DiffStat, &mut BlobSet) {
        if added {
            (&mut self.outcome.added, &mut self.after)
        } else {
            (&mut self.outcome.removed, &mut self.before)
        }
    }

    fn frame(&self, path: Vec<u8>, a: &Id, b: &Id) -> Result<Frame> {
        let ta = self.repo.load_tree(a)?;
        let tb = self.repo.load_tree(b)?;
        Ok(Frame {
            path,
            entries: merge(ta.nodes, tb.nodes).into_iter(),
        })
    }

    fn walk(&mut self, a: &Id, b: &Id) -> Result<()> {
        let mut stack = vec![self.frame(Vec::new(), a, b)?];
        while let Some(top) = stack.last_mut() {
            let Some(pair) = top.entries.next() else {
                stack.pop();
                continue;
            };
            let dir = top.path.clone();
            match pair {
                (Some(x), Some(y)) => {
                    add_blobs(&mut self.before, &x);
                    add_blobs(&mut self.after, &y);
                    let path = join(&dir, &y.name);
                    let mut m = String::new();
                    if x.kind != y.kind {
                        m.push('T');
                    }
                    if x.kind == NodeKind::File
                        && y.kind == NodeKind::File
                        && x.content != y.content
                    {
                        m.push('M');
                        self.outcome.changed_files += 1;
                    } else if self.opts.metadata && !same_metadata(&x, &y) {
                        m.push('U');
                    }
                    if !m.is_empty() {
                        self.emit(shown(path.clone(), &y), &m)?;
                    }
                    if let (NodeKind::Dir, NodeKind::Dir, Some(sa), Some(sb)) =
                        (x.kind, y.kind, x.subtree, y.subtree)
                    {
                        if sa == sb {
                            self.common.insert(sa);
                        } else {
                            if stack.len() >= MAX_DEPTH {
                                return Err(Error::corrupt(format!(
                                    "tree {} is nested deeper than {MAX_DEPTH} folders",
                                    sb.short()
                                )));
                            }
                            stack.push(self.frame(path, &sa, &sb)?);
                        }
                    }
                }
                (Some(x), None) => {
                    add_blobs(&mut self.before, &x);
                    self.one_side(&x, join(&dir, &x.name), false)?;
                }
                (None, Some(y)) => {
                    add_blobs(&mut self.after, &y);
                    self.one_side(&y, join(&dir, &y.name), true)?;
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// Take out of `removed` and `added` every blob a folder common to both sides uses.
    fn drop_common(&self, removed: &mut BlobSet, added: &mut BlobSet) -> Result<()> {
        let mut seen: HashSet<Id> = HashSet::new();
        for root in &self.common {
            if removed.is_empty() && added.is_empty() {
                return Ok(());
            }
            if !seen.insert(*root) {
                continue;
            }
            let mut walk = TreeWalk::new(self.repo, root, b"")?;
            while let Some(step) = walk.next_step() {
                let Step::Node(n) = step else { continue };
                match (n.kind, n.subtree) {
                    (NodeKind::File, _) => {
                        for b in &n.content {
                            removed.remove(&(BlobKind::Data, *b));
                            added.remove(&(BlobKind::Data, *b));
                        }
                    }
                    (NodeKind::Dir, Some(s)) => {
                        removed.remove(&(BlobKind::Tree, s));
                        added.remove(&(BlobKind::Tree, s));
                        if seen.insert(s) {
                            walk.enter(&n)?;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn size(&mut self, set: &BlobSet, added: bool) -> Result<()> {
        let mut missing = 0;
        let (stat, _) = self.side(added);
        let mut s = *stat;
        for (kind, id) in set {
            match kind {
                BlobKind::Data => s.data_blobs += 1,
                BlobKind::Tree => s.tree_blobs += 1,
            }
            match self.repo.index()?.blob(id)? {
                Some(loc) => s.bytes += u64::from(loc.raw_length),
                None => missing += 1,
            }
        }
        *self.side(added).0 = s;
        self.outcome.missing_blobs += missing;
        Ok(())
    }
}

/// Compare the snapshot trees `before` and `after`, reporting each change to `out` in name
/// order (depth first), and return the statistics.
pub fn diff(
    repo: &Repository,
    before: &Id,
    after: &Id,
    opts: &DiffOptions,
    out: &mut dyn FnMut(&Change) -> Result<()>,
) -> Result<DiffOutcome> {
    let mut d = Differ {
        repo,
        opts: *opts,
        out,
        outcome: DiffOutcome::default(),
        before: HashSet::new(),
        after: HashSet::new(),
        common: HashSet::new(),
    };
    if before == after {
        return Ok(d.outcome);
    }
    d.before.insert((BlobKind::Tree, *before));
    d.after.insert((BlobKind::Tree, *after));
    d.walk(before, after)?;
    let before_set = std::mem::take(&mut d.before);
    let after_set = std::mem::take(&mut d.after);
    let mut removed: BlobSet = before_set.difference(&after_set).copied().collect();
    let mut added: BlobSet = after_set.difference(&before_set).copied().collect();
    drop((before_set, after_set));
    d.drop_common(&mut removed, &mut added)?;
    d.size(&removed, false)?;
    d.size(&added, true)?;
    Ok(d.outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str) -> Node {
        Node::new(name.as_bytes().to_vec(), NodeKind::File)
    }

    #[test]
    fn merge_pairs_by_name() {
        let m = merge(vec![n("a"), n("c"), n("d")], vec![n("b"), n("c")]);
        let shape: Vec<(bool, bool)> = m.iter().map(|(x, y)| (x.is_some(), y.is_some())).collect();
        assert_eq!(
            shape,
            [(true, false), (false, true), (true, true), (true, false)]
        );
    }

    #[test]
    fn metadata_ignores_content() {
        let mut a = n("f");
        let mut b = n("f");
        a.content = vec![Id([1; 32])];
        assert!(same_metadata(&a, &b));
        b.mode = 0o600;
        assert!(!same_metadata(&a, &b));
    }
}
