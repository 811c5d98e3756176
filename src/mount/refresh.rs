//! Keeping the mount current: every few seconds, follow the cache, merge index files it has
//! not seen, and show snapshots that appeared (or hide those that went).
//!
//! The mount reads through a secondary (read-only) instance of the cache, so it never holds
//! the cache a backup or prune on this host needs. New index files (another host's backup,
//! a prune elsewhere) are merged by a short primary session when the cache is free; while
//! another process holds it, their blobs are kept in an in-memory overlay until that process
//! is done and a later refresh merges them.

use super::listing::{Listing, SnapshotEntry, local_time_name};
use super::source::RepoSource;
use super::vfs::Vfs;
use crate::backend::FileType;
use crate::error::{ErrorKind, Result};
use crate::id::Id;
use crate::index::BlobLocation;
use crate::repo::CacheMode;
use crate::repo::index_files::index_lag;
use crate::repo::warnings::{Warning, skippable};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// The refresh interval when none is given.
pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3);

/// What one refresh did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// The snapshot listing changed.
    pub snapshots_changed: bool,
    /// Index files merged into the cache by a short primary session.
    pub merged: bool,
    /// Index files held in memory because another process holds the cache.
    pub overlay_files: usize,
}

/// The state of the refreshes of one mount.
pub struct Refresher {
    cache_dir: PathBuf,
    /// The last listing of `snapshots/` (id, size), sorted.
    listed: Option<Vec<(Id, u64)>>,
    known: HashMap<Id, SnapshotEntry>,
    /// Index files the cache has not merged: their blobs' locations.
    overlay: HashMap<Id, Vec<(Id, BlobLocation)>>,
    time_name: fn(i64) -> String,
}

impl Refresher {
    /// Refreshes for a mount whose cache lives under `cache_dir`; snapshot folders are named
    /// by local time.
    pub fn new(cache_dir: PathBuf) -> Self {
        Refresher {
            cache_dir,
            listed: None,
            known: HashMap::new(),
            overlay: HashMap::new(),
            time_name: local_time_name,
        }
    }

    /// Name snapshot folders with `f` instead of local time (tests).
    pub fn with_time_name(mut self, f: fn(i64) -> String) -> Self {
        self.time_name = f;
        self
    }

    /// Bring `vfs` up to date: the index first (a snapshot is written after the index files
    /// of its blobs), then the snapshot list. A damaged snapshot is skipped with a warning.
    pub fn refresh(&mut self, vfs: &Vfs<RepoSource>) -> Result<RefreshOutcome> {
        let mut out = RefreshOutcome::default();
        let repo = vfs.source().repository();
        repo.catch_up()?;
        vfs.source().forget_locations();
        self.sync_index(vfs.source(), &mut out)?;
        let listed = repo.list(FileType::Snapshot)?;
        if self.listed.as_ref() == Some(&listed) {
            return Ok(out);
        }
        let mut known = HashMap::with_capacity(listed.len());
        for (id, size) in &listed {
            if let Some(e) = self.known.remove(id) {
                known.insert(*id, e);
                continue;
            }
            match repo.load_snapshot_sized(id, *size) {
                Ok(s) => {
                    known.insert(*id, SnapshotEntry::new(*id, &s));
                }
                // Deleted since the listing (a forget): simply gone.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if skippable(&e) => repo.warn(Warning::skipped(FileType::Snapshot, *id, &e)),
                Err(e) => return Err(e),
            }
        }
        self.known = known;
        self.listed = Some(listed);
        vfs.set_snapshots(Listing::new(
            self.known.values().cloned().collect(),
            &self.time_name,
        ));
        out.snapshots_changed = true;
        Ok(out)
    }

    /// Make the index the mount reads cover every index file listed.
    fn sync_index(&mut self, src: &RepoSource, out: &mut RefreshOutcome) -> Result<()> {
        let repo = src.repository();
        let lag = index_lag(repo)?;
        if lag.is_current() {
            self.set_overlay(src, HashMap::new());
            return Ok(());
        }
        if !repo.is_read_only_cache() {
            // A private cache of our own (the regular one was busy at mount time).
            repo.refresh_index()?;
            self.set_overlay(src, HashMap::new());
            out.merged = true;
            return Ok(());
        }
        match repo.reopen(&self.cache_dir, CacheMode::Primary) {
            Ok(primary) => {
                primary.index()?;
                // New snapshots decrypted once, into the cache, for the next mount too.
                primary.snapshots()?;
                drop(primary);
                repo.catch_up()?;
                self.set_overlay(src, HashMap::new());
                out.merged = true;
            }
            Err(e) if e.kind() == ErrorKind::Locked => {
                let new: HashSet<Id> = lag.new.iter().map(|(id, _)| *id).collect();
                let mut overlay = std::mem::take(&mut self.overlay);
                overlay.retain(|id, _| new.contains(id));
                for (id, size) in &lag.new {
                    if overlay.contains_key(id) {
                        continue;
                    }
                    match repo.load_index_file_sized(id, Some(*size)) {
                        Ok(f) => {
                            let mut blobs = Vec::new();
                            for p in &f.packs {
                                for b in &p.blobs {
                                    let loc =
                                        BlobLocation::of_entry(p.id, b, p.marked_ns.is_some());
                                    blobs.push((b.id, loc));
                                }
                            }
                            overlay.insert(*id, blobs);
                        }
                        // Damaged or gone meanwhile: tried again at the next refresh.
                        Err(e) if skippable(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                out.overlay_files = overlay.len();
                self.set_overlay(src, overlay);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn set_overlay(&mut self, src: &RepoSource, files: HashMap<Id, Vec<(Id, BlobLocation)>>) {
        if files.is_empty() && self.overlay.is_empty() {
            return;
        }
        let mut map = HashMap::new();
        for blobs in files.values() {
            for (id, loc) in blobs {
                // Unmarked locations first, as the cache prefers them.
                match map.get(id) {
                    Some(BlobLocation { marked: false, .. }) => {}
                    _ => {
                        map.insert(*id, *loc);
                    }
                }
            }
        }
        src.set_overlay(map);
        self.overlay = files;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::format::index::IndexPack;
    use crate::format::pack::{BlobKind, PackEntry};
    use crate::mount::reader::Source;
    use crate::repo::{InitOptions, Repository};

    /// A new index file written by another host's session (a throwaway cache: the regular
    /// one does not learn of it), listing blob `blob` in a pack that need not exist.
    fn index_from_elsewhere(repo: &Repository, dir: &std::path::Path, blob: Id) {
        let other = repo.reopen(dir, CacheMode::Throwaway).unwrap();
        crate::repo::index_files::write_index(
            &other,
            vec![IndexPack {
                id: Id::of_stored(b"pack"),
                size: 1000,
                marked_ns: None,
                blobs: vec![PackEntry {
                    kind: BlobKind::Data,
                    id: blob,
                    offset: 0,
                    length: 100,
                    raw_length: 77,
                }],
            }],
        )
        .unwrap();
    }

    #[test]
    fn new_index_files_are_merged_when_the_cache_is_free_and_held_in_memory_when_not() {
        let tmp = tempfile::tempdir().unwrap();
        let cache_dir = tmp.path().join("cache");
        let backend = Backend::open(tmp.path().join("repo").to_str().unwrap(), true).unwrap();
        let opts = InitOptions::for_test();
        drop(Repository::init(backend, b"pw", &opts, &cache_dir).unwrap());
        let backend = Backend::open(tmp.path().join("repo").to_str().unwrap(), false).unwrap();
        let repo =
            Repository::open_with(backend, b"pw", &cache_dir, CacheMode::SecondaryElseShared)
                .unwrap();
        assert!(repo.is_read_only_cache());
        let (vfs, mut refresher) = crate::mount::prepare(repo, &cache_dir, 1 << 20).unwrap();
        let src = vfs.source();
        assert!(src.repository().is_read_only_cache());

        // Another process holds the cache: the new file's blobs are held in memory.
        let holder = src
            .repository()
            .reopen(&cache_dir, CacheMode::Primary)
            .unwrap();
        let (a, b) = (Id::of_stored(b"a"), Id::of_stored(b"b"));
        index_from_elsewhere(src.repository(), &cache_dir, a);
        assert!(src.raw_lengths(&[a]).is_err());
        let out = refresher.refresh(&vfs).unwrap();
        assert_eq!((out.merged, out.overlay_files), (false, 1));
        assert_eq!(src.raw_lengths(&[a]).unwrap(), vec![77]);

        // Free again: merged into the regular cache, which the secondary then follows.
        drop(holder);
        index_from_elsewhere(src.repository(), &cache_dir, b);
        let out = refresher.refresh(&vfs).unwrap();
        assert_eq!((out.merged, out.overlay_files), (true, 0));
        assert_eq!(src.raw_lengths(&[a, b]).unwrap(), vec![77, 77]);
        // Nothing new: nothing done.
        let out = refresher.refresh(&vfs).unwrap();
        assert_eq!(out, RefreshOutcome::default());
        // The regular cache is free for other processes all along but those moments.
        drop(
            src.repository()
                .reopen(&cache_dir, CacheMode::Primary)
                .unwrap(),
        );
    }
}
