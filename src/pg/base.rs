//! `pg backup`: a base backup of a running cluster as a snapshot tagged `pg-base`.
//!
//! Non-exclusive, as `pg_basebackup` does it through SQL: `pg_backup_start` (a checkpoint;
//! `pg_start_backup` before PostgreSQL 15) on one session, then the data directory and every
//! tablespace are read like any backup (without what PostgreSQL's documentation lists as
//! transient: `pg_wal/` and the contents of `pg_stat_tmp/`, `pg_replslot/`, …), then
//! `pg_backup_stop` on the same session, which waits until the WAL the backup needs is
//! archived and returns `backup_label` and `tablespace_map`; those two are added to the
//! snapshot's data directory, and the snapshot records the WAL range ([`PgBase`]). A file that
//! changes while it is read is fine: recovery replays the WAL from the start on top of it.

use super::server::Server;
use super::walname::Lsn;
use crate::backup::{AddedFile, Amendment, BackupOptions, BackupOutcome, Sources};
use crate::error::{Error, Result};
use crate::format::snapshot::{PgBase, PgTablespace, SnapshotKind};
use crate::patterns::Patterns;
use crate::progress::Observer;
use crate::repo::Repository;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The tag of base backups.
pub const TAG: &str = "pg-base";

/// Folders whose contents PostgreSQL removes or rebuilds at start (basebackup.c's
/// `excludeDirContents`), and `pg_wal`, which the archive holds.
const EMPTY_DIRS: &[&str] = &[
    "pg_wal",
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];
/// Files of the data directory's top level left out (basebackup.c's `excludeFiles`); a
/// `backup_label` and `tablespace_map` of this backup are added at its end.
const TOP_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "backup_manifest",
    "recovery.signal",
    "standby.signal",
];
/// Names left out at any depth (temporary files, the relation cache's init files).
const ANY_DEPTH: &[&str] = &["pgsql_tmp*", "pg_internal.init*"];

/// How to take a base backup.
#[derive(Debug, Clone)]
pub struct BaseOptions {
    /// The cluster's data directory.
    pub pgdata: PathBuf,
    /// Host name recorded.
    pub host: String,
    /// Tags besides `pg-base`.
    pub tags: Vec<String>,
    /// Worker threads.
    pub threads: usize,
    /// Spread the start checkpoint instead of doing it at once.
    pub spread_checkpoint: bool,
}

/// The outcome of a base backup.
#[derive(Debug, Clone)]
pub struct BaseOutcome {
    /// The backup's outcome (snapshot, figures).
    pub backup: BackupOutcome,
    /// What the snapshot records of the cluster.
    pub pg: PgBase,
}

fn path_glob(p: &Path) -> Result<String> {
    let s = p.to_str().ok_or_else(|| {
        Error::usage(format!(
            "{} is not UTF-8: not supported for a data directory",
            p.display()
        ))
    })?;
    Ok(globset::escape(s))
}

/// The exclude patterns of a backup of `pgdata` (tablespaces are backed up through their own
/// paths; the links in `pg_tblspc/` are stored as links).
pub fn excludes(pgdata: &Path) -> Result<Patterns> {
    let base = path_glob(pgdata)?;
    let mut pats: Vec<String> = Vec::new();
    for d in EMPTY_DIRS {
        pats.push(format!("{base}/{d}/*"));
    }
    for f in TOP_FILES {
        pats.push(format!("{base}/{f}"));
    }
    for a in ANY_DEPTH {
        pats.push((*a).to_string());
    }
    Patterns::new(&pats, &[])
}

/// The timeline named in a `backup_label` (`START TIMELINE: n`).
pub fn label_timeline(label: &str) -> Option<u32> {
    label
        .lines()
        .find_map(|l| l.strip_prefix("START TIMELINE:"))
        .and_then(|t| t.trim().parse().ok())
}

/// Take a base backup of the running cluster whose data directory is `opts.pgdata`.
pub fn base_backup(
    repo: &Arc<Repository>,
    opts: &BaseOptions,
    observer: &dyn Observer,
) -> Result<BaseOutcome> {
    let pgdata = std::fs::canonicalize(&opts.pgdata)
        .map_err(|e| Error::io(format!("cannot use {}", opts.pgdata.display()), e))?;
    let mut srv = Server::connect()?;
    let data_directory = PathBuf::from(srv.text("SELECT current_setting('data_directory')")?);
    let same = std::fs::canonicalize(&data_directory).is_ok_and(|d| d == pgdata);
    if !same {
        return Err(Error::usage(format!(
            "--pgdata {} is not the data directory of the server connected to (it is {})",
            pgdata.display(),
            data_directory.display()
        )));
    }
    if srv.text("SELECT pg_is_in_recovery()::text")? == "true" {
        return Err(Error::usage(
            "the server is a standby (in recovery): take base backups from the primary",
        ));
    }
    let mode = srv.text("SELECT current_setting('archive_mode')")?;
    let command = srv.text("SELECT current_setting('archive_command')")?;
    let library = srv.text("SELECT coalesce(current_setting('archive_library', true), '')")?;
    if mode == "off" || (command.is_empty() && library.is_empty()) {
        return Err(Error::usage(
            "WAL archiving is off: a base backup is only restorable with its WAL. Set archive_mode = on and archive_command = 'cairn -r REPO pg wal-push %p' (and restart the server)",
        ));
    }
    let sysid = srv.system_identifier()?;
    let segment_size: u32 = srv
        .text("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")?
        .parse()
        .map_err(|_| Error::corrupt("PostgreSQL: odd wal_segment_size"))?;
    let spaces = srv.rows(
        "SELECT oid::text, pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')",
    )?;
    let mut tablespaces = Vec::new();
    for row in spaces {
        if let [Some(oid), Some(loc)] = row.as_slice() {
            if loc.is_empty() {
                continue; // an in-place tablespace: inside pg_tblspc, backed up with the rest
            }
            tablespaces.push(PgTablespace {
                oid: oid
                    .parse()
                    .map_err(|_| Error::corrupt("PostgreSQL: odd tablespace oid"))?,
                path: serde_bytes::ByteBuf::from(
                    std::fs::canonicalize(loc)
                        .map_err(|e| Error::io(format!("cannot use tablespace {loc}"), e))?
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                ),
            });
        }
    }
    let space_paths: Vec<PathBuf> = tablespaces
        .iter()
        .map(|t| PathBuf::from(std::ffi::OsStr::from_bytes(&t.path)))
        .collect();

    let label = format!(
        "cairn base backup {}",
        crate::time::format_time(crate::repo::keys::now_ns())
    );
    let fast = !opts.spread_checkpoint;
    let started_ns = srv.now_ns()?;
    let start_sql = if srv.version >= 150000 {
        "SELECT pg_backup_start($1, $2)::text"
    } else {
        "SELECT pg_start_backup($1, $2, false)::text"
    };
    let start: Lsn = srv
        .texts(start_sql, &[&label, &fast])?
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| Error::corrupt("PostgreSQL: no start LSN"))?
        .parse()
        .map_err(Error::corrupt)?;

    let mut paths = vec![pgdata.clone()];
    paths.extend(space_paths.iter().cloned());
    let mut tags = vec![TAG.to_string()];
    tags.extend(opts.tags.iter().filter(|t| *t != TAG).cloned());
    let bopts = BackupOptions {
        paths,
        excludes: excludes(&pgdata)?,
        exclude_if_present: Vec::new(),
        one_file_system: false,
        kind: SnapshotKind::Incremental,
        parent: None,
        host: opts.host.clone(),
        tags,
        time_ns: None,
        dry_run: false,
        threads: opts.threads,
        atime: false,
        vanished_ok: true,
    };
    let sources = Sources::start(&bopts)?;
    let version = srv.version;
    let mut pg_part: Option<PgBase> = None;
    let mut stop = || -> Result<Amendment> {
        let sql = if version >= 150000 {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(true)"
        } else {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, true)"
        };
        let row = srv.texts(sql, &[])?;
        let (lsn, labelfile, spcmap) = match row.as_slice() {
            [Some(l), Some(b), m] => (l.clone(), b.clone(), m.clone().unwrap_or_default()),
            _ => {
                return Err(Error::corrupt(
                    "PostgreSQL: pg_backup_stop gave no backup_label",
                ));
            }
        };
        let stop: Lsn = lsn.parse().map_err(Error::corrupt)?;
        let stopped_ns = srv.now_ns()?;
        let next_xid: u64 = srv
            .text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")?
            .parse()
            .map_err(|_| Error::corrupt("PostgreSQL: odd transaction id"))?;
        let stop_timeline: u32 = srv
            .text("SELECT timeline_id::text FROM pg_control_checkpoint()")?
            .parse()
            .map_err(|_| Error::corrupt("PostgreSQL: odd timeline"))?;
        let timeline = label_timeline(&labelfile).unwrap_or(stop_timeline);
        let dir = pgdata.as_os_str().as_bytes().to_vec();
        let mut files = vec![AddedFile {
            dir: dir.clone(),
            name: b"backup_label".to_vec(),
            content: labelfile.into_bytes(),
            mode: 0o600,
            mtime_ns: stopped_ns,
        }];
        if !spcmap.is_empty() {
            files.push(AddedFile {
                dir,
                name: b"tablespace_map".to_vec(),
                content: spcmap.into_bytes(),
                mode: 0o600,
                mtime_ns: stopped_ns,
            });
        }
        let pg = PgBase {
            system_identifier: sysid,
            timeline,
            start_lsn: start.0,
            stop_lsn: stop.0,
            stop_timeline,
            segment_size,
            server_version: version,
            started_ns,
            stopped_ns,
            next_xid,
            data_dir: serde_bytes::ByteBuf::from(pgdata.as_os_str().as_bytes().to_vec()),
            tablespaces: tablespaces.clone(),
        };
        pg_part = Some(pg.clone());
        Ok(Amendment {
            files,
            pg: Some(pg),
        })
    };
    let backup = crate::backup::backup_sources_amended(repo, &bopts, sources, observer, &mut stop)?;
    let pg = pg_part.ok_or_else(|| Error::corrupt("internal: no PostgreSQL part"))?;
    Ok(BaseOutcome { backup, pg })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_what_postgresql_lists() {
        let p = excludes(Path::new("/srv/pg [15]/data")).unwrap();
        let yes = [
            "/srv/pg [15]/data/pg_wal/000000010000000000000001",
            "/srv/pg [15]/data/pg_wal/archive_status",
            "/srv/pg [15]/data/postmaster.pid",
            "/srv/pg [15]/data/pg_stat_tmp/x",
            "/srv/pg [15]/data/base/1/pgsql_tmp",
            "/srv/pg [15]/data/global/pg_internal.init",
            "/srv/pg [15]/data/backup_label",
        ];
        let no = [
            "/srv/pg [15]/data/pg_wal",
            "/srv/pg [15]/data/pg_stat_tmp",
            "/srv/pg [15]/data/base/1/1259",
            "/srv/pg [15]/data/global/pg_control",
            "/srv/pg [15]/data/postgresql.auto.conf",
            "/srv/pg [15]/data/pg_xact/0000",
            "/srv/pg 1/data/pg_wal/000000010000000000000001",
        ];
        for y in yes {
            assert!(p.matches(Path::new(y)), "{y} should be left out");
        }
        for n in no {
            assert!(!p.matches(Path::new(n)), "{n} should be kept");
        }
    }

    #[test]
    fn timeline_from_label() {
        let l = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 3\n";
        assert_eq!(label_timeline(l), Some(3));
        assert_eq!(label_timeline("x"), None);
    }
}
