//! The restore writer: for one batch, create the files (replacing what a non-empty target
//! holds unless it already matches), read the batch's packs in parallel with one ranged read
//! per run of needed blobs, write each blob where it belongs (leaving aligned zero blocks as
//! holes), finish each file through its descriptor as soon as its last blob is in, then make the
//! batch's hard links.

use super::plan::{Batch, FileJob};
use super::{Ctx, Dir, meta, same_content};
use crate::error::Result;
use crate::id::Id;
use crate::index::BlobLocation;
use crate::sys::fs;
use crate::warning::EntryProblem;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

/// Holes are made of whole blocks of this size, aligned in the file.
const BLOCK: u64 = 4096;

/// A file being written.
struct Open {
    file: File,
    /// Blob placements still to write.
    remaining: AtomicUsize,
    /// Some range was left unwritten (zeros, or damage): the length must be set at the end.
    short: AtomicBool,
    /// The first problem with its content, when there is one.
    damage: Mutex<Option<String>>,
    /// The first local write failure (the target, not the repository), when there is one.
    write_error: Mutex<Option<std::io::Error>>,
}

/// One needed blob of a pack and where it goes: (file index, offset).
struct Want {
    loc: BlobLocation,
    id: Id,
    targets: Vec<(usize, u64)>,
}

fn creation_mode(ctx: &Ctx<'_>, job: &FileJob<'_>) -> u32 {
    (meta::mode_of(&job.node, ctx.meta) & 0o777) | 0o600
}

/// Which metadata calls a file created by this restore can skip: the owner when it is already
/// the creator's, the mode when creation already gave the final one (mode & !umask).
fn skips(ctx: &Ctx<'_>, job: &FileJob<'_>) -> meta::Skip {
    match ctx.creator {
        Some((uid, gid, umask)) => meta::Skip {
            owner: (job.node.uid, job.node.gid) == (uid, gid),
            mode: creation_mode(ctx, job) & !umask == meta::mode_of(&job.node, ctx.meta),
        },
        None => meta::Skip::default(),
    }
}

/// Write one batch.
pub(super) fn run<'a>(
    ctx: &Ctx<'a>,
    pool: &rayon::ThreadPool,
    top: &Arc<Dir<'a>>,
    batch: Batch<'a>,
) -> Result<()> {
    let jobs = &batch.files;
    let open: Vec<Option<Open>> =
        pool.install(|| jobs.par_iter().map(|j| prepare(ctx, j)).collect());

    // Which blob goes where, grouped by pack, each blob once.
    let mut by_pack: BTreeMap<Id, Vec<Want>> = BTreeMap::new();
    let mut seen: HashMap<Id, (Id, usize)> = HashMap::new();
    for (i, j) in jobs.iter().enumerate() {
        if open[i].is_none() {
            continue;
        }
        for (id, loc, off) in &j.blobs {
            match seen.get(id) {
                Some((pack, k)) => {
                    if let Some(w) = by_pack.get_mut(pack).and_then(|v| v.get_mut(*k)) {
                        w.targets.push((i, *off));
                    }
                }
                None => {
                    let v = by_pack.entry(loc.pack).or_default();
                    seen.insert(*id, (loc.pack, v.len()));
                    v.push(Want {
                        loc: *loc,
                        id: *id,
                        targets: vec![(i, *off)],
                    });
                }
            }
        }
    }
    drop(seen);
    for v in by_pack.values_mut() {
        v.sort_by_key(|w| w.loc.offset);
    }
    let packs: Vec<(Id, Vec<Want>)> = by_pack.into_iter().collect();
    pool.install(|| {
        packs.par_iter().for_each(|(pack, wants)| {
            // The target is full or read-only: fetching more would only fail again.
            if !ctx.target_gone.load(Relaxed) {
                read_pack(ctx, jobs, &open, pack, wants)
            }
        })
    });
    // Files whose content is damaged are finished here (length set, no metadata, so a rerun
    // does not take them for complete).
    for (j, o) in jobs.iter().zip(&open) {
        let Some(o) = o else { continue };
        let write_error = o.write_error.lock().ok().and_then(|mut d| d.take());
        let damage = o.damage.lock().ok().and_then(|mut d| d.take());
        if let Some(e) = write_error {
            // The target's fault, not the repository's: once per cause, with a count at the end.
            ctx.write_failed(&j.path, &e);
            ctx.progress.add_file();
        } else if ctx.target_gone.load(Relaxed) && o.remaining.load(Relaxed) > 0 {
            ctx.write_failed(
                &j.path,
                &std::io::Error::from(std::io::ErrorKind::StorageFull),
            );
            ctx.progress.add_file();
        } else if let Some(why) = damage {
            let _ = o.file.set_len(j.node.size.max(j.content_len));
            ctx.n.files_damaged.fetch_add(1, Relaxed);
            ctx.problem(
                EntryProblem::Damaged,
                &j.path,
                format!(
                    "{}: content damaged, restored incomplete: {why}",
                    j.path.display()
                ),
            );
            ctx.progress.add_file();
        } else if o.remaining.load(Relaxed) > 0 {
            // Cannot happen (every placement is counted down once); say so rather than hide it.
            ctx.problem(
                EntryProblem::Damaged,
                &j.path,
                format!("{}: not every blob was written", j.path.display()),
            );
        }
    }
    drop(open);
    for l in &batch.links {
        if let Err(m) = make_link(ctx, top, l) {
            ctx.problem(EntryProblem::Create, &l.path, m);
        }
    }
    Ok(())
}

/// Make the target file for `j`; `None` when there is nothing more to do (kept as it was,
/// finished already, or failed and reported).
fn prepare(ctx: &Ctx<'_>, j: &FileJob<'_>) -> Option<Open> {
    let dir = &j.dir.fd;
    if !ctx.fresh {
        match keep_existing(ctx, j) {
            Ok(true) => return None,
            Ok(false) => {}
            Err(m) => {
                ctx.problem(EntryProblem::Create, &j.path, m);
                return None;
            }
        }
    }
    let file = match dir.create_file_at(&j.name, creation_mode(ctx, j)) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            ctx.problem(
                EntryProblem::Create,
                &j.path,
                format!(
                    "cannot create {}: the name is taken (names that differ only in case on a \
                     case-insensitive target, or a file made meanwhile)",
                    j.path.display()
                ),
            );
            return None;
        }
        Err(e) => {
            ctx.problem(
                EntryProblem::Create,
                &j.path,
                format!("cannot create {}: {e}", j.path.display()),
            );
            return None;
        }
    };
    if let Some(key) = j.link_key {
        if let (Ok(st), Ok(mut m)) = (fs::fstat(file.as_fd()), ctx.first_inodes.lock()) {
            m.insert(key, (st.dev, st.ino));
        }
    }
    let placements = j.blobs.len();
    let o = Open {
        file,
        remaining: AtomicUsize::new(placements),
        short: AtomicBool::new(false),
        damage: Mutex::new(j.missing.clone()),
        write_error: Mutex::new(None),
    };
    if placements == 0 {
        if j.missing.is_some() {
            return Some(o);
        }
        finish(ctx, j, &o);
        return None;
    }
    Some(o)
}

/// In a non-empty target: whether the existing entry already is the file (then its metadata is
/// applied and the file counts as unchanged). Anything else there is removed. The file is opened
/// once; its size, link count and content are checked, and its metadata set, through that one
/// descriptor (a file with other links is replaced, never changed under them).
fn keep_existing(ctx: &Ctx<'_>, j: &FileJob<'_>) -> std::result::Result<bool, String> {
    let dir = &j.dir.fd;
    let st = dir
        .stat_at(&j.name)
        .map_err(|e| format!("cannot look at {}: {e}", j.path.display()))?;
    let Some(st) = st else { return Ok(false) };
    if st.is_file() && st.size == j.node.size && j.missing.is_none() {
        if let Ok(f) = dir.open_file_at(&j.name) {
            let same = fs::fstat(f.as_fd()).is_ok_and(|now| {
                now.is_file()
                    && now.nlink == 1
                    && now.size == j.node.size
                    && if ctx.opts.trust_mtime {
                        now.mtime_ns == j.node.mtime_ns
                    } else {
                        same_content(ctx.repo, &f, &j.node).unwrap_or(false)
                    }
            });
            if same {
                if let Some(key) = j.link_key {
                    if let (Ok(now), Ok(mut m)) = (fs::fstat(f.as_fd()), ctx.first_inodes.lock()) {
                        m.insert(key, (now.dev, now.ino));
                    }
                }
                if let Err(m) =
                    meta::apply_fd(f.as_fd(), &j.path, &j.node, ctx.meta, meta::Skip::default())
                {
                    ctx.problem(EntryProblem::Metadata, &j.path, m);
                }
                ctx.n.files_unchanged.fetch_add(1, Relaxed);
                ctx.progress.add_file();
                ctx.progress.add_bytes(j.node.size);
                return Ok(true);
            }
        }
    }
    dir.remove_at(&j.name)
        .map_err(|e| format!("cannot replace {}: {e}", j.path.display()))?;
    Ok(false)
}

/// Fetch and write the wanted blobs of one pack (sorted by offset), through the one pack
/// reader: a blob that cannot be had damages the files that need it, nothing more.
fn read_pack(ctx: &Ctx<'_>, jobs: &[FileJob<'_>], open: &[Option<Open>], pack: &Id, w: &[Want]) {
    let _ = ctx.repo.read_pack_blobs(
        pack,
        w,
        |want| &want.loc,
        |want, sealed| {
            match sealed.and_then(|s| ctx.repo.open_blob(&want.id, &want.loc, s)) {
                Ok(raw) => place(ctx, jobs, open, want, &raw),
                Err(e) => damage(ctx, jobs, open, want, &e.to_string()),
            }
            Ok(())
        },
    );
}

/// Record that `want` could not be had; each file that needed it is damaged.
fn damage(ctx: &Ctx<'_>, jobs: &[FileJob<'_>], open: &[Option<Open>], want: &Want, why: &str) {
    for &(fi, _) in &want.targets {
        if let Some(o) = &open[fi] {
            if let Ok(mut d) = o.damage.lock() {
                d.get_or_insert_with(|| why.to_string());
            }
            o.short.store(true, Relaxed);
            done_one(ctx, &jobs[fi], o);
        }
    }
}

/// Write a blob's bytes to every place that needs them.
fn place(ctx: &Ctx<'_>, jobs: &[FileJob<'_>], open: &[Option<Open>], want: &Want, raw: &[u8]) {
    for &(fi, off) in &want.targets {
        let Some(o) = &open[fi] else { continue };
        match write_sparse(&o.file, raw, off) {
            Ok((n, holes)) => {
                ctx.n.bytes_written.fetch_add(n, Relaxed);
                if holes {
                    o.short.store(true, Relaxed);
                }
            }
            Err(e) => {
                if super::target_is_gone(&e) {
                    ctx.target_gone.store(true, Relaxed);
                }
                if let Ok(mut d) = o.write_error.lock() {
                    d.get_or_insert(e);
                }
            }
        }
        ctx.progress.add_bytes(raw.len() as u64);
        done_one(ctx, &jobs[fi], o);
    }
}

/// One placement of file `j` is done; the last one finishes the file.
fn done_one(ctx: &Ctx<'_>, j: &FileJob<'_>, o: &Open) {
    // AcqRel: the thread that finishes sees every other placement's writes and flags.
    if o.remaining
        .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
        == 1
    {
        let damaged = o.damage.lock().map(|d| d.is_some()).unwrap_or(true)
            || o.write_error.lock().map(|d| d.is_some()).unwrap_or(true);
        if !damaged {
            finish(ctx, j, o);
        }
    }
}

/// Every blob of the file is in: set its length (holes, short content), verify it when asked,
/// then owner, xattrs, mode and times through its descriptor.
fn finish(ctx: &Ctx<'_>, j: &FileJob<'_>, o: &Open) {
    let len = j.node.size.max(j.content_len);
    if o.short.load(Relaxed) || j.content_len < len {
        if let Err(e) = o.file.set_len(len) {
            ctx.problem(
                EntryProblem::Metadata,
                &j.path,
                format!("cannot size {}: {e}", j.path.display()),
            );
            return;
        }
    }
    if ctx.opts.verify {
        match same_content(ctx.repo, &o.file, &j.node) {
            Ok(true) => {
                ctx.n.files_verified.fetch_add(1, Relaxed);
            }
            Ok(false) => ctx.problem(
                EntryProblem::Verify,
                &j.path,
                format!(
                    "verify {}: content differs from the snapshot",
                    j.path.display()
                ),
            ),
            Err(e) => ctx.problem(
                EntryProblem::Verify,
                &j.path,
                format!("verify {}: {e}", j.path.display()),
            ),
        }
    }
    if let Err(m) = meta::apply_fd(o.file.as_fd(), &j.path, &j.node, ctx.meta, skips(ctx, j)) {
        ctx.problem(EntryProblem::Metadata, &j.path, m);
    }
    ctx.progress.add_file();
}

/// Write `raw` at `off`, leaving every whole, aligned block of zeros unwritten (a hole in a new
/// file). Returns the bytes written and whether anything was left out.
fn write_sparse(f: &File, raw: &[u8], off: u64) -> std::io::Result<(u64, bool)> {
    let mut written = 0u64;
    let mut holes = false;
    let mut pos = 0usize;
    // Start of the pending run of data not yet written.
    let mut run_start: Option<usize> = None;
    while pos < raw.len() {
        let file_pos = off + pos as u64;
        let to_boundary = (BLOCK - file_pos % BLOCK) as usize;
        let end = (pos + to_boundary).min(raw.len());
        let block = &raw[pos..end];
        let whole = block.len() as u64 == BLOCK;
        if whole && crate::sys::is_zero(block) {
            if let Some(s) = run_start.take() {
                f.write_all_at(&raw[s..pos], off + s as u64)?;
                written += (pos - s) as u64;
            }
            holes = true;
        } else if run_start.is_none() {
            run_start = Some(pos);
        }
        pos = end;
    }
    if let Some(s) = run_start {
        f.write_all_at(&raw[s..], off + s as u64)?;
        written += (raw.len() - s) as u64;
    }
    Ok((written, holes))
}

/// Hard link `l` to the first link of its inode, reached from the target by descriptors, and
/// only if that name still holds the inode this restore made for it.
fn make_link(
    ctx: &Ctx<'_>,
    top: &Arc<Dir<'_>>,
    l: &super::plan::LinkJob<'_>,
) -> std::result::Result<(), String> {
    let msg = |e: std::io::Error| format!("cannot link {}: {e}", l.path.display());
    let expected = ctx
        .first_inodes
        .lock()
        .ok()
        .and_then(|m| m.get(&l.key).copied())
        .ok_or_else(|| msg(std::io::Error::other("its first link was not restored")))?;
    let (first_name, dirs) = l
        .first
        .split_last()
        .ok_or_else(|| msg(std::io::Error::other("empty path")))?;
    let mut held: Option<fs::DirFd> = None;
    for d in dirs {
        let c = fs::cname(d).map_err(msg)?;
        let next = held
            .as_ref()
            .unwrap_or(&top.fd)
            .open_dir_at(&c)
            .map_err(msg)?;
        held = Some(next);
    }
    let from = held.as_ref().unwrap_or(&top.fd);
    let from_name = fs::cname(first_name).map_err(msg)?;
    let h = from.open_path_at(&from_name).map_err(msg)?;
    let st = fs::fstat(h.as_fd()).map_err(msg)?;
    if !st.is_file() || (st.dev, st.ino) != expected {
        return Err(msg(std::io::Error::other(
            "its first link was replaced during the restore",
        )));
    }
    if !ctx.fresh {
        if let Some(_st) = l.dir.fd.stat_at(&l.name).map_err(msg)? {
            l.dir.fd.remove_at(&l.name).map_err(msg)?;
        }
    }
    l.dir.fd.link_fd_at(&l.name, h.as_fd()).map_err(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_blocks_become_holes() {
        let d = tempfile::tempdir().unwrap();
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(d.path().join("s"))
            .unwrap();
        // 1 MiB of zeros with 100 bytes of data near the middle, written at an unaligned offset.
        let mut raw = vec![0u8; 1 << 20];
        raw[500_000..500_100].fill(7);
        let (n, holes) = write_sparse(&f, &raw, 1000).unwrap();
        assert!(holes);
        assert!(n <= 2 * BLOCK, "wrote {n}");
        f.set_len(1000 + raw.len() as u64).unwrap();
        let mut back = vec![0u8; raw.len()];
        f.read_exact_at(&mut back, 1000).unwrap();
        assert_eq!(back, raw);
        assert!(f.metadata().unwrap().blocks() * 512 <= 16 * 1024);
    }
}
