//! `repair index`: rebuilding the index from the packs themselves.
//!
//! `repair index` reads every pack's header (two ranged reads per pack: the trailer, then the
//! sealed header), writes new index files listing every pack, and only then deletes the index
//! files it replaces (the last new file lists them in `supersedes`, so an interruption leaves
//! either the old index or both). A pack marked for deletion in the old index stays marked with
//! its time, so the grace period is not restarted.
//!
//! It never drops an index entry it cannot disprove:
//! - a header read that fails as damage or absence (a short or flaky answer, a pack that
//!   seemed to vanish) is tried again, [`HEADER_ATTEMPTS`] times in all, before the pack is
//!   called damaged;
//! - a pack whose header still cannot be read keeps the old index's entries for it, each one
//!   confirmed by reading its blob back (decrypted under its id, decompressed, hashed to its
//!   id). Only entries whose blob fails that check are dropped: they name nothing readable;
//! - a pack that neither its header nor the old index describes is left out and reported.
//!   Sealed blobs carry no framing (format.md §10), so a pack's blobs cannot be found without
//!   an id and a length from one of the two; such a pack is not deleted here (a prune deletes
//!   it only when nothing references it, after its grace period).

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexPack;
use crate::format::pack::{PackEntry, PackHeader};
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::index_files::IndexRewriter;
use crate::repo::lock::LockGuard;
use crate::repo::writer::{BlobWriter, WriterOptions};
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Attempts at a pack header (or at an old entry's blob) before a `NotFound` or `Corrupt`
/// answer is believed.
pub const HEADER_ATTEMPTS: u32 = 3;

/// A pack whose header could not be read but whose blobs the old index located: its verified
/// blobs were copied into new packs, and it is left in no index file (a prune deletes it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SalvagedPack {
    /// The pack.
    pub id: Id,
    /// Why its header could not be used.
    pub reason: String,
    /// Old entries confirmed by reading their blob, and kept.
    pub kept: u64,
    /// Old entries whose blob failed its check (dropped), with why (at most a few listed).
    pub dropped: Vec<(Id, String)>,
}

/// What `repair index` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepairIndexOutcome {
    /// Packs in the store.
    pub packs: u64,
    /// Packs now indexed.
    pub packs_indexed: u64,
    /// Blobs now indexed.
    pub blobs_indexed: u64,
    /// Packs whose header could not be read and that no old index entry describes (left out:
    /// their blobs cannot be located): id and reason.
    pub packs_unreadable: Vec<(Id, String)>,
    /// Packs whose header could not be read, indexed from the old index's verified entries.
    pub packs_salvaged: Vec<SalvagedPack>,
    /// Packs no old index file listed, now indexed.
    pub packs_added: u64,
    /// New packs holding the verified blobs of salvaged packs.
    pub new_packs: u64,
    /// Index files written.
    pub index_files_written: u64,
    /// Old index files deleted.
    pub index_files_deleted: u64,
}

impl RepairIndexOutcome {
    /// Whether anything was lost or is still damaged (the command's exit code 3).
    pub fn incomplete(&self) -> bool {
        !self.packs_unreadable.is_empty() || !self.packs_salvaged.is_empty()
    }
}

/// Whether an error may be a flaky answer or real damage (as opposed to a failure of the store
/// or of this machine, which stops the repair).
fn damage_or_absence(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::NotFound | ErrorKind::Corrupt)
}

/// Run `f` up to [`HEADER_ATTEMPTS`] times while it fails with damage or absence, pausing a
/// little longer each time.
fn patiently<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 1;
    loop {
        match f() {
            Err(e) if damage_or_absence(e.kind()) && attempt < HEADER_ATTEMPTS => {
                std::thread::sleep(Duration::from_millis(200 << attempt));
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// Read pack `id` (`size` bytes, from the listing) header, patiently.
fn read_header(repo: &Repository, id: &Id, size: u64) -> Result<PackHeader> {
    patiently(|| repo.read_pack_header_sized(id, size))
}

/// The old entries of a pack confirmed by reading their blobs (with their sealed bytes, to be
/// copied into a new pack), and those dropped with why.
type Salvage = (Vec<(PackEntry, Vec<u8>)>, Vec<(Id, String)>);

/// Confirm the old index's entries for pack `id` by reading each blob back: the entries kept,
/// and those dropped with why. A failure of the store stops everything.
fn salvage(repo: &Repository, id: &Id, size: u64) -> Result<Salvage> {
    let mut old = repo.index()?.blobs_in(id)?;
    old.sort_by_key(|(_, l)| (l.offset, l.length));
    let mut kept = Vec::with_capacity(old.len());
    let mut dropped = Vec::new();
    // Entries past the end of the pack as listed (a truncated pack) name nothing that is there.
    old.retain(|(blob, l)| {
        let inside = u64::from(l.offset) + u64::from(l.length) <= size;
        if !inside {
            dropped.push((*blob, format!("beyond the end of the pack ({size} bytes)")));
        }
        inside
    });
    // A blob read whole that fails its check is damaged: that answer is final. A read that
    // failed (not found, short) gets a second, patient look: a flaky answer is not damage.
    let mut unread = Vec::new();
    repo.read_pack_blobs(
        id,
        &old,
        |(_, l)| l,
        |(blob, loc), sealed| {
            match sealed {
                Ok(s) => match repo.open_blob(blob, loc, s) {
                    Ok(_) => kept.push((*blob, *loc, s.to_vec())),
                    Err(e) if damage_or_absence(e.kind()) => dropped.push((*blob, e.to_string())),
                    Err(e) => return Err(e),
                },
                Err(e) if damage_or_absence(e.kind()) => unread.push((*blob, *loc)),
                Err(e) => return Err(e),
            }
            Ok(())
        },
    )?;
    for (blob, loc) in unread {
        let start = u64::from(loc.offset);
        let r = patiently(|| {
            let sealed = repo.read_pack_range(id, start..start + u64::from(loc.length))?;
            repo.open_blob(&blob, &loc, &sealed)
                .map(|_| sealed.to_vec())
        });
        match r {
            Ok(sealed) => kept.push((blob, loc, sealed)),
            Err(e) if damage_or_absence(e.kind()) => dropped.push((blob, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    kept.sort_by_key(|(_, l, _)| (l.offset, l.length));
    let entries = kept
        .into_iter()
        .map(|(blob, l, sealed)| (l.entry(blob), sealed))
        .collect();
    Ok((entries, dropped))
}

/// Rebuild the index from the pack headers while holding `lock`.
pub fn repair_index(repo: &Arc<Repository>, lock: &LockGuard) -> Result<RepairIndexOutcome> {
    let mut out = RepairIndexOutcome::default();
    let old_files: Vec<Id> = repo
        .list(FileType::Index)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    // What the old index said, for marks and for packs whose header is damaged (damaged old
    // files are simply skipped: what they said cannot be used).
    repo.refresh_index()?;
    let _ = repo.take_warnings();
    let packs = repo.list(FileType::Pack)?;
    out.packs = packs.len() as u64;

    let mut index = IndexRewriter::new(repo);
    // The verified blobs of salvaged packs are copied, sealed as they are, into new packs
    // (with their own index files, stored before the rewritten index drops the damaged pack):
    // nothing then depends on a damaged header, and a prune deletes the old pack as unindexed.
    let mut rewriter: Option<BlobWriter> = None;
    for chunk in packs.chunks(64) {
        let headers: Vec<_> = chunk
            .par_iter()
            .map(|(id, size)| (*id, *size, read_header(repo, id, *size)))
            .collect();
        for (id, size, h) in headers {
            let before = repo.index()?.pack(&id)?;
            let marked_ns = before.as_ref().and_then(|b| b.marked_ns);
            let from_header = match h {
                Ok(h) => {
                    let p = IndexPack {
                        id,
                        size,
                        marked_ns,
                        blobs: h.entries,
                    };
                    // An authenticated header that points outside its pack: only the old
                    // entries, each verified, can still say where its blobs are.
                    match p.validate() {
                        Ok(()) => Ok(p),
                        Err(why) => Err(format!("its header lists blobs outside the pack ({why})")),
                    }
                }
                // In the listing a moment ago, yet "not found" three times: the store is not
                // answering consistently. That disproves nothing; stop before writing anything.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(Error::backend(format!(
                        "{e}, although it is in the listing of data/; nothing was changed: try \
                         again when the store answers consistently"
                    )));
                }
                Err(e) if e.kind() == ErrorKind::Corrupt => Err(e.to_string()),
                Err(e) => return Err(e),
            };
            let p = match from_header {
                Ok(p) => p,
                Err(reason) if before.is_none() => {
                    out.packs_unreadable.push((
                        id,
                        format!(
                            "{reason}; no index file lists it, so its blobs cannot be located \
                             (a pack an earlier `repair index` salvaged: its blobs are in new \
                             packs, and `cairn prune` deletes it)"
                        ),
                    ));
                    continue;
                }
                Err(reason) => {
                    let (entries, dropped) = salvage(repo, &id, size)?;
                    let n = entries.len() as u64;
                    if n == 0 {
                        out.packs_unreadable.push((
                            id,
                            format!("{reason}; none of the old index's entries for it reads back"),
                        ));
                        continue;
                    }
                    let writer = match &mut rewriter {
                        Some(w) => w,
                        None => rewriter.insert(BlobWriter::new(
                            repo.clone(),
                            WriterOptions {
                                threads: 1,
                                dry_run: false,
                            },
                        )?),
                    };
                    for (e, sealed) in entries {
                        writer.add_sealed(e.kind, e.id, sealed, e.raw_length)?;
                    }
                    out.blobs_indexed += n;
                    out.packs_salvaged.push(SalvagedPack {
                        id,
                        reason,
                        kept: n,
                        dropped,
                    });
                    continue;
                }
            };
            if before.is_none() {
                out.packs_added += 1;
            }
            out.packs_indexed += 1;
            out.blobs_indexed += p.blobs.len() as u64;
            index.add(p)?;
        }
    }
    if let Some(w) = rewriter {
        let stats = w.finish()?;
        out.new_packs = stats.packs;
        out.index_files_written += stats.index_files;
    }
    lock.check()?;
    out.index_files_written += index.finish(old_files.clone())?;
    for (i, f) in old_files.iter().enumerate() {
        // A lock check costs a head and a listing: one per batch of deletes, as prune does.
        if i % 16 == 0 {
            lock.check()?;
        }
        repo.delete(FileType::Index, f)?;
        out.index_files_deleted += 1;
    }
    Ok(out)
}
