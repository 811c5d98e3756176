//! `repair index`: rebuilding the index from the packs themselves.
//!
//! `repair index` reads every pack's header (two ranged reads per pack: the trailer, then the
//! sealed header), writes new index files listing every pack whose header opens, and only then
//! deletes the index files it replaces (the last new file lists them in `supersedes`, so an
//! interruption leaves either the old index or both). A pack marked for deletion in the old
//! index stays marked with its time, so the grace period is not restarted.

use crate::backend::FileType;
use crate::error::Result;
use crate::format::index::IndexPack;
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::index::IndexRewriter;
use crate::repo::lock::LockGuard;
use rayon::prelude::*;

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

    let mut index = IndexRewriter::new(repo);
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
            out.packs_indexed += 1;
            out.blobs_indexed += p.blobs.len() as u64;
            index.add(p)?;
        }
    }
    lock.check()?;
    out.index_files_written = index.finish(old_files.clone())?;
    for f in &old_files {
        repo.backend().delete(FileType::Index, &f.to_hex())?;
        out.index_files_deleted += 1;
    }
    Ok(out)
}
