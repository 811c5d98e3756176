//! Backup: walk the sources, compare with the parent snapshot, read what changed through the
//! blob writer, build trees bottom-up, and write the snapshot last.
//!
//! Threads: the walker (caller's thread) stats entries in name order and builds trees; N file
//! readers chunk and hash changed files and hand new chunks to the [`BlobWriter`] pipeline.
//! Memory is bounded by the channels and by the directories still waiting for files.

pub mod count;
pub mod exclude;
pub mod node;
pub mod open;
pub mod scan;
pub mod stdin;

use crate::error::{Error, Result};
use crate::format::VERSION;
use crate::format::pack::BlobKind;
use crate::format::snapshot::{Snapshot, SnapshotKind, Summary};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::Id;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::keys::{current_user, now_ns};
use crate::repo::writer::{BlobWriter, WriterOptions, WriterStats};
use crate::snapshot::builder::{DirHandle, TreeBuilder, TreeSink};
use crate::snapshot::group::GroupBy;
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use exclude::Patterns;
use open::{OpenError, Scanned};
use scan::{ScanConfig, Scanner};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Source paths.
    pub paths: Vec<PathBuf>,
    /// Exclude patterns.
    pub excludes: Patterns,
    /// Skip directories containing a file of one of these names.
    pub exclude_if_present: Vec<String>,
    /// Stay on the file system of each source path.
    pub one_file_system: bool,
    /// Full, incremental or differential.
    pub kind: SnapshotKind,
    /// Explicit parent (overrides the kind's choice).
    pub parent: Option<Id>,
    /// Host name to record.
    pub host: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Time to record instead of now.
    pub time_ns: Option<i64>,
    /// Read and count, store nothing.
    pub dry_run: bool,
    /// Worker threads.
    pub threads: usize,
    /// Record access times (off by default: reading a file moves its atime, so every tree
    /// would differ from the parent's and be stored again).
    pub atime: bool,
}

/// The result of a backup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupOutcome {
    /// The snapshot written (none in a dry run).
    pub snapshot: Option<Id>,
    /// The parent used.
    pub parent: Option<Id>,
    /// The root tree.
    pub tree: Id,
    /// Figures.
    pub summary: Summary,
    /// What the blob writer added.
    pub added: WriterStats,
}

/// Stores trees through the writer; `.1`: every blob of the parent snapshot is known present.
struct WriterSink<'a>(&'a BlobWriter, bool);

impl TreeSink for WriterSink<'_> {
    fn reuse_tree(&mut self, id: &Id) -> Result<bool> {
        Ok(self.1 || self.0.has(id)?)
    }

    fn store_tree(&mut self, tree: &Tree) -> Result<Id> {
        let bytes = bytes::Bytes::from(tree.encode()?);
        let (id, new) = self.0.add(BlobKind::Tree, bytes.clone())?;
        if new && !self.0.dry_run() {
            // The next backup compares against this tree: spare it the pack read.
            self.0.repo().cache().put_tree(&id, &bytes)?;
        }
        Ok(id)
    }
}

/// Choose the parent snapshot for a backup of `paths` from `host`.
pub fn choose_parent(
    repo: &Repository,
    opts: &BackupOptions,
    abs: &[Vec<u8>],
) -> Result<Option<Id>> {
    if let Some(p) = opts.parent {
        repo.load_snapshot(&p)?;
        return Ok(Some(p));
    }
    if opts.kind == SnapshotKind::Full {
        return Ok(None);
    }
    // The same group as `forget`'s default: same host, same sorted path list.
    let by = GroupBy::HOST_PATHS;
    let want = by.key_of(&opts.host, abs.iter().map(|p| p.as_slice()), []);
    // A snapshot dated in the future (a wrong clock, or another key holder's planted one) is
    // never a parent: it would decide which files are taken as unchanged. Costs a full read at
    // worst.
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    Ok(repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| {
            s.time_ns <= now
                && by.key(s) == want
                && (opts.kind != SnapshotKind::Differential || s.kind == SnapshotKind::Full)
        })
        .max_by_key(|(_, s)| s.time_ns)
        .map(|(id, _)| id))
}

/// Make a path absolute without resolving symlinks in its last component.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let a = std::path::absolute(p)
        .map_err(|e| Error::io(format!("cannot resolve {}", p.display()), e))?;
    let mut out = PathBuf::from("/");
    for c in a.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

#[derive(Default, Debug)]
struct Trie {
    /// Index of the source path ending here.
    source: Option<u32>,
    children: BTreeMap<Vec<u8>, Trie>,
}

enum FileOutcome {
    Done(Vec<Id>, u64),
    /// Not stored; the warning (whole line).
    Unreadable(String),
    Fatal(Error),
}

struct FileJob {
    dir: DirHandle,
    slot: usize,
    path: PathBuf,
    /// What the scan saw; the opened file must match it.
    want: Scanned,
    link: Option<LinkKey>,
}

struct FileResult {
    dir: DirHandle,
    slot: usize,
    outcome: FileOutcome,
    link: Option<LinkKey>,
}

/// (device, inode) of a file with more than one hard link.
type LinkKey = (u64, u64);

/// What the walk knows of a multiply linked inode: the first link is read, the others take
/// its content (borg does the same; restic reads every link).
enum Link {
    /// Being read; these slots wait for its content.
    Reading {
        stat: (u64, i64, i64),
        waiters: Vec<(DirHandle, usize)>,
    },
    /// Read (or reused from the parent).
    Known {
        stat: (u64, i64, i64),
        content: Vec<Id>,
        size: u64,
    },
}

/// The (size, mtime, ctime) that must match for one link to stand for another.
fn link_stat(n: &Node) -> (u64, i64, i64) {
    (n.size, n.mtime_ns, n.ctime_ns)
}

struct Walker<'a> {
    repo: &'a Repository,
    writer: &'a BlobWriter,
    builder: TreeBuilder,
    jobs: Option<Sender<FileJob>>,
    results: Receiver<FileResult>,
    outstanding: usize,
    opts: &'a BackupOptions,
    scanner: &'a Scanner,
    summary: Summary,
    progress: &'a Progress,
    warn: &'a (dyn Fn(&str) + Sync),
    root_dev: u64,
    fatal: Option<Error>,
    /// Every blob of the parent snapshot is known present.
    parent_complete: bool,
    /// Multiply linked inodes met so far.
    links: HashMap<LinkKey, Link>,
}

/// Read the file at `path` that the scan saw as `want` (see [`open`]: never through a
/// symlink, never blocking on a fifo, never another inode than the scanned one).
fn read_file(writer: &BlobWriter, path: &Path, want: &Scanned, progress: &Progress) -> FileOutcome {
    let (f, m) = match open::open_scanned(path, want) {
        Ok(x) => x,
        Err(e @ OpenError::Changed(_)) => {
            return FileOutcome::Unreadable(format!("{}: {e}", path.display()));
        }
        Err(OpenError::Io(e)) => {
            return FileOutcome::Unreadable(format!("cannot read {}: {e}", path.display()));
        }
    };
    let mut ids = Vec::new();
    let mut size = 0u64;
    for chunk in writer.repo().chunker().stream_sized(f, Some(m.len())) {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return FileOutcome::Unreadable(format!("cannot read {}: {e}", path.display()));
            }
        };
        size += chunk.len() as u64;
        progress.add_bytes(chunk.len() as u64);
        match writer.add(BlobKind::Data, chunk) {
            Ok((id, _)) => ids.push(id),
            Err(e) => return FileOutcome::Fatal(e),
        }
    }
    FileOutcome::Done(ids, size)
}

impl Walker<'_> {
    fn warn(&mut self, msg: String) {
        self.summary.errors += 1;
        (self.warn)(&msg);
    }

    fn apply(&mut self, r: FileResult) -> Result<()> {
        self.outstanding -= 1;
        self.progress.add_file();
        let mut sink = WriterSink(self.writer, self.parent_complete);
        let reading = r
            .link
            .filter(|k| matches!(self.links.get(k), Some(Link::Reading { .. })))
            .and_then(|k| self.links.remove(&k));
        let (stat, waiters) = match reading {
            Some(Link::Reading { stat, waiters }) => (Some(stat), waiters),
            _ => (None, Vec::new()),
        };
        match r.outcome {
            FileOutcome::Done(ids, size) => {
                self.summary.bytes_read += size;
                self.summary.bytes_total += size;
                for &(d, slot) in &waiters {
                    self.summary.bytes_total += size;
                    self.progress.add_file();
                    self.progress.add_bytes(size);
                    self.builder
                        .fill_file(d, slot, Some((ids.clone(), size)), &mut sink)?;
                }
                if let (Some(k), Some(stat)) = (r.link, stat) {
                    let content = ids.clone();
                    self.links.insert(
                        k,
                        Link::Known {
                            stat,
                            content,
                            size,
                        },
                    );
                }
                self.builder
                    .fill_file(r.dir, r.slot, Some((ids, size)), &mut sink)
            }
            FileOutcome::Unreadable(msg) => {
                if waiters.is_empty() {
                    self.warn(msg);
                } else {
                    self.warn(format!("{msg} (nor {} other links to it)", waiters.len()));
                    self.summary.errors += waiters.len() as u64;
                }
                for (d, slot) in waiters {
                    self.progress.add_file();
                    self.builder.fill_file(d, slot, None, &mut sink)?;
                }
                self.builder.fill_file(r.dir, r.slot, None, &mut sink)
            }
            FileOutcome::Fatal(e) => {
                self.fatal.get_or_insert(e);
                for (d, slot) in waiters {
                    self.builder.fill_file(d, slot, None, &mut sink)?;
                }
                self.builder.fill_file(r.dir, r.slot, None, &mut sink)
            }
        }
    }

    fn drain(&mut self, block: bool) -> Result<()> {
        loop {
            let r = if block && self.outstanding > 0 {
                match self.results.recv() {
                    Ok(r) => r,
                    Err(_) => return Ok(()),
                }
            } else {
                match self.results.try_recv() {
                    Ok(r) => r,
                    Err(_) => return Ok(()),
                }
            };
            self.apply(r)?;
        }
    }

    /// The parent snapshot's tree of a directory, with its id.
    fn parent_tree(&self, node: Option<&Node>) -> Option<(Id, Tree)> {
        let sub = node.filter(|n| n.kind == NodeKind::Dir)?.subtree?;
        self.repo.load_tree(&sub).ok().map(|t| (sub, t))
    }

    fn unchanged(&self, n: &Node, p: Option<&Node>) -> Result<Option<Vec<Id>>> {
        let Some(p) = p else { return Ok(None) };
        if p.kind != NodeKind::File
            || p.size != n.size
            || p.mtime_ns != n.mtime_ns
            || p.ctime_ns != n.ctime_ns
            || p.inode != n.inode
        {
            return Ok(None);
        }
        if !self.parent_complete {
            for id in &p.content {
                if !self.writer.has(id)? {
                    return Ok(None);
                }
            }
        }
        Ok(Some(p.content.clone()))
    }

    fn walk_virtual(
        &mut self,
        dir: DirHandle,
        prefix: &Path,
        trie: &Trie,
        ptree: Option<&Tree>,
    ) -> Result<()> {
        for (name, child) in &trie.children {
            let path = prefix.join(std::ffi::OsStr::from_bytes(name));
            let pnode = ptree.and_then(|t| t.find(name)).cloned();
            if let Some(key) = child.source {
                self.walk_source(dir, &path, name, pnode.as_ref(), key)?;
                continue;
            }
            let m = std::fs::symlink_metadata(&path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            let Some(node) =
                node::node_from(name, &path, &m, self.scanner.names(), self.opts.atime)
                    .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?
            else {
                continue;
            };
            let slot = self.builder.push(dir, node, true)?;
            let sub = self.builder.open_dir(Some((dir, slot)));
            let pt = self.parent_tree(pnode.as_ref());
            self.walk_virtual(sub, &path, child, pt.as_ref().map(|(_, t)| t))?;
            self.builder.close_dir_like(
                sub,
                pt,
                &mut WriterSink(self.writer, self.parent_complete),
            )?;
        }
        Ok(())
    }

    /// A source path itself: stat it here (excludes do not apply), then walk it.
    fn walk_source(
        &mut self,
        dir: DirHandle,
        path: &Path,
        name: &[u8],
        pnode: Option<&Node>,
        key: u32,
    ) -> Result<()> {
        let m = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.warn(format!("cannot stat {}: {e}", path.display()));
                return Ok(());
            }
        };
        self.root_dev = m.dev();
        match node::node_from(name, path, &m, self.scanner.names(), self.opts.atime) {
            Ok(Some(n)) => {
                let parent = path.parent().unwrap_or(Path::new("/"));
                self.walk_node(dir, parent, n, pnode, &[key])
            }
            Ok(None) => Ok(()),
            Err(e) => {
                self.warn(format!("cannot read {}: {e}", path.display()));
                Ok(())
            }
        }
    }

    /// Add `node` (in folder `parent`, walk position `key`) to `dir`: reuse or read a file,
    /// descend into a directory.
    fn walk_node(
        &mut self,
        dir: DirHandle,
        parent: &Path,
        node: Node,
        pnode: Option<&Node>,
        key: &[u32],
    ) -> Result<()> {
        if let Some(e) = self.fatal.take() {
            return Err(e);
        }
        match node.kind {
            NodeKind::File => {
                let mut link = (node.nlink > 1).then_some((node.device, node.inode));
                if let Some(content) = self.unchanged(&node, pnode)? {
                    self.summary.files_unmodified += 1;
                    self.summary.bytes_total += node.size;
                    self.progress.add_file();
                    self.progress.add_bytes(node.size);
                    let mut node = node;
                    if let Some(k) = link {
                        self.links.entry(k).or_insert_with(|| Link::Known {
                            stat: link_stat(&node),
                            content: content.clone(),
                            size: node.size,
                        });
                    }
                    node.content = content;
                    self.builder.push(dir, node, false)?;
                    return Ok(());
                }
                if pnode.is_some() {
                    self.summary.files_changed += 1;
                } else {
                    self.summary.files_new += 1;
                }
                // Another link to an inode this walk has read (or is reading): take its content.
                if let Some(k) = link {
                    let stat = link_stat(&node);
                    match self.links.get_mut(&k) {
                        Some(Link::Known {
                            stat: s,
                            content,
                            size,
                        }) if *s == stat => {
                            let (content, size) = (content.clone(), *size);
                            self.summary.bytes_total += size;
                            self.progress.add_file();
                            self.progress.add_bytes(size);
                            let mut node = node;
                            node.content = content;
                            node.size = size;
                            self.builder.push(dir, node, false)?;
                            return self.drain(false);
                        }
                        Some(Link::Reading { stat: s, waiters }) if *s == stat => {
                            let slot = self.builder.push(dir, node, true)?;
                            waiters.push((dir, slot));
                            return self.drain(false);
                        }
                        // Changed between two links' stats: read it, and let the pending read
                        // of the other link keep its waiters.
                        Some(Link::Reading { .. }) => link = None,
                        _ => {
                            let waiters = Vec::new();
                            self.links.insert(k, Link::Reading { stat, waiters });
                        }
                    }
                }
                let path = parent.join(std::ffi::OsStr::from_bytes(&node.name));
                let want = Scanned {
                    dev: node.device,
                    ino: node.inode,
                    mode: node.mode,
                    uid: node.uid,
                    gid: node.gid,
                };
                let slot = self.builder.push(dir, node, true)?;
                self.outstanding += 1;
                let job = FileJob {
                    dir,
                    slot,
                    path,
                    want,
                    link,
                };
                let tx = self
                    .jobs
                    .clone()
                    .ok_or_else(|| Error::usage("internal error: walker finished"))?;
                // Keep draining results while the readers are busy so finished trees are freed.
                let mut job = Some(job);
                while let Some(j) = job.take() {
                    match tx.send_timeout(j, std::time::Duration::from_millis(20)) {
                        Ok(()) => {}
                        Err(crossbeam_channel::SendTimeoutError::Timeout(j)) => {
                            job = Some(j);
                            self.drain(false)?;
                        }
                        Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => {
                            return Err(Error::usage("internal error: file readers stopped"));
                        }
                    }
                }
            }
            NodeKind::Dir => {
                self.summary.dirs += 1;
                let pt = self.parent_tree(pnode);
                let path = parent.join(std::ffi::OsStr::from_bytes(&node.name));
                let slot = self.builder.push(dir, node, true)?;
                let sub = self.builder.open_dir(Some((dir, slot)));
                self.walk_dir(sub, &path, pt.as_ref().map(|(_, t)| t), key)?;
                self.builder.close_dir_like(
                    sub,
                    pt,
                    &mut WriterSink(self.writer, self.parent_complete),
                )?;
            }
            _ => {
                self.summary.others += 1;
                self.builder.push(dir, node, false)?;
            }
        }
        self.drain(false)
    }

    fn walk_dir(
        &mut self,
        dir: DirHandle,
        path: &Path,
        ptree: Option<&Tree>,
        key: &[u32],
    ) -> Result<()> {
        let listing = self.scanner.list(key, path, self.root_dev);
        for w in listing.warnings {
            self.warn(w);
        }
        let mut child_key = key.to_vec();
        child_key.push(0);
        for (i, node) in listing.entries.into_iter().enumerate() {
            let pnode = ptree.and_then(|t| t.find(&node.name));
            if let Some(k) = child_key.last_mut() {
                *k = i as u32;
            }
            self.walk_node(dir, path, node, pnode, &child_key)?;
        }
        Ok(())
    }
}

/// Back up `opts.paths`. Warnings about unreadable entries go to `warn` and are counted in
/// the summary's `errors`; the snapshot is still written.
pub fn backup(
    repo: &Arc<Repository>,
    opts: &BackupOptions,
    progress: &Progress,
    warn: &(dyn Fn(&str) + Sync),
) -> Result<BackupOutcome> {
    let sources = Sources::start(opts)?;
    backup_sources(repo, opts, sources, progress, warn)
}

/// The source paths of a backup, resolved, with their listing already under way. Needs no
/// repository: start it before unlocking one, and the walk overlaps the key derivation.
#[derive(Debug)]
pub struct Sources {
    trie: Trie,
    tops: Vec<Vec<u8>>,
    scanner: Scanner,
    started: i64,
}

impl Sources {
    /// Resolve `opts.paths` (each must exist) and start listing them on `opts.threads`
    /// threads; `opts.parent` is not used yet.
    pub fn start(opts: &BackupOptions) -> Result<Sources> {
        let started = now_ns();
        if opts.paths.is_empty() {
            return Err(Error::usage("nothing to back up: give at least one path"));
        }
        let mut trie = Trie::default();
        let mut abs_paths: Vec<Vec<u8>> = Vec::new();
        for p in &opts.paths {
            let a = absolute(p)?;
            std::fs::symlink_metadata(&a)
                .map_err(|e| Error::io(format!("cannot back up {}", a.display()), e))?;
            abs_paths.push(a.as_os_str().as_bytes().to_vec());
        }
        abs_paths.sort();
        abs_paths.dedup();
        // Drop paths inside other paths: the outer one covers them.
        let tops: Vec<Vec<u8>> = abs_paths
            .iter()
            .filter(|p| {
                !abs_paths.iter().any(|q| {
                    q != *p
                        && (q.as_slice() == b"/"
                            || p.starts_with(q) && p.get(q.len()) == Some(&b'/'))
                })
            })
            .cloned()
            .collect();
        let mut roots = Vec::new();
        for (i, p) in tops.iter().enumerate() {
            let mut t = &mut trie;
            for c in p.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
                t = t.children.entry(c.to_vec()).or_default();
            }
            t.source = Some(i as u32);
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(p));
            if let Ok(m) = std::fs::symlink_metadata(&path) {
                if m.is_dir() {
                    roots.push((vec![i as u32], path, m.dev()));
                }
            }
        }
        let cfg = scan_config(opts);
        Ok(Sources {
            trie,
            tops,
            scanner: Scanner::start(cfg, roots, opts.threads),
            started,
        })
    }
}

impl Sources {
    /// Count the files and bytes these sources hold (for a progress percentage and ETA) on a
    /// thread of its own; the totals land in `progress` when the count is done.
    pub fn count(&self, opts: &BackupOptions, progress: Arc<Progress>) -> count::Counter {
        let paths = self
            .tops
            .iter()
            .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
            .collect();
        count::Counter::start(paths, scan_config(opts), progress)
    }
}

fn scan_config(opts: &BackupOptions) -> ScanConfig {
    ScanConfig {
        excludes: opts.excludes.clone(),
        exclude_if_present: opts.exclude_if_present.clone(),
        one_file_system: opts.one_file_system,
        atime: opts.atime,
    }
}

/// Back up sources already started with [`Sources::start`] (from the same `opts`).
pub fn backup_sources(
    repo: &Arc<Repository>,
    opts: &BackupOptions,
    sources: Sources,
    progress: &Progress,
    warn: &(dyn Fn(&str) + Sync),
) -> Result<BackupOutcome> {
    let Sources {
        trie,
        tops,
        scanner,
        started,
    } = sources;
    let parent = choose_parent(repo, opts, &tops)?;
    let parent_root = match parent {
        Some(p) => Some(repo.load_tree(&repo.load_snapshot(&p)?.tree)?),
        None => None,
    };

    let writer = BlobWriter::new(
        repo.clone(),
        WriterOptions {
            threads: opts.threads,
            dry_run: opts.dry_run,
        },
    )?;
    // When the parent's blobs are all known present, unchanged files need no lookups.
    let parent_complete = match parent {
        Some(p) => repo.cache().is_complete(&p)?,
        None => false,
    };
    let (jtx, jrx) = bounded::<FileJob>(64);
    let (rtx, rrx) = unbounded::<FileResult>();
    let (mut summary, tree) = std::thread::scope(|s| -> Result<(Summary, Id)> {
        for _ in 0..opts.threads.max(1) {
            let (jrx, rtx, writer) = (jrx.clone(), rtx.clone(), &writer);
            s.spawn(move || {
                for job in jrx {
                    let outcome = read_file(writer, &job.path, &job.want, progress);
                    if rtx
                        .send(FileResult {
                            dir: job.dir,
                            slot: job.slot,
                            outcome,
                            link: job.link,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        drop(rtx);
        let mut w = Walker {
            repo,
            writer: &writer,
            builder: TreeBuilder::new(),
            jobs: Some(jtx),
            results: rrx,
            outstanding: 0,
            opts,
            scanner: &scanner,
            summary: Summary::default(),
            progress,
            warn,
            root_dev: 0,
            fatal: None,
            parent_complete,
            links: HashMap::new(),
        };
        let root = w.builder.open_dir(None);
        let walked = if let Some(k) = trie.source {
            // Backing up "/" itself: its entries are the root tree's.
            w.root_dev = std::fs::symlink_metadata("/").map(|m| m.dev()).unwrap_or(0);
            w.summary.dirs += 1;
            w.walk_dir(root, Path::new("/"), parent_root.as_ref(), &[k])
        } else {
            w.walk_virtual(root, Path::new("/"), &trie, parent_root.as_ref())
        };
        w.jobs.take();
        let drained = w.drain(true);
        walked?;
        drained?;
        if let Some(e) = w.fatal.take() {
            return Err(e);
        }
        w.builder
            .close_dir(root, &mut WriterSink(&writer, parent_complete))?;
        let tree = w
            .builder
            .root()
            .ok_or_else(|| Error::usage("internal error: tree incomplete"))?;
        w.summary.started_ns = started;
        Ok((w.summary, tree))
    })?;
    let added = writer.finish()?;
    summary.blobs_added = added.blobs;
    summary.bytes_added_raw = added.bytes_raw;
    summary.bytes_added_stored = added.bytes_stored;
    summary.finished_ns = now_ns();
    commit_snapshot(repo, opts, tops, tree, parent, summary, added)
}

/// Write the snapshot — always the last object of a backup — unless this is a dry run, and
/// assemble the outcome. `summary.started_ns` is the time recorded when `--time` is not given.
pub(crate) fn commit_snapshot(
    repo: &Repository,
    opts: &BackupOptions,
    paths: Vec<Vec<u8>>,
    tree: Id,
    parent: Option<Id>,
    summary: Summary,
    added: WriterStats,
) -> Result<BackupOutcome> {
    let snap = Snapshot {
        version: VERSION,
        time_ns: opts.time_ns.unwrap_or(summary.started_ns),
        host: opts.host.clone(),
        user: current_user(),
        paths: paths.into_iter().map(serde_bytes::ByteBuf::from).collect(),
        tags: opts.tags.clone(),
        tree,
        parent,
        // What the snapshot really is: without a parent everything was read, so it is full
        // whatever was asked for (the first incremental of a set of paths, a stream).
        kind: if parent.is_none() {
            SnapshotKind::Full
        } else {
            opts.kind
        },
        summary: summary.clone(),
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
    };
    let snapshot = if opts.dry_run {
        None
    } else {
        let id = repo.save_snapshot(&snap)?;
        // Every blob of this snapshot was found in the cache or written by this run; if no
        // blob can have gone since the writer started, the next backup may trust them all.
        // (Only a shortcut: failing to record it costs the next backup some lookups.)
        if repo.cache().generation().ok() == Some(added.generation) {
            let _ = repo.cache().mark_complete(&id, added.generation);
        }
        Some(id)
    };
    Ok(BackupOutcome {
        snapshot,
        parent,
        tree,
        summary,
        added,
    })
}
