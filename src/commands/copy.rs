//! `copy`: replicate snapshots into another repository (the 3-2-1 rule), between any two
//! stores, uploading only the blobs the destination lacks and skipping snapshots it already
//! holds. The destination seals everything under its own keys.
//!
//! Blob ids are keyed per repository (design.md §2), so there are two ways:
//! - **Same ids** (the destination was made with `init --copy-chunker-params --from-repo SRC`,
//!   so it shares the source's id key, chunker key and chunker parameters): trees are copied as
//!   they are; each missing blob is opened with the source's key, verified (decompressed and
//!   hashed: its content must match its id), and its compressed form sealed with the
//!   destination's key, never re-compressed or re-chunked. Copies deduplicate against the
//!   destination's own backups, since the same files cut into the same chunks.
//! - **Re-hashed** (any two repositories): every data blob of a copied snapshot is read,
//!   decompressed and hashed under the destination's id key, and every tree is rewritten with
//!   the new ids. Chunk boundaries stay the source's, so copies share little with the
//!   destination's own backups. [`CopyReport::rehashed`] says which way was taken.
//!
//! Order, as everywhere: snapshots are written only after the blobs' packs and index files are
//! stored (one writer for the run, finished first); a copy interrupted at any point leaves only
//! complete packs and index files, which the next copy reuses.
//!
//! Verification with shared ids: decryption alone authenticates a blob under its id, but any
//! holder of a source key can seal wrong content under the id of a common chunk. The
//! destination deduplicates its own later backups against what a copy stored, so such a blob
//! would make it never store the real chunk. Every blob is therefore decompressed and hashed
//! before it is sealed for the destination (the check [`Repository::open_blob`] makes); one
//! that fails stops the copy before any snapshot is written, as in the re-hashed mode
//! (docs/design.md §"copy", docs/performance.md for the cost).
//!
//! Limits: with different ids the "same backup" rule cannot compare trees (they were rewritten), so two
//! backups with the same time, host, user, paths, tags and kind count as one.

use crate::error::Result;
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, Tree};
use crate::id::Id;
use crate::index::BlobLocation;
use crate::repo::Repository;
use crate::repo::writer::{BlobWriter, WriterOptions};
use crate::snapshot::rewrite::{Opened, Rewrite, rewrite};
#[cfg(doc)]
use crate::snapshot::walk::MAX_DEPTH;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a copy did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyReport {
    /// Whether blobs were re-hashed and trees rewritten (the repositories do not share ids).
    pub rehashed: bool,
    /// Source snapshot id → the new snapshot in the destination.
    pub copied: Vec<(Id, Id)>,
    /// Source snapshots the destination already held (source id, destination id).
    pub skipped: Vec<(Id, Id)>,
    /// Blobs uploaded.
    pub blobs: u64,
    /// Bytes of blobs uploaded, as stored (compressed, sealed).
    pub bytes_stored: u64,
    /// Packs written.
    pub packs: u64,
}

/// Progress and notices, for the CLI.
pub trait CopyObserver: Sync {
    /// A snapshot is about to be copied (`n` of `total`).
    fn snapshot(&self, _src: &Id, _n: usize, _total: usize) {}
}

impl CopyObserver for () {}

/// Whether two snapshots are the same backup (restic's rule: everything but the parent must
/// match; the tree only when the repositories share ids, since otherwise it was rewritten).
fn same_backup(a: &Snapshot, b: &Snapshot, compare_tree: bool) -> bool {
    let sorted = |s: &Snapshot| {
        let mut t = s.tags.clone();
        t.sort();
        let mut p = s.paths.clone();
        p.sort();
        (t, p)
    };
    a.time_ns == b.time_ns
        && a.host == b.host
        && a.user == b.user
        && sorted(a) == sorted(b)
        && a.kind == b.kind
        && (!compare_tree || a.tree == b.tree)
}

/// Copy `snapshots` (from `src`) into `dst`, oldest first. Snapshots `dst` already holds are
/// skipped.
pub fn copy(
    src: &Arc<Repository>,
    dst: &Arc<Repository>,
    mut snapshots: Vec<(Id, Snapshot)>,
    threads: usize,
    observer: &dyn CopyObserver,
) -> Result<CopyReport> {
    let same_ids = src.shares_ids_with(dst);
    let mut report = CopyReport {
        rehashed: !same_ids,
        ..Default::default()
    };
    snapshots.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
    let existing = dst.snapshots()?;
    // Source id → destination id, for snapshots held or copied (parents are mapped through it).
    let mut mapped: HashMap<Id, Id> = HashMap::new();
    let mut todo = Vec::new();
    for (id, s) in snapshots {
        match existing.iter().find(|(_, d)| same_backup(&s, d, same_ids)) {
            Some((did, _)) => {
                mapped.insert(id, *did);
                report.skipped.push((id, *did));
            }
            None => todo.push((id, s)),
        }
    }
    if todo.is_empty() {
        return Ok(report);
    }
    // The source's index, merged before the writer starts (its warnings come first).
    src.index()?;
    // One writer for the whole run: everything every copied snapshot needs goes through it
    // (its deduplication records the packs relied on), and its `finish` (packs, index files,
    // rollback rule 3, one listing of `data/`) comes before any snapshot is saved. A copy
    // interrupted before then saves no snapshot; the next one finds the stored blobs.
    let writer = BlobWriter::new(
        Arc::clone(dst),
        WriterOptions {
            threads: threads.max(1),
            dry_run: false,
        },
    )?;
    let mut visited: HashSet<Id> = HashSet::new();
    let mut rewriter = Rewriter {
        src,
        writer: &writer,
        trees: HashMap::new(),
        data: HashMap::new(),
    };
    let total = todo.len();
    let mut trees = Vec::with_capacity(total);
    for (n, (sid, snap)) in todo.iter().enumerate() {
        observer.snapshot(sid, n + 1, total);
        let tree = if same_ids {
            copy_same_ids(src, &writer, &snap.tree, &mut visited, threads)?;
            snap.tree
        } else {
            rewrite(&mut rewriter, &snap.tree)?
        };
        trees.push(tree);
    }
    let stats = writer.finish()?;
    report.blobs = stats.blobs;
    report.bytes_stored = stats.bytes_stored;
    report.packs = stats.packs;
    for ((sid, snap), tree) in todo.into_iter().zip(trees) {
        let mut copy = snap.clone();
        copy.tree = tree;
        copy.parent = snap.parent.and_then(|p| mapped.get(&p).copied());
        let did = dst.save_snapshot(&copy)?;
        mapped.insert(sid, did);
        report.copied.push((sid, did));
    }
    Ok(report)
}

/// Same ids: walk the snapshot's trees (each once per copy run), collect the blobs the
/// destination lacks, and move them pack by pack, re-sealed.
fn copy_same_ids(
    src: &Arc<Repository>,
    writer: &BlobWriter,
    root: &Id,
    visited: &mut HashSet<Id>,
    threads: usize,
) -> Result<()> {
    let mut missing: HashSet<Id> = HashSet::new();
    let mut stack = vec![*root];
    while let Some(t) = stack.pop() {
        if !visited.insert(t) {
            continue;
        }
        if !writer.has(&t)? {
            missing.insert(t);
        }
        let tree = src.load_tree(&t)?;
        for node in &tree.nodes {
            if let Some(sub) = node.subtree {
                stack.push(sub);
            }
            for c in &node.content {
                if !missing.contains(c) && !writer.has(c)? {
                    missing.insert(*c);
                }
            }
        }
    }
    // Read the source packs side by side.
    let packs = by_pack(src, missing)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.clamp(1, 8))
        .build()
        .map_err(|e| crate::Error::new(crate::ErrorKind::Internal, format!("thread pool: {e}")))?;
    pool.install(|| {
        use rayon::prelude::*;
        packs.par_iter().try_for_each(|(pack, items)| {
            src.read_pack_blobs(
                pack,
                items,
                |(_, l)| l,
                |(id, l), sealed| {
                    let sealed = sealed?;
                    let what = format!("blob {} in pack {}", id.short(), pack.short());
                    let plain = src.sealer().open(id.as_bytes(), sealed, &what)?;
                    verify_plain(src, id, l, &plain, &what)?;
                    let resealed = writer.repo().sealer().seal(id.as_bytes(), &plain)?;
                    writer.add_sealed(l.kind, *id, resealed, l.raw_length)?;
                    Ok(())
                },
            )
        })
    })
}

/// Check that a blob's opened (still compressed) bytes decode to `raw_length` bytes whose
/// keyed id is `id`: a blob sealed with the right key but the wrong content is refused
/// (`Corrupt`), as [`Repository::open_blob`] refuses it on every read.
fn verify_plain(
    src: &Repository,
    id: &Id,
    l: &BlobLocation,
    plain: &[u8],
    what: &str,
) -> Result<()> {
    let raw = crate::format::blob::decode(plain, l.raw_length as usize, &what)?;
    if src.blob_id(&raw) != *id {
        return Err(crate::Error::corrupt(format!(
            "{what} is corrupt: content does not match its id; no snapshot was copied (run \
             `cairn check --read-data` on the source)"
        )));
    }
    Ok(())
}

/// Blobs of one pack with their locations.
type PackItems = (Id, Vec<(Id, BlobLocation)>);

/// The source locations of `ids`, grouped by pack (packs in id order, each pack's blobs in
/// offset order, as the pack reader wants them).
fn by_pack(src: &Repository, ids: impl IntoIterator<Item = Id>) -> Result<Vec<PackItems>> {
    let mut groups: HashMap<Id, Vec<(Id, BlobLocation)>> = HashMap::new();
    for id in ids {
        let loc = src.index()?.locate(&id)?;
        groups.entry(loc.pack).or_default().push((id, loc));
    }
    let mut packs: Vec<PackItems> = groups.into_iter().collect();
    for (_, items) in &mut packs {
        items.sort_by_key(|(_, l)| l.offset);
    }
    packs.sort_by_key(|(p, _)| *p);
    Ok(packs)
}

/// Re-hashed copies: source ids → destination ids, for trees and data blobs, kept for the
/// whole copy run so shared subtrees and blobs are rewritten once. Trees are rewritten by the
/// one bottom-up rewrite ([`rewrite`]), which refuses trees deeper than [`MAX_DEPTH`] as every
/// walk does.
struct Rewriter<'a> {
    src: &'a Arc<Repository>,
    writer: &'a BlobWriter,
    trees: HashMap<Id, Id>,
    data: HashMap<Id, Id>,
}

impl Rewrite for Rewriter<'_> {
    type Done = Id;
    type Folder = ();

    fn known(&mut self, id: &Id) -> Option<Id> {
        self.trees.get(id).copied()
    }

    fn load(&mut self, id: &Id) -> Result<Opened<Id>> {
        Ok(Opened::Tree(self.src.load_tree(id)?))
    }

    /// This folder's contents first, read pack by pack (any node's content: a corrupt tree
    /// that gives a folder content is copied as it is, not refused here).
    fn enter(&mut self, _id: &Id, tree: &Tree) -> Result<()> {
        let wanted: Vec<Id> = tree
            .nodes
            .iter()
            .flat_map(|n| n.content.iter().copied())
            .filter(|c| !self.data.contains_key(c))
            .collect::<HashSet<Id>>()
            .into_iter()
            .collect();
        self.copy_data(wanted)
    }

    fn node(&mut self, _folder: &mut (), node: &mut Node) -> Result<Option<Id>> {
        for c in &mut node.content {
            *c = *self.data.get(c).ok_or_else(|| {
                crate::Error::new(crate::ErrorKind::Internal, "a content blob was not copied")
            })?;
        }
        Ok(node.subtree)
    }

    fn attach(&mut self, _folder: &mut (), node: &mut Node, new: Id) -> Result<()> {
        node.subtree = Some(new);
        Ok(())
    }

    fn leave(&mut self, id: &Id, _folder: (), tree: Tree) -> Result<Id> {
        let bytes = tree.encode()?;
        let new = self.writer.repo().blob_id(&bytes);
        self.writer
            .add_with_id(BlobKind::Tree, new, Bytes::from(bytes))?;
        self.trees.insert(*id, new);
        Ok(new)
    }
}

impl Rewriter<'_> {
    /// Read `ids` from the source (verified: decrypted, decompressed, hashed), hash them under
    /// the destination's key and add them to its writer (which deduplicates and compresses).
    fn copy_data(&mut self, ids: Vec<Id>) -> Result<()> {
        let (src, writer) = (self.src, self.writer);
        for (pack, items) in by_pack(src, ids)? {
            src.read_pack_blobs(
                &pack,
                &items,
                |(_, l)| l,
                |(id, l), sealed| {
                    let raw = src.open_blob(id, l, sealed?)?;
                    let (new, _) = writer.add(BlobKind::Data, Bytes::from(raw))?;
                    self.data.insert(*id, new);
                    Ok(())
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_backup_ignores_parent_and_tag_order() {
        let t = Id([1; 32]);
        let a = Snapshot::for_test(5, "h", &["/a", "/b"], &["x", "y"], t);
        let mut b = Snapshot::for_test(5, "h", &["/b", "/a"], &["y", "x"], t);
        b.parent = Some(Id([9; 32]));
        assert!(same_backup(&a, &b, true));
        b.tree = Id([2; 32]);
        assert!(!same_backup(&a, &b, true));
        assert!(same_backup(&a, &b, false));
        let c = Snapshot::for_test(6, "h", &["/a", "/b"], &["x", "y"], t);
        assert!(!same_backup(&a, &c, false));
        let d = Snapshot::for_test(5, "h", &["/a", "/b"], &["x"], t);
        assert!(!same_backup(&a, &d, false));
    }
}
