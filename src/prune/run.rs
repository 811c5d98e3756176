//! Executing a prune plan, in an order that leaves a valid repository at every instant:
//!
//! 1. repack: the used blobs of repacked packs are copied, sealed as they are, into new packs
//!    (with their own index files, like a backup's);
//! 2. the new index: every pack that stays, with its mark (new, kept or removed), in index
//!    files of which only the *last* lists the old index files in `supersedes`: until it is
//!    stored the old files still count, and afterwards the new ones say everything;
//! 3. the old index files are deleted;
//! 4. packs are deleted: those marked for longer than the grace period and still unused, old
//!    unindexed ones, and with `--instant-delete` the unused and repacked ones.
//!
//! The lock is checked before each step that deletes or replaces, before each old index file's
//! delete and between batches of pack deletes: a prune whose lock was lost (removed by `cairn
//! unlock --remove-all`, taken over) stops there with `Locked`. Interrupted anywhere, the
//! repository holds every blob a snapshot needs, and the next prune finishes the job.

use super::plan::{PackAction, PrunePlan};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::index::IndexPack;
use crate::format::pack::PackEntry;
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::index_files::IndexRewriter;
use crate::repo::lock::LockGuard;
use crate::repo::writer::{BlobWriter, WriterOptions};
use std::sync::Arc;

/// What a prune did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneOutcome {
    /// Blobs copied by the repack.
    pub repacked_blobs: u64,
    /// Their bytes.
    pub repacked_bytes: u64,
    /// New packs the repack wrote.
    pub new_packs: u64,
    /// New index files (repack and rewritten index).
    pub index_files_written: u64,
    /// Old index files deleted.
    pub index_files_deleted: u64,
    /// Packs deleted.
    pub packs_deleted: u64,
    /// Their bytes: space freed now.
    pub bytes_deleted: u64,
    /// Packs marked for deletion by a later prune (including repacked ones).
    pub packs_marked: u64,
    /// Their bytes: space a prune after the grace period frees.
    pub bytes_marked: u64,
    /// Archived WAL files deleted.
    pub wal_deleted: u64,
    /// Their bytes.
    pub wal_bytes_deleted: u64,
}

/// Carry out `plan` while holding `lock`. Crash tests stop it before any of its writes and
/// deletes through the backend's `CAIRN_TEST_KILL_AFTER_WRITES` hook (`test-hooks` feature).
pub fn execute(
    repo: &Arc<Repository>,
    plan: &PrunePlan,
    lock: &LockGuard,
    threads: usize,
) -> Result<PruneOutcome> {
    let mut out = PruneOutcome::default();
    if plan.is_empty() {
        return Ok(out);
    }
    let instant = plan.options.instant_delete;

    // 1. Repack.
    let repack: Vec<&super::plan::PackPlan> = plan
        .packs
        .iter()
        .filter(|p| p.action == PackAction::Repack)
        .collect();
    // Marked state of every pack at plan time (the repack's new packs are unmarked).
    let marked: std::collections::HashMap<Id, bool> = plan
        .packs
        .iter()
        .map(|p| (p.id, p.marked_ns.is_some()))
        .collect();
    if !repack.is_empty() {
        lock.check()?;
        let writer = BlobWriter::new(
            repo.clone(),
            WriterOptions {
                threads,
                dry_run: false,
            },
        )?;
        for p in &repack {
            let mut keep = Vec::new();
            for (blob, loc) in repo.index()?.blobs_in(&p.id)? {
                // Copied only when used, and this pack holds the copy the plan kept: the same
                // rule as the plan's (the lowest unmarked location, else the lowest), applied
                // to every location, not to the cache's preferred one. (Locations added since
                // are this repack's own copies, of blobs already copied.)
                if plan.used.contains(&blob)?
                    && repo
                        .index()?
                        .location_packs(&blob)?
                        .into_iter()
                        .min_by_key(|q| (marked.get(q).copied().unwrap_or(false), *q))
                        == Some(p.id)
                {
                    keep.push((blob, loc));
                }
            }
            keep.sort_by_key(|(_, l)| (l.offset, l.length));
            repo.read_pack_blobs(
                &p.id,
                &keep,
                |(_, l)| l,
                |(id, loc), sealed| {
                    let sealed = sealed?;
                    // Verified before it moves: a damaged blob is never copied as if it were good.
                    repo.open_blob(id, loc, sealed)?;
                    if writer.add_sealed(loc.kind, *id, sealed.to_vec(), loc.raw_length)? {
                        out.repacked_blobs += 1;
                        out.repacked_bytes += sealed.len() as u64;
                    }
                    Ok(())
                },
            )?;
        }
        let stats = writer.finish()?;
        out.new_packs = stats.packs;
        out.index_files_written += stats.index_files;
    }

    // Before anything stops counting: every used blob of a pack this prune deletes must be
    // located in a pack that stays (a repacked copy, or another copy the plan kept). Cheap
    // (only doomed packs' blobs), and the last line of defence against a planning bug.
    let doomed: std::collections::HashSet<Id> = plan
        .packs
        .iter()
        .filter(|p| p.action == PackAction::Delete || (instant && p.action == PackAction::Repack))
        .map(|p| p.id)
        .collect();
    for pack in &doomed {
        for (blob, _) in repo.index()?.blobs_in(pack)? {
            if plan.used.contains(&blob)?
                && !repo
                    .index()?
                    .location_packs(&blob)?
                    .iter()
                    .any(|q| !doomed.contains(q))
            {
                return Err(Error::new(
                    crate::ErrorKind::Internal,
                    format!(
                        "prune would delete the last copy of blob {} (in pack {}); stopped \
                         before changing the index: please report this",
                        blob.short(),
                        pack.short()
                    ),
                ));
            }
        }
    }

    // 2. The new index. New marks carry the time they become visible, not the plan's: a
    // repack can take long, and backups meanwhile still see the packs unmarked. The time is
    // the store's (read from the lock object), so whichever host deletes judges the grace
    // period by the same clock (design.md §10).
    lock.check()?;
    let marked_now = super::clock::Clocks::measure(lock)?.store_ns();
    let mut index = IndexRewriter::new(repo);
    for p in &plan.packs {
        let marked_ns = match p.action {
            PackAction::Keep | PackAction::Recover => None,
            PackAction::KeepMarked => p.marked_ns,
            PackAction::Mark | PackAction::Repack => Some(marked_now),
            PackAction::Delete => continue,
        };
        if p.action == PackAction::Repack && instant {
            continue;
        }
        if marked_ns.is_some() && p.marked_ns.is_none() {
            out.packs_marked += 1;
            out.bytes_marked += p.size;
        }
        let blobs: Vec<PackEntry> = repo
            .index()?
            .blobs_in(&p.id)?
            .into_iter()
            .map(|(id, l)| l.entry(id))
            .collect();
        index.add(IndexPack {
            id: p.id,
            size: p.size,
            marked_ns,
            blobs,
        })?;
    }
    // The last file carries `supersedes`: only once it is stored do the old files stop
    // counting.
    out.index_files_written += index.finish(plan.index_files.clone())?;

    // 3. The old index files, the lock checked before each (there are few).
    for f in &plan.index_files {
        lock.check()?;
        repo.delete(FileType::Index, f)?;
        out.index_files_deleted += 1;
    }

    // 4. Packs.
    // An unindexed pack may have been indexed since the plan (a slow backup's last index
    // file): merge what was written meanwhile and spare those.
    let mut unindexed: Vec<(Id, u64)> = plan
        .unindexed
        .iter()
        .filter(|u| u.delete)
        .map(|u| (u.id, u.size))
        .collect();
    if !unindexed.is_empty() {
        repo.refresh_index()?;
        let mut spare = Vec::new();
        for (id, _) in &unindexed {
            if repo.index()?.pack(id)?.is_some() {
                spare.push(*id);
            }
        }
        unindexed.retain(|(id, _)| !spare.contains(id));
    }
    let doomed = plan
        .packs
        .iter()
        .filter(|p| p.action == PackAction::Delete || (instant && p.action == PackAction::Repack))
        .map(|p| (p.id, p.size))
        .chain(unindexed);
    let doomed: Vec<(Id, u64)> = doomed.collect();
    // On a remote store each delete is a round trip: keep `-o connections` of them in flight.
    // Locally they take microseconds and go one by one.
    let width = if repo.is_local() {
        1
    } else {
        repo.connections()
    };
    // The lock is checked again before each batch of DELETE_BATCH_ROUNDS rounds (one `head`
    // and one listing of `locks/` each), so a prune whose lock was removed or taken over stops
    // within a batch, however many packs are left.
    for batch in doomed.chunks(width * DELETE_BATCH_ROUNDS) {
        lock.check()?;
        for chunk in batch.chunks(width) {
            std::thread::scope(|s| -> Result<()> {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(id, _)| s.spawn(move || repo.delete(FileType::Pack, id)))
                    .collect();
                for h in handles {
                    h.join().map_err(|_| {
                        Error::new(crate::ErrorKind::Internal, "a delete thread panicked")
                    })??;
                }
                Ok(())
            })?;
            out.packs_deleted += chunk.len() as u64;
            out.bytes_deleted += chunk.iter().map(|(_, size)| size).sum::<u64>();
        }
    }
    // WAL no kept base backup needs (nothing else refers to a WAL file).
    for batch in plan.wal.chunks(width * DELETE_BATCH_ROUNDS) {
        lock.check()?;
        for w in batch {
            repo.wal().delete(w.system_identifier, &w.name)?;
            out.wal_deleted += 1;
            out.wal_bytes_deleted += w.size;
        }
    }
    // A lock lost during the last deletes is reported, not taken for a clean run.
    lock.check()?;
    Ok(out)
}

/// Rounds of pack deletes (each `width` at once) between two lock checks in step 4: locally 8
/// packs, remotely 8 round trips of deletes per check's two.
const DELETE_BATCH_ROUNDS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::format::pack::BlobKind;
    use crate::format::snapshot::Snapshot;
    use crate::format::tree::{Node, NodeKind, Tree};
    use crate::repo::InitOptions;
    use crate::repo::lock::LockTiming;
    use crate::repo::writer::{BlobWriter, WriterOptions};
    use bytes::Bytes;

    /// The last line of defence: a plan that (through some bug) deletes a pack holding the only
    /// copy of a used blob is refused before the index changes, and nothing is deleted.
    #[test]
    fn a_plan_deleting_the_last_copy_of_a_used_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(dir.path().join("repo").to_str().unwrap(), true).unwrap();
        let opts = InitOptions::for_test();
        let cache = dir.path().join("cache");
        let repo = Repository::init(backend, b"pw", &opts, &cache).unwrap();
        let w = BlobWriter::new(
            repo.clone(),
            WriterOptions {
                threads: 1,
                dry_run: false,
            },
        )
        .unwrap();
        let (data, _) = w
            .add(BlobKind::Data, Bytes::from_static(b"hello, world"))
            .unwrap();
        let mut node = Node::new(b"f".to_vec(), NodeKind::File);
        node.content = vec![data];
        node.size = 12;
        let tree = Tree {
            version: crate::format::VERSION,
            nodes: vec![node],
        };
        let (root, _) = w
            .add(BlobKind::Tree, Bytes::from(tree.encode().unwrap()))
            .unwrap();
        w.finish().unwrap();
        repo.save_snapshot(&Snapshot::for_test(1, "h", &[], &[], root))
            .unwrap();

        let lock = repo.lock_exclusive("prune", LockTiming::default()).unwrap();
        let snapshots = crate::prune::plan::list_snapshots(&repo).unwrap();
        let synced = repo.refresh_index().unwrap();
        let opts = crate::prune::PruneOptions {
            instant_delete: true,
            ..Default::default()
        };
        let clocks = crate::prune::Clocks::measure(&lock).unwrap();
        let mut plan =
            crate::prune::plan(&repo, &snapshots, &synced, &opts, &clocks, &cache).unwrap();
        assert!(plan.is_empty(), "nothing to prune yet");
        // The bug: the data pack, fully used, planned for deletion.
        let data_pack = repo.index().unwrap().blob(&data).unwrap().unwrap().pack;
        for p in &mut plan.packs {
            if p.id == data_pack {
                p.action = PackAction::Delete;
            }
        }
        plan.stats.delete.packs = 1;
        let before = repo.list(FileType::Index).unwrap();
        let e = execute(&repo, &plan, &lock, 1).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Internal, "{e}");
        assert!(e.to_string().contains("last copy"), "{e}");
        assert_eq!(repo.list(FileType::Index).unwrap(), before);
        assert!(
            repo.list(FileType::Pack)
                .unwrap()
                .iter()
                .any(|(id, _)| *id == data_pack)
        );
        lock.release().unwrap();
    }
}
