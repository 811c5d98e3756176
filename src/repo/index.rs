//! Index files and the cache: writing index batches, and merging the repository's index files
//! into the local cache on open.

use super::Repository;
use super::warnings::{self, Warning};
use crate::backend::FileType;
use crate::cache::BlobLocation;
use crate::crypto::label;
use crate::error::Result;
use crate::format::index::{IndexFile, IndexPack};
use crate::format::{self, VERSION};
use crate::id::Id;
use rayon::prelude::*;
use std::collections::HashSet;

fn locations(packs: &[IndexPack]) -> Vec<(Id, BlobLocation)> {
    let mut out = Vec::new();
    for p in packs {
        for b in &p.blobs {
            out.push((
                b.id,
                BlobLocation {
                    pack: p.id,
                    offset: b.offset,
                    length: b.length,
                    raw_length: b.raw_length,
                    kind: b.kind,
                    marked: p.marked_ns.is_some(),
                },
            ));
        }
    }
    out
}

/// Write an index file listing `packs` (already uploaded), then record it in the cache.
/// Returns the index file's id.
pub fn write_index(repo: &Repository, packs: Vec<IndexPack>) -> Result<Id> {
    let file = IndexFile {
        version: VERSION,
        supersedes: Vec::new(),
        packs,
    };
    // What every reader would refuse must not be written: fail the backup instead.
    file.validate(&"new index file")?;
    let plain = format::encode(&file)?;
    let id = repo.save_sealed(FileType::Index, label::INDEX, &plain)?;
    repo.cache().add_index_file(&id, &locations(&file.packs))?;
    Ok(id)
}

/// Bring the cache in line with the repository's index files: merge the ones it has not seen;
/// when one it merged has disappeared (a prune replaced it), rebuild from scratch.
///
/// An index file that is damaged (fails a check, has an invalid entry, is too large) or gone
/// is skipped with a warning and not recorded as merged, so the next open tries it again; the
/// blobs it lists are then unknown (a backup stores them again, a restore that needs them
/// fails naming them). A failure of the store itself stops the merge.
pub fn sync_cache(repo: &Repository) -> Result<()> {
    let listed: Vec<(Id, u64)> = repo.backend().list(FileType::Index)?;
    let listed_set: HashSet<Id> = listed.iter().map(|(id, _)| *id).collect();
    let mut known: HashSet<Id> = repo.cache().known_index_files()?.into_iter().collect();
    if known.iter().any(|k| !listed_set.contains(k)) {
        repo.cache().clear_index()?;
        known.clear();
    }
    let new: Vec<(Id, u64)> = listed
        .into_iter()
        .filter(|(id, _)| !known.contains(id))
        .collect();
    if new.is_empty() {
        return Ok(());
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
                    repo.cache().add_index_file(&id, &locations(&f.packs))?;
                    merged += 1;
                }
                Err(e) if warnings::skippable(&e) => {
                    repo.warn(Warning::skipped(FileType::Index, id, &e));
                }
                Err(e) => return Err(e),
            }
        }
    }
    repo.cache().flush()?;
    if merged >= COMPACT_AFTER {
        repo.cache().compact_blobs()?;
    }
    Ok(())
}

/// Merging at least this many index files at once (a rebuilt cache, a long-unused host) is
/// followed by a compaction of the blob lookups.
const COMPACT_AFTER: usize = 64;
