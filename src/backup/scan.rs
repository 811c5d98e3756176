//! The scanner: lists directories and reads their entries' metadata (`readdir`, `lstat`,
//! extended attributes, link targets) on worker threads, ahead of the walker and in the
//! walker's own order, so that a backup of a tree that barely changed is not one thread of
//! syscalls. It needs no repository, so it can start while the key is still being derived.
//!
//! Directories are named by their position in the walk: the key `[2, 0, 5]` is the sixth
//! entry of the first entry of the third source. Keys compare in walk order (depth first,
//! names sorted), and workers always take the smallest pending key, so what they list next is
//! what the walker will ask for next. Listings wait for the walker up to a budget of entries;
//! when the walker asks for a directory no worker has started, it lists it itself, so the
//! budget can never stall the walk.

use super::node::{Names, node_from};
use crate::format::tree::{Node, NodeKind};
use crate::patterns::Patterns;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Entries listed ahead of the walker, at most (a few MB of metadata).
const BUDGET: usize = 8 * 1024;

/// What to leave out and what to record.
#[derive(Debug, Clone, Default)]
pub struct ScanConfig {
    /// Exclude patterns (never applied to the sources themselves).
    pub excludes: Patterns,
    /// Skip directories containing a file of one of these names.
    pub exclude_if_present: Vec<String>,
    /// Do not enter directories on another file system than their source's.
    pub one_file_system: bool,
    /// Record access times.
    pub atime: bool,
    /// Entries that vanish while they are listed are left out silently
    /// ([`super::BackupOptions::vanished_ok`]).
    pub vanished_ok: bool,
}

impl ScanConfig {
    /// Whether the folder at `path` (on device `dev`, below a source on `root_dev`) is left
    /// out whole: another file system under `one_file_system`, or an `exclude_if_present` file.
    pub fn skips_dir(&self, path: &Path, dev: u64, root_dev: u64) -> bool {
        (self.one_file_system && dev != root_dev)
            || self
                .exclude_if_present
                .iter()
                .any(|f| std::fs::symlink_metadata(path.join(f)).is_ok())
    }
}

/// One directory's included entries, sorted by name, and the problems met listing it.
#[derive(Debug, Default)]
pub struct Listing {
    /// Entries that belong in the snapshot (excluded and unknown-type entries left out).
    pub entries: Vec<Node>,
    /// Warnings, one line each ("cannot stat …").
    pub warnings: Vec<String>,
}

/// Position of a directory in the walk.
pub type Key = Vec<u32>;

struct Job {
    path: PathBuf,
    dev: u64,
}

#[derive(Default)]
struct State {
    pending: BTreeMap<Key, Job>,
    running: HashSet<Key>,
    done: HashMap<Key, Listing>,
    held: usize,
    stop: bool,
    /// Workers waiting for work.
    idle: usize,
    /// The key the walker waits for, if it does.
    awaited: Option<Key>,
}

struct Shared {
    cfg: ScanConfig,
    /// Entries listed ahead of the walker, at most.
    budget: usize,
    names: Names,
    state: Mutex<State>,
    /// Workers wait here for pending keys or budget.
    work: Condvar,
    /// The walker waits here for a listing a worker is making.
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `listing`'s subdirectories (children of `key`) for the workers, waking idle ones.
    fn enqueue_children(&self, st: &mut State, key: &[u32], path: &Path, dev: u64, l: &Listing) {
        let mut added = 0;
        for (i, n) in l.entries.iter().enumerate() {
            if n.kind == NodeKind::Dir {
                let mut k = key.to_vec();
                k.push(i as u32);
                let path = path.join(std::ffi::OsStr::from_bytes(&n.name));
                st.pending.insert(k, Job { path, dev });
                added += 1;
            }
        }
        if added > 0 && st.idle > 0 && st.held < self.budget {
            self.work.notify_all();
        }
    }
}

/// Background directory listing for one backup. Dropping it stops the workers.
pub struct Scanner {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scanner")
    }
}

impl Scanner {
    /// Start `threads` workers on `roots` (key and path of each source directory; `dev` is
    /// the file system of each, for [`ScanConfig::one_file_system`]).
    pub fn start(cfg: ScanConfig, roots: Vec<(Key, PathBuf, u64)>, threads: usize) -> Scanner {
        Self::with_budget(cfg, roots, threads, BUDGET)
    }

    fn with_budget(
        cfg: ScanConfig,
        roots: Vec<(Key, PathBuf, u64)>,
        threads: usize,
        budget: usize,
    ) -> Scanner {
        let shared = Arc::new(Shared {
            cfg,
            budget,
            names: Names::default(),
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            ready: Condvar::new(),
        });
        {
            let mut st = shared.lock();
            for (k, path, dev) in roots {
                st.pending.insert(k, Job { path, dev });
            }
        }
        let threads = (0..threads.max(1))
            .filter_map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("cairn-scan-{i}"))
                    .spawn(move || worker(&shared))
                    .ok()
            })
            .collect();
        Scanner { shared, threads }
    }

    /// The listing of directory `path` at `key` (on file system `dev`): taken from the
    /// workers, waited for when one is listing it, or listed here.
    pub fn list(&self, key: &[u32], path: &Path, dev: u64) -> Listing {
        let sh = &*self.shared;
        let mut st = sh.lock();
        loop {
            if let Some(l) = st.done.remove(key) {
                let was_full = st.held >= sh.budget;
                st.held -= l.entries.len().max(1);
                if was_full && st.held < sh.budget && st.idle > 0 {
                    sh.work.notify_all();
                }
                return l;
            }
            if !st.running.contains(key) {
                break;
            }
            st.awaited = Some(key.to_vec());
            st = sh.ready.wait(st).unwrap_or_else(|e| e.into_inner());
            st.awaited = None;
        }
        let job = st.pending.remove(key);
        drop(st);
        let (path, dev) = match &job {
            Some(j) => (j.path.as_path(), j.dev),
            None => (path, dev),
        };
        let l = list_dir(&sh.cfg, &sh.names, path, dev);
        let mut st = sh.lock();
        sh.enqueue_children(&mut st, key, path, dev, &l);
        l
    }

    /// The user and group name cache the scanner fills (for nodes the walker makes itself).
    pub fn names(&self) -> &Names {
        &self.shared.names
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(sh: &Shared) {
    let mut st = sh.lock();
    loop {
        if st.stop {
            return;
        }
        if st.held >= sh.budget || st.pending.is_empty() {
            st.idle += 1;
            st = sh.work.wait(st).unwrap_or_else(|e| e.into_inner());
            st.idle -= 1;
            continue;
        }
        let Some((key, job)) = st.pending.pop_first() else {
            continue;
        };
        st.running.insert(key.clone());
        drop(st);
        // A panic here must not leave the walker waiting for this key forever.
        let l = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            list_dir(&sh.cfg, &sh.names, &job.path, job.dev)
        }))
        .unwrap_or_else(|_| Listing {
            entries: Vec::new(),
            warnings: vec![format!(
                "cannot list {}: internal error while listing",
                job.path.display()
            )],
        });
        st = sh.lock();
        st.running.remove(&key);
        st.held += l.entries.len().max(1);
        sh.enqueue_children(&mut st, &key, &job.path, job.dev, &l);
        if st.awaited.as_ref() == Some(&key) {
            sh.ready.notify_one();
        }
        st.done.insert(key, l);
    }
}

/// List one directory: its entries sorted by name with their metadata, leaving out what the
/// configuration excludes.
pub fn list_dir(cfg: &ScanConfig, names: &Names, path: &Path, dev: u64) -> Listing {
    let mut out = Listing::default();
    let gone = |e: &std::io::Error| cfg.vanished_ok && e.kind() == std::io::ErrorKind::NotFound;
    let rd = match std::fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) if gone(&e) => return out,
        Err(e) => {
            out.warnings
                .push(format!("cannot list {}: {e}", path.display()));
            return out;
        }
    };
    let mut children: Vec<(Vec<u8>, std::fs::DirEntry)> = Vec::new();
    for e in rd {
        match e {
            Ok(e) => children.push((e.file_name().into_vec(), e)),
            Err(e) => out
                .warnings
                .push(format!("cannot list {}: {e}", path.display())),
        }
    }
    children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, entry) in children {
        let child = path.join(std::ffi::OsStr::from_bytes(&name));
        if cfg.excludes.matches(&child) {
            continue;
        }
        // lstat relative to the open folder (statx on its descriptor): no path walk.
        let m = match entry.metadata() {
            Ok(m) => m,
            Err(e) if gone(&e) => continue,
            Err(e) => {
                out.warnings
                    .push(format!("cannot stat {}: {e}", child.display()));
                continue;
            }
        };
        let node = match node_from(&name, &child, &m, names, cfg.atime) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(e) => {
                out.warnings
                    .push(format!("cannot read {}: {e}", child.display()));
                continue;
            }
        };
        if node.kind == NodeKind::Dir && cfg.skips_dir(&child, node.device, dev) {
            continue;
        }
        out.entries.push(node);
    }
    out.entries.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_that_vanished_is_a_warning_unless_vanishing_is_expected() {
        let t = tempfile::tempdir().expect("tempdir");
        let gone = t.path().join("dropped-database");
        let names = Names::default();
        let strict = ScanConfig::default();
        let l = list_dir(&strict, &names, &gone, 0);
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        let lenient = ScanConfig {
            vanished_ok: true,
            ..Default::default()
        };
        let l = list_dir(&lenient, &names, &gone, 0);
        assert!(l.warnings.is_empty() && l.entries.is_empty());
        // Other errors stay warnings: a file where a folder was expected.
        std::fs::write(&gone, b"x").expect("write");
        assert_eq!(list_dir(&lenient, &names, &gone, 0).warnings.len(), 1);
    }

    fn tree(root: &Path, dirs: usize, files: usize) {
        for d in 0..dirs {
            let dir = root.join(format!("d{d:03}"));
            std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
            for f in 0..files {
                std::fs::write(dir.join(format!("f{f}")), b"x").expect("write");
                std::fs::write(dir.join("sub").join(format!("g{f}")), b"y").expect("write");
            }
        }
    }

    /// Walk depth first through the scanner and through `list_dir` alone; same result.
    fn walk(s: &Scanner, key: Key, path: &Path, out: &mut Vec<(Key, Vec<u8>)>) {
        let l = s.list(&key, path, 0);
        let direct = list_dir(&ScanConfig::default(), &Names::default(), path, 0);
        assert_eq!(l.entries, direct.entries, "listing of {}", path.display());
        for (i, n) in l.entries.iter().enumerate() {
            out.push((key.clone(), n.name.clone()));
            if n.kind == NodeKind::Dir {
                let mut k = key.clone();
                k.push(i as u32);
                walk(s, k, &path.join(std::ffi::OsStr::from_bytes(&n.name)), out);
            }
        }
    }

    #[test]
    fn workers_list_ahead_in_walk_order_without_stalling() {
        let dir = tempfile::tempdir().expect("tmp");
        // Many more entries than the budget, so the workers must stop and resume.
        tree(dir.path(), 30, 8);
        for threads in [1, 3] {
            let s = Scanner::with_budget(
                ScanConfig::default(),
                vec![(vec![0], dir.path().to_path_buf(), 0)],
                threads,
                20,
            );
            let mut seen = Vec::new();
            walk(&s, vec![0], dir.path(), &mut seen);
            assert_eq!(seen.len(), 30 * (1 + 1 + 8 * 2));
            let st = s.shared.lock();
            assert!(st.done.is_empty() && st.pending.is_empty() && st.held == 0);
        }
    }
}
