//! `pg restore`: choose the base backup a recovery target needs, restore it into a data
//! directory, and set the directory up for PostgreSQL to recover: `restore_command` and the
//! `recovery_target_*` settings in `postgresql.auto.conf`, and `recovery.signal`.
//!
//! The choice: the newest base backup that became consistent (its stop) at or before the
//! target. For a time, the stop's server time; for an LSN, the stop LSN; for a restore point,
//! its LSN as the archived WAL's headers record it (an unknown name is an error here rather
//! than a recovery that runs to the end and fails); for a transaction id, a backup whose stop
//! came before the transaction was assigned (`next_xid` at the stop), or, by the archived
//! WAL's headers, before the first segment where that id could have ended. A base backup
//! that started after a time target cannot reach it, and PostgreSQL would not notice.

use super::catalog::{self, BaseBackup, ClusterWal};
use super::walname::{Lsn, WalFile};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Observer;
use crate::repo::Repository;
use crate::restore::{RestoreOptions, RestoreSummary};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// At the end of the archived WAL.
    Latest,
    /// At the last commit at or before this time (ns since the epoch).
    Time(i64),
    /// At this transaction's commit or abort.
    Xid(u64),
    /// At this named restore point.
    Name(String),
    /// At this WAL position.
    Lsn(Lsn),
}

/// What PostgreSQL does when it reaches the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// End recovery, start a new timeline, accept writes.
    Promote,
    /// Stay in recovery, paused (PostgreSQL's default).
    Pause,
    /// Stop the server.
    Shutdown,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Pause => "pause",
            Action::Shutdown => "shutdown",
        }
    }
}

/// Parse a time target as PostgreSQL writes timestamptz (`2026-11-30 10:11:12.5+00`), or
/// RFC 3339; ns since the epoch.
pub fn parse_target_time(s: &str) -> Result<i64> {
    let t = s.trim();
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = chrono::DateTime::parse_from_str(t, f) {
            return d
                .timestamp_nanos_opt()
                .ok_or_else(|| Error::usage(format!("time {s:?} is out of range")));
        }
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return d
            .timestamp_nanos_opt()
            .ok_or_else(|| Error::usage(format!("time {s:?} is out of range")));
    }
    Err(Error::usage(format!(
        "cannot parse time {s:?}: give it with its offset, as PostgreSQL prints timestamptz (2026-11-30 10:11:12+00)"
    )))
}

/// The time as `recovery_target_time` takes it, in UTC with microseconds.
fn pg_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S%.6f+00")
        .to_string()
}

/// The LSN of restore point `name` in `wal`, cluster `sysid`'s archived WAL (newest first).
fn restore_point_lsn(
    repo: &Repository,
    wal: &ClusterWal,
    sysid: u64,
    name: &str,
) -> Result<Option<Lsn>> {
    let mut names: Vec<&String> = wal
        .files
        .keys()
        .filter(|n| WalFile::parse(n, 1 << 20).is_some_and(|f| f.holds_records()))
        .collect();
    names.reverse();
    for chunk in names.chunks(32) {
        let found = std::thread::scope(|s| {
            let hs: Vec<_> = chunk
                .iter()
                .map(|n| s.spawn(move || repo.wal().header(sysid, n)))
                .collect();
            let mut best: Option<Lsn> = None;
            for h in hs {
                let h = h
                    .join()
                    .map_err(|_| Error::new(ErrorKind::Internal, "a header reader panicked"))??;
                if let Some(sum) = h.and_then(|h| h.summary) {
                    for rp in sum.restore_points.iter().filter(|r| r.name == name) {
                        best = Some(best.map_or(Lsn(rp.lsn), |b| b.max(Lsn(rp.lsn))));
                    }
                }
            }
            Ok::<_, Error>(best)
        })?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The first WAL position where transaction `xid` could have committed or aborted, by the
/// archived segments' headers: the start of the first segment whose largest ended xid is at
/// least `xid`.
fn xid_lower_bound(
    repo: &Repository,
    wal: &ClusterWal,
    sysid: u64,
    xid: u64,
    seg: u32,
) -> Result<Option<Lsn>> {
    let xid32 = (xid & 0xffff_ffff) as u32;
    for (name, _) in wal.files.iter() {
        let Some(f) = WalFile::parse(name, seg).filter(|f| f.holds_records()) else {
            continue;
        };
        if let Some(sum) = repo.wal().header(sysid, name)?.and_then(|h| h.summary) {
            if sum.xid_range.is_some_and(|(_, hi)| hi >= xid32) {
                return Ok(f.segno().map(|s| Lsn(s * u64::from(seg))));
            }
        }
    }
    Ok(None)
}

/// The base backup to restore for `target` among `bases` (oldest stop first) of cluster
/// `sysid`.
pub fn choose(
    repo: &Repository,
    bases: &[BaseBackup],
    wal: &ClusterWal,
    target: &Target,
) -> Result<BaseBackup> {
    let newest = |ok: &dyn Fn(&BaseBackup) -> bool| bases.iter().rev().find(|b| ok(b)).cloned();
    let none = |why: String| Error::new(ErrorKind::NotFound, why);
    if bases.is_empty() {
        return Err(none(
            "no base backup (snapshot tagged pg-base) in this repository".into(),
        ));
    }
    let sysid = bases[bases.len() - 1].pg.system_identifier;
    match target {
        Target::Latest => newest(&|_| true).ok_or_else(|| none("no base backup".into())),
        Target::Time(t) => newest(&|b| b.pg.stopped_ns <= *t).ok_or_else(|| {
            none(format!(
                "no base backup finished at or before {}: the oldest finished at {}",
                pg_time(*t),
                pg_time(bases[0].pg.stopped_ns)
            ))
        }),
        Target::Lsn(l) => newest(&|b| b.pg.stop_lsn <= l.0).ok_or_else(|| {
            none(format!(
                "no base backup is consistent at or before {l}: the oldest stops at {}",
                Lsn(bases[0].pg.stop_lsn)
            ))
        }),
        Target::Name(n) => {
            let lsn = restore_point_lsn(repo, wal, sysid, n)?
                .ok_or_else(|| none(format!("no restore point named {n:?} in the archived WAL")))?;
            newest(&|b| b.pg.stop_lsn <= lsn.0).ok_or_else(|| {
                none(format!(
                    "restore point {n:?} (at {lsn}) lies before the oldest base backup's stop"
                ))
            })
        }
        Target::Xid(x) => {
            if let Some(b) = newest(&|b| b.pg.next_xid <= *x) {
                return Ok(b);
            }
            let seg = bases[0].pg.segment_size;
            let lb = xid_lower_bound(repo, wal, sysid, *x, seg)?;
            lb.and_then(|l| newest(&|b| b.pg.stop_lsn <= l.0)).ok_or_else(|| {
                none(format!(
                    "no base backup is known to precede transaction {x}: it was assigned before the oldest base backup stopped"
                ))
            })
        }
    }
}

/// How to restore.
#[derive(Debug, Clone)]
pub struct PgRestoreOptions {
    /// The data directory to create (or, with `delta`, to update).
    pub pgdata: PathBuf,
    /// Where recovery stops.
    pub target: Target,
    /// What PostgreSQL does there (`None`: its default, pause).
    pub action: Option<Action>,
    /// `recovery_target_timeline` (`None`: PostgreSQL's default, `latest`).
    pub timeline: Option<String>,
    /// Restore over an existing data directory: rewrite only what differs, remove what the
    /// backup does not have.
    pub delta: bool,
    /// The `restore_command` to write (PostgreSQL substitutes %f and %p).
    pub restore_command: String,
    /// Use this base backup instead of choosing.
    pub base: Option<crate::id::Id>,
    /// Only base backups of this cluster (needed when several archive into the repository).
    pub system_identifier: Option<u64>,
    /// Worker threads.
    pub threads: usize,
}

/// What a PostgreSQL restore did.
#[derive(Debug, Clone)]
pub struct PgRestoreOutcome {
    /// The base backup restored.
    pub base: BaseBackup,
    /// The file restore's figures (data directory and tablespaces together).
    pub summary: RestoreSummary,
    /// Files and folders removed (`delta`).
    pub removed: u64,
}

/// The settings `pg restore` writes; other lines of `postgresql.auto.conf` setting them are
/// removed first (two different recovery targets make PostgreSQL refuse to start).
const OURS: &[&str] = &[
    "restore_command",
    "recovery_target",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_name",
    "recovery_target_lsn",
    "recovery_target_action",
    "recovery_target_timeline",
    "recovery_target_inclusive",
];

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// `postgresql.auto.conf` with the recovery settings for `opts` (and `old`'s other lines).
pub fn recovery_conf(old: &str, opts: &PgRestoreOptions, base: &BaseBackup) -> String {
    let mut out = String::new();
    for line in old.lines() {
        let key = line.split(['=', ' ', '\t']).next().unwrap_or("").trim();
        if !OURS.contains(&key) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "# cairn pg restore, base backup {} ({}):\n",
        base.id.short(),
        pg_time(base.pg.stopped_ns)
    ));
    out.push_str(&format!(
        "restore_command = {}\n",
        quote(&opts.restore_command)
    ));
    match &opts.target {
        Target::Latest => {}
        Target::Time(t) => {
            out.push_str(&format!("recovery_target_time = {}\n", quote(&pg_time(*t))))
        }
        Target::Xid(x) => out.push_str(&format!(
            "recovery_target_xid = {}\n",
            quote(&x.to_string())
        )),
        Target::Name(n) => out.push_str(&format!("recovery_target_name = {}\n", quote(n))),
        Target::Lsn(l) => out.push_str(&format!(
            "recovery_target_lsn = {}\n",
            quote(&l.to_string())
        )),
    }
    if opts.target != Target::Latest {
        if let Some(a) = opts.action {
            out.push_str(&format!("recovery_target_action = {}\n", quote(a.name())));
        }
    }
    if let Some(t) = &opts.timeline {
        out.push_str(&format!("recovery_target_timeline = {}\n", quote(t)));
    }
    out
}

/// Whether `dir` is missing or empty.
fn empty_or_missing(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut d) => Ok(d.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(format!("cannot read {}", dir.display()), e)),
    }
}

/// Restore a base backup for `opts.target` and prepare recovery.
pub fn restore(
    repo: &Repository,
    opts: &PgRestoreOptions,
    observer: &dyn Observer,
) -> Result<PgRestoreOutcome> {
    let all = catalog::base_backups(repo.snapshots()?);
    let mut sysids: Vec<u64> = all.iter().map(|b| b.pg.system_identifier).collect();
    sysids.sort();
    sysids.dedup();
    let sysid = match (opts.system_identifier, sysids.as_slice()) {
        (Some(s), _) => s,
        (None, [one]) => *one,
        (None, []) => {
            return Err(Error::new(
                ErrorKind::NotFound,
                "no base backup (snapshot tagged pg-base) in this repository",
            ));
        }
        (None, _) => {
            return Err(Error::usage(
                "base backups of several clusters are in this repository: give --system-identifier",
            ));
        }
    };
    let bases: Vec<BaseBackup> = all
        .into_iter()
        .filter(|b| b.pg.system_identifier == sysid)
        .collect();
    // One listing of the cluster's WAL: for the choice and for the check below.
    let wal = catalog::archived(&repo.wal())?
        .remove(&sysid)
        .unwrap_or_default();
    let base = match opts.base {
        Some(id) => bases.iter().find(|b| b.id == id).cloned().ok_or_else(|| {
            Error::not_found(format!(
                "snapshot {} is not a base backup of cluster {sysid}",
                id.short()
            ))
        })?,
        None => choose(repo, &bases, &wal, &opts.target)?,
    };
    let pgdata = &opts.pgdata;
    if pgdata.join("postmaster.pid").exists() {
        return Err(Error::usage(format!(
            "{} has a postmaster.pid: stop the server first (or remove a stale postmaster.pid)",
            pgdata.display()
        )));
    }
    if !opts.delta && !empty_or_missing(pgdata)? {
        return Err(Error::usage(format!(
            "{} is not empty: restore into an empty or new folder, or give --delta to update it",
            pgdata.display()
        )));
    }
    // The WAL the backup needs must be there, or recovery cannot even become consistent.
    let missing = wal.missing_for(&base.pg);
    if let Some(first) = missing.first() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "base backup {} needs WAL segment {first} (and {} more), which is not archived",
                base.id.short(),
                missing.len() - 1
            ),
        ));
    }
    for t in &base.pg.tablespaces {
        let p = PathBuf::from(std::ffi::OsStr::from_bytes(&t.path));
        if !opts.delta && !empty_or_missing(&p)? {
            return Err(Error::usage(format!(
                "tablespace {} goes to {}, which is not empty",
                t.oid,
                p.display()
            )));
        }
    }
    create_private_dir(pgdata)?;
    let mut summary = RestoreSummary::default();
    let mut places: Vec<(Vec<u8>, PathBuf)> = vec![(base.pg.data_dir.to_vec(), pgdata.clone())];
    for t in &base.pg.tablespaces {
        places.push((
            t.path.to_vec(),
            PathBuf::from(std::ffi::OsStr::from_bytes(&t.path)),
        ));
    }
    let mut removed = 0;
    for (spath, target) in &places {
        let node = crate::snapshot::find_node(repo, base.snapshot.tree, spath)?;
        let ropts = RestoreOptions {
            target: target.clone(),
            threads: opts.threads,
            ..Default::default()
        };
        let s = crate::restore::restore(repo, &node, spath, &ropts, observer)?;
        if crate::restore::meta::is_root() {
            // The folder itself is not restored, only made: give it the cluster's owner.
            std::os::unix::fs::chown(target, Some(node.uid), Some(node.gid))
                .map_err(|e| Error::io(format!("cannot chown {}", target.display()), e))?;
        }
        if opts.delta {
            removed += remove_extras(repo, &node, target)?;
        }
        add_summary(&mut summary, &s);
    }
    if summary.errors > 0 || summary.files_damaged > 0 {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "the base backup could not be restored whole ({} problems, {} damaged files): the data directory is not usable",
                summary.errors, summary.files_damaged
            ),
        ));
    }
    // PostgreSQL needs these, empty.
    for d in ["pg_wal", "pg_wal/archive_status"] {
        let p = pgdata.join(d);
        if !p.exists() {
            create_private_dir(&p)?;
        }
    }
    let conf = pgdata.join("postgresql.auto.conf");
    let old = match std::fs::read_to_string(&conf) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(format!("cannot read {}", conf.display()), e)),
    };
    write_keeping_owner(&conf, recovery_conf(&old, opts, &base).as_bytes(), pgdata)?;
    write_keeping_owner(&pgdata.join("recovery.signal"), b"", pgdata)?;
    Ok(PgRestoreOutcome {
        base,
        summary,
        removed,
    })
}

fn add_summary(a: &mut RestoreSummary, b: &RestoreSummary) {
    a.files += b.files;
    a.files_unchanged += b.files_unchanged;
    a.dirs += b.dirs;
    a.others += b.others;
    a.bytes += b.bytes;
    a.bytes_written += b.bytes_written;
    a.files_verified += b.files_verified;
    a.files_damaged += b.files_damaged;
    a.skipped += b.skipped;
    a.errors += b.errors;
}

fn create_private_dir(p: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io(format!("cannot create {}", p.display()), e)),
    }
}

/// Write a file in the data directory owned like the directory (the cluster's user), mode 0600.
fn write_keeping_owner(path: &Path, data: &[u8], pgdata: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let io = |e| Error::io(format!("cannot write {}", path.display()), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    std::io::Write::write_all(&mut f, data).map_err(io)?;
    f.sync_all().map_err(io)?;
    if let Ok(m) = std::fs::metadata(pgdata) {
        if crate::restore::meta::is_root() {
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())).map_err(io)?;
        }
    }
    Ok(())
}

/// Remove what `target` holds and the snapshot folder `node` does not, recursively (`--delta`).
fn remove_extras(
    repo: &Repository,
    node: &crate::format::tree::Node,
    target: &Path,
) -> Result<u64> {
    let Some(sub) = node.subtree else {
        return Ok(0);
    };
    let tree = repo.load_tree(&sub)?;
    let mut removed = 0;
    let rd = match std::fs::read_dir(target) {
        Ok(rd) => rd,
        Err(e) => return Err(Error::io(format!("cannot read {}", target.display()), e)),
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let p = e.path();
        match tree.find(name.as_bytes()) {
            Some(n) if n.kind == crate::format::tree::NodeKind::Dir => {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    removed += remove_extras(repo, n, &p)?;
                }
            }
            Some(_) => {}
            None => {
                let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(|err| Error::io(format!("cannot remove {}", p.display()), err))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_times() {
        let a = parse_target_time("2026-11-30 10:11:12+00").unwrap();
        let b = parse_target_time("2026-11-30T10:11:12Z").unwrap();
        let c = parse_target_time("2026-11-30 12:11:12.000000+02").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(pg_time(a), "2026-11-30 10:11:12.000000+00");
        assert!(parse_target_time("2026-11-30 10:11:12").is_err());
        assert!(parse_target_time("yesterday").is_err());
    }
}
