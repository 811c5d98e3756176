//! The source paths of a backup: made absolute, merged into a trie (a path inside another is
//! covered by it), and listed ahead of the walk by the scanner.

use super::BackupOptions;
use super::count;
use super::scan::{ScanConfig, Scanner};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::keys::now_ns;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Make a path absolute without resolving symlinks in its last component.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let a = std::path::absolute(p)
        .map_err(|e| Error::io(format!("cannot resolve {}", p.display()), e))?;
    let mut out = PathBuf::from("/");
    for c in a.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

#[derive(Default, Debug)]
pub(super) struct Trie {
    /// Index of the source path ending here.
    pub(super) source: Option<u32>,
    pub(super) children: BTreeMap<Vec<u8>, Trie>,
}

/// The source paths of a backup, resolved, with their listing already under way. Needs no
/// repository: start it before unlocking one, and the walk overlaps the key derivation.
#[derive(Debug)]
pub struct Sources {
    pub(super) trie: Trie,
    pub(super) tops: Vec<Vec<u8>>,
    pub(super) scanner: Scanner,
    pub(super) started: i64,
}

impl Sources {
    /// Resolve `opts.paths` (each must exist) and start listing them on `opts.threads`
    /// threads; `opts.parent` is not used yet.
    pub fn start(opts: &BackupOptions) -> Result<Sources> {
        let started = now_ns();
        if opts.paths.is_empty() {
            return Err(Error::usage("nothing to back up: give at least one path"));
        }
        let mut trie = Trie::default();
        let mut abs_paths: Vec<Vec<u8>> = Vec::new();
        for p in &opts.paths {
            let a = absolute(p)?;
            std::fs::symlink_metadata(&a)
                .map_err(|e| Error::io(format!("cannot back up {}", a.display()), e))?;
            abs_paths.push(a.as_os_str().as_bytes().to_vec());
        }
        abs_paths.sort();
        abs_paths.dedup();
        // Drop paths inside other paths: the outer one covers them.
        let tops: Vec<Vec<u8>> = abs_paths
            .iter()
            .filter(|p| {
                !abs_paths.iter().any(|q| {
                    q != *p
                        && (q.as_slice() == b"/"
                            || p.starts_with(q) && p.get(q.len()) == Some(&b'/'))
                })
            })
            .cloned()
            .collect();
        let mut roots = Vec::new();
        for (i, p) in tops.iter().enumerate() {
            let mut t = &mut trie;
            for c in p.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
                t = t.children.entry(c.to_vec()).or_default();
            }
            t.source = Some(i as u32);
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(p));
            if let Ok(m) = std::fs::symlink_metadata(&path) {
                if m.is_dir() {
                    roots.push((vec![i as u32], path, m.dev()));
                }
            }
        }
        let cfg = scan_config(opts);
        Ok(Sources {
            trie,
            tops,
            scanner: Scanner::start(cfg, roots, opts.threads),
            started,
        })
    }
}

impl Sources {
    /// Count the files and bytes these sources hold (for a progress percentage and ETA) on a
    /// thread of its own; the totals land in `progress` when the count is done.
    pub fn count(&self, opts: &BackupOptions, progress: Arc<Progress>) -> count::Counter {
        let paths = self
            .tops
            .iter()
            .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
            .collect();
        count::Counter::start(paths, scan_config(opts), progress)
    }
}

fn scan_config(opts: &BackupOptions) -> ScanConfig {
    ScanConfig {
        excludes: opts.excludes.clone(),
        exclude_if_present: opts.exclude_if_present.clone(),
        one_file_system: opts.one_file_system,
        atime: opts.atime,
        vanished_ok: opts.vanished_ok,
    }
}
