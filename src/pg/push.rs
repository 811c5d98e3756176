//! `pg wal-push`: archive WAL files, several per repository open.
//!
//! PostgreSQL runs `archive_command` once per file, one at a time, and waits for it. Opening a
//! repository costs a key derivation (argon2, ~0.1 s) and a few requests, so one file per run
//! could not keep up with a busy server. A run therefore archives the file it was asked for
//! *and* the other files PostgreSQL has marked ready (`pg_wal/archive_status/*.ready`), up to a
//! batch, in parallel; for each extra file it stores, it leaves a marker in
//! `pg_wal/cairn_archive_status/` naming the repository and the file's identity (device, inode,
//! size, modification and change times). When PostgreSQL then asks for such a file, the run
//! finds the marker, checks the file is still that one (a `stat`, no read: PostgreSQL never
//! rewrites a finished segment, and any write moves its times), and answers at once without
//! opening the repository (WAL-G's approach; design.md §21). The marker is written only after
//! the object is stored, and removed when used.

use super::control;
use super::waldecode;
use super::walname::WalFile;
use crate::error::{Error, ErrorKind, Result};
use crate::format::wal::{WalRestorePoint, WalSummary};
use crate::repo::wal::{WalArchive, WalStored, plausible_name};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder of markers, inside `pg_wal`.
pub const MARKER_DIR: &str = "cairn_archive_status";
/// How long a marker is trusted.
pub const MARKER_TRUST: std::time::Duration = std::time::Duration::from_secs(600);

/// How a push goes.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Most files stored per run (the requested one included).
    pub batch: usize,
    /// Files stored at once.
    pub threads: usize,
    /// The repository's location as given (written into markers).
    pub location: String,
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// The requested file: stored now, or already there.
    pub requested: Option<WalStored>,
    /// Other ready files stored now (or found stored), with markers left.
    pub ahead: usize,
    /// Bytes stored.
    pub bytes_stored: u64,
    /// Other ready files that could not be stored (each is pushed again when PostgreSQL asks).
    pub ahead_failed: Vec<String>,
}

fn file_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| plausible_name(n))
        .ok_or_else(|| Error::usage(format!("{} is not a WAL file name", path.display())))?;
    Ok(name.to_string())
}

/// What a marker says: the repository's location and the file's identity.
fn marker_content(location: &str, path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
    Ok(format!(
        "{location}\n{} {} {} {}.{} {}.{}\n",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// The fast path: `wal_path` was stored by an earlier run (its marker is there, recent, and
/// the file is still the one it names). Consumes the marker. Reads nothing but the marker.
pub fn already_pushed(wal_path: &Path, location: &str) -> Result<bool> {
    let name = file_name(wal_path)?;
    let dir = wal_path.parent().unwrap_or(Path::new("."));
    let marker = dir.join(MARKER_DIR).join(&name);
    let Ok(want) = std::fs::read_to_string(&marker) else {
        return Ok(false);
    };
    // PostgreSQL asks for a ready file within seconds; an old marker (a repository since
    // replaced at the same location, a cluster restored over this one) is not trusted.
    let fresh = std::fs::metadata(&marker)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < MARKER_TRUST);
    if !fresh {
        let _ = std::fs::remove_file(&marker);
        return Ok(false);
    }
    let ok = want == marker_content(location, wal_path)?;
    let _ = std::fs::remove_file(&marker);
    Ok(ok)
}

/// A file read and checked, ready to be stored.
struct Prepared {
    name: String,
    data: Vec<u8>,
    summary: Option<WalSummary>,
}

/// Read `path` and check it belongs to cluster `sysid` and holds what its name says.
fn prepare(path: &Path, sysid: u64) -> Result<Prepared> {
    let name = file_name(path)?;
    let data =
        std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let text_file = name.ends_with(".history") || name.ends_with(".backup");
    if text_file {
        // Any name valid for a larger segment size is valid for the smallest (1 MiB).
        if WalFile::parse(&name, 1 << 20).is_none() {
            return Err(Error::usage(format!("{name} is not a WAL file name")));
        }
        return Ok(Prepared {
            name,
            data,
            summary: None,
        });
    }
    let header = waldecode::segment_header(&data)
        .map_err(|e| Error::corrupt(format!("{} is not a WAL segment: {e}", path.display())))?;
    if header.system_identifier != sysid {
        return Err(Error::usage(format!(
            "{name} belongs to the cluster with system identifier {}, not to this data directory's ({sysid}): refusing to archive it",
            header.system_identifier
        )));
    }
    let seg = u64::from(header.segment_size);
    match WalFile::parse(&name, header.segment_size) {
        Some(WalFile::Segment { timeline, segno } | WalFile::Partial { timeline, segno })
            if timeline == header.timeline && segno.checked_mul(seg) == Some(header.page_addr) => {}
        _ => {
            return Err(Error::corrupt(format!(
                "{name} does not hold what its name says (its first page is timeline {} at {})",
                header.timeline,
                super::walname::Lsn(header.page_addr)
            )));
        }
    }
    let summary = waldecode::summarize(&data).ok().map(|(h, s)| WalSummary {
        timeline: h.timeline,
        start_lsn: h.page_addr,
        end_lsn: s.end_lsn,
        transactions: s.transactions,
        time_range: s.time_range,
        xid_range: s.xid_range,
        restore_points: s
            .restore_points
            .into_iter()
            .map(|r| WalRestorePoint {
                name: r.name,
                lsn: r.lsn,
                time_ns: r.time_ns,
            })
            .collect(),
        switched: s.switched,
    });
    Ok(Prepared {
        name,
        data,
        summary,
    })
}

/// Other files PostgreSQL has marked ready in `pg_wal`, oldest first, without a marker.
fn ready_files(pg_wal: &Path, except: &str, most: usize) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(pg_wal.join("archive_status")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let w = n.strip_suffix(".ready")?.to_string();
            (w != except && plausible_name(&w)).then_some(w)
        })
        .filter(|w| !pg_wal.join(MARKER_DIR).join(w).exists())
        .collect();
    // History files first (PostgreSQL archives them first too), then by name.
    names.sort_by_key(|n| (!n.ends_with(".history"), n.clone()));
    names.truncate(most);
    names.into_iter().map(|n| pg_wal.join(n)).collect()
}

fn write_marker(dir: &Path, name: &str, content: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Archive `wal_path` (as PostgreSQL gives `%p`: `pg_wal/NAME` in the data directory) and, up
/// to `opts.batch` in all, the other ready files. The data directory's `pg_control` says which
/// cluster the files must belong to. Fails when the requested file could not be stored.
pub fn push(wal: &WalArchive<'_>, wal_path: &Path, opts: &PushOptions) -> Result<PushReport> {
    let pgdata = control::data_dir_of(wal_path);
    let sysid = control::system_identifier(&pgdata)?;
    let name = file_name(wal_path)?;
    let pg_wal = wal_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut paths = vec![wal_path.to_path_buf()];
    paths.extend(ready_files(&pg_wal, &name, opts.batch.saturating_sub(1)));

    let results: Vec<(PathBuf, Result<(WalStored, String)>)> = {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let out = std::sync::Mutex::new(Vec::new());
        let workers = opts.threads.clamp(1, paths.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(p) = paths.get(i) else { break };
                        let r = prepare(p, sysid).and_then(|f| {
                            let marker = marker_content(&opts.location, p)?;
                            wal.store(sysid, &f.name, &f.data, f.summary)
                                .map(|st| (st, marker))
                        });
                        if let Ok(mut g) = out.lock() {
                            g.push((p.clone(), r));
                        }
                    }
                });
            }
        });
        out.into_inner()
            .map_err(|_| Error::new(ErrorKind::Internal, "a WAL push worker panicked"))?
    };

    let mut report = PushReport::default();
    let mut requested_err = None;
    for (p, r) in results {
        let is_requested = p == wal_path;
        match r {
            Ok((st, marker)) => {
                if let WalStored::Stored(n) = st {
                    report.bytes_stored += n;
                }
                if is_requested {
                    report.requested = Some(st);
                } else {
                    let n = file_name(&p)?;
                    match write_marker(&pg_wal.join(MARKER_DIR), &n, &marker) {
                        Ok(()) => report.ahead += 1,
                        Err(_) => report.ahead_failed.push(n),
                    }
                }
            }
            Err(e) if is_requested => requested_err = Some(e),
            Err(e) => report.ahead_failed.push(format!("{}: {e}", p.display())),
        }
    }
    match requested_err {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
