//! `check`: is everything the snapshots need really in the repository?
//!
//! Run on a repository opened with a throwaway cache (`CacheMode::Throwaway`), so nothing
//! cached earlier is trusted: the index is merged afresh from the index files and every tree
//! is read from its pack and verified. Checks, in order:
//! 1. every index file opens and decodes (the sync's warnings become problems);
//! 2. every pack the index lists exists with the listed size; every pack in the store is listed
//!    (a recent unlisted one is only noted: a backup may not have written its index yet); every
//!    pack's header is read (two ranged reads) and must agree with the index, so header
//!    damage is found before `repair index` would need the header;
//! 3. every snapshot opens, every tree it reaches decodes, every data blob it references is in
//!    the index (each tree and blob once, in an on-disk set);
//! 4. with `--read-data[-subset]`: every chosen pack is read whole, its name must be the hash
//!    of its bytes, its header must agree with the index, and every blob in it is decrypted,
//!    decompressed and hashed.

use crate::backend::FileType;
use crate::cache::BlobSet;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::BlobLocation;
use crate::repo::Repository;
use crate::repo::keys::now_ns;
use crate::snapshot::reach::{self, Visitor};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Which packs `--read-data` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// Every pack.
    All,
    /// Part `n` of `t` (1-based): the packs whose id's first byte modulo `t` is `n − 1`, so
    /// runs with `1/t` … `t/t` together read every pack once.
    Part(u32, u32),
    /// A random share of the packs, in percent.
    Percent(f64),
    /// Random packs up to this many bytes.
    Bytes(u64),
}

impl std::str::FromStr for Subset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Subset> {
        let bad = |why: &str| Error::usage(format!("--read-data-subset {s:?}: {why}"));
        let t = s.trim();
        if let Some((n, d)) = t.split_once('/') {
            let n: u32 = n.trim().parse().map_err(|_| bad("not n/t"))?;
            let d: u32 = d.trim().parse().map_err(|_| bad("not n/t"))?;
            if d == 0 || n == 0 || n > d {
                return Err(bad("n/t needs 1 ≤ n ≤ t"));
            }
            return Ok(Subset::Part(n, d));
        }
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad("not a percentage"))?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(bad("a percentage must be above 0 and at most 100"));
            }
            return Ok(Subset::Percent(v));
        }
        crate::prune::plan::parse_size(t)
            .map(Subset::Bytes)
            .map_err(|e| bad(&e))
    }
}

/// Options of a check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read and verify pack contents (`None`: structure only).
    pub read_data: Option<Subset>,
    /// Whose headers to read, of the packs not read whole (`None`: every pack's). Two ranged
    /// reads a pack: on a remote store with 10^5 packs, a subset keeps a check short.
    pub read_headers: Option<Subset>,
    /// Read no pack header (structure against the listing only, as before 2026-12).
    pub skip_headers: bool,
}

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// An index file cannot be read.
    IndexFile,
    /// A snapshot cannot be read.
    Snapshot,
    /// A tree cannot be read or decoded.
    Tree,
    /// A referenced data blob is not in the index.
    MissingBlob,
    /// A pack the index lists is not in the store.
    MissingPack,
    /// A pack's size differs from the index.
    PackSize,
    /// A pack no index file lists.
    UnindexedPack,
    /// A pack's content does not match its name, or its header cannot be read.
    PackCorrupt,
    /// A pack's header and the index disagree.
    IndexMismatch,
    /// A blob fails to decrypt, decompress or hash to its id.
    BadBlob,
    /// Archived WAL a base backup or a point-in-time recovery needs is missing.
    WalMissing,
    /// An archived WAL file fails to decrypt, decompress or match its hash (`--read-data`).
    WalCorrupt,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The object concerned (`pack 1a2b3c4d`, `snapshot …`).
    pub object: String,
    /// One line.
    pub message: String,
}

/// Figures of a check.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckStats {
    /// Index files merged.
    pub index_files: u64,
    /// Packs the index lists.
    pub packs: u64,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Trees read.
    pub trees: u64,
    /// Data blobs referenced.
    pub data_blobs: u64,
    /// Pack headers read and compared with the index (packs not read whole).
    pub headers_read: u64,
    /// Packs read with `--read-data`.
    pub packs_read: u64,
    /// Bytes read with `--read-data`.
    pub bytes_read: u64,
    /// Blobs verified with `--read-data`.
    pub blobs_verified: u64,
    /// Archived WAL files.
    pub wal_files: u64,
    /// Archived WAL files read and verified with `--read-data`.
    pub wal_verified: u64,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Problems: the repository is not clean when there is one.
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not problems (recent unindexed packs).
    pub notes: Vec<String>,
    /// What to run about the problems found, one line each ([`advice`]).
    pub advice: Vec<String>,
    /// Figures.
    pub stats: CheckStats,
}

/// A pack in the store younger than this and not in the index is only noted: a running backup
/// writes its index within minutes of its packs.
const UNINDEXED_GRACE_NS: i64 = 3600 * 1_000_000_000;

struct Collect<'a> {
    repo: &'a Repository,
    snapshot: Id,
    problems: &'a mut Vec<Problem>,
}

impl Visitor for Collect<'_> {
    fn tree_error(&mut self, id: &Id, error: Error) -> Result<()> {
        if error.kind() == crate::ErrorKind::Backend {
            return Err(error);
        }
        self.problems.push(Problem {
            kind: ProblemKind::Tree,
            object: format!("tree {}", id.short()),
            message: format!("snapshot {}: {error}", self.snapshot.short()),
        });
        Ok(())
    }
    fn new_data_blob(&mut self, id: &Id) -> Result<()> {
        if self.repo.index()?.blob(id)?.is_none() {
            self.problems.push(Problem {
                kind: ProblemKind::MissingBlob,
                object: format!("blob {}", id.short()),
                message: format!(
                    "snapshot {} references data blob {} that is not in the index",
                    self.snapshot.short(),
                    id.short()
                ),
            });
        }
        Ok(())
    }
}

fn take_warnings(repo: &Repository, kind: ProblemKind, problems: &mut Vec<Problem>) {
    for w in repo.take_warnings() {
        problems.push(Problem {
            kind,
            object: format!("{} {}", w.file_type.noun(), w.id.short()),
            message: w.message,
        });
    }
}

/// Check `repo` (opened with a throwaway cache, and no warning handler: its warnings become
/// problems). `scratch` is a private folder for the on-disk set.
pub fn check(repo: &Repository, opts: &CheckOptions, scratch: &Path) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    let problems = &mut r.problems;

    // 1. The index.
    let index = repo.index()?;
    take_warnings(repo, ProblemKind::IndexFile, problems);
    r.stats.index_files = index.index_files()?.len() as u64;

    // 2. Packs: the index against the store.
    let mut stored: HashMap<Id, (u64, i64)> = repo
        .list_meta(FileType::Pack)?
        .into_iter()
        .map(|(id, size, modified)| (id, (size, modified)))
        .collect();
    let mut packs = Vec::new();
    repo.index()?.for_each_pack(|p| {
        packs.push((p.id, p.size));
        Ok(())
    })?;
    r.stats.packs = packs.len() as u64;
    // Packs whose listing agrees with the index: their headers are read below.
    let mut present = Vec::with_capacity(packs.len());
    for (id, size) in &packs {
        match stored.remove(id) {
            None => problems.push(Problem {
                kind: ProblemKind::MissingPack,
                object: format!("pack {}", id.short()),
                message: format!("pack {} is listed in the index but missing", id.to_hex()),
            }),
            Some((s, _)) if s != *size => problems.push(Problem {
                kind: ProblemKind::PackSize,
                object: format!("pack {}", id.short()),
                message: format!("pack {} has {s} bytes, the index says {size}", id.to_hex()),
            }),
            Some(_) => present.push((*id, *size)),
        }
    }
    let now = now_ns();
    let mut unindexed: Vec<(Id, u64, i64)> =
        stored.into_iter().map(|(id, (s, m))| (id, s, m)).collect();
    unindexed.sort();
    for (id, size, modified) in unindexed {
        if now.saturating_sub(modified) < UNINDEXED_GRACE_NS {
            r.notes.push(format!(
                "pack {} ({size} bytes) is in no index file yet: a backup in progress?",
                id.to_hex()
            ));
        } else {
            problems.push(Problem {
                kind: ProblemKind::UnindexedPack,
                object: format!("pack {}", id.short()),
                message: format!(
                    "pack {} ({size} bytes) is in no index file (`cairn repair index` adds it, \
                     `cairn prune` deletes it when nothing needs it)",
                    id.to_hex()
                ),
            });
        }
    }

    // 3 and 4 do not depend on each other: the packs are read (on the thread pool) while the
    // snapshots are walked (on this thread, whose walk alone would leave a core idle).
    let chosen = match opts.read_data {
        Some(subset) => choose(&packs, subset)?,
        None => Vec::new(),
    };
    // Every other pack's header is read and compared with the index (two ranged reads a
    // pack): damage there is found before `repair index` needs the header.
    let read_whole: std::collections::HashSet<Id> = chosen.iter().map(|(id, _)| *id).collect();
    present.retain(|(id, _)| !read_whole.contains(id));
    if opts.skip_headers {
        present.clear();
    } else if let Some(subset) = opts.read_headers {
        present = choose(&present, subset)?;
    }
    let (walked, data) = std::thread::scope(|scope| {
        let data = scope.spawn(|| {
            let (mut ps, counts) = read_packs(repo, &chosen)?;
            let (hps, headers) = read_headers(repo, &present)?;
            ps.extend(hps);
            Ok::<_, Error>((ps, counts, headers))
        });
        let walked = walk_snapshots(repo, scratch);
        let data = data.join().unwrap_or_else(|_| {
            Err(Error::new(
                crate::ErrorKind::Internal,
                "a check thread panicked",
            ))
        });
        (walked, data)
    });

    // 3. Snapshots and everything they reach.
    let (snapshot_problems, snapshots, trees, data_blobs) = walked?;
    problems.extend(snapshot_problems);
    r.stats.snapshots = snapshots;
    r.stats.trees = trees;
    r.stats.data_blobs = data_blobs;

    // 4. Data.
    let (mut found, (n, b, bl), headers) = data?;
    found.sort_by(|a, b| a.object.cmp(&b.object));
    problems.extend(found);
    r.stats.headers_read = headers;
    r.stats.packs_read = n;
    r.stats.bytes_read = b;
    r.stats.blobs_verified = bl;

    // 5. The WAL archive: what base backups need, holes in each timeline.
    check_wal(repo, opts.read_data.is_some(), &mut r)?;
    r.advice = advice(&r.problems);
    Ok(r)
}

/// The commands that fix (or say what is lost to) `problems`, in the order to run them.
pub fn advice(problems: &[Problem]) -> Vec<String> {
    use ProblemKind as K;
    let has = |ks: &[ProblemKind]| problems.iter().any(|p| ks.contains(&p.kind));
    let mut out = Vec::new();
    if has(&[
        K::IndexFile,
        K::MissingBlob,
        K::MissingPack,
        K::PackSize,
        K::UnindexedPack,
        K::IndexMismatch,
        K::PackCorrupt,
        K::Tree,
    ]) {
        out.push(
            "the index does not match the packs (or lost what a tree needs): run `cairn repair index` (it rebuilds it from the pack headers), then `cairn check` again"
                .to_string(),
        );
    }
    for (what, prefix) in [("pack", "pack "), ("blob", "blob ")] {
        let ids: Vec<&str> = problems
            .iter()
            .filter(|p| matches!(p.kind, K::PackCorrupt | K::BadBlob))
            .filter_map(|p| p.object.strip_prefix(prefix))
            .collect();
        if let Some(first) = ids.first() {
            out.push(format!(
                "{} damaged {what}s: `cairn find --{what} {first}` (and the others) names the snapshots and files that use them",
                ids.len()
            ));
        }
    }
    if has(&[
        K::MissingBlob,
        K::Tree,
        K::Snapshot,
        K::PackCorrupt,
        K::BadBlob,
    ]) {
        out.push(
            "what stays lost after `repair index`: `cairn repair snapshots --dry-run` shows what it would cut out of the snapshots (a new backup stores the files again if they still exist)"
                .to_string(),
        );
    }
    if has(&[K::WalMissing, K::WalCorrupt]) {
        out.push(
            "WAL is missing or damaged: `cairn pg check` tests archiving end to end, and a new base backup (`cairn pg backup`) makes recovery possible from now on"
                .to_string(),
        );
    }
    out
}

/// The WAL archive: every base backup's WAL there, no hole in a timeline after the oldest base
/// backup's start (a hole before it is only noted: no recovery starts there), and with
/// `read_data`, every file read and verified.
fn check_wal(repo: &Repository, read_data: bool, r: &mut CheckReport) -> Result<()> {
    use crate::pg::catalog;
    use crate::pg::walname::{Lsn, segno_of};
    let archived = catalog::archived(&repo.wal())?;
    let bases = catalog::base_backups(repo.snapshots()?);
    r.stats.wal_files = archived.values().map(|w| w.files.len() as u64).sum();
    let empty = catalog::ClusterWal::default();
    for b in &bases {
        let p = &b.pg;
        let w = archived.get(&p.system_identifier).unwrap_or(&empty);
        let missing = w.missing_for(p);
        if let Some(first) = missing.first() {
            r.problems.push(Problem {
                kind: ProblemKind::WalMissing,
                object: format!("snapshot {}", b.id.short()),
                message: format!(
                    "base backup {} needs WAL {first} ({} missing in all): it cannot be restored",
                    b.id.short(),
                    missing.len()
                ),
            });
        }
    }
    for (sysid, w) in &archived {
        let seg = catalog::segment_size_of(&bases, *sysid);
        let oldest = bases
            .iter()
            .filter(|b| b.pg.system_identifier == *sysid)
            .map(|b| segno_of(Lsn(b.pg.start_lsn), seg))
            .min();
        for (tl, first, n) in catalog::gaps(w, seg) {
            let at = crate::pg::walname::WalFile::parse(&first, seg).and_then(|f| f.segno());
            let msg = format!(
                "cluster {sysid} timeline {tl}: {n} WAL segments missing from {first}: recovery cannot pass them"
            );
            match (oldest, at) {
                (Some(o), Some(a)) if a >= o => r.problems.push(Problem {
                    kind: ProblemKind::WalMissing,
                    object: format!("WAL {sysid}/{first}"),
                    message: msg,
                }),
                _ => r.notes.push(msg),
            }
        }
        if read_data {
            for name in w.files.keys() {
                match repo.wal().read(*sysid, name) {
                    Ok(Some(_)) => r.stats.wal_verified += 1,
                    Ok(None) => {}
                    Err(e) if e.kind() == crate::ErrorKind::Backend => return Err(e),
                    Err(e) => r.problems.push(Problem {
                        kind: ProblemKind::WalCorrupt,
                        object: format!("WAL {sysid}/{name}"),
                        message: e.to_string(),
                    }),
                }
            }
        }
    }
    Ok(())
}

/// Walk every snapshot (trees read ahead, pack by pack): the problems, and the numbers of
/// snapshots, trees and data blobs.
fn walk_snapshots(repo: &Repository, scratch: &Path) -> Result<(Vec<Problem>, u64, u64, u64)> {
    let mut problems = Vec::new();
    prefetch_trees(repo)?;
    let snapshots = repo.snapshots()?;
    take_warnings(repo, ProblemKind::Snapshot, &mut problems);
    let (mut trees, mut data_blobs) = (0, 0);
    let mut set = BlobSet::new(scratch)?;
    for (id, s) in &snapshots {
        let mut v = Collect {
            repo,
            snapshot: *id,
            problems: &mut problems,
        };
        let st = reach::walk(repo, [s.tree], &mut set, &mut v)?;
        trees += st.trees;
        data_blobs += st.data_blobs;
    }
    take_warnings(repo, ProblemKind::Tree, &mut problems);
    Ok((problems, snapshots.len() as u64, trees, data_blobs))
}

/// Read the headers of `packs` (id and size, listing and index agreeing) and compare each
/// with the index, as many at once as the store takes connections: the problems and the
/// number of headers read.
fn read_headers(repo: &Repository, packs: &[(Id, u64)]) -> Result<(Vec<Problem>, u64)> {
    if packs.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let threads = repo.connections().max(rayon::current_num_threads()).min(64);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("cairn-check-header-{i}"))
        .build()
        .map_err(|e| Error::new(crate::ErrorKind::Internal, format!("thread pool: {e}")))?;
    let found: Vec<Vec<Problem>> = pool.install(|| {
        packs
            .par_iter()
            .map(|(id, size)| check_header(repo, id, *size))
            .collect::<Result<_>>()
    })?;
    Ok((found.into_iter().flatten().collect(), packs.len() as u64))
}

/// Read pack `id`'s header (`size` bytes in all) and compare it with the index.
fn check_header(repo: &Repository, id: &Id, size: u64) -> Result<Vec<Problem>> {
    let header = repo.read_pack_header_sized(id, size);
    match header {
        Ok(h) => Ok(compare_header(repo, id, &h)?.into_iter().collect()),
        Err(e) if e.kind() == crate::ErrorKind::NotFound => Ok(vec![Problem {
            kind: ProblemKind::MissingPack,
            object: format!("pack {}", id.short()),
            message: format!(
                "{e}: it is in the listing of data/ but cannot be read (a store not answering \
                 consistently?)"
            ),
        }]),
        Err(e) if e.kind() == crate::ErrorKind::Corrupt => {
            let n = repo.index()?.blobs_in(id)?.len();
            Ok(vec![Problem {
                kind: ProblemKind::PackCorrupt,
                object: format!("pack {}", id.short()),
                message: format!(
                    "{e}: its header cannot be read; the index still locates its {n} blobs \
                     (`cairn check --read-data` reads them; `cairn repair index` keeps those \
                     that read back)"
                ),
            }])
        }
        Err(e) => Err(e),
    }
}

/// A problem when pack `id`'s header `h` and the index disagree.
fn compare_header(
    repo: &Repository,
    id: &Id,
    h: &crate::format::pack::PackHeader,
) -> Result<Option<Problem>> {
    let indexed = repo.index()?.blobs_in(id)?;
    let mut from_header: Vec<(Id, u32, u32, u32)> = h
        .entries
        .iter()
        .map(|e| (e.id, e.offset, e.length, e.raw_length))
        .collect();
    let mut from_index: Vec<(Id, u32, u32, u32)> = indexed
        .iter()
        .map(|(b, l)| (*b, l.offset, l.length, l.raw_length))
        .collect();
    from_header.sort();
    from_index.sort();
    if from_header == from_index {
        return Ok(None);
    }
    Ok(Some(Problem {
        kind: ProblemKind::IndexMismatch,
        object: format!("pack {}", id.short()),
        message: format!(
            "pack {}: its header lists {} blobs, the index {} (or they differ)",
            id.to_hex(),
            from_header.len(),
            from_index.len()
        ),
    }))
}

/// Read and verify the `chosen` packs in parallel: the problems, and (packs, bytes, blobs).
fn read_packs(repo: &Repository, chosen: &[(Id, u64)]) -> Result<(Vec<Problem>, (u64, u64, u64))> {
    let found = Mutex::new(Vec::new());
    let counts = Mutex::new((0u64, 0u64, 0u64));
    chosen.par_iter().try_for_each(|(id, size)| -> Result<()> {
        let (bytes, blobs, ps) = read_pack(repo, id, *size)?;
        if let Ok(mut c) = counts.lock() {
            c.0 += 1;
            c.1 += bytes;
            c.2 += blobs;
        }
        if !ps.is_empty() {
            if let Ok(mut f) = found.lock() {
                f.extend(ps);
            }
        }
        Ok(())
    })?;
    Ok((
        found.into_inner().unwrap_or_default(),
        counts.into_inner().unwrap_or_default(),
    ))
}

/// Read every tree blob the index lists into the (throwaway) cache, a tree pack at a time with
/// merged ranged reads, packs in parallel, each tree verified (decrypted, decompressed, hashed)
/// before it is cached; the walk then finds them there instead of making one request per
/// tree. A tree that fails here is simply not cached: the walk reads it again and reports it.
fn prefetch_trees(repo: &Repository) -> Result<()> {
    let mut by_pack: HashMap<Id, Vec<(Id, BlobLocation)>> = HashMap::new();
    repo.index()?.for_each_location(|blob, loc| {
        if loc.kind == crate::format::pack::BlobKind::Tree {
            by_pack.entry(loc.pack).or_default().push((*blob, loc));
        }
        Ok(())
    })?;
    let packs: Vec<(Id, Vec<(Id, BlobLocation)>)> = by_pack.into_iter().collect();
    packs
        .into_par_iter()
        .try_for_each(|(pack, mut trees)| repo.prefetch_trees(&pack, &mut trees))
}

/// The packs `subset` selects, in id order.
fn choose(packs: &[(Id, u64)], subset: Subset) -> Result<Vec<(Id, u64)>> {
    let mut packs = packs.to_vec();
    packs.sort();
    Ok(match subset {
        Subset::All => packs,
        Subset::Part(n, t) => packs
            .into_iter()
            .filter(|(id, _)| u32::from(id.0[0]) % t == n - 1)
            .collect(),
        Subset::Percent(p) => {
            let want = ((packs.len() as f64) * p / 100.0).ceil() as usize;
            shuffle(&mut packs)?;
            packs.truncate(want);
            packs.sort();
            packs
        }
        Subset::Bytes(max) => {
            shuffle(&mut packs)?;
            let mut total = 0u64;
            let mut out = Vec::new();
            for p in packs {
                if total >= max {
                    break;
                }
                total += p.1;
                out.push(p);
            }
            out.sort();
            out
        }
    })
}

/// Fisher–Yates with the OS's randomness (a different sample each run).
fn shuffle<T>(v: &mut [T]) -> Result<()> {
    let mut seed = [0u8; 8];
    crate::crypto::random_bytes(&mut seed)?;
    let mut s = u64::from_le_bytes(seed) | 1;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let j = (s % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    Ok(())
}

/// Read one pack whole and verify it: name = hash, header = index, every blob opens. `size`
/// is what the index says: the store's answer is read only up to that (an object swapped for
/// a larger one is refused before its content is read, so memory stays bounded by the index).
/// Returns (bytes read, blobs verified, problems).
fn read_pack(repo: &Repository, id: &Id, size: u64) -> Result<(u64, u64, Vec<Problem>)> {
    let mut ps = Vec::new();
    let object = format!("pack {}", id.short());
    let problem = |kind, message: String| Problem {
        kind,
        object: object.clone(),
        message,
    };
    let bytes = match repo.read_pack(id, size) {
        Ok(b) => b,
        // Reported as missing already.
        Err(e) if e.kind() == crate::ErrorKind::NotFound => return Ok((0, 0, ps)),
        Err(e) if e.kind() == crate::ErrorKind::Corrupt => {
            ps.push(problem(ProblemKind::PackCorrupt, e.to_string()));
            return Ok((0, 0, ps));
        }
        Err(e) => return Err(e),
    };
    let len = bytes.len() as u64;
    if Id::of_stored(&bytes) != *id {
        ps.push(problem(
            ProblemKind::PackCorrupt,
            format!("pack {}: content does not match its name", id.to_hex()),
        ));
    }
    let header = repo.pack_header(id, len, |r| {
        usize::try_from(r.start)
            .ok()
            .zip(usize::try_from(r.end).ok())
            .and_then(|(a, b)| bytes.get(a..b))
            .ok_or_else(|| Error::corrupt(format!("{object} is corrupt: truncated")))
    });
    // Every blob is verified: those the header lists, or, when it cannot be read, those the
    // index lists.
    let blobs: Vec<(Id, BlobLocation)> = match header {
        Err(e) => {
            ps.push(problem(ProblemKind::PackCorrupt, e.to_string()));
            repo.index()?.blobs_in(id)?
        }
        Ok(h) => {
            ps.extend(compare_header(repo, id, &h)?);
            h.entries
                .iter()
                .map(|e| (e.id, BlobLocation::of_entry(*id, e, false)))
                .collect()
        }
    };
    let mut verified = 0u64;
    for (blob, loc) in blobs {
        let start = loc.offset as usize;
        let slice = start
            .checked_add(loc.length as usize)
            .and_then(|end| bytes.get(start..end));
        let r = match slice {
            Some(s) => repo.open_blob(&blob, &loc, s).map(|_| ()),
            None => Err(Error::corrupt("truncated")),
        };
        match r {
            Ok(()) => verified += 1,
            Err(err) => ps.push(Problem {
                kind: ProblemKind::BadBlob,
                object: format!("blob {}", blob.short()),
                message: format!(
                    "{} blob {} in pack {}: {err}",
                    loc.kind.name(),
                    blob.to_hex(),
                    id.short()
                ),
            }),
        }
    }
    Ok((len, verified, ps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_or_say_why_not() {
        assert_eq!("1/5".parse::<Subset>().unwrap(), Subset::Part(1, 5));
        assert_eq!("10%".parse::<Subset>().unwrap(), Subset::Percent(10.0));
        assert_eq!("2G".parse::<Subset>().unwrap(), Subset::Bytes(2 << 30));
        for bad in ["0/5", "6/5", "1/0", "x/2", "0%", "101%", "ten", ""] {
            let e = bad.parse::<Subset>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Usage, "{bad}");
            assert!(e.to_string().contains("--read-data-subset"), "{e}");
        }
    }

    #[test]
    fn part_subsets_cover_every_pack_once() {
        let packs: Vec<(Id, u64)> = (0..200u32)
            .map(|i| (Id::of_stored(&i.to_le_bytes()), 1))
            .collect();
        let mut seen: Vec<Id> = (1..=3)
            .flat_map(|n| choose(&packs, Subset::Part(n, 3)).unwrap())
            .map(|(id, _)| id)
            .collect();
        seen.sort();
        let mut all: Vec<Id> = packs.iter().map(|(id, _)| *id).collect();
        all.sort();
        assert_eq!(seen, all);
        assert_eq!(choose(&packs, Subset::Percent(10.0)).unwrap().len(), 20);
        assert_eq!(choose(&packs, Subset::Bytes(7)).unwrap().len(), 7);
    }
}
