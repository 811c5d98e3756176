//! Restore: walk the snapshot's trees, plan which blobs each file needs, read each pack once
//! (one ranged read per run of needed blobs), decrypt/verify/decompress in parallel, and write
//! each blob to every offset that needs it. Holes stay holes (all-zero blobs are not written
//! into the pre-sized file). Metadata comes after contents; directory times last. Files already
//! identical at the target (same size and mtime, which is set only once a file is complete) are
//! skipped, so an interrupted restore resumes.

pub mod meta;

use crate::backup::exclude::Patterns;
use crate::cache::BlobLocation;
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::Id;
use crate::progress::Progress;
use crate::repo::Repository;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, MutexGuard};

fn creation_mode(node: &Node) -> u32 {
    (node.mode & 0o777) | 0o600
}

/// Which metadata calls a file created by this restore can skip: the owner when it is already
/// the creator's, the mode when creation already gave the final one (mode & !umask).
/// `creator` (uid, gid, umask) is known only when every file is new (fresh target).
fn skips(node: &Node, creator: Option<(u32, u32, u32)>) -> meta::Skip {
    match creator {
        Some((uid, gid, umask)) => meta::Skip {
            owner: (node.uid, node.gid) == (uid, gid),
            mode: creation_mode(node) & !umask == node.mode & 0o7777,
        },
        _ => meta::Skip::default(),
    }
}

/// Write one blob's bytes at `off` (creating the file); returns the descriptor.
fn write_at(path: &Path, node: &Node, raw: &[u8], off: u64) -> Result<std::fs::File> {
    let f = open_content(path, node)?;
    f.write_all_at(raw, off)
        .map_err(|err| Error::io(format!("cannot write {}", path.display()), err))?;
    Ok(f)
}

/// Finish a file whose blobs are all written: extend it to `len` when holes or a short
/// content list left it shorter, then apply its metadata. `Ok(Some(msg))`: metadata problem.
fn finish_file(
    file: Option<std::fs::File>,
    e: &Entry,
    len: Option<u64>,
    root: bool,
    skip: meta::Skip,
) -> Result<Option<String>> {
    let f = match file {
        Some(f) => f,
        None => open_content(&e.path, &e.node)?,
    };
    if let Some(len) = len {
        f.set_len(len)
            .map_err(|err| Error::io(format!("cannot size {}", e.path.display()), err))?;
    }
    Ok(meta::apply_file(&f, &e.path, &e.node, root, skip).err())
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::usage("internal error: a restore thread panicked"))
}

/// Open a file for its content, creating it with its permission bits plus owner read/write
/// (never more than the final mode grants others; owner write so later blobs can reopen it).
fn open_content(path: &Path, node: &Node) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(creation_mode(node))
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|err| Error::io(format!("cannot open {}", path.display()), err))
}

/// What to restore and how.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Folder to restore into.
    pub target: PathBuf,
    /// Restore only paths matching these (or below a match).
    pub includes: Patterns,
    /// Skip paths matching these.
    pub excludes: Patterns,
    /// Plan and count only.
    pub dry_run: bool,
    /// Re-read every restored file and check it against the snapshot.
    pub verify: bool,
    /// Worker threads.
    pub threads: usize,
}

/// Figures of a restore.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreSummary {
    /// Regular files restored (written or already identical).
    pub files: u64,
    /// Files skipped because the target already held them.
    pub files_unchanged: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, fifos, devices, hard links.
    pub others: u64,
    /// Bytes of file content in the restored set.
    pub bytes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Files verified after writing.
    pub files_verified: u64,
    /// Problems (each also reported as a warning).
    pub errors: u64,
}

struct Entry {
    path: PathBuf,
    node: Node,
    /// For a hard link after the first: the path of the first.
    link_to: Option<usize>,
    /// Content must be written (false when the target is already identical).
    write: bool,
}

struct Plan {
    entries: Vec<Entry>,
}

fn snap_path(base: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = base.to_vec();
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn included(opts: &RestoreOptions, spath: &[u8], ancestor_included: bool) -> (bool, bool) {
    let p = Path::new(std::ffi::OsStr::from_bytes(spath));
    if opts.excludes.matches(p) {
        return (false, false);
    }
    let inc = ancestor_included || opts.includes.is_empty() || opts.includes.matches(p);
    (true, inc)
}

fn collect(
    repo: &Repository,
    tree: &Id,
    dir: &Path,
    spath: &[u8],
    inc: bool,
    opts: &RestoreOptions,
    out: &mut Vec<Entry>,
) -> Result<bool> {
    let t = repo.load_tree(tree)?;
    let mut any = false;
    for n in t.nodes {
        let sp = snap_path(spath, &n.name);
        let (keep, inc_here) = included(opts, &sp, inc);
        if !keep {
            continue;
        }
        let path = dir.join(std::ffi::OsStr::from_bytes(&n.name));
        if n.kind == NodeKind::Dir {
            let sub = n
                .subtree
                .ok_or_else(|| Error::corrupt("directory without subtree"))?;
            let at = out.len();
            out.push(Entry {
                path: path.clone(),
                node: n,
                link_to: None,
                write: false,
            });
            let inner = collect(repo, &sub, &path, &sp, inc_here, opts, out)?;
            if inner || inc_here {
                any = true;
            } else {
                out.remove(at);
            }
        } else if inc_here {
            any = true;
            out.push(Entry {
                path,
                node: n,
                link_to: None,
                write: true,
            });
        }
    }
    Ok(any)
}

fn plan(repo: &Repository, node: &Node, spath: &[u8], opts: &RestoreOptions) -> Result<Plan> {
    let mut entries = Vec::new();
    match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(tree)) => {
            let (_, inc) = included(opts, spath, false);
            collect(
                repo,
                &tree,
                &opts.target,
                spath,
                inc && !opts.includes.is_empty(),
                opts,
                &mut entries,
            )?;
        }
        _ => entries.push(Entry {
            path: opts.target.join(std::ffi::OsStr::from_bytes(&node.name)),
            node: node.clone(),
            link_to: None,
            write: true,
        }),
    }
    // Hard links: files sharing (device, inode) with nlink > 1 become links to the first.
    let mut first: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, e) in entries.iter_mut().enumerate() {
        let n = &e.node;
        if n.kind == NodeKind::File && n.nlink > 1 && n.inode != 0 {
            match first.get(&(n.device, n.inode)) {
                Some(&j) => {
                    e.link_to = Some(j);
                    e.write = false;
                }
                None => {
                    first.insert((n.device, n.inode), i);
                }
            }
        }
    }
    Ok(Plan { entries })
}

/// Where each needed blob goes: (entry index, file offset).
type Targets = Vec<(usize, u64)>;

/// Problems and skips found while preparing one entry.
#[derive(Default)]
struct Prepared {
    unchanged: u64,
    errors: u64,
}

/// Create `e` at the target (files with content are created when their first blob is written,
/// unless an existing file must be truncated). `fresh`: the target was empty, so nothing exists.
fn prepare_target(
    e: &mut Entry,
    fresh: bool,
    summary: &mut Prepared,
    warn: &dyn Fn(&str),
) -> Result<()> {
    let p = &e.path;
    let existing = if fresh {
        None
    } else {
        std::fs::symlink_metadata(p).ok()
    };
    if let Some(m) = existing {
        let same_kind = match e.node.kind {
            NodeKind::Dir => m.is_dir(),
            NodeKind::File => m.is_file(),
            _ => false,
        };
        if !same_kind {
            let r = if m.is_dir() {
                std::fs::remove_dir_all(p)
            } else {
                std::fs::remove_file(p)
            };
            r.map_err(|err| Error::io(format!("cannot replace {}", p.display()), err))?;
        } else if e.node.kind == NodeKind::File && e.link_to.is_none() {
            let mt = m.mtime() * 1_000_000_000 + m.mtime_nsec();
            if m.len() == e.node.size && mt == e.node.mtime_ns {
                e.write = false;
                summary.unchanged += 1;
            }
        }
    }
    match e.node.kind {
        NodeKind::Dir => std::fs::create_dir_all(p)
            .map_err(|err| Error::io(format!("cannot create {}", p.display()), err)),
        NodeKind::File if fresh && e.link_to.is_none() && !e.node.content.is_empty() => Ok(()),
        NodeKind::File if e.link_to.is_none() && e.write => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .map_err(|err| Error::io(format!("cannot create {}", p.display()), err))?;
            f.set_len(e.node.size)
                .map_err(|err| Error::io(format!("cannot size {}", p.display()), err))
        }
        NodeKind::File => Ok(()),
        NodeKind::Symlink => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&e.node.link_target), p)
                .map_err(|err| Error::io(format!("cannot create symlink {}", p.display()), err))
        }
        NodeKind::Fifo => meta::make_special(p, &e.node)
            .map_err(|err| Error::io(format!("cannot create fifo {}", p.display()), err)),
        NodeKind::CharDevice | NodeKind::BlockDevice => {
            if meta::is_root() {
                meta::make_special(p, &e.node)
                    .map_err(|err| Error::io(format!("cannot create device {}", p.display()), err))
            } else {
                warn(&format!(
                    "skipping device {} (only root can create devices)",
                    p.display()
                ));
                summary.errors += 1;
                Ok(())
            }
        }
        NodeKind::Socket => Ok(()),
    }
}

/// Restore `node` (a directory or file found at `spath` in a snapshot) into `opts.target`.
pub fn restore(
    repo: &Repository,
    node: &Node,
    spath: &[u8],
    opts: &RestoreOptions,
    progress: &Progress,
    warn: &(dyn Fn(&str) + Sync),
) -> Result<RestoreSummary> {
    let mut plan = plan(repo, node, spath, opts)?;
    let mut s = RestoreSummary::default();
    for e in &plan.entries {
        match e.node.kind {
            NodeKind::File if e.link_to.is_none() => {
                s.files += 1;
                s.bytes += e.node.size;
            }
            NodeKind::Dir => s.dirs += 1,
            _ => s.others += 1,
        }
    }
    progress.set_totals(s.files, s.bytes);
    if opts.dry_run {
        return Ok(s);
    }
    let fresh = match std::fs::read_dir(&opts.target) {
        Ok(mut d) => d.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    std::fs::create_dir_all(&opts.target)
        .map_err(|e| Error::io(format!("cannot create {}", opts.target.display()), e))?;
    // New files belong to the effective user and group and get their creation mode less the
    // umask — unless the target folder is setgid or carries a default ACL, which every folder
    // this restore makes inside it inherits.
    let inherits = std::fs::metadata(&opts.target)
        .map(|m| m.mode() & 0o2000 != 0)
        .unwrap_or(true)
        || xattr::get(&opts.target, "system.posix_acl_default")
            .map(|v| v.is_some())
            .unwrap_or(true);
    let creator = meta::umask()
        .filter(|_| fresh && !inherits)
        .map(|m| (meta::euid(), meta::egid(), m));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
        .build()
        .map_err(|e| Error::usage(format!("thread pool: {e}")))?;
    // Directories first, in walk order (parents before children), then everything else in
    // parallel: creating tens of thousands of files is syscall-bound.
    let prepare = |e: &mut Entry| -> Prepared {
        let mut p = Prepared::default();
        if let Err(err) = prepare_target(e, fresh, &mut p, warn) {
            warn(&err.to_string());
            p.errors += 1;
            e.write = false;
        }
        p
    };
    let mut prepared: Vec<Prepared> = plan
        .entries
        .iter_mut()
        .filter(|e| e.node.kind == NodeKind::Dir)
        .map(prepare)
        .collect();
    prepared.extend(pool.install(|| {
        plan.entries
            .par_iter_mut()
            .filter(|e| e.node.kind != NodeKind::Dir)
            .map(prepare)
            .collect::<Vec<_>>()
    }));
    for p in prepared {
        s.files_unchanged += p.unchanged;
        s.errors += p.errors;
    }

    // Which blob goes where, grouped by pack and sorted by offset.
    let mut content_len: Vec<u64> = vec![0; plan.entries.len()];
    let mut needs: HashMap<Id, Targets> = HashMap::new();
    for (i, e) in plan.entries.iter().enumerate() {
        if e.node.kind != NodeKind::File || !e.write {
            if e.node.kind == NodeKind::File && e.link_to.is_none() && !e.write {
                progress.add_file();
                progress.add_bytes(e.node.size);
            }
            continue;
        }
        let mut off = 0u64;
        for id in &e.node.content {
            let loc = repo.locate(id)?;
            needs.entry(*id).or_default().push((i, off));
            off += u64::from(loc.raw_length);
        }
        content_len[i] = off;
        if off != e.node.size {
            warn(&format!(
                "{}: snapshot size {} differs from its content ({off} bytes)",
                e.path.display(),
                e.node.size
            ));
        }
    }
    let mut by_pack: BTreeMap<Id, Vec<(BlobLocation, Id)>> = BTreeMap::new();
    for id in needs.keys() {
        let loc = repo.locate(id)?;
        by_pack.entry(loc.pack).or_default().push((loc, *id));
    }
    for v in by_pack.values_mut() {
        v.sort_by_key(|(l, _)| l.offset);
    }
    let remaining: Mutex<HashMap<usize, usize>> = Mutex::new(HashMap::new());
    {
        let mut r = lock(&remaining)?;
        for t in needs.values() {
            for (i, _) in t {
                *r.entry(*i).or_default() += 1;
            }
        }
    }
    let written = AtomicU64::new(0);
    let root = meta::is_root();
    let holes: Vec<AtomicBool> = plan
        .entries
        .iter()
        .map(|_| AtomicBool::new(false))
        .collect();
    let finished: Vec<AtomicBool> = plan
        .entries
        .iter()
        .map(|_| AtomicBool::new(false))
        .collect();
    let failed: Vec<AtomicBool> = plan
        .entries
        .iter()
        .map(|_| AtomicBool::new(false))
        .collect();
    let file_meta_errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let entries = &plan.entries;
    let packs: Vec<(Id, Vec<(BlobLocation, Id)>)> = by_pack.into_iter().collect();
    let result: Result<()> = pool.install(|| {
        packs.par_iter().try_for_each(|(pack, blobs)| {
            // Runs of blobs close together are fetched with one ranged read.
            let mut i = 0;
            while i < blobs.len() {
                let start = blobs[i].0.offset;
                let mut j = i;
                let mut end = start + blobs[i].0.length;
                while j + 1 < blobs.len()
                    && blobs[j + 1].0.offset <= end + (256 << 10)
                    && blobs[j + 1].0.offset + blobs[j + 1].0.length - start <= 16 << 20
                {
                    j += 1;
                    end = end.max(blobs[j].0.offset + blobs[j].0.length);
                }
                let bytes = repo.read_pack_range(pack, u64::from(start)..u64::from(end))?;
                for (loc, id) in &blobs[i..=j] {
                    let a = (loc.offset - start) as usize;
                    let raw = repo.open_blob(id, loc, &bytes[a..a + loc.length as usize])?;
                    let zero = raw.iter().all(|&b| b == 0);
                    for &(ei, off) in &needs[id] {
                        let e = &entries[ei];
                        // A file that cannot be created or written is warned about once and
                        // left without its metadata (so a rerun rewrites it); the rest goes on.
                        let fail = |err: Error| -> Result<()> {
                            if !failed[ei].swap(true, Relaxed) {
                                lock(&file_meta_errors)?.push(err.to_string());
                            }
                            Ok(())
                        };
                        let mut file = None;
                        if zero {
                            holes[ei].store(true, Relaxed);
                        } else if !failed[ei].load(Relaxed) {
                            match write_at(&e.path, &e.node, &raw, off) {
                                Ok(f) => {
                                    written.fetch_add(raw.len() as u64, Relaxed);
                                    file = Some(f);
                                }
                                Err(err) => fail(err)?,
                            }
                        }
                        progress.add_bytes(raw.len() as u64);
                        let last = {
                            let mut r = lock(&remaining)?;
                            r.get_mut(&ei).is_some_and(|c| {
                                *c -= 1;
                                *c == 0
                            })
                        };
                        if last {
                            if !failed[ei].load(Relaxed) {
                                // Every other blob of this file is written: finish it through
                                // the descriptor at hand (size, owner, mode, xattrs, times).
                                let len = e.node.size.max(content_len[ei]);
                                let cut = holes[ei].load(Relaxed) || content_len[ei] < len;
                                let skip = skips(&e.node, creator);
                                match finish_file(file, e, cut.then_some(len), root, skip) {
                                    Ok(Some(m)) => lock(&file_meta_errors)?.push(m),
                                    Ok(None) => {}
                                    Err(err) => fail(err)?,
                                }
                            }
                            finished[ei].store(true, Relaxed);
                            progress.add_file();
                        }
                    }
                }
                i = j + 1;
            }
            Ok(())
        })
    });
    result?;
    s.bytes_written = written.into_inner();

    // Hard links, then metadata of what the write phase did not finish: files and others
    // first, directories deepest first.
    for e in plan.entries.iter() {
        if let Some(j) = e.link_to {
            let _ = std::fs::remove_file(&e.path);
            if let Err(err) = std::fs::hard_link(&plan.entries[j].path, &e.path) {
                warn(&format!("cannot link {}: {err}", e.path.display()));
                s.errors += 1;
            }
        }
    }
    let meta_errors: Vec<String> = pool.install(|| {
        plan.entries
            .par_iter()
            .zip(finished.par_iter())
            .filter(|(e, done)| {
                e.node.kind != NodeKind::Dir
                    && e.link_to.is_none()
                    && e.node.kind != NodeKind::Socket
                    && !done.load(Relaxed)
            })
            .filter_map(|(e, _)| meta::apply(&e.path, &e.node, root).err())
            .collect()
    });
    let meta_errors = file_meta_errors
        .into_inner()
        .map_err(|_| Error::usage("internal error: a restore thread panicked"))?
        .into_iter()
        .chain(meta_errors);
    for m in meta_errors {
        warn(&m);
        s.errors += 1;
    }
    if opts.verify {
        let errs: Vec<String> = pool.install(|| {
            plan.entries
                .par_iter()
                .filter(|e| e.node.kind == NodeKind::File && e.link_to.is_none())
                .filter_map(|e| verify_file(repo, &e.path, &e.node).err())
                .collect()
        });
        s.files_verified = s.files - errs.len() as u64;
        for m in errs {
            warn(&m);
            s.errors += 1;
        }
    }
    let mut dirs: Vec<&Entry> = plan
        .entries
        .iter()
        .filter(|e| e.node.kind == NodeKind::Dir)
        .collect();
    dirs.sort_by_key(|e| std::cmp::Reverse(e.path.components().count()));
    for e in dirs {
        if let Err(m) = meta::apply(&e.path, &e.node, root) {
            warn(&m);
            s.errors += 1;
        }
    }
    Ok(s)
}

/// Re-read a restored file and check its chunks against the snapshot's blob ids.
pub fn verify_file(repo: &Repository, path: &Path, node: &Node) -> std::result::Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("verify {}: {e}", path.display()))?;
    let mut ids = Vec::with_capacity(node.content.len());
    for c in repo.chunker().stream(f) {
        let c = c.map_err(|e| format!("verify {}: {e}", path.display()))?;
        ids.push(repo.blob_id(&c));
    }
    if ids != node.content {
        return Err(format!(
            "verify {}: content differs from the snapshot",
            path.display()
        ));
    }
    Ok(())
}
