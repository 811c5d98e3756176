//! `stats`: how much a set of snapshots holds, in restic's two main counting modes.
//!
//! - **restore-size**: what restores of the snapshots would write. Every entry below the root
//!   counts as one (files, folders, links, others: restic's `total_file_count`); file sizes
//!   are added, a multiply linked file (`nlink > 1`, same device and inode) once per snapshot.
//! - **raw-data**: the unique blobs the snapshots reference (trees and data), their raw size
//!   and the size they take in packs, the compression and deduplication figures.
//!
//! Both walk each snapshot with [`TreeWalk`]. A folder whose tree was already counted and holds
//! no multiply linked file is not walked again: its totals are remembered per tree id (an
//! in-memory map over the distinct trees), so many snapshots of mostly unchanged data cost about
//! as much as one, and a tree listed under many names is read once.

use super::walk::{Step, TreeWalk};
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::id::Id;
use crate::repo::Repository;
use std::collections::{HashMap, HashSet};

/// What `stats` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatsMode {
    /// Entries and bytes a restore would write.
    #[default]
    RestoreSize,
    /// Unique blobs referenced, raw and stored.
    RawData,
}

impl StatsMode {
    /// restic's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            StatsMode::RestoreSize => "restore-size",
            StatsMode::RawData => "raw-data",
        }
    }
}

/// Options of [`stats`].
#[derive(Debug, Clone, Default)]
pub struct StatsOptions {
    /// The counting mode.
    pub mode: StatsMode,
}

/// The figures of [`stats`]. Restore-size figures are always filled; blob figures only in
/// raw-data mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Snapshots counted.
    pub snapshots_count: u64,
    /// Entries a restore of every snapshot would make (all kinds, each hard link counted).
    pub restore_file_count: u64,
    /// Bytes a restore of every snapshot would write (hard links once per snapshot).
    pub restore_size: u64,
    /// Unique data blobs.
    pub data_blob_count: u64,
    /// Unique tree blobs.
    pub tree_blob_count: u64,
    /// Raw bytes of the unique data blobs.
    pub data_raw_size: u64,
    /// Raw bytes of the unique blobs (data and trees).
    pub raw_size: u64,
    /// Bytes the unique blobs take in packs (compressed and sealed).
    pub stored_size: u64,
}

impl Stats {
    /// Unique blobs (data and trees).
    pub fn blob_count(&self) -> u64 {
        self.data_blob_count + self.tree_blob_count
    }

    /// Raw size over stored size (1.0 when nothing is stored).
    pub fn compression_ratio(&self) -> f64 {
        if self.stored_size == 0 {
            1.0
        } else {
            self.raw_size as f64 / self.stored_size as f64
        }
    }

    /// Percentage of the raw size that storing saved (negative when the sealing overhead of
    /// small blobs outweighs compression).
    pub fn compression_space_saving(&self) -> f64 {
        if self.raw_size == 0 {
            0.0
        } else {
            (1.0 - self.stored_size as f64 / self.raw_size as f64) * 100.0
        }
    }

    /// Restore size over the raw size of the unique data blobs: how many times deduplication
    /// shrank the data (1.0 when there is none).
    pub fn dedup_ratio(&self) -> f64 {
        if self.data_raw_size == 0 {
            1.0
        } else {
            self.restore_size as f64 / self.data_raw_size as f64
        }
    }
}

/// Totals of one folder (its whole subtree).
#[derive(Debug, Clone, Copy, Default)]
struct Agg {
    entries: u64,
    size: u64,
    /// Holds a multiply linked file: the size depends on the rest of the snapshot, so the
    /// totals cannot be reused.
    links: bool,
}

impl Agg {
    fn add(&mut self, o: &Agg) {
        self.entries += o.entries;
        self.size += o.size;
        self.links |= o.links;
    }
}

struct Counter<'r> {
    repo: &'r Repository,
    raw: bool,
    stats: Stats,
    /// Totals of folders already walked, by tree id.
    done: HashMap<Id, Agg>,
    /// Blobs already counted (raw-data).
    blobs: HashSet<Id>,
}

impl Counter<'_> {
    fn count_blob(&mut self, id: &Id, kind: BlobKind) -> Result<()> {
        if !self.raw || !self.blobs.insert(*id) {
            return Ok(());
        }
        let loc = self.repo.index()?.locate(id).map_err(|e| {
            Error::new(
                e.kind(),
                format!("{} {} is not in the index", kind.name(), id.short()),
            )
        })?;
        match kind {
            BlobKind::Data => {
                self.stats.data_blob_count += 1;
                self.stats.data_raw_size += u64::from(loc.raw_length);
            }
            BlobKind::Tree => self.stats.tree_blob_count += 1,
        }
        self.stats.raw_size += u64::from(loc.raw_length);
        self.stats.stored_size += u64::from(loc.length);
        Ok(())
    }

    fn file(&mut self, n: &Node, agg: &mut Agg, inodes: &mut HashSet<(u64, u64)>) -> Result<()> {
        if n.nlink > 1 && n.inode != 0 {
            agg.links = true;
            if inodes.insert((n.device, n.inode)) {
                agg.size += n.size;
            }
        } else {
            agg.size += n.size;
        }
        for b in &n.content {
            self.count_blob(b, BlobKind::Data)?;
        }
        Ok(())
    }

    fn snapshot(&mut self, root: &Id) -> Result<()> {
        self.count_blob(root, BlobKind::Tree)?;
        let total = match self.done.get(root) {
            Some(a) if !a.links => *a,
            _ => self.walk(root)?,
        };
        self.stats.snapshots_count += 1;
        self.stats.restore_file_count += total.entries;
        self.stats.restore_size += total.size;
        Ok(())
    }

    fn walk(&mut self, root: &Id) -> Result<Agg> {
        let repo = self.repo;
        let mut walk = TreeWalk::new(repo, root, b"/")?;
        let mut inodes: HashSet<(u64, u64)> = HashSet::new();
        // One frame per entered folder: its tree and its totals so far.
        let mut frames: Vec<(Id, Agg)> = vec![(*root, Agg::default())];
        while let Some(step) = walk.next_step() {
            let n = match step {
                Step::Node(n) => n,
                Step::Leave => {
                    if let Some((id, agg)) = frames.pop() {
                        self.done.insert(id, agg);
                        if let Some((_, parent)) = frames.last_mut() {
                            parent.add(&agg);
                        }
                    }
                    continue;
                }
            };
            let Some((_, agg)) = frames.last_mut() else {
                break;
            };
            agg.entries += 1;
            match (n.kind, n.subtree) {
                (NodeKind::File, _) => self.file(&n, agg, &mut inodes)?,
                (NodeKind::Dir, Some(sub)) => {
                    self.count_blob(&sub, BlobKind::Tree)?;
                    match self.done.get(&sub) {
                        Some(sub_agg) if !sub_agg.links => agg.add(sub_agg),
                        _ => {
                            walk.enter(&n)?;
                            frames.push((sub, Agg::default()));
                        }
                    }
                }
                _ => {}
            }
        }
        // The root's own frame is not closed by a Leave.
        let (id, agg) = frames.pop().unwrap_or((*root, Agg::default()));
        self.done.insert(id, agg);
        Ok(agg)
    }
}

/// Count `snapshots` in `opts.mode`. A blob missing from the index is an error (raw-data).
pub fn stats(
    repo: &Repository,
    snapshots: &[(Id, Snapshot)],
    opts: &StatsOptions,
) -> Result<Stats> {
    let mut c = Counter {
        repo,
        raw: opts.mode == StatsMode::RawData,
        stats: Stats::default(),
        done: HashMap::new(),
        blobs: HashSet::new(),
    };
    for (_, s) in snapshots {
        c.snapshot(&s.tree)?;
    }
    Ok(c.stats)
}
