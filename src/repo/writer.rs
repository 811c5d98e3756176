//! The blob writer: dedup → compress → seal → pack → upload → index, as a pipeline of threads
//! joined by bounded channels (design.md §6).
//!
//! ```text
//! callers ──add()──▶ [compressors ×N] ──▶ [packer] ──▶ [uploaders ×C] ──▶ index batches ──▶ cache
//!   (hash + dedup       (zstd + seal)     (open packs,    (create-only     (every 8 packs)
//!    in caller thread)                     random spread)   puts)
//! ```
//!
//! Ordering rules: a blob enters the cache only after the index file naming its pack is stored,
//! and an index file is written only after its packs are stored. Until then a blob is "in
//! flight" and deduplicated against the in-flight set. An interrupted run therefore leaves
//! only complete packs, complete index files, and no snapshot; the next run reuses whatever was
//! indexed.

use super::Repository;
use super::index_files::{INDEX_MAX_BLOBS, write_index};
use crate::backend::FileType;
use crate::crypto::{SEAL_OVERHEAD, random_bytes};
use crate::error::{Error, Result};
use crate::format::blob;
use crate::format::index::IndexPack;
use crate::format::pack::{BlobKind, PackEntry, PackHeader};
use crate::format::{self, VERSION};
use crate::id::Id;
use crate::index::Generation;
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Packs per index file written during a backup.
const INDEX_BATCH: usize = 8;
/// A pack waits at most about this long for its index file (checked as packs complete).
const INDEX_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(300);
/// Blobs per pack, at most: a pack of tiny blobs closes early, so its header and its index
/// entry stay small whatever the pack size target.
const PACK_MAX_BLOBS: usize = 1 << 18;
/// Data packs open at once; new blobs are spread over them at random so that pack sizes and
/// order do not reveal the sequence of chunk sizes.
const OPEN_DATA_PACKS: usize = 2;

/// Figures of what a writer added.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterStats {
    /// New blobs.
    pub blobs: u64,
    /// Raw bytes of new blobs.
    pub bytes_raw: u64,
    /// Stored bytes (sealed, compressed).
    pub bytes_stored: u64,
    /// Packs written.
    pub packs: u64,
    /// Index files written.
    pub index_files: u64,
    /// The cache's index generation when the writer started: every blob the writer found
    /// present was present at this generation.
    #[serde(skip)]
    pub generation: Generation,
}

/// Writer options.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Compressor threads.
    pub threads: usize,
    /// Count but store nothing.
    pub dry_run: bool,
}

struct Job {
    kind: BlobKind,
    id: Id,
    raw: Bytes,
}

struct SealedBlob {
    kind: BlobKind,
    id: Id,
    data: Vec<u8>,
    raw_len: u32,
}

struct FinishedPack {
    id: Id,
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
}

#[derive(Default)]
struct Shared {
    in_flight: Mutex<HashSet<Id>>,
    /// Packs the snapshot will rely on: those holding blobs this writer deduplicated against,
    /// and those it stored itself (format.md §16, rollback rule 3).
    deduped: Mutex<HashSet<Id>>,
    /// Blobs were reused without any lookup (the parent's "complete" mark): rule 3 then
    /// covers every pack the cache's index lists ([`BlobWriter::reused_without_lookup`]).
    reused_without_lookup: std::sync::atomic::AtomicBool,
    /// The root tree of the snapshot these blobs are for ([`BlobWriter::set_root`]): when the
    /// superset check of rule 3 misses a pack, the snapshot's own blobs decide.
    root: Mutex<Option<Id>>,
    /// When the oldest pack waiting for an index file was stored.
    pending_since: Mutex<Option<std::time::Instant>>,
    error: Mutex<Option<Error>>,
    pending: Mutex<Vec<IndexPack>>,
    blobs: AtomicU64,
    bytes_raw: AtomicU64,
    bytes_stored: AtomicU64,
    packs: AtomicU64,
    index_files: AtomicU64,
}

impl Shared {
    fn fail(&self, e: Error) {
        if let Ok(mut g) = self.error.lock() {
            if g.is_none() {
                *g = Some(e);
            }
        }
    }
    fn failed(&self) -> bool {
        self.error.lock().map(|g| g.is_some()).unwrap_or(true)
    }
    fn take_error(&self) -> Option<Error> {
        self.error.lock().ok().and_then(|mut g| g.take())
    }
}

/// A session that adds blobs to the repository. Cheap to share by reference across threads.
pub struct BlobWriter {
    repo: Arc<Repository>,
    shared: Arc<Shared>,
    tx: Option<Sender<Job>>,
    /// Straight to the packer: blobs sealed already (repack).
    sealed_tx: Option<Sender<SealedBlob>>,
    threads: Vec<JoinHandle<()>>,
    dry_run: bool,
    generation: Generation,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobWriter")
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::usage("internal error: a pipeline thread panicked"))
}

impl BlobWriter {
    /// Start the pipeline's threads.
    pub fn new(repo: Arc<Repository>, opts: WriterOptions) -> Result<BlobWriter> {
        let generation = repo.index()?.generation()?;
        let n = opts.threads.max(1);
        let shared = Arc::new(Shared::default());
        let (tx, rx) = bounded::<Job>(2 * n);
        let (ptx, prx) = bounded::<SealedBlob>(2 * n);
        let (utx, urx) = bounded::<FinishedPack>(0);
        let mut threads = Vec::new();
        for i in 0..n {
            let (rx, ptx, repo, shared) = (rx.clone(), ptx.clone(), repo.clone(), shared.clone());
            threads.push(spawn(&format!("cairn-seal-{i}"), move || {
                compressor(&repo, &shared, &rx, &ptx)
            }));
        }
        let sealed_tx = ptx;
        {
            let (repo, shared) = (repo.clone(), shared.clone());
            threads.push(spawn("cairn-packer", move || {
                packer(&repo, &shared, &prx, utx)
            }));
        }
        // Uploads in flight: `-o connections=N` (2 for a local folder, 5 for a remote store).
        for i in 0..repo.backend().connections() {
            let (urx, repo, shared) = (urx.clone(), repo.clone(), shared.clone());
            let dry = opts.dry_run;
            threads.push(spawn(&format!("cairn-upload-{i}"), move || {
                uploader(&repo, &shared, &urx, dry)
            }));
        }
        Ok(BlobWriter {
            repo,
            shared,
            tx: Some(tx),
            sealed_tx: Some(sealed_tx),
            threads,
            dry_run: opts.dry_run,
            generation,
        })
    }

    /// The repository.
    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// Whether this writer stores nothing.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Whether a blob must be stored: not in the cache (or only in a pack marked for deletion)
    /// and not already in flight. Claims it when it must.
    fn claim(&self, id: &Id) -> Result<bool> {
        if lock(&self.shared.in_flight)?.contains(id) {
            return Ok(false);
        }
        if let Some(loc) = self.repo.index()?.blob(id)? {
            if !loc.marked {
                lock(&self.shared.deduped)?.insert(loc.pack);
                return Ok(false);
            }
        }
        Ok(lock(&self.shared.in_flight)?.insert(*id))
    }

    /// Add a blob; returns its id and whether it was new. Blocks when the pipeline is full.
    pub fn add(&self, kind: BlobKind, raw: Bytes) -> Result<(Id, bool)> {
        let id = self.repo.blob_id(&raw);
        Ok((id, self.add_with_id(kind, id, raw)?))
    }

    /// Add a blob whose id the caller computed.
    pub fn add_with_id(&self, kind: BlobKind, id: Id, raw: Bytes) -> Result<bool> {
        if let Some(e) = self.shared.take_error() {
            return Err(e);
        }
        if !self.claim(&id)? {
            return Ok(false);
        }
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::usage("writer already finished"))?;
        if tx.send(Job { kind, id, raw }).is_err() {
            return Err(self
                .shared
                .take_error()
                .unwrap_or_else(|| Error::usage("blob pipeline stopped")));
        }
        Ok(true)
    }

    /// Add a blob that is sealed already (cut from a pack as stored: compression tag, payload,
    /// seal, with the blob id as associated data), so it moves without being decompressed,
    /// recompressed or sealed again (repack, design.md §14). Only the in-flight set is
    /// consulted: the caller decides which copies to move. Returns whether it was added.
    pub fn add_sealed(
        &self,
        kind: BlobKind,
        id: Id,
        sealed: Vec<u8>,
        raw_len: u32,
    ) -> Result<bool> {
        if let Some(e) = self.shared.take_error() {
            return Err(e);
        }
        if !lock(&self.shared.in_flight)?.insert(id) {
            return Ok(false);
        }
        let tx = self
            .sealed_tx
            .as_ref()
            .ok_or_else(|| Error::usage("writer already finished"))?;
        let b = SealedBlob {
            kind,
            id,
            data: sealed,
            raw_len,
        };
        if tx.send(b).is_err() {
            return Err(self
                .shared
                .take_error()
                .unwrap_or_else(|| Error::usage("blob pipeline stopped")));
        }
        Ok(true)
    }

    /// Whether a blob is known to the repository or in flight (for reusing a parent's lists).
    pub fn has(&self, id: &Id) -> Result<bool> {
        if lock(&self.shared.in_flight)?.contains(id) {
            return Ok(true);
        }
        match self.repo.index()?.blob(id)? {
            Some(l) if !l.marked => {
                lock(&self.shared.deduped)?.insert(l.pack);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The caller reused blobs without looking them up: a parent snapshot's unchanged files or
    /// trees, taken on the strength of its "complete" mark (design.md §9). Their packs are
    /// not known one by one, so at [`Self::finish`] rule 3 covers every pack the cache's index
    /// lists unmarked (all of them if the index generation moved meanwhile): a superset of the
    /// packs those blobs live in, checked against the same one listing of `data/`.
    pub fn reused_without_lookup(&self) {
        self.shared
            .reused_without_lookup
            .store(true, Ordering::Relaxed);
    }

    /// The root tree of the snapshot about to be written with these blobs (stored through this
    /// writer or reused): lets rule 3's superset check ([`Self::reused_without_lookup`]) narrow
    /// a missing pack down to whether this snapshot needs it.
    pub fn set_root(&self, tree: Id) -> Result<()> {
        *lock(&self.shared.root)? = Some(tree);
        Ok(())
    }

    /// Whether the snapshot with root tree `root` needs any blob found only in `gone` packs:
    /// the first such blob. A walk of its trees (from the cache, where this backup's trees and
    /// the parent's are), made only when the superset check missed a pack.
    fn needs_any_of(&self, root: Id, gone: &HashSet<Id>) -> Result<Option<Id>> {
        let index = self.repo.index()?;
        let only_in_gone = |blob: &Id| -> Result<bool> {
            let locs = index.locations(blob)?;
            Ok(!locs.is_empty() && locs.iter().all(|l| gone.contains(&l.pack)))
        };
        let mut seen = HashSet::new();
        let mut stack = vec![root];
        while let Some(tree) = stack.pop() {
            if !seen.insert(tree) {
                continue;
            }
            if only_in_gone(&tree)? {
                return Ok(Some(tree));
            }
            for node in self.repo.load_tree(&tree)?.nodes {
                if let Some(sub) = node.subtree {
                    stack.push(sub);
                }
                for b in &node.content {
                    if only_in_gone(b)? {
                        return Ok(Some(*b));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Rollback rule 3 (format.md §16): every pack this writer deduplicated against, and every
    /// pack it stored, must be in a listing of `data/` made now, so a snapshot never names a
    /// pack that a prune (or the store) removed while the backup ran (a backup that outlived
    /// the grace period). With blobs reused without a lookup, so must every pack the cache's
    /// index lists. One listing, only when there is something to check.
    fn verify_deduped(&self) -> Result<()> {
        let deduped = std::mem::take(&mut *lock(&self.shared.deduped)?);
        let mut indexed = HashSet::new();
        if self.shared.reused_without_lookup.load(Ordering::Relaxed) {
            let index = self.repo.index()?;
            let all = index.generation()? != self.generation;
            index.for_each_pack(|p| {
                if all || p.marked_ns.is_none() {
                    indexed.insert(p.id);
                }
                Ok(())
            })?;
        }
        if deduped.is_empty() && indexed.is_empty() {
            return Ok(());
        }
        let listed: HashSet<Id> = self
            .repo
            .backend()
            .list(FileType::Pack)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if let Some(gone) = deduped.iter().find(|p| !listed.contains(p)) {
            return Err(Error::not_found(format!(
                "pack {} holds blobs this backup needs but is no longer in the repository \
                 (pruned while the backup ran, or lost); no snapshot was written: run \
                 `cairn check`, then `cairn repair index` if it names the pack, and back up again",
                gone.short()
            )));
        }
        let gone: HashSet<Id> = indexed
            .iter()
            .filter(|p| !listed.contains(p))
            .copied()
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        // The superset missed: a pack is gone that this snapshot may not need at all (one
        // used only by another snapshot, lost). Its own blobs decide, when the root is known.
        let root = *lock(&self.shared.root)?;
        let needed = match root {
            Some(root) => self.needs_any_of(root, &gone)?,
            None => gone.iter().next().copied(),
        };
        let Some(blob) = needed else {
            return Ok(());
        };
        let mut names: Vec<String> = gone.iter().take(3).map(Id::short).collect();
        if gone.len() > 3 {
            names.push("…".into());
        }
        Err(Error::not_found(format!(
            "{} of this snapshot is only in packs no longer in the repository ({}: pruned while \
             the backup ran, or lost); this backup reused the parent snapshot's unchanged files \
             without looking up which packs hold them, so no snapshot was written: run `cairn \
             check`, then `cairn repair index` if it names the pack, and back up again",
            if root.is_some() {
                format!("blob {}", blob.short())
            } else {
                "a blob".to_string()
            },
            names.join(", ")
        )))
    }

    /// Flush every pack, write the last index file, and stop the threads.
    pub fn finish(mut self) -> Result<WriterStats> {
        self.tx.take();
        self.sealed_tx.take();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                self.shared
                    .fail(Error::usage("internal error: a pipeline thread panicked"));
            }
        }
        if let Some(e) = self.shared.take_error() {
            return Err(e);
        }
        if !self.dry_run {
            flush_index(&self.repo, &self.shared, true)?;
            self.repo.cache().flush()?;
            self.verify_deduped()?;
        }
        let s = &self.shared;
        Ok(WriterStats {
            blobs: s.blobs.load(Ordering::Relaxed),
            bytes_raw: s.bytes_raw.load(Ordering::Relaxed),
            bytes_stored: s.bytes_stored.load(Ordering::Relaxed),
            packs: s.packs.load(Ordering::Relaxed),
            index_files: s.index_files.load(Ordering::Relaxed),
            generation: self.generation,
        })
    }
}

impl Drop for BlobWriter {
    /// A writer dropped without [`BlobWriter::finish`] (the backup failed: an upload refused
    /// for good, a source error): the packs already stored still get their index file, best
    /// effort, so the next run deduplicates against them instead of uploading them again.
    fn drop(&mut self) {
        self.tx.take();
        self.sealed_tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if !self.dry_run {
            let _ = flush_index(&self.repo, &self.shared, true);
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap_or_else(|e| panic!("cannot start thread {name}: {e}"))
}

fn compressor(repo: &Repository, shared: &Shared, rx: &Receiver<Job>, out: &Sender<SealedBlob>) {
    let level = repo.config().compression_level;
    for job in rx {
        if shared.failed() {
            continue;
        }
        let sealed = blob::compress(&job.raw, level).and_then(|(tag, payload)| {
            let mut out = Vec::new();
            repo.sealer()
                .seal_parts_append(job.id.as_bytes(), &[&[tag], &payload], &mut out)?;
            Ok(out)
        });
        match sealed {
            Ok(data) => {
                let raw_len = job.raw.len() as u32;
                if out
                    .send(SealedBlob {
                        kind: job.kind,
                        id: job.id,
                        data,
                        raw_len,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => shared.fail(e),
        }
    }
}

#[derive(Default)]
struct OpenPack {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl OpenPack {
    fn finish(self, repo: &Repository) -> Result<FinishedPack> {
        let mut buf = self.buf;
        let header = format::encode(&PackHeader {
            version: VERSION,
            entries: self.entries.clone(),
        })?;
        let start = buf.len();
        repo.sealer()
            .seal_append(crate::crypto::label::PACK_HEADER, &header, &mut buf)?;
        let hlen = (buf.len() - start) as u32;
        buf.extend_from_slice(&hlen.to_le_bytes());
        Ok(FinishedPack {
            id: Id::of_stored(&buf),
            bytes: buf,
            entries: self.entries,
        })
    }
}

fn packer(
    repo: &Repository,
    shared: &Shared,
    rx: &Receiver<SealedBlob>,
    out: Sender<FinishedPack>,
) {
    let target = repo.config().pack_size as usize;
    let mut data: Vec<OpenPack> = (0..OPEN_DATA_PACKS).map(|_| OpenPack::default()).collect();
    let mut tree = OpenPack::default();
    let mut rng = [0u8; 8];
    let _ = random_bytes(&mut rng);
    let mut state = u64::from_le_bytes(rng) | 1;
    let emit = |p: OpenPack| -> bool {
        match p.finish(repo) {
            Ok(f) => out.send(f).is_ok(),
            Err(e) => {
                shared.fail(e);
                false
            }
        }
    };
    for b in rx {
        if shared.failed() {
            continue;
        }
        let pack = match b.kind {
            BlobKind::Tree => &mut tree,
            BlobKind::Data => {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                &mut data[(state % OPEN_DATA_PACKS as u64) as usize]
            }
        };
        if pack.buf.capacity() == 0 {
            pack.buf.reserve(target + b.data.len() + 4096);
        }
        let offset = pack.buf.len() as u32;
        pack.buf.extend_from_slice(&b.data);
        pack.entries.push(PackEntry {
            kind: b.kind,
            id: b.id,
            offset,
            length: b.data.len() as u32,
            raw_length: b.raw_len,
        });
        shared.blobs.fetch_add(1, Ordering::Relaxed);
        shared
            .bytes_raw
            .fetch_add(u64::from(b.raw_len), Ordering::Relaxed);
        shared
            .bytes_stored
            .fetch_add(b.data.len() as u64, Ordering::Relaxed);
        if (pack.buf.len() >= target || pack.entries.len() >= PACK_MAX_BLOBS)
            && !emit(std::mem::take(pack))
        {
            return;
        }
    }
    for p in data.into_iter().chain(std::iter::once(tree)) {
        if !p.entries.is_empty() && !shared.failed() && !emit(p) {
            return;
        }
    }
}

fn uploader(repo: &Repository, shared: &Shared, rx: &Receiver<FinishedPack>, dry_run: bool) {
    for p in rx {
        if shared.failed() {
            continue;
        }
        shared.packs.fetch_add(1, Ordering::Relaxed);
        if dry_run {
            continue;
        }
        let size = p.bytes.len() as u64;
        if let Err(e) = repo
            .backend()
            .create_named(FileType::Pack, &p.id, Bytes::from(p.bytes))
        {
            shared.fail(e);
            continue;
        }
        if let Ok(mut d) = shared.deduped.lock() {
            d.insert(p.id);
        }
        // An index file every INDEX_BATCH packs, or sooner when the oldest waiting pack has
        // waited INDEX_MAX_WAIT: a slow backup's packs do not stay unindexed for hours (prune
        // deletes unindexed packs once they are old).
        let waited = shared
            .pending_since
            .lock()
            .map(|mut since| since.get_or_insert_with(std::time::Instant::now).elapsed())
            .unwrap_or_default();
        let ready = match shared.pending.lock() {
            Ok(mut g) => {
                g.push(IndexPack {
                    id: p.id,
                    size,
                    marked_ns: None,
                    blobs: p.entries,
                });
                g.len() >= INDEX_BATCH
                    || pending_blobs(&g) >= INDEX_MAX_BLOBS
                    || waited >= INDEX_MAX_WAIT
            }
            Err(_) => false,
        };
        if ready {
            if let Err(e) = flush_index(repo, shared, waited >= INDEX_MAX_WAIT) {
                shared.fail(e);
            }
        }
    }
}

fn pending_blobs(packs: &[IndexPack]) -> usize {
    packs.iter().map(|p| p.blobs.len()).sum()
}

/// Write the pending packs into an index file (when a batch is full, or at the end).
fn flush_index(repo: &Repository, shared: &Shared, all: bool) -> Result<()> {
    let packs: Vec<IndexPack> = {
        let mut g = lock(&shared.pending)?;
        if g.is_empty() || (!all && g.len() < INDEX_BATCH && pending_blobs(&g) < INDEX_MAX_BLOBS) {
            return Ok(());
        }
        if let Ok(mut since) = shared.pending_since.lock() {
            *since = None;
        }
        std::mem::take(&mut *g)
    };
    let ids: Vec<Id> = packs
        .iter()
        .flat_map(|p| p.blobs.iter().map(|b| b.id))
        .collect();
    write_index(repo, packs)?;
    shared.index_files.fetch_add(1, Ordering::Relaxed);
    let mut f = lock(&shared.in_flight)?;
    for id in ids {
        f.remove(&id);
    }
    Ok(())
}

/// Overhead of a sealed blob beyond its compressed payload (tag byte + nonce + AEAD tag).
pub const BLOB_OVERHEAD: usize = 1 + SEAL_OVERHEAD;
