//! `repair snapshots`: rewriting snapshots that lost trees or data blobs, as restic's
//! `repair snapshots` does (`cmd/restic/cmd_repair_snapshots.go`, `internal/walker/rewriter.go`).
//!
//! Every selected snapshot's tree is walked (iteratively, depth first) and rebuilt bottom-up:
//! - a folder whose tree cannot be loaded (not in the index, its pack not in the `data/` listing
//!   made at the start, or unreadable) becomes an empty folder, with its own metadata;
//! - a file some of whose content blobs are missing (not in the index, or their pack is not in
//!   that listing) keeps the blobs that are there, in order, and its size becomes their sum:
//!   the missing ranges are cut out, as restic does (restic neither truncates at the first
//!   missing blob nor drops the file). A file whose blobs are all present but whose size is not
//!   their sum gets the sum (restic's "fixed incorrect size");
//! - everything else stays as it is. A subtree in which nothing changed keeps its id and is not
//!   stored again; a changed tree is stored through a [`BlobWriter`] (deduplicated), after its
//!   children. Results are remembered per tree id, so a subtree shared by several snapshots
//!   (or paths) is rewritten once.
//!
//! Once every tree is stored and indexed (the writer is finished), each changed snapshot is
//! written again with the new root and the tag `repaired` and, with `forget`, the original is
//! deleted after the new one is stored. A snapshot whose root tree cannot be loaded holds
//! nothing that could be restored; it is reported and kept, and deleted only with `forget`
//! (restic deletes it either way: a deletion cannot be undone, and the cause may be found
//! later). The caller holds the exclusive lock (a dry run writes nothing and needs none).
//!
//! The repair runs only on a complete index ([`complete_index`], the same preconditions a
//! prune has): with an index file skipped or a pack unindexed, intact blobs would count as
//! lost. Tree reads that fail are tried again before a folder is called unreadable.

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::format::VERSION;
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::lock::LockGuard;
use crate::repo::writer::{BlobWriter, WriterOptions, WriterStats};
use crate::snapshot::rewrite::{Opened, Rewrite, rewrite};
use crate::snapshot::walk::MAX_DEPTH;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Packs no index lists that are younger than this belong to a backup still uploading.
const UNINDEXED_MIN_AGE_NS: i64 = 3600 * 1_000_000_000;

/// Attempts at reading a tree before a `Corrupt` answer is believed.
const TREE_ATTEMPTS: u32 = 3;

/// The tag a repaired snapshot gets.
pub const REPAIRED_TAG: &str = "repaired";

/// Damages listed per tree (and so per snapshot), at most; the rest are only counted.
pub const MAX_LISTED: usize = 100_000;

/// What `repair snapshots` does.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairSnapshotsOptions {
    /// Print what would be done; store and delete nothing.
    pub dry_run: bool,
    /// Delete each original snapshot once its repaired version is stored.
    pub forget: bool,
    /// Threads of the blob writer.
    pub threads: usize,
}

/// What was wrong with one entry, and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageKind {
    /// A file lost content blobs: they were removed from its content list.
    MissingContent {
        /// Blobs removed.
        blobs_missing: u64,
        /// Blobs kept.
        blobs_kept: u64,
        /// Size before.
        old_size: u64,
        /// Size now (the kept blobs' bytes).
        new_size: u64,
    },
    /// A file's blobs are all there but its size was not their sum: the size was corrected.
    WrongSize {
        /// Size before.
        old_size: u64,
        /// Size now.
        new_size: u64,
    },
    /// A folder's tree cannot be loaded: the folder is now empty.
    UnreadableDir {
        /// The tree that could not be loaded (`None`: the node named none).
        tree: Option<Id>,
        /// Why.
        reason: String,
    },
}

/// One damaged entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Path in the snapshot (`/`-separated, starting with `/`; raw bytes).
    pub path: Vec<u8>,
    /// What was done.
    pub kind: DamageKind,
}

/// What happened to one selected snapshot that needed a change.
#[derive(Debug, Clone)]
pub struct RepairedSnapshot {
    /// The snapshot as it was.
    pub old: Id,
    /// Its description.
    pub snapshot: Snapshot,
    /// The repaired snapshot written (`None` in a dry run, or when the snapshot was removed).
    pub new: Option<Id>,
    /// The new root tree (`None` when the root cannot be loaded).
    pub new_tree: Option<Id>,
    /// The root tree could not be loaded (why): the snapshot is kept, or removed with `forget`.
    pub root_unreadable: Option<String>,
    /// The original was deleted (with `forget`).
    pub removed: bool,
    /// What was dropped or cut, in walk order (at most [`MAX_LISTED`]).
    pub damages: Vec<Damage>,
    /// Damages beyond those listed.
    pub more: u64,
}

/// What [`repair_snapshots`] did.
#[derive(Debug, Default)]
pub struct RepairSnapshotsOutcome {
    /// Snapshots that needed a change, in the order given.
    pub repaired: Vec<RepairedSnapshot>,
    /// Snapshots that needed none (left alone).
    pub unchanged: Vec<Id>,
    /// Snapshots that could not be repaired, and why (the others were still done).
    pub failed: Vec<(Id, Error)>,
    /// What the blob writer stored (trees).
    pub written: WriterStats,
}

/// A rewritten tree: its new id and the damages below it (paths relative to it, starting
/// with `/`).
#[derive(Debug, Clone)]
struct Rewritten {
    id: Id,
    damages: Arc<Vec<Damage>>,
    more: u64,
}

/// How a tree came out (a root, or a subtree).
enum RootResult {
    Unchanged,
    Changed(Rewritten),
    Unreadable(String),
}

/// What is gathered while a folder is rebuilt.
#[derive(Default)]
struct Folder {
    changed: bool,
    damages: Vec<Damage>,
    more: u64,
}

impl Folder {
    /// Record a damage at `name` (a child) or below it (`rel`, relative to the child).
    fn damage(&mut self, name: &[u8], rel: &[u8], kind: DamageKind) {
        self.changed = true;
        if self.damages.len() >= MAX_LISTED {
            self.more = self.more.saturating_add(1);
            return;
        }
        let mut path = Vec::with_capacity(1 + name.len() + rel.len());
        path.push(b'/');
        path.extend_from_slice(name);
        path.extend_from_slice(rel);
        self.damages.push(Damage { path, kind });
    }

    /// Take over a rewritten child folder's damages.
    fn absorb(&mut self, name: &[u8], child: &Rewritten) {
        self.changed = true;
        for d in child.damages.iter() {
            self.damage(name, &d.path, d.kind.clone());
        }
        self.more = self.more.saturating_add(child.more);
    }
}

struct Rewriter<'a> {
    repo: &'a Repository,
    writer: &'a BlobWriter,
    /// The `data/` listing made at the start.
    packs: HashSet<Id>,
    /// Blobs of young packs no index file lists, with their pack ([`complete_index`]).
    unindexed: HashMap<Id, Id>,
    /// Trees found intact (nothing below them changes).
    clean: HashSet<Id>,
    /// Trees rewritten.
    memo: HashMap<Id, Rewritten>,
    /// The empty tree, once stored.
    empty: Option<Id>,
}

impl Rewriter<'_> {
    /// Whether blob `id` of `kind` is indexed in a pack of the listing; its raw length if so.
    fn present(&self, id: &Id, kind: BlobKind) -> Result<Option<u32>> {
        let found = self
            .repo
            .index()?
            .locations(id)?
            .into_iter()
            .find(|l| l.kind == kind && self.packs.contains(&l.pack))
            .map(|l| l.raw_length);
        if found.is_none() {
            if let Some(pack) = self.unindexed.get(id) {
                return Err(Error::usage(format!(
                    "{} blob {} is in pack {}, which no index file lists yet; nothing was \
                     changed: let a running backup finish, or run `cairn repair index` first",
                    kind.name(),
                    id.short(),
                    pack.short()
                )));
            }
        }
        Ok(found)
    }

    /// Load tree `id`: `Ok(Err(reason))` when it cannot be loaded from the repository (a
    /// failure of the store or of the local disk stops the repair instead).
    fn try_load(&self, id: &Id) -> Result<std::result::Result<Tree, String>> {
        if self.present(id, BlobKind::Tree)?.is_none() {
            return Ok(Err(match self.repo.index()?.blob(id)? {
                None => "not in the index".to_string(),
                Some(l) => format!("its pack {} is missing", l.pack.short()),
            }));
        }
        // A flaky answer is not damage: a read that fails is tried again before the tree is
        // called unreadable. Its pack is in the listing made at the start (under the
        // exclusive lock), so a tree still "not found" means the store is not answering
        // consistently: the repair stops rather than empty a folder.
        let mut attempt = 1;
        loop {
            match self.repo.load_tree(id) {
                Ok(t) => return Ok(Ok(t)),
                Err(e)
                    if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt)
                        && attempt < TREE_ATTEMPTS =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(200 << attempt));
                    attempt += 1;
                }
                Err(e) if e.kind() == ErrorKind::Corrupt => return Ok(Err(e.to_string())),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(Error::backend(format!(
                        "{e}, although its pack is in the repository's listing; nothing was \
                         changed for this tree: try again when the store answers consistently"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn empty_tree(&mut self) -> Result<Id> {
        if let Some(id) = self.empty {
            return Ok(id);
        }
        let id = self.store(&Tree {
            version: VERSION,
            nodes: Vec::new(),
        })?;
        self.empty = Some(id);
        Ok(id)
    }

    fn store(&self, tree: &Tree) -> Result<Id> {
        let bytes = bytes::Bytes::from(tree.encode()?);
        Ok(self.writer.add(BlobKind::Tree, bytes)?.0)
    }

    /// A file's content checked against the index and the listing; the node is fixed in place.
    fn fix_file(&self, node: &mut Node) -> Result<Option<DamageKind>> {
        let mut kept = Vec::with_capacity(node.content.len());
        let mut size = 0u64;
        let mut missing = 0u64;
        for b in &node.content {
            match self.present(b, BlobKind::Data)? {
                Some(len) => {
                    kept.push(*b);
                    size += u64::from(len);
                }
                None => missing += 1,
            }
        }
        let old_size = node.size;
        let kind = if missing > 0 {
            DamageKind::MissingContent {
                blobs_missing: missing,
                blobs_kept: kept.len() as u64,
                old_size,
                new_size: size,
            }
        } else if size != old_size {
            DamageKind::WrongSize {
                old_size,
                new_size: size,
            }
        } else {
            return Ok(None);
        };
        node.content = kept;
        node.size = size;
        Ok(Some(kind))
    }

    /// The folder `node` now empty: its tree cannot be loaded (why).
    fn unreadable(&mut self, folder: &mut Folder, node: &mut Node, reason: String) -> Result<()> {
        let empty = self.empty_tree()?;
        folder.damage(
            &node.name,
            b"",
            DamageKind::UnreadableDir {
                tree: node.subtree,
                reason,
            },
        );
        node.subtree = Some(empty);
        Ok(())
    }
}

/// The tree walk is the one bottom-up rewrite ([`rewrite`], see the module docs): what is done
/// per tree and node is here.
impl Rewrite for Rewriter<'_> {
    type Done = RootResult;
    type Folder = Folder;

    fn known(&mut self, id: &Id) -> Option<RootResult> {
        if self.clean.contains(id) {
            return Some(RootResult::Unchanged);
        }
        self.memo.get(id).map(|r| RootResult::Changed(r.clone()))
    }

    fn load(&mut self, id: &Id) -> Result<Opened<RootResult>> {
        Ok(match self.try_load(id)? {
            Ok(t) => Opened::Tree(t),
            Err(why) => Opened::Done(RootResult::Unreadable(why)),
        })
    }

    fn enter(&mut self, _id: &Id, _tree: &Tree) -> Result<Folder> {
        Ok(Folder::default())
    }

    fn node(&mut self, folder: &mut Folder, node: &mut Node) -> Result<Option<Id>> {
        match node.kind {
            NodeKind::File => {
                if let Some(kind) = self.fix_file(node)? {
                    folder.damage(&node.name, b"", kind);
                }
                Ok(None)
            }
            NodeKind::Dir => match node.subtree {
                None => {
                    self.unreadable(folder, node, "the folder names no tree".to_string())?;
                    Ok(None)
                }
                Some(sub) => Ok(Some(sub)),
            },
            _ => Ok(None),
        }
    }

    fn attach(&mut self, folder: &mut Folder, node: &mut Node, done: RootResult) -> Result<()> {
        match done {
            RootResult::Unchanged => Ok(()),
            RootResult::Changed(r) => {
                folder.absorb(&node.name, &r);
                node.subtree = Some(r.id);
                Ok(())
            }
            RootResult::Unreadable(reason) => self.unreadable(folder, node, reason),
        }
    }

    fn leave(&mut self, old: &Id, f: Folder, tree: Tree) -> Result<RootResult> {
        if !f.changed {
            self.clean.insert(*old);
            return Ok(RootResult::Unchanged);
        }
        let id = self.store(&Tree {
            version: VERSION,
            nodes: tree.nodes,
        })?;
        let r = Rewritten {
            id,
            damages: Arc::new(f.damages),
            more: f.more,
        };
        self.memo.insert(*old, r.clone());
        Ok(RootResult::Changed(r))
    }

    fn too_deep(&self, root: &Id, _deep: &Id) -> Error {
        Error::corrupt(format!(
            "tree {} is nested deeper than {MAX_DEPTH} folders",
            root.short()
        ))
    }
}

/// Merge the index and make sure it is complete, so that what it lacks is really lost: no
/// index file skipped (damaged, or gone between listing and reading), no pack in `data/` that
/// no index file lists, no indexed pack missing from `data/`. Otherwise blobs that are intact
/// would count as lost, and the repair would cut them out of the snapshots for good. Returns
/// the packs of the `data/` listing, and the blobs of young unindexed packs (those of a backup
/// still uploading, or of an index file the store does not list yet) with their pack: a
/// snapshot that needs one of those stops the repair when the walk reaches it. The caller holds the exclusive lock (or makes a dry run),
/// so no backup is adding packs meanwhile.
fn complete_index(repo: &Repository) -> Result<(HashSet<Id>, HashMap<Id, Id>)> {
    let synced = repo.refresh_index()?;
    let first_step =
        "nothing was changed: run `cairn repair index` first, then `cairn repair snapshots`";
    if let Some(bad) = synced.skipped.first() {
        return Err(Error::corrupt(format!(
            "index file {} cannot be read ({} of {} skipped), so the index is incomplete; {first_step}",
            bad.short(),
            synced.skipped.len(),
            synced.listed.len()
        )));
    }
    let listing = repo.list_meta(FileType::Pack)?;
    let packs: HashSet<Id> = listing.iter().map(|(id, _, _)| *id).collect();
    let mut indexed = HashSet::new();
    // New trees are deduplicated against the index: an index that still lists lost packs would
    // make them depend on what is gone (and the writer's final check refuse the snapshots).
    let mut lost = Vec::new();
    repo.index()?.for_each_pack(|p| {
        if !packs.contains(&p.id) {
            lost.push(p.id);
        }
        indexed.insert(p.id);
        Ok(())
    })?;
    if let Some(first) = lost.first() {
        return Err(Error::usage(format!(
            "the index lists {} packs that are not in the repository (pack {}, …); {first_step}",
            lost.len(),
            first.short()
        )));
    }
    // A pack no index file lists matters only if `repair index` could index it: one whose
    // header opens. Young ones belong to a backup still uploading (backups take no lock; a
    // backup writes its index before its snapshot, so no snapshot needs them yet), and one
    // whose header cannot be read is what `repair index` already left out: neither could add
    // a blob, so neither stops the repair (else it could never run after such a loss).
    let now = crate::repo::keys::now_ns();
    let mut unindexed = Vec::new();
    let mut young = HashMap::new();
    for (id, size, modified) in &listing {
        if indexed.contains(id) {
            continue;
        }
        match repo.read_pack_header_sized(id, *size) {
            Ok(h) if now.saturating_sub(*modified) < UNINDEXED_MIN_AGE_NS => {
                young.extend(h.entries.iter().map(|e| (e.id, *id)));
            }
            Ok(_) => unindexed.push(id),
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(first) = unindexed.first() {
        return Err(Error::usage(format!(
            "{} packs in the repository are in no index file (pack {}, …): the blobs they hold \
             would count as lost; {first_step}",
            unindexed.len(),
            first.short()
        )));
    }
    Ok((packs, young))
}

/// Repair `snapshots` (see the module docs). `lock` is the exclusive lock, required unless
/// `opts.dry_run`. A failure of the store stops everything; a snapshot that cannot be
/// repaired otherwise (a tree nested too deep) is listed in `failed` and the others are done.
pub fn repair_snapshots(
    repo: &Arc<Repository>,
    snapshots: Vec<(Id, Snapshot)>,
    opts: &RepairSnapshotsOptions,
    lock: Option<&LockGuard>,
) -> Result<RepairSnapshotsOutcome> {
    if !opts.dry_run && lock.is_none() {
        return Err(Error::usage(
            "internal error: repair snapshots needs the exclusive lock",
        ));
    }
    let (packs, unindexed) = complete_index(repo)?;
    let writer = BlobWriter::new(
        repo.clone(),
        WriterOptions {
            threads: opts.threads.max(1),
            dry_run: opts.dry_run,
        },
    )?;
    let mut out = RepairSnapshotsOutcome::default();
    let walked = (|| -> Result<()> {
        let mut rw = Rewriter {
            repo,
            writer: &writer,
            packs,
            unindexed,
            clean: HashSet::new(),
            memo: HashMap::new(),
            empty: None,
        };
        for (id, snap) in snapshots {
            match rewrite(&mut rw, &snap.tree) {
                Ok(RootResult::Unchanged) => out.unchanged.push(id),
                Ok(RootResult::Changed(r)) => out.repaired.push(RepairedSnapshot {
                    old: id,
                    snapshot: snap,
                    new: None,
                    new_tree: Some(r.id),
                    root_unreadable: None,
                    removed: false,
                    damages: r.damages.to_vec(),
                    more: r.more,
                }),
                Ok(RootResult::Unreadable(why)) => out.repaired.push(RepairedSnapshot {
                    old: id,
                    snapshot: snap,
                    new: None,
                    new_tree: None,
                    root_unreadable: Some(why),
                    removed: false,
                    damages: Vec::new(),
                    more: 0,
                }),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Backend | ErrorKind::Io | ErrorKind::Usage
                    ) =>
                {
                    return Err(e);
                }
                Err(e) => out.failed.push((id, e)),
            }
        }
        Ok(())
    })();
    // Whatever happened, what was stored gets indexed.
    let finished = writer.finish();
    walked?;
    out.written = finished?;
    if opts.dry_run {
        return Ok(out);
    }
    let Some(lock) = lock else {
        return Ok(out);
    };
    for r in &mut out.repaired {
        lock.check()?;
        let Some(tree) = r.new_tree else {
            // Nothing of it can be read; still, deleting it cannot be undone and the cause
            // may yet be found (a pack restored from elsewhere): only `--forget` removes it.
            if opts.forget {
                repo.delete_snapshot(&r.old)?;
                r.removed = true;
            }
            continue;
        };
        let mut s = r.snapshot.clone();
        s.tree = tree;
        if !s.tags.iter().any(|t| t == REPAIRED_TAG) {
            s.tags.push(REPAIRED_TAG.to_string());
        }
        let new = repo.save_snapshot(&s)?;
        r.new = Some(new);
        if opts.forget && new != r.old {
            lock.check()?;
            repo.delete_snapshot(&r.old)?;
            r.removed = true;
        }
    }
    Ok(out)
}
