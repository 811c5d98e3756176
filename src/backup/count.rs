//! Counting what a backup will cover (files and bytes), on a thread of its own, so that the
//! progress display can show a percentage and an ETA — as restic's scanner does. Only worth
//! its syscalls when someone watches the progress; the CLI starts it only then.

use super::scan::ScanConfig;
use crate::progress::Progress;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A running count; dropping it stops the count.
#[derive(Debug)]
pub struct Counter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Counter {
    /// Count the regular files (and their bytes) under `paths` that `cfg` does not exclude;
    /// when done, store the totals in `progress`.
    pub fn start(paths: Vec<PathBuf>, cfg: ScanConfig, progress: Arc<Progress>) -> Counter {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-count".into())
            .spawn(move || {
                let mut totals = (0u64, 0u64);
                for p in &paths {
                    let Ok(m) = std::fs::symlink_metadata(p) else {
                        continue;
                    };
                    if m.is_file() {
                        totals.0 += 1;
                        totals.1 += m.len();
                    } else if m.is_dir() && !count_dir(p, m.dev(), &cfg, &s, &mut totals) {
                        return;
                    }
                }
                progress.set_totals(totals.0, totals.1);
            })
            .ok();
        Counter { stop, thread }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Add `dir`'s files to `totals`; false when stopped.
fn count_dir(
    dir: &Path,
    dev: u64,
    cfg: &ScanConfig,
    stop: &AtomicBool,
    totals: &mut (u64, u64),
) -> bool {
    if stop.load(Ordering::Relaxed) {
        return false;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return true;
    };
    for e in rd.flatten() {
        let path = e.path();
        if cfg.excludes.matches(&path) {
            continue;
        }
        let Ok(m) = e.metadata() else { continue };
        if m.is_file() {
            totals.0 += 1;
            totals.1 += m.len();
        } else if m.is_dir()
            && !cfg.skips_dir(&path, m.dev(), dev)
            && !count_dir(&path, dev, cfg, stop, totals)
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_and_bytes_minus_excludes() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/skip")).expect("mkdir");
        std::fs::write(root.join("a/one"), b"12345").expect("write");
        std::fs::write(root.join("two"), b"123").expect("write");
        std::fs::write(root.join("a/skip/three"), b"1234567").expect("write");
        std::os::unix::fs::symlink("two", root.join("link")).expect("symlink");
        let cfg = ScanConfig {
            excludes: crate::patterns::Patterns::new(&["skip".into()], &[]).expect("patterns"),
            ..Default::default()
        };
        let totals = |cfg: ScanConfig| {
            let p = Arc::new(Progress::new());
            let c = Counter::start(vec![root.to_path_buf()], cfg, p.clone());
            for _ in 0..1000 {
                if p.read().2 > 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            drop(c);
            (p.read().2, p.read().3)
        };
        assert_eq!(totals(cfg), (2, 8));
        assert_eq!(totals(ScanConfig::default()), (3, 15));
    }
}
