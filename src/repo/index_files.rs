//! Index files and the cache: writing index batches, and merging the repository's index files
//! into the local cache on open.

use super::Repository;
use super::warnings::{self, Warning};
use crate::backend::FileType;
use crate::crypto::label;
use crate::error::Result;
use crate::format::index::{IndexFile, IndexPack};
use crate::format::{self, VERSION};
use crate::id::Id;
use rayon::prelude::*;
use std::collections::HashSet;

/// Write an index file listing `packs` (already uploaded), then record it in the cache.
/// Returns the index file's id.
pub fn write_index(repo: &Repository, packs: Vec<IndexPack>) -> Result<Id> {
    write_index_file(
        repo,
        IndexFile {
            version: VERSION,
            supersedes: Vec::new(),
            packs,
        },
    )
}

/// Write an index file (every pack it lists already stored), then record it in the cache,
/// including what it supersedes.
pub fn write_index_file(repo: &Repository, file: IndexFile) -> Result<Id> {
    // What every reader would refuse must not be written: fail the backup instead.
    file.validate(&"new index file")?;
    let plain = format::encode(&file)?;
    let id = repo.save_sealed(FileType::Index, label::INDEX, &plain)?;
    merge(repo, &id, &file)?;
    Ok(id)
}

/// Merge one index file into the cache: add it, then forget the files it supersedes (and
/// remember them as superseded, so they are never merged again). Adding first means a pack
/// both list never loses its locations in between (a prune's new index lists most packs of the
/// files it replaces).
fn merge(repo: &Repository, id: &Id, file: &IndexFile) -> Result<()> {
    let cache = repo.index_store();
    if cache.is_superseded(id)? {
        return Ok(());
    }
    cache.add_index_file(id, file)?;
    for s in &file.supersedes {
        cache.record_superseded(s)?;
        cache.remove_index_file(s)?;
    }
    Ok(())
}

/// Bring the cache in line with the repository's index files: forget the ones that have
/// disappeared (a prune replaced them), merge the ones it has not seen, honouring
/// `supersedes`. An index file that a merged one supersedes is never merged again, even when
/// it is listed (a prune that has not deleted it yet, or a store serving an old file again:
/// format.md §16, rollback).
///
/// An index file that is damaged (fails a check, has an invalid entry, is too large) or gone
/// is skipped with a warning and not recorded as merged, so the next sync tries it again; the
/// blobs it lists are then unknown (a backup stores them again, a restore that needs them
/// fails naming them). A failure of the store itself stops the merge.
pub fn sync_cache(repo: &Repository) -> Result<SyncOutcome> {
    let listed: Vec<(Id, u64)> = repo.backend().list(FileType::Index)?;
    let mut outcome = SyncOutcome {
        listed: listed.iter().map(|(id, _)| *id).collect(),
        skipped: Vec::new(),
    };
    let Compared { gone, new } = compare(repo, &listed)?;
    for g in &gone {
        repo.index_store().remove_index_file(g)?;
    }
    if new.is_empty() {
        return Ok(outcome);
    }
    let mut merged = 0;
    // Decode in parallel, a bounded number at a time, so memory stays flat however many there are.
    for batch in new.chunks(64) {
        let files: Vec<(Id, Result<IndexFile>)> = batch
            .par_iter()
            .map(|(id, size)| (*id, repo.load_index_file_sized(id, Some(*size))))
            .collect();
        for (id, f) in files {
            match f {
                Ok(f) => {
                    merge(repo, &id, &f)?;
                    merged += 1;
                }
                Err(e) if warnings::skippable(&e) => {
                    repo.warn(Warning::skipped(FileType::Index, id, &e));
                    outcome.skipped.push(id);
                }
                Err(e) => return Err(e),
            }
        }
    }
    repo.cache().flush()?;
    if merged >= COMPACT_AFTER {
        repo.index_store().compact_blobs()?;
    }
    Ok(outcome)
}

/// How far the cache's index is behind the store: index files listed that it has neither
/// merged nor seen superseded (`new`, with their listed sizes), and how many merged ones are no
/// longer listed (`gone`: a prune replaced them). One listing of `index/`, nothing written, so
/// it works on a read-only (secondary) cache too.
pub fn index_lag(repo: &Repository) -> Result<IndexLag> {
    let listed: Vec<(Id, u64)> = repo.backend().list(FileType::Index)?;
    let Compared { gone, new } = compare(repo, &listed)?;
    let gone = gone.len();
    Ok(IndexLag { new, gone })
}

/// The merged index files no longer in `listed` (a prune replaced them), and the listed ones
/// neither merged nor seen superseded, with their sizes.
fn compare(repo: &Repository, listed: &[(Id, u64)]) -> Result<Compared> {
    let store = repo.index_store();
    let listed_set: HashSet<Id> = listed.iter().map(|(id, _)| *id).collect();
    let known: HashSet<Id> = store.known_index_files()?.into_iter().collect();
    let gone = known
        .iter()
        .filter(|k| !listed_set.contains(k))
        .copied()
        .collect();
    let mut new = Vec::new();
    for &(id, size) in listed {
        if !known.contains(&id) && !store.is_superseded(&id)? {
            new.push((id, size));
        }
    }
    Ok(Compared { gone, new })
}

/// See [`compare`].
struct Compared {
    gone: Vec<Id>,
    new: Vec<(Id, u64)>,
}

/// See [`index_lag`].
#[derive(Debug, Clone, Default)]
pub struct IndexLag {
    /// Listed index files the cache has not merged (nor seen superseded), with their sizes.
    pub new: Vec<(Id, u64)>,
    /// Merged index files no longer listed.
    pub gone: usize,
}

impl IndexLag {
    /// Whether the cache's index matches the listing.
    pub fn is_current(&self) -> bool {
        self.new.is_empty() && self.gone == 0
    }
}

/// What one merge saw.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    /// The index files listed when it started.
    pub listed: Vec<Id>,
    /// Those that could not be read (damaged, gone): skipped with a warning, not merged.
    pub skipped: Vec<Id>,
}

/// Merging at least this many index files at once (a rebuilt cache, a long-unused host) is
/// followed by a compaction of the blob lookups.
const COMPACT_AFTER: usize = 64;

/// Writes a replacement index (prune, `repair index`): packs are added one at a time and
/// written in files of at most [`INDEX_MAX_BLOBS`] entries; [`IndexRewriter::finish`] writes
/// the last file, which alone lists the files replaced in `supersedes`, so that until it is
/// stored the old files still count (design.md §16).
pub struct IndexRewriter<'r> {
    repo: &'r Repository,
    batch: Vec<IndexPack>,
    blobs: usize,
    written: u64,
}

/// Entries per index file, at most: the same bound as a backup's batches, far below what a
/// reader accepts (`backend::MAX_INDEX_SIZE`).
pub const INDEX_MAX_BLOBS: usize = 1 << 20;

impl<'r> IndexRewriter<'r> {
    /// A rewriter for `repo`.
    pub fn new(repo: &'r Repository) -> Self {
        IndexRewriter {
            repo,
            batch: Vec::new(),
            blobs: 0,
            written: 0,
        }
    }

    /// Add a pack; writes the batch first when the pack would overflow it.
    pub fn add(&mut self, pack: IndexPack) -> Result<()> {
        if self.blobs + pack.blobs.len() > INDEX_MAX_BLOBS && !self.batch.is_empty() {
            self.write(Vec::new())?;
        }
        self.blobs += pack.blobs.len();
        self.batch.push(pack);
        Ok(())
    }

    fn write(&mut self, supersedes: Vec<Id>) -> Result<()> {
        if self.batch.is_empty() && supersedes.is_empty() {
            return Ok(());
        }
        write_index_file(
            self.repo,
            IndexFile {
                version: VERSION,
                supersedes,
                packs: std::mem::take(&mut self.batch),
            },
        )?;
        self.blobs = 0;
        self.written += 1;
        Ok(())
    }

    /// Write the last file, superseding `replaced`; returns the number of files written.
    pub fn finish(mut self, replaced: Vec<Id>) -> Result<u64> {
        self.write(replaced)?;
        Ok(self.written)
    }
}
