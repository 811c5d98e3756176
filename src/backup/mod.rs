//! Backup: walk the sources, compare with the parent snapshot, read what changed through the
//! blob writer, build trees bottom-up, and write the snapshot last.
//!
//! Threads: the walker (caller's thread) stats entries in name order and builds trees; N file
//! readers chunk and hash changed files and hand new chunks to the [`BlobWriter`] pipeline.
//! Memory is bounded by the channels and by the directories still waiting for files.

pub mod amend;
pub mod count;
pub mod node;
pub mod open;
pub mod scan;
mod sources;
pub mod stdin;
mod walker;

pub use amend::{AddedFile, Amendment};
pub use sources::{Sources, absolute};

use crate::error::Result;
use crate::format::VERSION;
use crate::format::pack::BlobKind;
use crate::format::snapshot::{Snapshot, SnapshotKind, Summary};
use crate::format::tree::Tree;
use crate::id::Id;
use crate::patterns::Patterns;
use crate::progress::Observer;
use crate::repo::Repository;
use crate::repo::keys::{current_user, now_ns};
use crate::repo::writer::{BlobWriter, WriterOptions, WriterStats};
use crate::snapshot::builder::TreeSink;
use crate::snapshot::group::GroupBy;
use std::path::PathBuf;
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
    /// A file that disappears between the listing and the read is left out without a warning
    /// (a database's data directory during a base backup: recovery replays what happened to
    /// it). Otherwise it is an unreadable entry like any other.
    pub vanished_ok: bool,
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
        if self.1 {
            // No lookup: rule 3 must then cover the packs by other means.
            self.0.reused_without_lookup();
            return Ok(true);
        }
        self.0.has(id)
    }

    fn store_tree(&mut self, tree: &Tree) -> Result<Id> {
        let bytes = bytes::Bytes::from(tree.encode()?);
        let (id, new) = self.0.add(BlobKind::Tree, bytes.clone())?;
        if new && !self.0.dry_run() {
            // The next backup compares against this tree: spare it the pack read.
            self.0.repo().cache_tree(&id, &bytes)?;
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

/// Back up `opts.paths`. Progress and warnings about unreadable entries go to `observer`; the
/// warnings are counted in the summary's `errors`, and the snapshot is still written.
pub fn backup(
    repo: &Arc<Repository>,
    opts: &BackupOptions,
    observer: &dyn Observer,
) -> Result<BackupOutcome> {
    let sources = Sources::start(opts)?;
    backup_sources(repo, opts, sources, observer)
}

/// Back up sources already started with [`Sources::start`] (from the same `opts`).
pub fn backup_sources(
    repo: &Arc<Repository>,
    opts: &BackupOptions,
    sources: Sources,
    observer: &dyn Observer,
) -> Result<BackupOutcome> {
    backup_sources_amended(repo, opts, sources, observer, &mut || {
        Ok(Amendment::default())
    })
}

/// [`backup_sources`], calling `amend` after the walk (every file read) and before the
/// snapshot is written: the files it returns are added to the snapshot's trees, its `pg` part
/// to the snapshot. An error from `amend` fails the backup (no snapshot).
pub fn backup_sources_amended(
    repo: &Arc<Repository>,
    opts: &BackupOptions,
    sources: Sources,
    observer: &dyn Observer,
    amend: &mut dyn FnMut() -> Result<Amendment>,
) -> Result<BackupOutcome> {
    let _shown = observer.show("backup");
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
        Some(p) => repo.index()?.is_complete(&p)?,
        None => false,
    };
    let (mut summary, tree) = walker::run(walker::Context {
        repo,
        opts,
        writer: &writer,
        scanner: &scanner,
        trie: &trie,
        parent_root: parent_root.as_ref(),
        parent_complete,
        progress: observer.counters(),
        warn: &|w| observer.entry_warning(w),
        started,
    })?;
    let amendment = amend()?;
    let tree = if amendment.files.is_empty() {
        tree
    } else {
        amend::add_files(&writer, tree, &amendment.files)?
    };
    writer.set_root(tree)?;
    let added = writer.finish()?;
    summary.blobs_added = added.blobs;
    summary.bytes_added_raw = added.bytes_raw;
    summary.bytes_added_stored = added.bytes_stored;
    summary.finished_ns = now_ns();
    let done = BackupOutcome {
        snapshot: None,
        parent,
        tree,
        summary,
        added,
    };
    commit_snapshot(repo, opts, tops, done, amendment.pg)
}

/// Write the snapshot of `done` (its `snapshot` still `None`) — always the last object of a
/// backup — unless this is a dry run, and complete the outcome. `summary.started_ns` is the
/// time recorded when `--time` is not given.
pub(crate) fn commit_snapshot(
    repo: &Repository,
    opts: &BackupOptions,
    paths: Vec<Vec<u8>>,
    done: BackupOutcome,
    pg: Option<crate::format::snapshot::PgBase>,
) -> Result<BackupOutcome> {
    let BackupOutcome {
        parent,
        tree,
        summary,
        added,
        ..
    } = done;
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
        pg,
    };
    let snapshot = if opts.dry_run {
        None
    } else {
        let id = repo.save_snapshot(&snap)?;
        // Every blob of this snapshot was found in the cache or written by this run; if no
        // blob can have gone since the writer started, the next backup may trust them all.
        // (Only a shortcut: failing to record it costs the next backup some lookups.)
        if repo.index()?.generation().ok() == Some(added.generation) {
            let _ = repo.index()?.mark_complete(&id, added.generation);
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
