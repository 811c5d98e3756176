//! `repair index`: rebuilding the index from the packs themselves.
//!
//! `repair index` reads every pack's header (two ranged reads per pack: the trailer, then the
//! sealed header), writes new index files listing every pack whose header opens, and only then
//! deletes the index files it replaces (the last new file lists them in `supersedes`, so an
//! interruption leaves either the old index or both). A pack marked for deletion in the old
//! index stays marked with its time, so the grace period is not restarted.

use crate::backend::FileType;
use crate::error::Result;
use crate::format::VERSION;
use crate::format::index::{IndexFile, IndexPack};
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::index::write_index_file;
use crate::repo::lock::LockGuard;
use rayon::prelude::*;

/// Entries per new index file, at most (as the writer's).
const INDEX_MAX_BLOBS: usize = 1 << 20;

/// What `repair index` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepairIndexOutcome {
    /// Packs in the store.
    pub packs: u64,
    /// Packs now indexed.
    pub packs_indexed: u64,
    /// Blobs now indexed.
    pub blobs_indexed: u64,
    /// Packs whose header could not be read (left out; their blobs are lost): id and reason.
    pub packs_unreadable: Vec<(Id, String)>,
    /// Packs no old index file listed, now indexed.
    pub packs_added: u64,
    /// Index files written.
    pub index_files_written: u64,
    /// Old index files deleted.
    pub index_files_deleted: u64,
}

/// Rebuild the index from the pack headers while holding `lock`.
pub fn repair_index(repo: &Repository, lock: &LockGuard) -> Result<RepairIndexOutcome> {
    let mut out = RepairIndexOutcome::default();
    let old_files: Vec<Id> = repo
        .backend()
        .list(FileType::Index)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    // What the old index said, for marks (damaged old files are simply skipped).
    repo.refresh_index()?;
    let _ = repo.take_warnings();
    let packs = repo.backend().list(FileType::Pack)?;
    out.packs = packs.len() as u64;

    let mut batch: Vec<IndexPack> = Vec::new();
    let mut batch_blobs = 0;
    let mut written = 0u64;
    let flush =
        |batch: &mut Vec<IndexPack>, supersedes: Vec<Id>, written: &mut u64| -> Result<()> {
            if batch.is_empty() && supersedes.is_empty() {
                return Ok(());
            }
            write_index_file(
                repo,
                IndexFile {
                    version: VERSION,
                    supersedes,
                    packs: std::mem::take(batch),
                },
            )?;
            *written += 1;
            Ok(())
        };
    for chunk in packs.chunks(64) {
        let headers: Vec<_> = chunk
            .par_iter()
            .map(|(id, size)| (*id, *size, repo.read_pack_header(id)))
            .collect();
        for (id, size, h) in headers {
            let h = match h {
                Ok(h) => h,
                Err(e) if e.kind() == crate::ErrorKind::Backend => return Err(e),
                Err(e) => {
                    out.packs_unreadable.push((id, e.to_string()));
                    continue;
                }
            };
            let before = repo.cache().pack(&id)?;
            if before.is_none() {
                out.packs_added += 1;
            }
            let p = IndexPack {
                id,
                size,
                marked_ns: before.and_then(|b| b.marked_ns),
                blobs: h.entries,
            };
            if p.validate().is_err() {
                out.packs_unreadable
                    .push((id, "its header lists blobs outside the pack".into()));
                continue;
            }
            if batch_blobs + p.blobs.len() > INDEX_MAX_BLOBS && !batch.is_empty() {
                lock.check()?;
                flush(&mut batch, Vec::new(), &mut written)?;
                batch_blobs = 0;
            }
            out.packs_indexed += 1;
            out.blobs_indexed += p.blobs.len() as u64;
            batch_blobs += p.blobs.len();
            batch.push(p);
        }
    }
    lock.check()?;
    flush(&mut batch, old_files.clone(), &mut written)?;
    out.index_files_written = written;
    for f in &old_files {
        repo.backend().delete(FileType::Index, &f.to_hex())?;
        out.index_files_deleted += 1;
    }
    Ok(out)
}
