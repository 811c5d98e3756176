//! Browsing snapshots through a read-only FUSE mount.
//!
//! - [`attr`]: kinds, attributes, listing entries and errors as the kernel sees them;
//! - [`listing`]: the virtual folders (`snapshots/`, `ids/`, `hosts/`, `tags/`, `latest`
//!   links), pure;
//! - [`vfs`]: inodes over those folders and the snapshots' trees, attributes, listings,
//!   extended attributes, reads: the whole file system, tested without FUSE;
//! - [`reader`]: `read_at` over a file's blobs, from any [`reader::Source`];
//! - [`source`]: the repository as that source, with its LRUs of decoded trees, decrypted
//!   blobs and blobs read ahead, and the thread that opens those;
//! - [`refresh`]: following the cache and the store while mounted;
//! - [`fuse`]: the thin adapter to the kernel (fuser).
//!
//! The mount never holds the regular cache: it merges the index through it at start, then
//! reads through a RocksDB secondary instance (design.md, "Mount").

pub mod attr;
pub mod fuse;
pub mod listing;
pub mod lru;
pub mod reader;
pub mod refresh;
pub mod source;
#[cfg(test)]
mod testing;
pub mod vfs;

use crate::error::Result;
use crate::repo::Repository;
use refresh::{RefreshOutcome, Refresher};
use source::RepoSource;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vfs::Vfs;

/// The default bound of the LRU of decrypted blobs and decoded trees.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

/// Options of a mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Bytes of decrypted blobs and decoded trees kept in memory.
    pub cache_bytes: u64,
    /// How often to look for new snapshots (zero: never).
    pub refresh: Duration,
    /// How to mount.
    pub fuse: fuse::FuseOptions,
}

/// The file system of `repo` ready to be served, reading through a secondary instance of
/// the cache under `cache_dir` (open `repo` with [`CacheMode::SecondaryElseShared`]).
///
/// - `repo` on a secondary cache: used as it is; the first refresh merges any index file the
///   cache lacks through a short primary session.
/// - `repo` on the regular cache (it did not exist yet): the index is merged and the
///   snapshots are listed through it, then it is reopened as a secondary and `repo` dropped —
///   the caller must hold no other reference to it, or the regular cache stays busy.
/// - `repo` on a private temporary cache (another process held the regular one): kept, and
///   merged into by the refreshes.
pub fn prepare(
    repo: Arc<Repository>,
    cache_dir: &Path,
    cache_bytes: u64,
) -> Result<(Arc<Vfs<RepoSource>>, Refresher)> {
    let reader = repo.into_reader(cache_dir)?;
    let (uid, gid) = (crate::sys::user::euid(), crate::sys::user::egid());
    let vfs = Arc::new(Vfs::new(RepoSource::new(reader, cache_bytes), uid, gid));
    let mut refresher = Refresher::new(cache_dir.to_path_buf());
    refresher.refresh(&vfs)?;
    Ok((vfs, refresher))
}

/// A mounted repository: served by background threads, refreshed by [`Mount::poll`].
pub struct Mount {
    vfs: Arc<Vfs<RepoSource>>,
    refresher: Refresher,
    mounted: fuse::Mounted,
    interval: Duration,
    last: Instant,
}

impl Mount {
    /// Prepare ([`prepare`]) and mount at `mountpoint`.
    pub fn start(
        repo: Arc<Repository>,
        cache_dir: &Path,
        mountpoint: &Path,
        opts: &MountOptions,
    ) -> Result<Mount> {
        fuse::check_available()?;
        let (vfs, refresher) = prepare(repo, cache_dir, opts.cache_bytes)?;
        let mounted = fuse::mount(fuse::FuseFs::new(vfs.clone()), mountpoint, &opts.fuse)?;
        Ok(Mount {
            vfs,
            refresher,
            mounted,
            interval: opts.refresh,
            last: Instant::now(),
        })
    }

    /// The repository session reads go through (for its warning handler).
    pub fn repository(&self) -> &Arc<Repository> {
        self.vfs.source().repository()
    }

    /// Refresh if the interval has passed since the last refresh.
    pub fn poll(&mut self) -> Result<Option<RefreshOutcome>> {
        if self.interval.is_zero() || self.last.elapsed() < self.interval {
            return Ok(None);
        }
        self.last = Instant::now();
        self.refresher.refresh(&self.vfs).map(Some)
    }

    /// Whether the file system was unmounted from outside.
    pub fn is_finished(&self) -> bool {
        self.mounted.is_finished()
    }

    /// Unmount and wait for the serving threads.
    pub fn unmount(self) -> Result<()> {
        self.mounted.unmount()
    }
}
