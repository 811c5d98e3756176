//! Planning a prune: what every pack becomes, from what the remaining snapshots reach.
//!
//! Two-phase deletion (design.md §10, brief §8): a pack with nothing reachable is first
//! *marked* (a new index file lists it with `marked_ns`); a later prune deletes it once it has
//! been marked for the grace period and is still unused. A backup running meanwhile never
//! deduplicates against a marked pack (it stores the blob again), and one that already did
//! makes the pack used again, so the next prune un-marks ("recovers") it.

use super::clock::{Clocks, MarkAge};
use crate::cache::BlobSet;
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::id::Id;
use crate::index::PackInfo;
use crate::repo::Repository;
use crate::repo::index_files::SyncOutcome;
use crate::snapshot::reach::{self, ReachStats, StopOnError};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// How much unused space may stay in partly used packs (`--max-unused`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// A share of the repository's size after prune, in percent (restic's default: 5%).
    Percent(f64),
    /// An absolute number of bytes.
    Bytes(u64),
    /// Repack only what must go (no limit).
    Unlimited,
}

impl std::str::FromStr for MaxUnused {
    type Err = Error;
    fn from_str(s: &str) -> Result<MaxUnused> {
        let t = s.trim();
        if t == "unlimited" {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| Error::usage(format!("--max-unused {s:?}: not a percentage")))?;
            if !(0.0..100.0).contains(&v) {
                return Err(Error::usage(format!(
                    "--max-unused {s:?}: a percentage must be at least 0 and below 100"
                )));
            }
            return Ok(MaxUnused::Percent(v));
        }
        Ok(MaxUnused::Bytes(parse_size(t).map_err(|e| {
            Error::usage(format!("--max-unused {s:?}: {e}"))
        })?))
    }
}

/// Parse a size: a number with an optional suffix k, m, g, t (powers of 1024, either case,
/// optionally followed by `b`/`ib`).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a size (use for example 500M or 2G): {s:?}"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("not a size: {s:?}"));
    }
    Ok((v * mult as f64) as u64)
}

/// Options of a prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Unused space tolerated in partly used packs.
    pub max_unused: MaxUnused,
    /// Repack at most this many bytes (of packs read).
    pub max_repack_bytes: Option<u64>,
    /// Also repack small data packs (below 80% of the target pack size) together.
    pub repack_small: bool,
    /// Grace period between marking a pack and deleting it.
    pub delete_after: Duration,
    /// Delete unused and repacked packs at once instead of marking them. Only safe when no
    /// backup runs at the same time.
    pub instant_delete: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: MaxUnused::Percent(5.0),
            max_repack_bytes: None,
            repack_small: false,
            delete_after: Duration::from_secs(24 * 3600),
            instant_delete: false,
        }
    }
}

/// What happens to a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackAction {
    /// Stays as it is.
    Keep,
    /// Nothing in it is used: marked for deletion now.
    Mark,
    /// Marked earlier, still unused, grace period not over: stays marked.
    KeepMarked,
    /// Marked earlier but used again (a backup that ran meanwhile): un-marked.
    Recover,
    /// Partly used: its used blobs are copied into new packs, then it is marked (or deleted
    /// with `--instant-delete`).
    Repack,
    /// Marked for longer than the grace period and still unused (or unused with
    /// `--instant-delete`): deleted.
    Delete,
}

/// One pack in the plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackPlan {
    /// The pack.
    pub id: Id,
    /// Its size.
    pub size: u64,
    /// Kind of its blobs.
    #[serde(serialize_with = "kind_name")]
    pub kind: BlobKind,
    /// When it was marked, if it is. For a mark dated in the future (beyond the clock skew
    /// allowed) that the prune keeps, the time it is dated again to: the plan's, by the store.
    pub marked_ns: Option<i64>,
    /// Blobs used from this pack.
    pub used_blobs: u64,
    /// Their sealed bytes.
    pub used_bytes: u64,
    /// Blobs not used (or used from another copy).
    pub unused_blobs: u64,
    /// Their sealed bytes.
    pub unused_bytes: u64,
    /// The decision.
    pub action: PackAction,
}

fn kind_name<S: serde::Serializer>(k: &BlobKind, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(k.name())
}

/// A pack in the store that no index file lists.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unindexed {
    /// The pack.
    pub id: Id,
    /// Its size.
    pub size: u64,
    /// Whether it is older than the grace period (deleted) or not (left: a backup may still
    /// be writing its index).
    pub delete: bool,
}

/// Counts and bytes of one class of packs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Packs.
    pub packs: u64,
    /// Their total size.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, size: u64) {
        self.packs += 1;
        self.bytes += size;
    }
}

/// Figures of a plan.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PlanStats {
    /// Snapshots whose trees were walked.
    pub snapshots: u64,
    /// What the walk saw.
    pub reach: ReachStats,
    /// Packs the index lists, and their size.
    pub total: Tally,
    /// Sealed bytes of used blobs.
    pub used_bytes: u64,
    /// Sealed bytes of unused blobs (and duplicates).
    pub unused_bytes: u64,
    /// Packs kept as they are.
    pub keep: Tally,
    /// Packs marked now.
    pub mark: Tally,
    /// Packs that stay marked.
    pub keep_marked: Tally,
    /// Packs un-marked.
    pub recover: Tally,
    /// Packs repacked.
    pub repack: Tally,
    /// Used bytes the repack copies.
    pub repack_copy_bytes: u64,
    /// Packs deleted.
    pub delete: Tally,
    /// Packs in the store no index lists: deleted (old) and left (recent).
    pub unindexed_delete: Tally,
    /// Recent unindexed packs left alone.
    pub unindexed_keep: Tally,
    /// Unused bytes left in kept packs after the prune.
    pub unused_after: u64,
    /// Superseded index files still in the store (an interrupted prune): deleted.
    pub stale_index_files: u64,
    /// Archived WAL files no kept PostgreSQL base backup needs: deleted (`packs` counts files).
    pub wal_delete: Tally,
    /// Marked packs whose mark is dated in the future (a marking host whose clock was
    /// ahead): treated as just marked, and marked again with the plan's time.
    pub future_marks: Tally,
    /// Packs past their grace period (marked, or unindexed) that are not deleted because the
    /// local and the store's clock disagree; [`Self::held_reason`] says by how much.
    pub held: Tally,
    /// Why nothing is deleted by age (the clocks disagree by more than
    /// [`super::clock::MAX_CLOCK_SKEW`]); one line.
    pub held_reason: Option<String>,
}

/// A prune's plan: the decision for every pack, and what the walk reached.
pub struct PrunePlan {
    /// Packs the index lists, with their decisions.
    pub packs: Vec<PackPlan>,
    /// Packs in the store no index lists.
    pub unindexed: Vec<Unindexed>,
    /// The index files merged when planning: the new index supersedes them all.
    pub index_files: Vec<Id>,
    /// Archived WAL files to delete ([`crate::pg::catalog::wal_to_drop`]).
    pub wal: Vec<crate::repo::wal::WalObject>,
    /// Figures.
    pub stats: PlanStats,
    /// Every tree and data blob the remaining snapshots reach.
    pub used: BlobSet,
    /// The time the plan was made (local clock).
    pub now_ns: i64,
    /// The clocks the ages were judged by.
    pub clocks: Clocks,
    /// The options it was made with.
    pub options: PruneOptions,
}

impl std::fmt::Debug for PrunePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrunePlan")
            .field("stats", &self.stats)
            .finish()
    }
}

impl PrunePlan {
    /// Whether executing the plan would change anything.
    pub fn is_empty(&self) -> bool {
        let s = &self.stats;
        s.mark.packs
            + s.recover.packs
            + s.repack.packs
            + s.delete.packs
            + s.unindexed_delete.packs
            + s.stale_index_files
            + s.future_marks.packs
            + s.wal_delete.packs
            == 0
    }
}

/// Unindexed packs younger than this are never deleted, whatever `--delete-after` says.
const UNINDEXED_MIN_AGE_NS: i64 = 3600 * 1_000_000_000;

/// Per-pack counters while classifying.
struct Acc {
    info: PackInfo,
    kind: BlobKind,
    used_blobs: u64,
    used_bytes: u64,
    unused_blobs: u64,
    unused_bytes: u64,
}

/// The snapshots a prune keeps everything of: list them before merging the index (see
/// [`plan`]).
pub fn list_snapshots(repo: &Repository) -> Result<Vec<Id>> {
    Ok(repo
        .list(crate::backend::FileType::Snapshot)?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// Plan a prune of `repo` from the index as merged by `synced` (the outcome of the
/// [`Repository::refresh_index`] made after taking the lock). Ages of marks and of unindexed
/// packs are judged by `clocks` ([`Clocks::measure`] with the prune's lock; a dry run has only
/// the local clock). `scratch` is a private folder for the on-disk set.
pub fn plan(
    repo: &Repository,
    snapshots: &[Id],
    synced: &SyncOutcome,
    opts: &PruneOptions,
    clocks: &Clocks,
    scratch: &Path,
) -> Result<PrunePlan> {
    let now = clocks.local_ns;
    // Clocks that disagree: nothing goes by age (marking, recovering and `--instant-delete`
    // of unused indexed packs do not depend on a clock).
    let held_reason = clocks.skew_refusal();
    let cache = repo.index()?;
    // A listed index file the merge could not read: its packs would look unindexed, so
    // nothing is changed until it is repaired.
    if let Some(bad) = synced.skipped.first() {
        return Err(Error::corrupt(format!(
            "index file {} cannot be read; nothing was changed: run `cairn repair index` first",
            bad.short()
        )));
    }
    // The index files the new index replaces: every merged one, and every listed one a merged
    // file superseded (left behind by an interrupted prune: deleting it now keeps it from
    // coming back). Files written after the merge (a backup running meanwhile) are not
    // touched: their packs are not in this plan.
    let known: std::collections::HashSet<Id> = cache.index_files()?.into_iter().collect();
    let mut index_files: Vec<Id> = known.iter().copied().collect();
    index_files.sort();
    let mut stale_index_files = 0u64;
    for id in &synced.listed {
        if !known.contains(id) && cache.is_superseded(id)? {
            stale_index_files += 1;
            index_files.push(*id);
        }
    }

    // 1. Everything the snapshots reach. A snapshot that cannot be read stops the prune: its
    //    blobs would otherwise look unused.
    //    The snapshots are those listed *before* the index was merged: a snapshot is written
    //    after its index files, so every tree and blob of a listed one is in the merged index.
    //    One written after the listing (a backup finishing meanwhile) is protected as any
    //    concurrent backup is: packs are only marked, never deleted, within the grace period,
    //    and rule 3 makes its backup refuse if one went.
    let listed = snapshots;
    let mut roots = Vec::with_capacity(listed.len());
    for id in listed {
        let s = repo.load_snapshot(id).map_err(|e| {
            Error::new(
                e.kind(),
                format!("{e}; nothing was changed: a prune needs every snapshot readable (`cairn check`, `cairn forget` it)"),
            )
        })?;
        roots.push(s.tree);
    }
    let mut used = BlobSet::new(scratch)?;
    let reach = reach::walk(repo, roots, &mut used, &mut StopOnError)?;

    // 2. Every pack, and for every location whether it is the copy kept. Locations come in
    //    blob order, as does the used set: a merge, no random lookups.
    let mut packs: HashMap<Id, Acc> = HashMap::new();
    cache.for_each_pack(|info| {
        packs.insert(
            info.id,
            Acc {
                info,
                kind: BlobKind::Data,
                used_blobs: 0,
                used_bytes: 0,
                unused_blobs: 0,
                unused_bytes: 0,
            },
        );
        Ok(())
    })?;
    let mut used_iter = used.iter().peekable();
    let mut missing: Vec<Id> = Vec::new();
    let mut group: Vec<crate::index::BlobLocation> = Vec::new();
    let mut group_id: Option<Id> = None;
    let mut settle = |blob: &Id,
                      group: &mut Vec<crate::index::BlobLocation>,
                      used_iter: &mut std::iter::Peekable<_>,
                      missing: &mut Vec<Id>|
     -> Result<()> {
        // Advance the used set to `blob`; ids passed over are used but have no location.
        let mut is_used = false;
        loop {
            let next: Option<&Result<Id>> = used_iter.peek();
            match next {
                Some(Ok(u)) if u < blob => {
                    missing.push(*u);
                    used_iter.next();
                }
                Some(Ok(u)) if u == blob => {
                    is_used = true;
                    used_iter.next();
                    break;
                }
                Some(Err(_)) => {
                    if let Some(Err(e)) = used_iter.next() {
                        return Err(e);
                    }
                }
                _ => break,
            }
        }
        // The copy kept: the same choice the index makes (unmarked first, then lowest pack).
        let marked = |p: &Id| {
            packs
                .get(p)
                .is_some_and(|a: &Acc| a.info.marked_ns.is_some())
        };
        let keep = if is_used {
            group
                .iter()
                .map(|l| (marked(&l.pack), l.pack))
                .min()
                .map(|(_, p)| p)
        } else {
            None
        };
        for l in group.drain(..) {
            if let Some(a) = packs.get_mut(&l.pack) {
                a.kind = l.kind;
                if keep == Some(l.pack) {
                    a.used_blobs += 1;
                    a.used_bytes += u64::from(l.length);
                } else {
                    a.unused_blobs += 1;
                    a.unused_bytes += u64::from(l.length);
                }
            }
        }
        Ok(())
    };
    cache.for_each_location(|blob, loc| {
        if group_id.as_ref() != Some(blob) {
            if let Some(g) = group_id {
                settle(&g, &mut group, &mut used_iter, &mut missing)?;
            }
            group_id = Some(*blob);
        }
        group.push(loc);
        Ok(())
    })?;
    if let Some(g) = group_id {
        settle(&g, &mut group, &mut used_iter, &mut missing)?;
    }
    for rest in used_iter {
        missing.push(rest?);
    }
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().take(5).map(Id::short).collect();
        return Err(Error::not_found(format!(
            "{} blobs the snapshots reference are not in the index ({}{}); nothing was changed: \
             run `cairn check`, then `cairn repair index` or `cairn repair snapshots`",
            missing.len(),
            names.join(", "),
            if missing.len() > 5 { ", ..." } else { "" }
        )));
    }

    // 3. Decisions. A marked pack goes once the grace period has passed by both clocks (marks
    //    are dated by the store's clock, design.md §10); one dated in the future counts as
    //    just marked and is dated again.
    let grace = i64::try_from(opts.delete_after.as_nanos()).unwrap_or(i64::MAX);
    let mut future_marks = Tally::default();
    let mut held = Tally::default();
    let mut out: Vec<PackPlan> = packs
        .into_values()
        .map(|a| {
            let mut marked_ns = a.info.marked_ns;
            let action = match (a.used_blobs, a.info.marked_ns) {
                (0, Some(_)) if opts.instant_delete => PackAction::Delete,
                (0, Some(m)) => match clocks.mark_age(m) {
                    MarkAge::Future => {
                        future_marks.add(a.info.size);
                        marked_ns = Some(clocks.store_ns());
                        PackAction::KeepMarked
                    }
                    MarkAge::Age(age) if age >= grace => {
                        if held_reason.is_some() {
                            held.add(a.info.size);
                            PackAction::KeepMarked
                        } else {
                            PackAction::Delete
                        }
                    }
                    MarkAge::Age(_) => PackAction::KeepMarked,
                },
                (0, None) if opts.instant_delete => PackAction::Delete,
                (0, None) => PackAction::Mark,
                (_, Some(_)) => PackAction::Recover,
                _ => PackAction::Keep,
            };
            PackPlan {
                id: a.info.id,
                size: a.info.size,
                kind: a.kind,
                marked_ns,
                used_blobs: a.used_blobs,
                used_bytes: a.used_bytes,
                unused_blobs: a.unused_blobs,
                unused_bytes: a.unused_bytes,
                action,
            }
        })
        .collect();
    out.sort_by_key(|p| p.id);
    choose_repacks(&mut out, opts, repo.config().pack_size);

    // 4. Packs nobody indexed: left over by an interrupted backup or prune, or a backup that
    //    has not written its index yet. Only old ones go, aged by the store's clock (the
    //    store's last-modified against the store's now).
    let mut unindexed = Vec::new();
    let indexed: std::collections::HashSet<Id> = out.iter().map(|p| p.id).collect();
    for (id, size, modified) in repo.list_meta(crate::backend::FileType::Pack)? {
        if !indexed.contains(&id) {
            // A backup uploads packs minutes before the index file naming them: however
            // short the grace period, an unindexed pack younger than an hour stays.
            let mut delete = clocks.store_age(modified) >= grace.max(UNINDEXED_MIN_AGE_NS);
            if delete && held_reason.is_some() {
                held.add(size);
                delete = false;
            }
            unindexed.push(Unindexed { id, size, delete });
        }
    }

    let mut stats = PlanStats {
        snapshots: listed.len() as u64,
        reach,
        stale_index_files,
        future_marks,
        held,
        held_reason,
        ..PlanStats::default()
    };
    for p in &out {
        stats.total.add(p.size);
        stats.used_bytes += p.used_bytes;
        stats.unused_bytes += p.unused_bytes;
        match p.action {
            PackAction::Keep => {
                stats.keep.add(p.size);
                stats.unused_after += p.unused_bytes;
            }
            PackAction::Recover => {
                stats.recover.add(p.size);
                stats.unused_after += p.unused_bytes;
            }
            PackAction::Mark => stats.mark.add(p.size),
            PackAction::KeepMarked => stats.keep_marked.add(p.size),
            PackAction::Repack => {
                stats.repack.add(p.size);
                stats.repack_copy_bytes += p.used_bytes;
            }
            PackAction::Delete => stats.delete.add(p.size),
        }
    }
    // 5. WAL that no kept base backup needs, by the same listed snapshots.
    let wal = crate::pg::catalog::wal_to_drop(repo, listed)?;
    for w in &wal {
        stats.wal_delete.add(w.size);
    }
    for u in &unindexed {
        if u.delete {
            stats.unindexed_delete.add(u.size);
        } else {
            stats.unindexed_keep.add(u.size);
        }
    }
    Ok(PrunePlan {
        packs: out,
        unindexed,
        index_files,
        wal,
        stats,
        used,
        now_ns: now,
        clocks: *clocks,
        options: opts.clone(),
    })
}

/// Pick partly used packs to repack (restic's rules): tree packs whenever they hold unused
/// blobs (they are small and read by every command); data packs with the most unused space
/// first until the unused space left is within `--max-unused`; with `--repack-small`, data
/// packs below 80% of the target size when there are at least two. Never more than
/// `--max-repack-size` bytes of packs read.
fn choose_repacks(packs: &mut [PackPlan], opts: &PruneOptions, pack_size: u32) {
    let candidate = |p: &PackPlan| p.action == PackAction::Keep && p.unused_blobs > 0;
    let mut budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
    let take = |p: &mut PackPlan, budget: &mut u64| {
        if p.size <= *budget {
            *budget -= p.size;
            p.action = PackAction::Repack;
        }
    };
    for p in packs.iter_mut() {
        if candidate(p) && p.kind == BlobKind::Tree {
            take(p, &mut budget);
        }
    }
    let used: u64 = packs.iter().map(|p| p.used_bytes).sum();
    let mut unused_left: u64 = packs
        .iter()
        .filter(|p| matches!(p.action, PackAction::Keep | PackAction::Recover))
        .map(|p| p.unused_bytes)
        .sum();
    let limit = match opts.max_unused {
        MaxUnused::Unlimited => u64::MAX,
        MaxUnused::Bytes(b) => b,
        // unused / (used + unused) <= p  <=>  unused <= p / (1 - p) * used
        MaxUnused::Percent(pc) => (pc / (100.0 - pc) * used as f64) as u64,
    };
    let mut order: Vec<usize> = (0..packs.len())
        .filter(|&i| candidate(&packs[i]) && packs[i].kind == BlobKind::Data)
        .collect();
    // Most unused bytes per byte read first.
    order.sort_by(|&a, &b| {
        let r = |p: &PackPlan| p.unused_bytes as f64 / p.size.max(1) as f64;
        r(&packs[b])
            .partial_cmp(&r(&packs[a]))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(packs[a].id.cmp(&packs[b].id))
    });
    for i in order {
        if unused_left <= limit {
            break;
        }
        take(&mut packs[i], &mut budget);
        if packs[i].action == PackAction::Repack {
            unused_left -= packs[i].unused_bytes;
        }
    }
    if opts.repack_small {
        let small = u64::from(pack_size) * 4 / 5;
        let smalls: Vec<usize> = (0..packs.len())
            .filter(|&i| {
                let p = &packs[i];
                p.kind == BlobKind::Data
                    && p.size < small
                    && p.used_blobs > 0
                    && matches!(p.action, PackAction::Keep | PackAction::Repack)
            })
            .collect();
        if smalls.len() >= 2 {
            for i in smalls {
                if packs[i].action == PackAction::Keep {
                    take(&mut packs[i], &mut budget);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_limits_parse() {
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("12"), Ok(12));
        assert!(parse_size("x").is_err());
        assert_eq!("5%".parse::<MaxUnused>().unwrap(), MaxUnused::Percent(5.0));
        assert_eq!(
            "unlimited".parse::<MaxUnused>().unwrap(),
            MaxUnused::Unlimited
        );
        assert_eq!(
            "1G".parse::<MaxUnused>().unwrap(),
            MaxUnused::Bytes(1 << 30)
        );
        assert!("100%".parse::<MaxUnused>().is_err());
        assert!("-1%".parse::<MaxUnused>().is_err());
    }

    fn pack(n: u8, kind: BlobKind, size: u64, used: u64, unused: u64) -> PackPlan {
        PackPlan {
            id: Id([n; 32]),
            size,
            kind,
            marked_ns: None,
            used_blobs: u64::from(used > 0),
            used_bytes: used,
            unused_blobs: u64::from(unused > 0),
            unused_bytes: unused,
            action: PackAction::Keep,
        }
    }

    use crate::backend::Backend;
    use crate::format::index::IndexPack;
    use crate::prune::clock::{Clocks, MAX_CLOCK_SKEW};
    use crate::repo::InitOptions;
    use crate::repo::index_files::IndexRewriter;
    use crate::repo::keys::now_ns;
    use crate::repo::lock::LockTiming;
    use crate::repo::writer::{BlobWriter, WriterOptions};
    use std::sync::Arc;

    const HOUR: i64 = 3600 * 1_000_000_000;

    /// A repository whose one pack nothing uses, marked at `marked_ns`.
    fn marked_unused_pack(dir: &Path, marked_ns: i64) -> (Arc<Repository>, Id) {
        let backend = Backend::open(dir.join("repo").to_str().unwrap(), true).unwrap();
        let repo =
            Repository::init(backend, b"pw", &InitOptions::for_test(), &dir.join("cache")).unwrap();
        let w = BlobWriter::new(
            repo.clone(),
            WriterOptions {
                threads: 1,
                dry_run: false,
            },
        )
        .unwrap();
        let (blob, _) = w
            .add(
                BlobKind::Data,
                bytes::Bytes::from_static(b"nobody uses this"),
            )
            .unwrap();
        w.finish().unwrap();
        let pack = repo.index().unwrap().blob(&blob).unwrap().unwrap().pack;
        let size = repo.index().unwrap().pack(&pack).unwrap().unwrap().size;
        let blobs = repo
            .index()
            .unwrap()
            .blobs_in(&pack)
            .unwrap()
            .into_iter()
            .map(|(id, l)| l.entry(id))
            .collect();
        let mut ix = IndexRewriter::new(&repo);
        ix.add(IndexPack {
            id: pack,
            size,
            marked_ns: Some(marked_ns),
            blobs,
        })
        .unwrap();
        ix.finish(repo.index().unwrap().index_files().unwrap())
            .unwrap();
        repo.refresh_index().unwrap();
        (repo, pack)
    }

    fn plan_at(repo: &Repository, clocks: &Clocks, scratch: &Path) -> PrunePlan {
        let synced = repo.refresh_index().unwrap();
        let snapshots = list_snapshots(repo).unwrap();
        plan(
            repo,
            &snapshots,
            &synced,
            &PruneOptions::default(),
            clocks,
            scratch,
        )
        .unwrap()
    }

    /// PR1: a mark past the grace period by the local clock only (the store's says it is
    /// recent) stays; clocks that disagree by more than the bound delete nothing by age; a dry
    /// run (no store clock) judges by the local clock.
    #[test]
    fn a_mark_is_deleted_only_when_both_clocks_agree_it_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ns();
        let (repo, pack) = marked_unused_pack(dir.path(), now - 72 * HOUR);
        let action = |c: &Clocks| {
            let p = plan_at(&repo, c, dir.path());
            let a = p.packs.iter().find(|p| p.id == pack).unwrap().action;
            (a, p.stats)
        };
        // Clocks agree: 72 h > 24 h.
        let (a, s) = action(&Clocks {
            local_ns: now,
            store_offset_ns: Some(1_000_000),
        });
        assert_eq!(a, PackAction::Delete);
        assert!(s.held_reason.is_none());
        // The store says the mark is 2 h old (this host is 70 h ahead): stays, not even held.
        let (a, s) = action(&Clocks {
            local_ns: now,
            store_offset_ns: Some(-70 * HOUR),
        });
        assert_eq!(a, PackAction::KeepMarked);
        assert!(s.held_reason.unwrap().contains("ahead of"));
        assert_eq!(s.held.packs, 0);
        // Old by both, but the clocks differ by 30 h: held.
        let (a, s) = action(&Clocks {
            local_ns: now,
            store_offset_ns: Some(-30 * HOUR),
        });
        assert_eq!(a, PackAction::KeepMarked);
        assert_eq!(s.held.packs, 1);
        // Just within the bound: deleted.
        let (a, _) = action(&Clocks {
            local_ns: now,
            store_offset_ns: Some(i64::try_from(MAX_CLOCK_SKEW.as_nanos()).unwrap()),
        });
        assert_eq!(a, PackAction::Delete);
        // A dry run: the local clock alone.
        let (a, _) = action(&Clocks {
            local_ns: now,
            store_offset_ns: None,
        });
        assert_eq!(a, PackAction::Delete);
    }

    /// PR1: a mark dated in the future (a marking host whose clock was ahead) counts as just
    /// marked, is reported, and is dated again with the store's time, so it goes a grace
    /// period later rather than when the wrong clock says.
    #[test]
    fn a_mark_dated_in_the_future_is_dated_again() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ns();
        let (repo, pack) = marked_unused_pack(dir.path(), now + 400 * 24 * HOUR);
        let clocks = Clocks {
            local_ns: now,
            store_offset_ns: Some(0),
        };
        let p = plan_at(&repo, &clocks, dir.path());
        let pp = p.packs.iter().find(|p| p.id == pack).unwrap();
        assert_eq!(pp.action, PackAction::KeepMarked);
        assert_eq!(pp.marked_ns, Some(now));
        assert_eq!(p.stats.future_marks.packs, 1);
        assert!(!p.is_empty(), "the new date must be written");
        let lock = repo.lock_exclusive("prune", LockTiming::default()).unwrap();
        crate::prune::execute(&repo, &p, &lock, 1).unwrap();
        lock.release().unwrap();
        repo.refresh_index().unwrap();
        assert_eq!(
            repo.index()
                .unwrap()
                .pack(&pack)
                .unwrap()
                .unwrap()
                .marked_ns,
            Some(now)
        );
        // A grace period later (by both clocks) it goes.
        let later = Clocks {
            local_ns: now + 24 * HOUR + 1,
            store_offset_ns: Some(0),
        };
        let p = plan_at(&repo, &later, dir.path());
        let pp = p.packs.iter().find(|p| p.id == pack).unwrap();
        assert_eq!(pp.action, PackAction::Delete);
        assert_eq!(p.stats.future_marks.packs, 0);
    }

    #[test]
    fn repack_choice_follows_max_unused_and_budget() {
        let mk = || {
            vec![
                pack(1, BlobKind::Data, 100, 90, 10),
                pack(2, BlobKind::Data, 100, 40, 60),
                pack(3, BlobKind::Data, 100, 100, 0),
                pack(4, BlobKind::Tree, 10, 9, 1),
            ]
        };
        let actions = |o: &PruneOptions| {
            let mut p = mk();
            choose_repacks(&mut p, o, 100);
            p.iter().map(|p| p.action).collect::<Vec<_>>()
        };
        use PackAction::*;
        // 5%: used 239 → limit 12; unused 70 → pack 2 (60) goes first, 10 left ≤ 12.
        assert_eq!(
            actions(&PruneOptions::default()),
            vec![Keep, Repack, Keep, Repack]
        );
        let o = PruneOptions {
            max_unused: MaxUnused::Bytes(0),
            ..Default::default()
        };
        assert_eq!(actions(&o), vec![Repack, Repack, Keep, Repack]);
        let o = PruneOptions {
            max_unused: MaxUnused::Unlimited,
            ..Default::default()
        };
        assert_eq!(actions(&o), vec![Keep, Keep, Keep, Repack]);
        // A budget of 50 bytes: only the tree pack fits.
        let o = PruneOptions {
            max_unused: MaxUnused::Bytes(0),
            max_repack_bytes: Some(50),
            ..Default::default()
        };
        assert_eq!(actions(&o), vec![Keep, Keep, Keep, Repack]);
    }
}
