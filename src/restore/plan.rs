//! The restore planner: one depth-first walk of the snapshot (through [`TreeWalk`]) that
//! applies the include and exclude patterns, creates folders (lazily: only those that end up
//! holding something, or are included themselves), makes symlinks, fifos and devices on the
//! spot, and cuts the files into batches for the writer.

use super::meta;
use super::{BATCH_BYTES, Ctx, Dir};
use crate::error::Result;
use crate::format::tree::{Node, NodeKind};
use crate::id::Id;
use crate::index::BlobLocation;
use crate::snapshot::walk::{Step, TreeWalk};
use crate::sys::fs::{self, DirFd};
use crate::warning::EntryProblem;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// One file to write.
pub(super) struct FileJob<'a> {
    pub dir: Arc<Dir<'a>>,
    pub name: CString,
    pub path: PathBuf,
    pub node: Node,
    /// Content blobs found in the index, with the file offset of each.
    pub blobs: Vec<(Id, BlobLocation, u64)>,
    /// Length the blobs give (the snapshot's size may differ, which is warned about).
    pub content_len: u64,
    /// Why some content is missing (a blob not in the index), when it is.
    pub missing: Option<String>,
    /// For the first link of a multiply linked inode: its (device, inode) in the snapshot, so
    /// the writer can record which inode it created for the later links.
    pub link_key: Option<(u64, u64)>,
}

/// A hard link to a file restored earlier (in this batch or a previous one).
pub(super) struct LinkJob<'a> {
    pub dir: Arc<Dir<'a>>,
    pub name: CString,
    pub path: PathBuf,
    /// Names leading from the target to the first link of the inode.
    pub first: Vec<Vec<u8>>,
    /// (device, inode) in the snapshot: finds the inode the first link was restored as.
    pub key: (u64, u64),
}

/// Work for the writer; links are made after the batch's files.
#[derive(Default)]
pub(super) struct Batch<'a> {
    pub files: Vec<FileJob<'a>>,
    pub links: Vec<LinkJob<'a>>,
    bytes: u64,
}

/// One folder on the walk's current path.
struct Level<'a> {
    /// The folder's node (`None` for the restore's top).
    node: Option<Node>,
    /// Its name in its parent.
    name: Vec<u8>,
    /// Open once something inside it is restored (or it is included itself).
    dir: Option<Arc<Dir<'a>>>,
    /// It matched the includes (or an ancestor did): everything below is restored.
    included: bool,
    /// It could not be made: everything below is skipped (the problem was reported once).
    failed: bool,
    /// Counted in the summary (made, or in a dry run would be).
    counted: bool,
}

/// Walk and plan; `top` is the open target (`None` for a dry run, which only counts).
pub(super) fn run<'a>(
    ctx: &'a Ctx<'a>,
    node: &Node,
    spath: &[u8],
    top: Option<Arc<Dir<'a>>>,
    emit: &mut dyn FnMut(Batch<'a>) -> Result<()>,
) -> Result<()> {
    let opts = ctx.opts;
    let top_included =
        !opts.includes.is_empty() && opts.includes.matches(Path::new(OsStr::from_bytes(spath)));
    // A single file named on the command line is restored whatever the patterns say.
    let top_included = top_included || node.kind != NodeKind::Dir;
    let mut walk = match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(tree)) => TreeWalk::new(ctx.repo, &tree, spath)?,
        _ => {
            let parent = match spath.iter().rposition(|&b| b == b'/') {
                Some(i) => &spath[..i],
                None => b"",
            };
            TreeWalk::of_nodes(ctx.repo, vec![node.clone()], parent)
        }
    };
    let mut levels = vec![Level {
        node: None,
        name: Vec::new(),
        dir: top,
        included: top_included,
        failed: false,
        counted: true,
    }];
    let mut p = Planner {
        ctx,
        batch: Batch::default(),
        first_links: HashMap::new(),
    };
    while let Some(step) = walk.next_step() {
        let n = match step {
            Step::Leave => {
                if let Some(l) = levels.pop() {
                    if l.included && !l.counted && !l.failed {
                        // An included folder with nothing restored inside: make it now.
                        levels.push(l);
                        p.open_levels(&mut levels);
                        levels.pop();
                    }
                }
                continue;
            }
            Step::Node(n) => n,
        };
        if levels.last().is_some_and(|l| l.failed) {
            continue;
        }
        let sp = walk.child_path(&n.name);
        let sp_path = Path::new(OsStr::from_bytes(&sp));
        if opts.excludes.matches(sp_path) {
            continue;
        }
        let parent_included = levels.last().is_some_and(|l| l.included);
        let included =
            parent_included || opts.includes.is_empty() || opts.includes.matches(sp_path);
        if n.kind == NodeKind::Dir {
            if let Err(e) = walk.enter(&n) {
                ctx.problem(
                    EntryProblem::Skipped,
                    std::path::Path::new(std::ffi::OsStr::from_bytes(&sp)),
                    format!(
                        "{}: cannot read its folder, skipped: {e}",
                        String::from_utf8_lossy(&sp)
                    ),
                );
                continue;
            }
            levels.push(Level {
                name: n.name.clone(),
                node: Some(n),
                dir: None,
                included,
                failed: false,
                counted: false,
            });
            continue;
        }
        if !included {
            continue;
        }
        p.entry(&mut levels, n, emit)?;
    }
    if !p.batch.files.is_empty() || !p.batch.links.is_empty() {
        emit(std::mem::take(&mut p.batch))?;
    }
    Ok(())
}

struct Planner<'a> {
    ctx: &'a Ctx<'a>,
    batch: Batch<'a>,
    /// (device, inode) of multiply linked files → names of the first link from the target.
    first_links: HashMap<(u64, u64), Vec<Vec<u8>>>,
}

impl<'a> Planner<'a> {
    /// Open (creating as needed) every folder of the current path; `None` when one failed, or
    /// in a dry run. Counts folders as they are made.
    fn open_levels(&mut self, levels: &mut [Level<'a>]) -> Option<Arc<Dir<'a>>> {
        let dry = self.ctx.opts.dry_run;
        let start = levels
            .iter()
            .rposition(|l| l.dir.is_some() || l.failed)
            .unwrap_or(0);
        if dry {
            for l in levels.iter_mut().filter(|l| !l.counted) {
                l.counted = true;
                self.ctx.n.dirs.fetch_add(1, Relaxed);
            }
            return None;
        }
        if levels[start].failed {
            return None;
        }
        for i in start + 1..levels.len() {
            let parent = levels[i - 1].dir.clone()?;
            let l = &mut levels[i];
            let node = l.node.clone()?;
            let path = parent.path.join(OsStr::from_bytes(&l.name));
            match make_dir(self.ctx, &parent.fd, &l.name) {
                Ok(fd) => {
                    l.counted = true;
                    self.ctx.n.dirs.fetch_add(1, Relaxed);
                    l.dir = Some(Arc::new(Dir {
                        fd,
                        path,
                        node: Some(node),
                        _parent: Some(parent),
                        ctx: self.ctx,
                    }));
                }
                Err(e) => {
                    self.ctx.problem(
                        EntryProblem::Create,
                        &path,
                        format!("cannot create folder {}: {e}", path.display()),
                    );
                    l.failed = true;
                    return None;
                }
            }
        }
        levels.last().and_then(|l| l.dir.clone())
    }

    /// A non-folder entry of the current folder.
    fn entry(
        &mut self,
        levels: &mut [Level<'a>],
        n: Node,
        emit: &mut dyn FnMut(Batch<'a>) -> Result<()>,
    ) -> Result<()> {
        let ctx = self.ctx;
        let dry = ctx.opts.dry_run;
        // Dry run: count as if everything could be made.
        let dir = self.open_levels(levels);
        if dir.is_none() && !dry {
            return Ok(());
        }
        let path = |d: &Option<Arc<Dir<'a>>>| -> PathBuf {
            d.as_ref()
                .map(|d| d.path.join(OsStr::from_bytes(&n.name)))
                .unwrap_or_else(|| PathBuf::from(OsStr::from_bytes(&n.name)))
        };
        match n.kind {
            NodeKind::File => {
                let key = (n.device, n.inode);
                let linked = n.nlink > 1 && n.inode != 0;
                if linked {
                    if let Some(first) = self.first_links.get(&key) {
                        ctx.n.others.fetch_add(1, Relaxed);
                        if let Some(d) = dir.clone() {
                            let name = fs::cname(&n.name)
                                .map_err(|e| crate::error::Error::io("bad name", e))?;
                            self.batch.links.push(LinkJob {
                                path: path(&dir),
                                dir: d,
                                name,
                                first: first.clone(),
                                key,
                            });
                            // Links hold descriptors too: they count toward the batch.
                            if self.batch_full() {
                                emit(std::mem::take(&mut self.batch))?;
                            }
                        }
                        return Ok(());
                    }
                    let mut names: Vec<Vec<u8>> =
                        levels.iter().skip(1).map(|l| l.name.clone()).collect();
                    names.push(n.name.clone());
                    self.first_links.insert(key, names);
                }
                ctx.n.files.fetch_add(1, Relaxed);
                ctx.n.bytes.fetch_add(n.size, Relaxed);
                let Some(d) = dir.clone() else {
                    return Ok(());
                };
                let mut job = self.file_job(d, path(&dir), n)?;
                job.link_key = linked.then_some(key);
                self.batch.bytes += job.content_len;
                self.batch.files.push(job);
                if self.batch_full() {
                    emit(std::mem::take(&mut self.batch))?;
                }
            }
            NodeKind::Socket => {
                ctx.n.skipped.fetch_add(1, Relaxed);
            }
            NodeKind::CharDevice | NodeKind::BlockDevice
                if ctx.opts.no_devices || ctx.opts.no_owner =>
            {
                ctx.n.skipped.fetch_add(1, Relaxed);
            }
            NodeKind::CharDevice | NodeKind::BlockDevice if !meta::is_root() => {
                let p = path(&dir);
                ctx.problem(
                    EntryProblem::Skipped,
                    &p,
                    format!(
                        "skipping device {} (only root can create devices)",
                        p.display()
                    ),
                );
            }
            _ => {
                ctx.n.others.fetch_add(1, Relaxed);
                if let Some(d) = &dir {
                    let p = path(&dir);
                    if let Err(m) = make_special(ctx, d, &n, &p) {
                        ctx.problem(EntryProblem::Create, &p, m);
                    }
                }
            }
        }
        Ok(())
    }

    fn batch_full(&self) -> bool {
        self.batch.files.len() + self.batch.links.len() >= self.ctx.batch_files
            || self.batch.bytes >= BATCH_BYTES
    }

    fn file_job(&self, dir: Arc<Dir<'a>>, path: PathBuf, node: Node) -> Result<FileJob<'a>> {
        let name = fs::cname(&node.name).map_err(|e| crate::error::Error::io("bad name", e))?;
        let mut blobs = Vec::with_capacity(node.content.len());
        let mut off = 0u64;
        let mut missing = None;
        for id in &node.content {
            match self.ctx.repo.index()?.locate(id) {
                Ok(loc) => {
                    blobs.push((*id, loc, off));
                    off += u64::from(loc.raw_length);
                }
                Err(e) => {
                    // Later blobs' offsets are unknown without this one's length.
                    missing = Some(format!("{e}; restored only its first {off} bytes"));
                    break;
                }
            }
        }
        if missing.is_none() && off != node.size {
            self.ctx.problem(
                EntryProblem::Damaged,
                &path,
                format!(
                    "{}: snapshot size {} differs from its content ({off} bytes)",
                    path.display(),
                    node.size
                ),
            );
        }
        Ok(FileJob {
            dir,
            name,
            path,
            node,
            blobs,
            content_len: off,
            missing,
            link_key: None,
        })
    }
}

/// Make folder `name` in `parent` (0700 until its own metadata is applied) and open it. In a
/// non-empty target an existing folder is reused and anything else there is replaced.
fn make_dir(ctx: &Ctx<'_>, parent: &DirFd, name: &[u8]) -> std::io::Result<DirFd> {
    let c = fs::cname(name)?;
    if !ctx.fresh {
        match parent.stat_at(&c)? {
            Some(st) if st.is_dir() => {
                // An existing folder is made ours and private until its own metadata is
                // applied, like a new one: nobody else can add, rename or swap entries in it
                // while the restore works there.
                // Best effort: only root can take another user's folder, and a folder we cannot
                // make private is still used (creations in it stay O_EXCL|O_NOFOLLOW).
                let d = parent.open_dir_at(&c)?;
                let fd = std::os::fd::AsFd::as_fd(&d);
                let me = meta::euid();
                let owner = fs::fstat(fd)?.uid;
                if owner == me || fs::chown_fd(fd, me, meta::egid()).is_ok() {
                    let _ = fs::chmod_fd(fd, 0o700);
                }
                return Ok(d);
            }
            Some(_) => parent.remove_at(&c)?,
            None => {}
        }
    }
    match parent.mkdir_at(&c, 0o700) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the name is taken (names that differ only in case on a case-insensitive \
                 target, or an entry made meanwhile)",
            ));
        }
        r => r?,
    }
    parent.open_dir_at(&c)
}

/// Make a symlink, fifo or device and apply its metadata.
fn make_special(ctx: &Ctx<'_>, dir: &Dir<'_>, n: &Node, path: &Path) -> Result<(), String> {
    let c = fs::cname(&n.name).map_err(|e| format!("{}: {e}", path.display()))?;
    if !ctx.fresh {
        match dir.fd.stat_at(&c) {
            Ok(None) => {}
            Ok(Some(_)) => dir
                .fd
                .remove_at(&c)
                .map_err(|e| format!("cannot replace {}: {e}", path.display()))?,
            Err(e) => return Err(format!("cannot look at {}: {e}", path.display())),
        }
    }
    let made = match n.kind {
        NodeKind::Symlink => dir.fd.symlink_at(&n.link_target, &c),
        NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => dir.fd.mknod_at(
            &c,
            meta::type_bits(n.kind) | meta::mode_of(n, ctx.meta),
            if n.kind == NodeKind::Fifo { 0 } else { n.rdev },
        ),
        _ => return Ok(()),
    };
    let what = match n.kind {
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        _ => "device",
    };
    made.map_err(|e| {
        if e.raw_os_error() == Some(libc::EEXIST) {
            format!(
                "cannot create {what} {}: the name is taken (names that differ only in case on a \
                 case-insensitive target?)",
                path.display()
            )
        } else {
            format!("cannot create {what} {}: {e}", path.display())
        }
    })?;
    meta::apply_at(&dir.fd, &c, path, n, ctx.meta)
}
