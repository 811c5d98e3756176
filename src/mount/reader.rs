//! Reading through the mount: `read_at` on an open file (a prefix sum of its blobs' raw
//! lengths finds the blobs under a range; only those are fetched), and the repository source
//! with a bounded LRU of decrypted blobs and decoded trees.

use super::lru::Lru;
use crate::cache::BlobLocation;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::Tree;
use crate::id::Id;
use crate::repo::Repository;
#[cfg(doc)]
use crate::repo::reader::runs;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// What the file system reads: trees, blobs and blob lengths by id.
pub trait Source: Send + Sync {
    /// A decoded, verified tree.
    fn tree(&self, id: &Id) -> Result<Arc<Tree>>;
    /// The raw (plaintext) length of each blob, in order.
    fn raw_lengths(&self, ids: &[Id]) -> Result<Vec<u64>>;
    /// A decrypted, verified blob; `next` says what the reader is likely to want after it.
    fn blob(&self, id: &Id, next: Next<'_>) -> Result<Arc<Vec<u8>>>;
}

/// What a reader will probably ask for after a blob: a hint, never needed for correctness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next<'a> {
    /// A sequential reader of a larger file: these blobs of the file come next.
    Blobs(&'a [Id]),
    /// The last blob of a file read from its start: the first blobs of the next files of its
    /// folder (whoever reads a whole file often reads the folder: `cat *`, `cp -r`, `grep -r`).
    Siblings(&'a [Id]),
    /// A random read: fetch nothing more.
    Nothing,
}

/// Blobs fetched ahead for a sequential reader, at most.
const AHEAD_BLOBS: usize = 8;
/// Of the blobs a hint names, those stored at most this far after the one asked for (in the
/// same pack) are read with it, in the same ranged reads.
const AHEAD_BYTES: u64 = 8 << 20;
/// Blobs of the next files named by a [`Next::Siblings`] hint, at most (and per file).
pub const SIBLING_BLOBS: usize = 32;
/// … per file.
pub const SIBLING_BLOBS_PER_FILE: usize = 2;

/// An open file: its blobs and where each ends in the file.
#[derive(Debug)]
pub struct OpenFile {
    content: Vec<Id>,
    /// `ends[i]`: offset just past blob `i` (prefix sum of raw lengths).
    ends: Vec<u64>,
    /// Where the last read ended: a read starting there is sequential (read ahead).
    next: AtomicU64,
    /// First blobs of the files after this one in its folder (see [`Next::Siblings`]).
    siblings: Vec<Id>,
}

impl OpenFile {
    /// Open the file made of `content`: one length lookup per blob, nothing fetched.
    pub fn new<S: Source + ?Sized>(source: &S, content: &[Id]) -> Result<OpenFile> {
        let lens = source.raw_lengths(content)?;
        let mut ends = Vec::with_capacity(lens.len());
        let mut end = 0u64;
        for l in lens {
            end = end
                .checked_add(l)
                .ok_or_else(|| Error::corrupt("a file's blob lengths overflow"))?;
            ends.push(end);
        }
        Ok(OpenFile {
            content: content.to_vec(),
            ends,
            next: AtomicU64::new(0),
            siblings: Vec::new(),
        })
    }

    /// Name the first blobs of the files after this one in its folder, for read-ahead.
    pub fn with_siblings(mut self, siblings: Vec<Id>) -> Self {
        self.siblings = siblings;
        self
    }

    /// The length of the content.
    pub fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `size` bytes at `offset` (fewer only at the end of the file): only the blobs
    /// under the range are read; a read that continues the previous one also lets the source
    /// fetch the next few blobs.
    pub fn read_at<S: Source + ?Sized>(
        &self,
        source: &S,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>> {
        let end = offset.saturating_add(size as u64).min(self.len());
        if offset >= end {
            return Ok(Vec::new());
        }
        let sequential = offset == self.next.load(Ordering::Relaxed);
        let mut out = Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0));
        let mut i = self.ends.partition_point(|&e| e <= offset);
        let mut pos = offset;
        while pos < end {
            let (Some(id), Some(&blob_end)) = (self.content.get(i), self.ends.get(i)) else {
                break;
            };
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            let last = i + 1 == self.content.len();
            let next = if !sequential {
                Next::Nothing
            } else if last {
                Next::Siblings(&self.siblings)
            } else {
                Next::Blobs(&self.content[i + 1..(i + 1 + AHEAD_BLOBS).min(self.content.len())])
            };
            let blob = source.blob(id, next)?;
            if blob.len() as u64 != blob_end - start {
                return Err(Error::corrupt(format!(
                    "blob {} is {} bytes, the index says {}",
                    id.short(),
                    blob.len(),
                    blob_end - start
                )));
            }
            // Both within the blob: start <= pos < min(end, blob_end) <= blob_end.
            let from = (pos - start) as usize;
            let to = (end.min(blob_end) - start) as usize;
            out.extend_from_slice(&blob[from..to]);
            pos = start + to as u64;
            i += 1;
        }
        self.next.store(end, Ordering::Relaxed);
        Ok(out)
    }
}

/// The repository as the mount's [`Source`]: trees from the cache (or fetched), blobs through
/// the one pack reader, kept in bounded LRUs: decoded trees, decrypted blobs, and blobs read
/// ahead (still sealed: opened only when asked for, by whichever thread asks).
pub struct RepoSource {
    repo: Arc<Repository>,
    blobs: Mutex<Lru<Id, Vec<u8>>>,
    trees: Mutex<Lru<Id, Tree>>,
    sealed: Mutex<Lru<Id, Vec<u8>>>,
    /// Held while reading from the store: a thread that wants a blob another thread is
    /// reading ahead waits for it instead of reading it again.
    reading: Mutex<()>,
    /// Blobs of index files the cache has not merged yet (see `refresh`).
    overlay: RwLock<HashMap<Id, BlobLocation>>,
    fetches: AtomicU64,
    fetched_bytes: AtomicU64,
}

impl RepoSource {
    /// A source over `repo` keeping up to `cache_bytes` of decoded trees (a quarter), sealed
    /// blobs read ahead (an eighth) and decrypted blobs (the rest).
    pub fn new(repo: Arc<Repository>, cache_bytes: u64) -> Self {
        let (trees, sealed) = (cache_bytes / 4, cache_bytes / 8);
        RepoSource {
            repo,
            blobs: Mutex::new(Lru::new(cache_bytes - trees - sealed)),
            trees: Mutex::new(Lru::new(trees)),
            sealed: Mutex::new(Lru::new(sealed)),
            reading: Mutex::new(()),
            overlay: RwLock::new(HashMap::new()),
            fetches: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
        }
    }

    /// The repository session reads go through.
    pub fn repository(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// Replace the locations known beyond the cache's index.
    pub fn set_overlay(&self, overlay: HashMap<Id, BlobLocation>) {
        *self.overlay.write().unwrap_or_else(|e| e.into_inner()) = overlay;
    }

    /// Ranged reads made so far and the bytes they fetched.
    pub fn fetched(&self) -> (u64, u64) {
        (
            self.fetches.load(Ordering::Relaxed),
            self.fetched_bytes.load(Ordering::Relaxed),
        )
    }

    fn locate(&self, id: &Id) -> Result<BlobLocation> {
        match self.repo.locate(id) {
            Err(e) if e.kind() == ErrorKind::NotFound => self
                .overlay
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .copied()
                .ok_or(e),
            r => r,
        }
    }

    fn lru_blobs(&self) -> std::sync::MutexGuard<'_, Lru<Id, Vec<u8>>> {
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lru_sealed(&self) -> std::sync::MutexGuard<'_, Lru<Id, Vec<u8>>> {
        self.sealed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open sealed bytes of blob `id` and keep the result.
    fn open_and_keep(&self, id: &Id, loc: &BlobLocation, sealed: &[u8]) -> Result<Arc<Vec<u8>>> {
        let raw = Arc::new(self.repo.open_blob(id, loc, sealed)?);
        self.lru_blobs().insert(*id, raw.clone(), raw.len() as u64);
        Ok(raw)
    }

    /// A blob read ahead earlier, taken out of the sealed LRU.
    fn take_sealed(&self, id: &Id) -> Option<Arc<Vec<u8>>> {
        let mut l = self.lru_sealed();
        let s = l.get(id)?;
        l.remove(id);
        Some(s)
    }

    /// Fetch blob `id` with the blobs `next` names that are stored at most [`AHEAD_BYTES`]
    /// after it in its pack and not held already, in the same ranged reads ([`runs`]); those
    /// are kept sealed.
    fn fetch(&self, id: &Id, next: Next<'_>) -> Result<Arc<Vec<u8>>> {
        let loc = self.locate(id)?;
        if let Some(s) = self.take_sealed(id) {
            return self.open_and_keep(id, &loc, &s);
        }
        let guard = self.reading.lock().unwrap_or_else(|e| e.into_inner());
        // Read ahead by another thread while this one waited?
        if let Some(s) = self.take_sealed(id) {
            drop(guard);
            return self.open_and_keep(id, &loc, &s);
        }
        let (hint, contiguous) = match next {
            Next::Blobs(b) => (b, true),
            Next::Siblings(b) => (b, false),
            Next::Nothing => (&[][..], false),
        };
        let mut items = vec![(*id, loc)];
        let first = u64::from(loc.offset);
        for a in hint {
            if a == id || items.iter().any(|(i, _)| i == a) {
                continue;
            }
            let held = self.lru_blobs().get(a).is_some() || self.lru_sealed().get(a).is_some();
            let near = (!held).then(|| self.locate(a).ok()).flatten().filter(|l| {
                let end = u64::from(l.offset) + u64::from(l.length);
                l.pack == loc.pack && u64::from(l.offset) >= first && end - first <= AHEAD_BYTES
            });
            match near {
                Some(l) => items.push((*a, l)),
                // A file's next blobs are stored in order: the first one elsewhere ends the
                // run. The next files' blobs may lie in other packs: try them all.
                None if contiguous && !held => break,
                None => {}
            }
        }
        items.sort_by_key(|(_, l)| l.offset);
        let mut wanted: Option<Vec<u8>> = None;
        self.repo.read_pack_blobs(
            &loc.pack,
            &items,
            |x| &x.1,
            |(bid, _), sealed| {
                match sealed {
                    Ok(s) => {
                        self.fetched_bytes
                            .fetch_add(s.len() as u64, Ordering::Relaxed);
                        if bid == id {
                            wanted = Some(s.to_vec());
                        } else {
                            self.lru_sealed()
                                .insert(*bid, Arc::new(s.to_vec()), s.len() as u64);
                        }
                        Ok(())
                    }
                    // A blob read ahead that fails is simply not kept; the one asked for is
                    // the caller's error.
                    Err(e) if bid == id => Err(e),
                    Err(_) => Ok(()),
                }
            },
        )?;
        drop(guard);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let sealed =
            wanted.ok_or_else(|| Error::not_found(format!("blob {} was not read", id.short())))?;
        self.open_and_keep(id, &loc, &sealed)
    }
}

/// Roughly the memory a decoded tree takes.
fn tree_weight(t: &Tree) -> u64 {
    t.nodes
        .iter()
        .map(|n| {
            160 + n.name.len()
                + n.link_target.len()
                + n.user.len()
                + n.group.len()
                + 32 * n.content.len()
                + n.xattrs
                    .iter()
                    .map(|x| 48 + x.name.len() + x.value.len())
                    .sum::<usize>()
        })
        .sum::<usize>() as u64
        + 64
}

impl Source for RepoSource {
    fn tree(&self, id: &Id) -> Result<Arc<Tree>> {
        if let Some(t) = self.trees.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(t);
        }
        let what = format!("tree {}", id.short());
        let cached = self
            .repo
            .cache()
            .tree(id)?
            .and_then(|p| Tree::decode(&p, &what).ok());
        let t = match cached {
            Some(t) => t,
            None => {
                let plain = self.fetch(id, Next::Nothing)?;
                self.lru_blobs().remove(id);
                let t = Tree::decode(&plain, &what)?;
                self.repo.cache().put_tree(id, &plain)?;
                t
            }
        };
        let t = Arc::new(t);
        self.trees.lock().unwrap_or_else(|e| e.into_inner()).insert(
            *id,
            t.clone(),
            tree_weight(&t),
        );
        Ok(t)
    }

    fn raw_lengths(&self, ids: &[Id]) -> Result<Vec<u64>> {
        ids.iter()
            .map(|id| self.locate(id).map(|l| u64::from(l.raw_length)))
            .collect()
    }

    fn blob(&self, id: &Id, next: Next<'_>) -> Result<Arc<Vec<u8>>> {
        if let Some(b) = self.lru_blobs().get(id) {
            return Ok(b);
        }
        self.fetch(id, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::testing::MemSource;

    #[test]
    fn read_at_reads_only_the_blobs_under_the_range() {
        let src = MemSource::default();
        let parts: Vec<Vec<u8>> = (0..50u8)
            .map(|i| vec![i; 100 + usize::from(i) * 7])
            .collect();
        let ids: Vec<Id> = parts.iter().map(|p| src.add_blob(p)).collect();
        let whole: Vec<u8> = parts.concat();
        let f = OpenFile::new(&src, &ids).unwrap();
        assert_eq!(f.len(), whole.len() as u64);
        // A read in the middle, off the blob boundaries.
        src.reset_counts();
        let at = 3000u64;
        let got = f.read_at(&src, at, 500).unwrap();
        assert_eq!(got, whole[3000..3500]);
        // Blobs 18 (2871..3097), 19 (..3330) and 20 (..3570) lie under 3000..3500: only those.
        assert_eq!(src.fetched(), 3);
        // Ranges of every kind: empty, at the end, past the end, across many blobs.
        let mut seed = 7u64;
        for _ in 0..300 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let off = (seed >> 33) % (whole.len() as u64 + 50);
            let len = ((seed >> 13) % 3000) as usize;
            let got = f.read_at(&src, off, len).unwrap();
            let s = (off as usize).min(whole.len());
            let e = (off as usize).saturating_add(len).min(whole.len());
            assert_eq!(got, whole[s..e], "offset {off} len {len}");
        }
        assert!(f.read_at(&src, u64::MAX - 1, 10).unwrap().is_empty());
        // An empty file.
        let empty = OpenFile::new(&src, &[]).unwrap();
        assert!(empty.is_empty());
        assert!(empty.read_at(&src, 0, 10).unwrap().is_empty());
    }

    #[test]
    fn sequential_reads_ask_for_the_next_blobs_random_ones_do_not() {
        let src = MemSource::default();
        let ids: Vec<Id> = (0..20u8).map(|i| src.add_blob(&[i; 1000])).collect();
        let sib = src.add_blob(b"next file");
        let f = OpenFile::new(&src, &ids).unwrap().with_siblings(vec![sib]);
        f.read_at(&src, 0, 10).unwrap();
        assert_eq!(src.last_next(), format!("blobs {AHEAD_BLOBS}"));
        f.read_at(&src, 10, 10).unwrap();
        assert_eq!(src.last_next(), format!("blobs {AHEAD_BLOBS}"));
        f.read_at(&src, 15_500, 10).unwrap();
        assert_eq!(src.last_next(), "nothing");
        // Reaching the last blob in order: the next files.
        f.read_at(&src, 15_510, 4490).unwrap();
        assert_eq!(src.last_next(), "siblings 1");
        // A one-blob file read from its start: the next files at once.
        let one = OpenFile::new(&src, &ids[..1])
            .unwrap()
            .with_siblings(vec![sib, ids[3]]);
        one.read_at(&src, 0, 10).unwrap();
        assert_eq!(src.last_next(), "siblings 2");
    }

    #[test]
    fn a_blob_of_the_wrong_length_is_an_error_not_a_panic() {
        let src = MemSource::default();
        let a = src.add_blob(b"abcdef");
        src.lie_about_length(&a, 10);
        let f = OpenFile::new(&src, &[a]).unwrap();
        let e = f.read_at(&src, 0, 10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
    }
}
