//! The walk of a backup: the source tree in scan order, compared with the parent; changed
//! files go to reader threads (chunk → `BlobWriter`), unchanged ones reuse the parent's blob
//! lists; hard links are read once; trees are built bottom-up as folders close.

use super::node;
use super::open::{self, OpenError, Scanned};
use super::scan::Scanner;
use super::sources::Trie;
use super::{BackupOptions, WriterSink};
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Summary;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::Id;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::writer::BlobWriter;
use crate::snapshot::builder::{DirHandle, TreeBuilder};
use crate::warning::{EntryProblem, EntrySink, EntryWarning};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a walk needs.
pub(super) struct Context<'a> {
    pub repo: &'a Repository,
    pub opts: &'a BackupOptions,
    pub writer: &'a BlobWriter,
    pub scanner: &'a Scanner,
    pub trie: &'a Trie,
    pub parent_root: Option<&'a Tree>,
    /// Every blob of the parent snapshot is known present.
    pub parent_complete: bool,
    pub progress: &'a Progress,
    pub warn: EntrySink<'a>,
    pub started: i64,
}

/// Walk the sources with `opts.threads` reader threads; returns the summary and the root tree.
pub(super) fn run(c: Context<'_>) -> Result<(Summary, Id)> {
    let Context {
        repo,
        opts,
        writer,
        scanner,
        trie,
        parent_root,
        parent_complete,
        progress,
        warn,
        started,
    } = c;
    let writer: &BlobWriter = writer;
    let (jtx, jrx) = bounded::<FileJob>(64);
    let (rtx, rrx) = unbounded::<FileResult>();
    std::thread::scope(|s| -> Result<(Summary, Id)> {
        for _ in 0..opts.threads.max(1) {
            let (jrx, rtx) = (jrx.clone(), rtx.clone());
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
            writer,
            builder: TreeBuilder::new(),
            jobs: Some(jtx),
            results: rrx,
            outstanding: 0,
            opts,
            scanner,
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
            w.walk_dir(root, Path::new("/"), parent_root, &[k])
        } else {
            w.walk_virtual(root, Path::new("/"), trie, parent_root)
        };
        w.jobs.take();
        let drained = w.drain(true);
        walked?;
        drained?;
        if let Some(e) = w.fatal.take() {
            return Err(e);
        }
        w.builder
            .close_dir(root, &mut WriterSink(writer, parent_complete))?;
        let tree = w
            .builder
            .root()
            .ok_or_else(|| Error::usage("internal error: tree incomplete"))?;
        w.summary.started_ns = started;
        Ok((w.summary, tree))
    })
}

enum FileOutcome {
    Done(Vec<Id>, u64),
    /// Not stored; the warning.
    Unreadable(EntryWarning),
    /// Gone between the scan and the read; the warning (unless the backup expects that).
    Vanished(EntryWarning),
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
    warn: EntrySink<'a>,
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
            return FileOutcome::Unreadable(EntryWarning::new(
                EntryProblem::Changed,
                path,
                format!("{}: {e}", path.display()),
            ));
        }
        Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return FileOutcome::Vanished(unreadable(path, &e));
        }
        Err(OpenError::Io(e)) => {
            return FileOutcome::Unreadable(unreadable(path, &e));
        }
    };
    let mut ids = Vec::new();
    let mut size = 0u64;
    for chunk in writer.repo().chunker().stream_sized(f, Some(m.len())) {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return FileOutcome::Unreadable(unreadable(path, &e));
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

/// "cannot read PATH: ERROR".
fn unreadable(path: &Path, e: &dyn std::fmt::Display) -> EntryWarning {
    EntryWarning::new(
        EntryProblem::Unreadable,
        path,
        format!("cannot read {}: {e}", path.display()),
    )
}

impl Walker<'_> {
    fn warn(&mut self, w: EntryWarning) {
        self.summary.errors += 1;
        (self.warn)(&w);
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
            FileOutcome::Vanished(_) if self.opts.vanished_ok => {
                for (d, slot) in waiters {
                    self.progress.add_file();
                    self.builder.fill_file(d, slot, None, &mut sink)?;
                }
                self.builder.fill_file(r.dir, r.slot, None, &mut sink)
            }
            FileOutcome::Unreadable(mut w) | FileOutcome::Vanished(mut w) => {
                if waiters.is_empty() {
                    self.warn(w);
                } else {
                    w.message = format!("{} (nor {} other links to it)", w.message, waiters.len());
                    self.warn(w);
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
        if self.parent_complete {
            // No lookup: rule 3 must then cover the packs by other means.
            self.writer.reused_without_lookup();
        } else {
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
            Err(e) if self.opts.vanished_ok && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => {
                self.warn(EntryWarning::new(
                    EntryProblem::Unreadable,
                    path,
                    format!("cannot stat {}: {e}", path.display()),
                ));
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
                self.warn(unreadable(path, &e));
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
            self.warn(EntryWarning::new(EntryProblem::Unreadable, path, w));
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
