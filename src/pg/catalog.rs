//! What the repository holds for point-in-time recovery: the base backups (snapshots with a
//! PostgreSQL part), the archived WAL per cluster and timeline, which WAL each base backup needs
//! and whether it is all there, and which WAL no kept base backup needs (what `prune` drops).

use super::walname::{Lsn, WalFile, segment_name, segno_of};
use crate::error::Result;
use crate::format::snapshot::{PgBase, Snapshot};
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::wal::{WalArchive, WalObject};
use std::collections::{BTreeMap, BTreeSet};

/// A base backup: its snapshot and PostgreSQL part.
#[derive(Debug, Clone)]
pub struct BaseBackup {
    /// Snapshot id.
    pub id: Id,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Its PostgreSQL part.
    pub pg: PgBase,
}

impl BaseBackup {
    /// The first and last segment it needs to become consistent ([`wal_range`]).
    pub fn wal_range(&self) -> (String, String) {
        wal_range(&self.pg)
    }
}

/// The numbers of the first and last segment a base backup needs to become consistent: from
/// its start to its stop (the segment holding the stop record's last byte).
pub fn segment_range(p: &PgBase) -> (u64, u64) {
    (
        segno_of(Lsn(p.start_lsn), p.segment_size),
        segno_of(
            Lsn(p.stop_lsn.saturating_sub(1).max(p.start_lsn)),
            p.segment_size,
        ),
    )
}

/// The names of the first and last segment a base backup needs ([`segment_range`]).
pub fn wal_range(p: &PgBase) -> (String, String) {
    let (first, last) = segment_range(p);
    (
        segment_name(p.timeline, first, p.segment_size),
        segment_name(p.stop_timeline, last, p.segment_size),
    )
}

/// The base backups among `snapshots`, oldest stop first.
pub fn base_backups(snapshots: Vec<(Id, Snapshot)>) -> Vec<BaseBackup> {
    let mut out: Vec<BaseBackup> = snapshots
        .into_iter()
        .filter_map(|(id, snapshot)| {
            let pg = snapshot.pg.clone()?;
            Some(BaseBackup { id, snapshot, pg })
        })
        .collect();
    out.sort_by_key(|b| (b.pg.stopped_ns, b.pg.stop_lsn, b.id));
    out
}

/// The archived WAL of one cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterWal {
    /// Every object, by name.
    pub files: BTreeMap<String, WalObject>,
}

impl ClusterWal {
    /// Whether segment `segno` of `timeline` is archived (complete, or as the `.partial` a
    /// promotion left).
    pub fn has_segment(&self, timeline: u32, segno: u64, segment_size: u32) -> bool {
        let n = segment_name(timeline, segno, segment_size);
        self.files.contains_key(&n) || self.files.contains_key(&format!("{n}.partial"))
    }

    /// The segments from `start` to `end` (inclusive) of `timeline` that are not archived.
    pub fn missing(&self, timeline: u32, start: u64, end: u64, segment_size: u32) -> Vec<String> {
        (start..=end)
            .filter(|&s| !self.has_segment(timeline, s, segment_size))
            .map(|s| segment_name(timeline, s, segment_size))
            .collect()
    }

    /// The segments base backup `p` needs that are not archived.
    pub fn missing_for(&self, p: &PgBase) -> Vec<String> {
        let (first, last) = segment_range(p);
        self.missing(p.timeline, first, last, p.segment_size)
    }

    /// Per timeline, the archived segment numbers (complete segments only).
    pub fn segments(&self, segment_size: u32) -> BTreeMap<u32, BTreeSet<u64>> {
        let mut m: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
        for name in self.files.keys() {
            if let Some(WalFile::Segment { timeline, segno }) = WalFile::parse(name, segment_size) {
                m.entry(timeline).or_default().insert(segno);
            }
        }
        m
    }
}

/// The archived WAL of every cluster in the repository (one listing).
pub fn archived(wal: &WalArchive<'_>) -> Result<BTreeMap<u64, ClusterWal>> {
    let mut m: BTreeMap<u64, ClusterWal> = BTreeMap::new();
    for o in wal.list()? {
        m.entry(o.system_identifier)
            .or_default()
            .files
            .insert(o.name.clone(), o);
    }
    Ok(m)
}

/// The segment size to read a cluster's WAL names with: its base backups', else 16 MiB.
pub fn segment_size_of(bases: &[BaseBackup], sysid: u64) -> u32 {
    bases
        .iter()
        .find(|b| b.pg.system_identifier == sysid)
        .map(|b| b.pg.segment_size)
        .unwrap_or(16 << 20)
}

/// Holes in a timeline's archived segments between its first and its last: recovery across
/// one is impossible. (name of the first missing segment, how many are missing)
pub fn gaps(wal: &ClusterWal, segment_size: u32) -> Vec<(u32, String, u64)> {
    let mut out = Vec::new();
    for (tl, segs) in wal.segments(segment_size) {
        let mut prev: Option<u64> = None;
        for &s in &segs {
            if let Some(p) = prev {
                if s > p + 1 && !wal.has_segment(tl, p + 1, segment_size) {
                    out.push((tl, segment_name(tl, p + 1, segment_size), s - p - 1));
                }
            }
            prev = Some(s);
        }
    }
    out
}

/// The WAL files of `wal` (cluster `sysid`) that no base backup of `kept` needs: segments,
/// `.partial` and `.backup` files positioned before the start of the oldest kept base backup
/// of the cluster. History files are always kept (they are tiny and every later timeline's
/// recovery reads them). A cluster with no kept base backup keeps all its WAL: nothing shows
/// what is unneeded (a timeline reset is not a reason to delete).
pub fn unneeded(wal: &ClusterWal, sysid: u64, kept: &[BaseBackup]) -> Vec<WalObject> {
    let mine: Vec<&BaseBackup> = kept
        .iter()
        .filter(|b| b.pg.system_identifier == sysid)
        .collect();
    let Some(oldest) = mine.iter().map(|b| b.pg.start_lsn).min() else {
        return Vec::new();
    };
    let seg = mine[0].pg.segment_size;
    let first_needed = segno_of(Lsn(oldest), seg);
    wal.files
        .values()
        .filter(|o| match WalFile::parse(&o.name, seg) {
            Some(WalFile::History { .. }) | None => false,
            Some(f) => f.segno().is_some_and(|s| s < first_needed),
        })
        .cloned()
        .collect()
}

/// The archived WAL no base backup among `snapshots` (ids listed by a prune) needs, in every
/// cluster ([`unneeded`]). A snapshot that cannot be read stops this: its base backup's WAL
/// would otherwise look unneeded.
pub fn wal_to_drop(repo: &Repository, snapshots: &[Id]) -> Result<Vec<WalObject>> {
    let archived = archived(&repo.wal())?;
    if archived.is_empty() {
        return Ok(Vec::new());
    }
    let mut loaded = Vec::with_capacity(snapshots.len());
    for id in snapshots {
        loaded.push((*id, repo.load_snapshot(id)?));
    }
    let kept = base_backups(loaded);
    Ok(archived
        .iter()
        .flat_map(|(sysid, wal)| unneeded(wal, *sysid, &kept))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u32 = 16 << 20;

    fn wal(names: &[&str]) -> ClusterWal {
        ClusterWal {
            files: names
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        WalObject {
                            system_identifier: 9,
                            name: n.to_string(),
                            size: 1,
                            modified_ns: 0,
                        },
                    )
                })
                .collect(),
        }
    }

    fn base(start_seg: u64, sysid: u64) -> BaseBackup {
        let snapshot = Snapshot::for_test(0, "h", &["/pg"], &["pg-base"], Id::default());
        BaseBackup {
            id: Id::default(),
            snapshot,
            pg: PgBase {
                system_identifier: sysid,
                timeline: 1,
                start_lsn: start_seg * u64::from(MB16) + 0x28,
                stop_lsn: start_seg * u64::from(MB16) + 0x138,
                stop_timeline: 1,
                segment_size: MB16,
                server_version: 150014,
                started_ns: 0,
                stopped_ns: 0,
                next_xid: 0,
                data_dir: serde_bytes::ByteBuf::from(b"/pg".to_vec()),
                tablespaces: vec![],
            },
        }
    }

    #[test]
    fn ranges_gaps_and_retention() {
        let w = wal(&[
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003.00000028.backup",
            "000000010000000000000003",
            "000000010000000000000005",
            "00000002.history",
            "000000010000000000000006.partial",
            "000000020000000000000006",
        ]);
        assert_eq!(
            gaps(&w, MB16),
            vec![(1, "000000010000000000000004".to_string(), 1)]
        );
        let b = base(3, 9);
        assert_eq!(
            b.wal_range(),
            (
                "000000010000000000000003".to_string(),
                "000000010000000000000003".to_string()
            )
        );
        assert!(w.missing(1, 3, 3, MB16).is_empty());
        assert_eq!(w.missing(1, 3, 4, MB16), vec!["000000010000000000000004"]);
        let gone: Vec<String> = unneeded(&w, 9, std::slice::from_ref(&b))
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(
            gone,
            vec!["000000010000000000000001", "000000010000000000000002"]
        );
        // Another cluster's base backups say nothing about this one's WAL.
        assert!(unneeded(&w, 9, &[base(6, 8)]).is_empty());
        assert!(unneeded(&w, 9, &[]).is_empty());
    }
}
