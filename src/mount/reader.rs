//! Reading through the mount: `read_at` on an open file (a prefix sum of its blobs' raw
//! lengths finds the blobs under a range; only those are fetched), and the repository source
//! with a bounded LRU of decrypted blobs and decoded trees.

use super::lru::Lru;
use crate::cache::BlobLocation;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::Tree;
use crate::id::Id;
use crate::repo::Repository;
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
    /// A sequential reader of a larger file: these blobs of the file come next; the source
    /// may fetch those stored right after this one in the same read.
    Blobs(&'a [Id]),
    /// The whole content of a one-blob file: the bytes stored after it in the pack likely
    /// hold the next files of the folder (a backup stores a folder's files in walk order).
    Neighbours,
    /// A random read: fetch nothing more.
    Nothing,
}

/// Blobs fetched ahead for a sequential reader, at most.
const AHEAD_BLOBS: usize = 8;
/// A one-blob file's blob at most this large is read with the pack bytes after it.
const WINDOW_BLOB_MAX: u64 = 256 << 10;
/// Bytes of a pack read from a small blob on (the blob and what follows it).
const WINDOW_BYTES: u64 = 1 << 20;
/// Windows kept (a backup spreads a folder's files over a few open packs).
const WINDOWS: usize = 16;

/// Sealed pack bytes read after a small blob.
struct Window {
    pack: Id,
    start: u64,
    bytes: bytes::Bytes,
}
/// Bytes of a pack read at once for a sequential reader, at most (the blob asked for and
/// those stored after it).
const AHEAD_BYTES: u64 = 8 << 20;

/// An open file: its blobs and where each ends in the file.
#[derive(Debug)]
pub struct OpenFile {
    content: Vec<Id>,
    /// `ends[i]`: offset just past blob `i` (prefix sum of raw lengths).
    ends: Vec<u64>,
    /// Where the last read ended: a read starting there is sequential (read ahead).
    next: AtomicU64,
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
        })
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
            let next = if self.content.len() == 1 {
                Next::Neighbours
            } else if sequential {
                Next::Blobs(&self.content[i + 1..(i + 1 + AHEAD_BLOBS).min(self.content.len())])
            } else {
                Next::Nothing
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
/// the one pack reader, both kept decoded in a bounded LRU.
pub struct RepoSource {
    repo: Arc<Repository>,
    blobs: Mutex<Lru<Id, Vec<u8>>>,
    trees: Mutex<Lru<Id, Tree>>,
    /// Blobs of index files the cache has not merged yet (see `refresh`).
    overlay: RwLock<HashMap<Id, BlobLocation>>,
    /// Recent windows of pack bytes read after a small blob, newest last.
    windows: Mutex<std::collections::VecDeque<Window>>,
    /// Pack sizes looked up for windows (`None`: unknown to the cache).
    pack_sizes: Mutex<HashMap<Id, Option<u64>>>,
    fetches: AtomicU64,
    fetched_bytes: AtomicU64,
}

impl RepoSource {
    /// A source over `repo` keeping up to `cache_bytes` of decoded blobs and trees (a quarter
    /// for trees).
    pub fn new(repo: Arc<Repository>, cache_bytes: u64) -> Self {
        RepoSource {
            repo,
            blobs: Mutex::new(Lru::new(cache_bytes - cache_bytes / 4)),
            trees: Mutex::new(Lru::new(cache_bytes / 4)),
            overlay: RwLock::new(HashMap::new()),
            windows: Mutex::new(std::collections::VecDeque::new()),
            pack_sizes: Mutex::new(HashMap::new()),
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

    /// The sealed bytes of a blob from a window read earlier, if one holds it.
    fn from_window(&self, loc: &BlobLocation) -> Option<bytes::Bytes> {
        let (off, len) = (u64::from(loc.offset), u64::from(loc.length));
        let w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        w.iter().rev().find_map(|w| {
            let inside =
                w.pack == loc.pack && off >= w.start && off + len <= w.start + w.bytes.len() as u64;
            inside.then(|| {
                w.bytes
                    .slice((off - w.start) as usize..(off - w.start + len) as usize)
            })
        })
    }

    fn pack_size(&self, pack: &Id) -> Result<Option<u64>> {
        let mut sizes = self.pack_sizes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sizes.get(pack) {
            return Ok(*s);
        }
        let size = self.repo.cache().pack(pack)?.map(|p| p.size);
        if sizes.len() >= 1 << 16 {
            sizes.clear();
        }
        sizes.insert(*pack, size);
        Ok(size)
    }

    /// The sealed bytes of small blob `loc` read with up to [`WINDOW_BYTES`] of its pack
    /// after it, kept as a window; `None` when the pack's size is unknown.
    fn read_window(&self, loc: &BlobLocation) -> Result<Option<bytes::Bytes>> {
        let Some(size) = self.pack_size(&loc.pack)? else {
            return Ok(None);
        };
        let (off, len) = (u64::from(loc.offset), u64::from(loc.length));
        let end = (off + WINDOW_BYTES).min(size);
        if end < off + len {
            return Ok(None);
        }
        let bytes = self.repo.read_pack_range(&loc.pack, off..end)?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.fetched_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let sealed = bytes.slice(0..len as usize);
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        w.push_back(Window {
            pack: loc.pack,
            start: off,
            bytes,
        });
        while w.len() > WINDOWS {
            w.pop_front();
        }
        Ok(Some(sealed))
    }

    /// Open sealed bytes of blob `id` and keep the result.
    fn open_and_keep(&self, id: &Id, loc: &BlobLocation, sealed: &[u8]) -> Result<Arc<Vec<u8>>> {
        let raw = Arc::new(self.repo.open_blob(id, loc, sealed)?);
        self.lru_blobs().insert(*id, raw.clone(), raw.len() as u64);
        Ok(raw)
    }

    /// Fetch blob `id`: from a window, or with the pack bytes after it (`Next::Neighbours`,
    /// small blobs), or with the blobs of `Next::Blobs` stored right after it in its pack (not
    /// already held) in the same ranged read; all go into the LRU.
    fn fetch(&self, id: &Id, next: Next<'_>) -> Result<Arc<Vec<u8>>> {
        let loc = self.locate(id)?;
        if let Some(sealed) = self.from_window(&loc) {
            return self.open_and_keep(id, &loc, &sealed);
        }
        let ahead = match next {
            Next::Blobs(b) => b,
            Next::Neighbours if u64::from(loc.length) <= WINDOW_BLOB_MAX => {
                if let Some(sealed) = self.read_window(&loc)? {
                    return self.open_and_keep(id, &loc, &sealed);
                }
                &[]
            }
            _ => &[],
        };
        let mut items = vec![(*id, loc)];
        let first = u64::from(loc.offset);
        for a in ahead {
            if a == id || items.iter().any(|(i, _)| i == a) {
                continue;
            }
            if self.lru_blobs().get(a).is_some() {
                continue;
            }
            let Ok(l) = self.locate(a) else { break };
            let end = u64::from(l.offset) + u64::from(l.length);
            if l.pack != loc.pack || u64::from(l.offset) < first || end - first > AHEAD_BYTES {
                break;
            }
            items.push((*a, l));
        }
        items.sort_by_key(|(_, l)| l.offset);
        let mut wanted: Option<Arc<Vec<u8>>> = None;
        self.repo.read_pack_blobs(
            &loc.pack,
            &items,
            |x| &x.1,
            |(bid, l), sealed| {
                let res = sealed.and_then(|s| {
                    self.fetched_bytes
                        .fetch_add(s.len() as u64, Ordering::Relaxed);
                    self.repo.open_blob(bid, l, s)
                });
                match res {
                    Ok(raw) => {
                        let raw = Arc::new(raw);
                        let w = raw.len() as u64;
                        self.lru_blobs().insert(*bid, raw.clone(), w);
                        if bid == id {
                            wanted = Some(raw);
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
        self.fetches.fetch_add(1, Ordering::Relaxed);
        wanted.ok_or_else(|| Error::not_found(format!("blob {} was not read", id.short())))
    }

    fn lru_blobs(&self) -> std::sync::MutexGuard<'_, Lru<Id, Vec<u8>>> {
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
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
        let f = OpenFile::new(&src, &ids).unwrap();
        f.read_at(&src, 0, 10).unwrap();
        assert_eq!(src.last_next(), Some(AHEAD_BLOBS));
        f.read_at(&src, 10, 10).unwrap();
        assert_eq!(src.last_next(), Some(AHEAD_BLOBS));
        f.read_at(&src, 15_500, 10).unwrap();
        assert_eq!(src.last_next(), Some(0));
        // The last blob has nothing ahead.
        f.read_at(&src, 19_000, 1000).unwrap();
        f.read_at(&src, 19_000, 1000).unwrap();
        assert_eq!(src.last_next(), Some(0));
        // A one-blob file asks for its neighbours in the pack.
        let one = OpenFile::new(&src, &ids[..1]).unwrap();
        one.read_at(&src, 0, 10).unwrap();
        assert_eq!(src.last_next(), None);
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
