//! `find`: which snapshots hold a path matching a pattern, and which snapshots and paths use a
//! blob, a tree, or any blob of a pack. Also the choice of several snapshots at once (the
//! positional snapshot arguments of `stats`, `find` and `tag`).
//!
//! Every snapshot is searched with the one tree walk ([`TreeWalk`]); results are handed to a
//! callback as they are found, so memory does not grow with the number of hits.

use super::select::{Filter, find};
use super::walk::{Step, TreeWalk};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::id::Id;
use crate::repo::Repository;
use std::collections::HashSet;

/// The snapshots a command works on, restic's way: with no `specs`, every snapshot passing
/// `filter`, oldest first; otherwise each spec (`latest`, an id or a unique prefix) resolved in
/// the order given (`latest` honours the filter, ids do not), each snapshot once.
pub fn select_snapshots(
    repo: &Repository,
    specs: &[String],
    filter: &Filter,
) -> Result<Vec<(Id, Snapshot)>> {
    if specs.is_empty() {
        return Ok(repo
            .snapshots()?
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .collect());
    }
    let mut out: Vec<(Id, Snapshot)> = Vec::with_capacity(specs.len());
    for spec in specs {
        let (id, s) = find(repo, spec, filter, None)?;
        if !out.iter().any(|(i, _)| *i == id) {
            out.push((id, s));
        }
    }
    Ok(out)
}

/// A full id or a prefix of its hex digits (1 to 64, either case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPrefix {
    hex: String,
}

impl IdPrefix {
    /// Parse a prefix; anything but 1 to 64 hex digits is a usage error.
    pub fn parse(s: &str) -> Result<IdPrefix> {
        let hex = s.trim().to_ascii_lowercase();
        if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::usage(format!(
                "invalid id {s:?}: give 1 to 64 hex digits"
            )));
        }
        Ok(IdPrefix { hex })
    }

    /// The full id, when all 64 digits were given.
    pub fn full(&self) -> Option<Id> {
        Id::from_name(&self.hex)
    }

    /// Whether `id` starts with this prefix.
    pub fn matches(&self, id: &Id) -> bool {
        let b = self.hex.as_bytes();
        let whole = b.len() / 2;
        if hex::encode(&id.0[..whole]).as_bytes() != &b[..whole * 2] {
            return false;
        }
        if b.len() % 2 == 1 {
            let nibble = hex::encode([id.0[whole]]);
            return nibble.as_bytes()[0] == b[b.len() - 1];
        }
        true
    }

    /// The prefix as given (lower case).
    pub fn as_str(&self) -> &str {
        &self.hex
    }
}

/// A set of ids asked for: full ids (looked up by hash) and shorter prefixes (compared one by
/// one; there are only as many as the user typed).
#[derive(Debug, Clone, Default)]
pub struct IdSet {
    full: HashSet<Id>,
    prefixes: Vec<IdPrefix>,
}

impl IdSet {
    /// The set of these prefixes.
    pub fn new(prefixes: Vec<IdPrefix>) -> IdSet {
        let mut s = IdSet::default();
        for p in prefixes {
            s.add(p);
        }
        s
    }

    /// Add a prefix (a full id goes into the hashed set).
    pub fn add(&mut self, p: IdPrefix) {
        match p.full() {
            Some(id) => {
                self.full.insert(id);
            }
            None => self.prefixes.push(p),
        }
    }

    /// Add a full id.
    pub fn add_id(&mut self, id: Id) {
        self.full.insert(id);
    }

    /// Whether nothing is asked for.
    pub fn is_empty(&self) -> bool {
        self.full.is_empty() && self.prefixes.is_empty()
    }

    /// Whether `id` is one of the ids or starts with one of the prefixes.
    pub fn contains(&self, id: &Id) -> bool {
        self.full.contains(id) || self.prefixes.iter().any(|p| p.matches(id))
    }
}

/// What [`find_paths`] looks for.
pub struct PathQuery<'a> {
    /// Whether a snapshot path (`/home/u/x`, raw bytes) matches the patterns. The caller
    /// compiles the patterns (restic semantics: a pattern without `/` matches a name at any
    /// depth, one with `/` the path).
    pub matches: &'a dyn Fn(&[u8]) -> bool,
    /// Only entries modified at or after this time (ns since the epoch).
    pub oldest_ns: Option<i64>,
    /// Only entries modified at or before this time (ns since the epoch).
    pub newest_ns: Option<i64>,
}

/// What a search of one snapshot found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindOutcome {
    /// Entries (or id uses) reported.
    pub hits: u64,
    /// Entries looked at.
    pub nodes: u64,
}

/// Walk the tree `root` and report every entry whose path matches `q`, in walk order: path
/// and node. As in restic, a folder that matches matches with everything inside it (the
/// pattern `d1` finds `/src/d1` and `/src/d1/f`).
pub fn find_paths(
    repo: &Repository,
    root: &Id,
    q: &PathQuery<'_>,
    out: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
) -> Result<FindOutcome> {
    let mut outcome = FindOutcome::default();
    let mut walk = TreeWalk::new(repo, root, b"/")?;
    // Depth of the outermost entered folder that matched: everything below it matches too.
    let mut matched_at: Option<usize> = None;
    while let Some(step) = walk.next_step() {
        let n = match step {
            Step::Node(n) => n,
            Step::Leave => {
                if matched_at.is_some_and(|d| walk.depth() < d) {
                    matched_at = None;
                }
                continue;
            }
        };
        outcome.nodes += 1;
        let path = walk.child_path(&n.name);
        let hit = matched_at.is_some() || (q.matches)(&path);
        let in_time = q.oldest_ns.is_none_or(|t| n.mtime_ns >= t)
            && q.newest_ns.is_none_or(|t| n.mtime_ns <= t);
        if hit && in_time {
            outcome.hits += 1;
            out(&path, &n)?;
        }
        if n.kind == NodeKind::Dir {
            walk.enter(&n)?;
            if hit && matched_at.is_none() {
                matched_at = Some(walk.depth());
            }
        }
    }
    Ok(outcome)
}

/// One use of an id asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdHit {
    /// Data blob (in a file's content) or tree (a folder's listing).
    pub kind: BlobKind,
    /// The id found.
    pub id: Id,
    /// The path of the file using the blob, or of the folder whose tree it is (`/` for the
    /// snapshot's root tree).
    pub path: Vec<u8>,
    /// For a data blob: the tree listing the file.
    pub parent_tree: Option<Id>,
}

/// Which ids [`find_ids`] looks for.
#[derive(Debug, Clone, Default)]
pub struct IdQuery {
    /// Data blobs (matched against files' content lists).
    pub blobs: IdSet,
    /// Trees (matched against folders' subtrees and the root tree).
    pub trees: IdSet,
}

/// Walk the tree `root` and report every use of an asked-for id, in walk order. A blob used
/// twice by one file is reported once for that file.
pub fn find_ids(
    repo: &Repository,
    root: &Id,
    q: &IdQuery,
    out: &mut dyn FnMut(&IdHit) -> Result<()>,
) -> Result<FindOutcome> {
    let mut outcome = FindOutcome::default();
    if q.trees.contains(root) {
        outcome.hits += 1;
        out(&IdHit {
            kind: BlobKind::Tree,
            id: *root,
            path: b"/".to_vec(),
            parent_tree: None,
        })?;
    }
    let mut walk = TreeWalk::new(repo, root, b"/")?;
    // The tree of each entered folder, innermost last.
    let mut trees = vec![*root];
    while let Some(step) = walk.next_step() {
        let n = match step {
            Step::Node(n) => n,
            Step::Leave => {
                trees.pop();
                continue;
            }
        };
        outcome.nodes += 1;
        match (n.kind, n.subtree) {
            (NodeKind::Dir, Some(sub)) => {
                if q.trees.contains(&sub) {
                    outcome.hits += 1;
                    out(&IdHit {
                        kind: BlobKind::Tree,
                        id: sub,
                        path: walk.child_path(&n.name),
                        parent_tree: None,
                    })?;
                }
                walk.enter(&n)?;
                trees.push(sub);
            }
            (NodeKind::File, _) if !q.blobs.is_empty() => {
                let mut seen: Vec<Id> = Vec::new();
                for b in &n.content {
                    if q.blobs.contains(b) && !seen.contains(b) {
                        seen.push(*b);
                        outcome.hits += 1;
                        out(&IdHit {
                            kind: BlobKind::Data,
                            id: *b,
                            path: walk.child_path(&n.name),
                            parent_tree: trees.last().copied(),
                        })?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(outcome)
}

/// The blobs of the packs named by `packs` (full ids or prefixes, each of which must name
/// exactly one stored pack), read from the packs' headers: data blobs and tree blobs apart.
/// Returns the packs found with the query.
pub fn pack_blobs(repo: &Repository, packs: &[IdPrefix]) -> Result<(Vec<Id>, IdQuery)> {
    let listed = repo.list(FileType::Pack)?;
    let mut q = IdQuery::default();
    let mut found = Vec::new();
    for p in packs {
        let hits: Vec<Id> = listed
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| p.matches(id))
            .collect();
        let pack = match hits.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::not_found(format!("pack {} not found", p.as_str())));
            }
            _ => {
                return Err(Error::usage(format!(
                    "pack prefix {} is ambiguous ({} packs match)",
                    p.as_str(),
                    hits.len()
                )));
            }
        };
        let header = repo.read_pack_header(&pack)?;
        for e in header.entries {
            match e.kind {
                BlobKind::Data => q.blobs.add_id(e.id),
                BlobKind::Tree => q.trees.add_id(e.id),
            }
        }
        found.push(pack);
    }
    Ok((found, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_by_nibble() {
        let id = Id([0xab; 32]);
        for (p, want) in [
            ("a", true),
            ("ab", true),
            ("aba", true),
            ("ABAB", true),
            ("abb", false),
            ("b", false),
        ] {
            assert_eq!(IdPrefix::parse(p).unwrap().matches(&id), want, "{p}");
        }
        let full = IdPrefix::parse(&id.to_hex()).unwrap();
        assert_eq!(full.full(), Some(id));
        assert!(IdSet::new(vec![full]).contains(&id));
        for bad in ["", "xyz", &"a".repeat(65)] {
            assert!(IdPrefix::parse(bad).is_err(), "{bad:?}");
        }
    }
}
