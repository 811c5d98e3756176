//! `pg wal-fetch`: hand PostgreSQL an archived WAL file during recovery, and fetch the
//! segments after it ahead of time.
//!
//! PostgreSQL runs `restore_command` once per file and waits; recovery replays faster than one
//! repository open per segment. A run that fetches a segment therefore also fetches the next
//! ones of its timeline (in parallel) into `pg_wal/cairn_prefetch/`, each checked against its
//! keyed hash, named `<file>.<BLAKE3 of its content>`; a later run finds its file there, checks
//! the content against the name (a file torn by a crash is never handed over) and renames it
//! into place without opening the repository. A file that is not archived is an error and
//! nothing is written. Nothing here is fsynced: PostgreSQL fetches again what a crash lost, and
//! every file it is handed has been verified just before.

use super::waldecode;
use super::walname::{WalFile, segment_name};
use crate::error::{Error, ErrorKind, Result};
use crate::repo::wal::WalArchive;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder of prefetched segments, inside `pg_wal`.
pub const SPOOL_DIR: &str = "cairn_prefetch";

/// The spool folder for a destination `dest` (`pg_wal/RECOVERYXLOG`): next to it, so a rename
/// moves a prefetched file into place.
pub fn spool_of(dest: &Path) -> PathBuf {
    dest.parent().unwrap_or(Path::new(".")).join(SPOOL_DIR)
}

/// Write `data` to `dest` whole or not at all (a temporary file, then a rename).
fn write_whole(dest: &Path, data: &[u8]) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.cairn-tmp",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("wal")
    ));
    let r = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, dest)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map_err(|e| Error::io(format!("cannot write {}", dest.display()), e))
}

/// The name of a prefetched file in the spool.
fn spooled_name(name: &str, data: &[u8]) -> String {
    format!("{name}.{}", blake3::hash(data).to_hex())
}

/// The file name a spool entry stands for.
fn spooled_file(entry: &str) -> Option<&str> {
    entry.rsplit_once('.').map(|(n, _)| n)
}

/// The fast path: `name` was prefetched and its content matches its spool name; move it to
/// `dest`. Opens nothing else. A spool entry that does not match is removed.
pub fn from_spool(name: &str, dest: &Path) -> Result<bool> {
    let spool = spool_of(dest);
    let Ok(rd) = std::fs::read_dir(&spool) else {
        return Ok(false);
    };
    for e in rd.flatten() {
        let Some(entry) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if spooled_file(&entry) != Some(name) {
            continue;
        }
        let p = e.path();
        let good = std::fs::read(&p).is_ok_and(|d| spooled_name(name, &d) == entry);
        if !good {
            let _ = std::fs::remove_file(&p);
            continue;
        }
        return match std::fs::rename(&p, dest) {
            Ok(()) => Ok(true),
            Err(e) => Err(Error::io(
                format!("cannot move {} into place", p.display()),
                e,
            )),
        };
    }
    Ok(false)
}

/// Fetch `name` of cluster `sysid` into `dest`; then up to `prefetch` following segments of
/// its timeline into the spool. `Ok(false)` when `name` is not archived (nothing written).
pub fn fetch(
    wal: &WalArchive<'_>,
    sysid: u64,
    name: &str,
    dest: &Path,
    prefetch: usize,
    threads: usize,
) -> Result<bool> {
    let Some((_, data)) = wal.read(sysid, name)? else {
        return Ok(false);
    };
    write_whole(dest, &data)?;
    let spool = spool_of(dest);
    let header = waldecode::segment_header(&data).ok();
    let next: Vec<String> = match (
        header,
        header.and_then(|h| WalFile::parse(name, h.segment_size)),
    ) {
        (Some(h), Some(WalFile::Segment { timeline, segno })) if prefetch > 0 => (1..=prefetch
            as u64)
            .map(|i| segment_name(timeline, segno + i, h.segment_size))
            .collect(),
        _ => Vec::new(),
    };
    // What is in the spool and not among the next segments is stale (another timeline, or
    // already replayed).
    if let Ok(rd) = std::fs::read_dir(&spool) {
        for e in rd.flatten() {
            let keep = e
                .file_name()
                .to_str()
                .and_then(spooled_file)
                .is_some_and(|n| next.iter().any(|x| x == n));
            if !keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let spooled: Vec<String> = std::fs::read_dir(&spool)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(spooled_file)
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    let todo: Vec<&String> = next.iter().filter(|n| !spooled.contains(n)).collect();
    if todo.is_empty() {
        return Ok(true);
    }
    if std::fs::create_dir_all(&spool).is_err() {
        return Ok(true); // prefetching is only a help
    }
    let idx = std::sync::atomic::AtomicUsize::new(0);
    let missing = std::sync::atomic::AtomicU64::new(u64::MAX);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, todo.len()) {
            s.spawn(|| {
                loop {
                    let i = idx.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(n) = todo.get(i) else { break };
                    // Past the first missing segment nothing is needed yet.
                    if (i as u64) > missing.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    match wal.read(sysid, n) {
                        Ok(Some((_, d))) => {
                            let _ = write_whole(&spool.join(spooled_name(n, &d)), &d);
                        }
                        Ok(None) => {
                            missing.fetch_min(i as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(_) => {}
                    }
                }
            });
        }
    });
    Ok(true)
}

/// The cluster whose WAL a fetch into `dest` is for: the data directory's `pg_control`, else
/// the only cluster that archives into the repository.
pub fn cluster_of(wal: &WalArchive<'_>, dest: &Path) -> Result<u64> {
    if let Ok(id) = super::control::system_identifier(&super::control::data_dir_of(dest)) {
        return Ok(id);
    }
    let mut ids: Vec<u64> = wal.list()?.iter().map(|o| o.system_identifier).collect();
    ids.dedup();
    match ids.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::new(
            ErrorKind::NotFound,
            "no WAL is archived in this repository",
        )),
        _ => Err(Error::usage(
            "several clusters archive WAL into this repository and no pg_control says which: give --system-identifier",
        )),
    }
}
