//! The repository as the mount's [`Source`]: trees from the cache (or fetched), blobs through
//! the one pack reader, kept in bounded LRUs — decoded trees, decrypted blobs, and blobs read
//! ahead, still sealed. A background thread opens (decrypts, verifies) the blobs read ahead
//! while the reader is busy elsewhere; a reader that gets there first opens its blob itself.

use super::lru::Lru;
use super::reader::{Next, Source};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::Tree;
use crate::id::Id;
use crate::index::BlobLocation;
use crate::repo::Repository;
#[cfg(doc)]
use crate::repo::reader::runs;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// Of the blobs a hint names, those stored at most this far after the one asked for (in the
/// same pack) are read with it, in the same ranged reads.
const AHEAD_BYTES: u64 = 8 << 20;
/// Blob locations remembered.
const LOCATIONS: u64 = 1 << 16;
/// Reads whose blobs wait for the background opener, at most (more are opened on demand).
const OPEN_QUEUE: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the readers and the background opener share.
struct Shared {
    repo: Arc<Repository>,
    blobs: Mutex<Lru<Id, Vec<u8>>>,
    sealed: Mutex<Lru<Id, Vec<u8>>>,
    /// Blobs the opener has taken out of `sealed` and not yet put into `blobs`. Taking from
    /// `sealed` and marking here happen under this lock, so a reader never misses a blob in
    /// between (lock order: `opening`, then `sealed`).
    opening: Mutex<HashSet<Id>>,
    opened: Condvar,
}

impl Shared {
    /// Open sealed bytes of blob `id` and keep the result.
    fn open_and_keep(&self, id: &Id, loc: &BlobLocation, sealed: &[u8]) -> Result<Arc<Vec<u8>>> {
        let raw = Arc::new(self.repo.open_blob(id, loc, sealed)?);
        lock(&self.blobs).insert(*id, raw.clone(), raw.len() as u64);
        Ok(raw)
    }

    /// The background opener: open what was read ahead, unless a reader took it first.
    fn opener(&self, rx: crossbeam_channel::Receiver<Vec<(Id, BlobLocation)>>) {
        for (id, loc) in rx.into_iter().flatten() {
            let sealed = {
                let mut opening = lock(&self.opening);
                let s = {
                    let mut sealed = lock(&self.sealed);
                    let s = sealed.get(&id);
                    sealed.remove(&id);
                    s
                };
                if s.is_some() {
                    opening.insert(id);
                }
                s
            };
            let Some(sealed) = sealed else { continue };
            // A blob that fails to open is left for its reader, who reads it again and gets
            // the error.
            let _ = self.open_and_keep(&id, &loc, &sealed);
            lock(&self.opening).remove(&id);
            self.opened.notify_all();
        }
    }
}

/// The repository as the mount's [`Source`] (see the module documentation).
pub struct RepoSource {
    shared: Arc<Shared>,
    trees: Mutex<Lru<Id, Tree>>,
    /// Held while reading from the store: a thread that wants a blob another thread is
    /// reading ahead waits for it instead of reading it again.
    reading: Mutex<()>,
    /// Blobs of index files the cache has not merged yet (see `refresh`).
    overlay: RwLock<HashMap<Id, BlobLocation>>,
    /// Locations looked up lately (read-ahead asks for the same ones again and again),
    /// forgotten at each refresh: a prune may move blobs.
    locations: Mutex<Lru<Id, BlobLocation>>,
    /// To the background opener (dropped with the source, which ends the thread).
    to_open: Option<crossbeam_channel::Sender<Vec<(Id, BlobLocation)>>>,
    fetches: AtomicU64,
    fetched_bytes: AtomicU64,
}

impl RepoSource {
    /// A source over `repo` keeping up to `cache_bytes` of decoded trees (a quarter), sealed
    /// blobs read ahead (an eighth) and decrypted blobs (the rest), with a background thread
    /// opening what is read ahead.
    pub fn new(repo: Arc<Repository>, cache_bytes: u64) -> Self {
        let (trees, sealed) = (cache_bytes / 4, cache_bytes / 8);
        let shared = Arc::new(Shared {
            repo,
            blobs: Mutex::new(Lru::new(cache_bytes - trees - sealed)),
            sealed: Mutex::new(Lru::new(sealed)),
            opening: Mutex::new(HashSet::new()),
            opened: Condvar::new(),
        });
        let (tx, rx) = crossbeam_channel::bounded(OPEN_QUEUE);
        let worker = shared.clone();
        // Without the thread, readers open everything themselves: slower, still correct.
        let to_open = std::thread::Builder::new()
            .name("cairn-open".into())
            .spawn(move || worker.opener(rx))
            .ok()
            .map(|_| tx);
        RepoSource {
            shared,
            trees: Mutex::new(Lru::new(trees)),
            reading: Mutex::new(()),
            overlay: RwLock::new(HashMap::new()),
            locations: Mutex::new(Lru::new(LOCATIONS)),
            to_open,
            fetches: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
        }
    }

    /// The repository session reads go through.
    pub fn repository(&self) -> &Arc<Repository> {
        &self.shared.repo
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

    /// Forget the locations looked up so far (the index may have changed).
    pub fn forget_locations(&self) {
        lock(&self.locations).clear();
    }

    fn locate(&self, id: &Id) -> Result<BlobLocation> {
        if let Some(l) = lock(&self.locations).get(id) {
            return Ok(*l);
        }
        let l = match self.shared.repo.index()?.locate(id) {
            Err(e) if e.kind() == ErrorKind::NotFound => self
                .overlay
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .copied()
                .ok_or(e)?,
            r => r?,
        };
        lock(&self.locations).insert(*id, Arc::new(l), 1);
        Ok(l)
    }

    /// Blob `id` if it is held: decrypted, or read ahead (opened now), or being opened by
    /// the background thread (waited for).
    fn held(&self, id: &Id, loc: &BlobLocation) -> Result<Option<Arc<Vec<u8>>>> {
        loop {
            if let Some(b) = lock(&self.shared.blobs).get(id) {
                return Ok(Some(b));
            }
            let opening = lock(&self.shared.opening);
            let sealed = {
                let mut sealed = lock(&self.shared.sealed);
                let s = sealed.get(id);
                sealed.remove(id);
                s
            };
            if let Some(s) = sealed {
                drop(opening);
                return self.shared.open_and_keep(id, loc, &s).map(Some);
            }
            if !opening.contains(id) {
                return Ok(None);
            }
            // The opener has it: wait (bounded, then look again).
            let _ = self
                .shared
                .opened
                .wait_timeout(opening, Duration::from_millis(100));
        }
    }

    /// Fetch blob `id` with the blobs `next` names that are stored at most [`AHEAD_BYTES`]
    /// after it in its pack and not held already, in the same ranged reads ([`runs`]); those
    /// are kept sealed and handed to the background opener.
    fn fetch(&self, id: &Id, next: Next<'_>) -> Result<Arc<Vec<u8>>> {
        let loc = self.locate(id)?;
        if let Some(b) = self.held(id, &loc)? {
            return Ok(b);
        }
        let guard = lock(&self.reading);
        // Read ahead by another thread while this one waited?
        if let Some(b) = self.held(id, &loc)? {
            return Ok(b);
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
            // One lock at a time (`held` takes `opening` before `sealed`).
            let in_blobs = lock(&self.shared.blobs).contains(a);
            let in_sealed = lock(&self.shared.sealed).contains(a);
            let in_opening = lock(&self.shared.opening).contains(a);
            let held = in_blobs || in_sealed || in_opening;
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
        let mut ahead = Vec::new();
        self.shared.repo.read_pack_blobs(
            &loc.pack,
            &items,
            |x| &x.1,
            |(bid, l), sealed| {
                match sealed {
                    Ok(s) => {
                        self.fetched_bytes
                            .fetch_add(s.len() as u64, Ordering::Relaxed);
                        if bid == id {
                            wanted = Some(s.to_vec());
                        } else {
                            lock(&self.shared.sealed).insert(
                                *bid,
                                Arc::new(s.to_vec()),
                                s.len() as u64,
                            );
                            ahead.push((*bid, *l));
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
        if let (Some(tx), false) = (&self.to_open, ahead.is_empty()) {
            // One message per read (one wake-up); a full queue: the readers open those
            // themselves when they get there.
            let _ = tx.try_send(ahead);
        }
        let sealed =
            wanted.ok_or_else(|| Error::not_found(format!("blob {} was not read", id.short())))?;
        self.shared.open_and_keep(id, &loc, &sealed)
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
        let cached = self.shared.repo.cached_tree(id)?;
        let t = match cached {
            Some(t) => t,
            None => {
                let plain = self.fetch(id, Next::Nothing)?;
                lock(&self.shared.blobs).remove(id);
                let t = Tree::decode(&plain, &what)?;
                self.shared.repo.cache_tree(id, &plain)?;
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
        if let Some(b) = lock(&self.shared.blobs).get(id) {
            return Ok(b);
        }
        self.fetch(id, next)
    }
}
