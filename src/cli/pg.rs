//! `pg`: PostgreSQL point-in-time recovery (base backups, WAL archive, restore, list, check).

use super::progress::Terminal;
use super::{Global, PasswordSource, human, print_json};
use anyhow::{Context, Result, bail};
use cairn::format::snapshot::PgBase;
use cairn::pg::catalog;
use cairn::pg::restore::{Action, PgRestoreOptions, Target, parse_target_time};
use cairn::pg::walname::Lsn;
use cairn::pg::{base, fetch, push};
use cairn::repo::keys::current_host;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PgArgs {
    #[command(subcommand)]
    pub command: PgCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum PgCommand {
    /// Take a base backup of the running cluster (connection from PGHOST, PGPORT, PGUSER,
    /// PGDATABASE): a snapshot tagged pg-base
    Backup(BackupArgs),
    /// Archive a WAL file (archive_command = 'cairn -r REPO pg wal-push %p'); also archives the
    /// other files PostgreSQL has marked ready
    WalPush(WalPushArgs),
    /// Fetch an archived WAL file (restore_command, written by `pg restore`); non-zero and
    /// nothing written when it is not archived
    WalFetch(WalFetchArgs),
    /// Restore a base backup and set the data directory up to recover to a target
    Restore(RestoreArgs),
    /// List base backups with the WAL each needs and whether it is archived
    List,
    /// Check that archiving works end to end: switch WAL and wait for the file to arrive
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The cluster's data directory
    #[arg(long, env = "PGDATA")]
    pub pgdata: PathBuf,
    /// Tag the snapshot besides pg-base (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
    /// Spread the start checkpoint over checkpoint_completion_target instead of doing it now
    #[arg(long)]
    pub spread_checkpoint: bool,
}

#[derive(clap::Args, Debug)]
pub struct WalPushArgs {
    /// The file (PostgreSQL's %p: pg_wal/NAME, relative to the data directory)
    pub path: PathBuf,
    /// Most files archived per run, the requested one included
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

#[derive(clap::Args, Debug)]
pub struct WalFetchArgs {
    /// The file's name (PostgreSQL's %f)
    pub name: String,
    /// Where to write it (PostgreSQL's %p)
    pub dest: PathBuf,
    /// Segments after it to fetch ahead into pg_wal/cairn_prefetch
    #[arg(long, default_value_t = 16)]
    pub prefetch: usize,
    /// The cluster (default: the data directory's pg_control, else the only one archived)
    #[arg(long)]
    pub system_identifier: Option<u64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TargetAction {
    Promote,
    Pause,
    Shutdown,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["target_time", "target_xid", "target_name", "target_lsn", "latest"])))]
pub struct RestoreArgs {
    /// The data directory to create (empty or missing; made 0700)
    #[arg(long)]
    pub pgdata: PathBuf,
    /// Recover to the last commit at or before this time (timestamptz: 2026-11-30 10:11:12+00)
    #[arg(long)]
    pub target_time: Option<String>,
    /// Recover to this transaction's commit
    #[arg(long)]
    pub target_xid: Option<u64>,
    /// Recover to this restore point (pg_create_restore_point)
    #[arg(long)]
    pub target_name: Option<String>,
    /// Recover to this WAL position (X/Y)
    #[arg(long)]
    pub target_lsn: Option<String>,
    /// Recover to the end of the archived WAL
    #[arg(long)]
    pub latest: bool,
    /// What the server does at the target (default: PostgreSQL's, pause)
    #[arg(long, value_enum)]
    pub target_action: Option<TargetAction>,
    /// recovery_target_timeline (a number, current or latest; default: PostgreSQL's, latest)
    #[arg(long)]
    pub target_timeline: Option<String>,
    /// Restore over an existing data directory: rewrite only files that differ, remove files
    /// the backup does not have
    #[arg(long)]
    pub delta: bool,
    /// Restore this base backup instead of choosing one
    #[arg(long)]
    pub base: Option<String>,
    /// The cluster, when base backups of several are in the repository
    #[arg(long)]
    pub system_identifier: Option<u64>,
    /// The restore_command to write (default: this cairn with this repository and password
    /// file or command)
    #[arg(long)]
    pub restore_command: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Seconds to wait for the switched WAL file to arrive
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

pub fn run(g: &Global, a: &PgArgs) -> Result<i32> {
    match &a.command {
        PgCommand::Backup(b) => backup(g, b),
        PgCommand::WalPush(p) => wal_push(g, p),
        PgCommand::WalFetch(f) => wal_fetch(g, f),
        PgCommand::Restore(r) => restore(g, r),
        PgCommand::List => list(g),
        PgCommand::Check(c) => check(g, c),
    }
}

/// The `pg` part of a snapshot in JSON (`snapshots --json`, `pg list --json`).
pub fn base_json(p: &PgBase) -> serde_json::Value {
    let t = |ns: i64| chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339();
    let (start_wal, stop_wal) = catalog::wal_range(p);
    serde_json::json!({
        "system_identifier": p.system_identifier.to_string(),
        "timeline": p.timeline,
        "stop_timeline": p.stop_timeline,
        "start_lsn": Lsn(p.start_lsn).to_string(),
        "stop_lsn": Lsn(p.stop_lsn).to_string(),
        "start_wal": start_wal,
        "stop_wal": stop_wal,
        "segment_size": p.segment_size,
        "server_version": p.server_version,
        "started": t(p.started_ns),
        "stopped": t(p.stopped_ns),
        "next_xid": p.next_xid,
        "data_directory": String::from_utf8_lossy(&p.data_dir),
        "tablespaces": p.tablespaces.iter().map(|s| serde_json::json!({"oid": s.oid, "location": String::from_utf8_lossy(&s.path)})).collect::<Vec<_>>(),
    })
}

fn backup(g: &Global, a: &BackupArgs) -> Result<i32> {
    let repo = g.open()?;
    let observer = Terminal::new(g.progress_style(), g.json);
    let o = base::base_backup(
        &repo,
        &base::BaseOptions {
            pgdata: a.pgdata.clone(),
            host: a.host.clone().unwrap_or_else(current_host),
            tags: a.tags.clone(),
            threads: g.threads(),
            spread_checkpoint: a.spread_checkpoint,
        },
        &observer,
    )?;
    let s = &o.backup.summary;
    let id = o.backup.snapshot.map(|i| i.to_hex()).unwrap_or_default();
    if g.json {
        print_json(&serde_json::json!({
            "message_type": "summary",
            "snapshot_id": id,
            "parent": o.backup.parent.map(|i| i.to_hex()),
            "pg": base_json(&o.pg),
            "files_new": s.files_new, "files_changed": s.files_changed, "files_unmodified": s.files_unmodified,
            "bytes_read": s.bytes_read, "bytes_total": s.bytes_total,
            "bytes_added_raw": s.bytes_added_raw, "bytes_added_stored": s.bytes_added_stored,
            "errors": s.errors,
            "duration_seconds": (s.finished_ns - s.started_ns) as f64 / 1e9,
        }))?;
    } else if !g.quiet {
        println!(
            "base backup of {} (system identifier {}, timeline {}): WAL {} to {}",
            a.pgdata.display(),
            o.pg.system_identifier,
            o.pg.timeline,
            Lsn(o.pg.start_lsn),
            Lsn(o.pg.stop_lsn)
        );
        println!(
            "read {} of {}, added {} ({} stored)",
            human(s.bytes_read),
            human(s.bytes_total),
            human(s.bytes_added_raw),
            human(s.bytes_added_stored)
        );
        println!("snapshot {} saved", &id[..id.len().min(8)]);
    }
    // A base backup that skipped an unreadable file is not restorable: fail loudly.
    if s.errors > 0 {
        bail!(
            "{} files of the data directory could not be read: this base backup is incomplete",
            s.errors
        );
    }
    Ok(0)
}

fn wal_push(g: &Global, a: &WalPushArgs) -> Result<i32> {
    if push::already_pushed(&a.path, &g.repo)? {
        return Ok(0);
    }
    let keys = key_session(g)?;
    let report = push::push(
        &keys.wal(),
        &a.path,
        &push::PushOptions {
            batch: a.batch.max(1),
            threads: g.threads().max(keys.connections().min(8)),
            location: g.repo.clone(),
        },
    )?;
    for f in &report.ahead_failed {
        eprintln!("note: not archived ahead (PostgreSQL will ask again): {f}");
    }
    Ok(0)
}

fn wal_fetch(g: &Global, a: &WalFetchArgs) -> Result<i32> {
    if fetch::from_spool(&a.name, &a.dest)? {
        return Ok(0);
    }
    let keys = key_session(g)?;
    let wal = keys.wal();
    let sysid = match a.system_identifier {
        Some(s) => s,
        None => fetch::cluster_of(&wal, &a.dest)?,
    };
    if fetch::fetch(
        &wal,
        sysid,
        &a.name,
        &a.dest,
        a.prefetch,
        g.threads().max(4),
    )? {
        Ok(0)
    } else {
        if !g.quiet {
            eprintln!("{} is not archived", a.name);
        }
        Ok(1)
    }
}

/// The repository opened with its keys but not its cache (PostgreSQL runs the WAL commands
/// once per file: no database to open).
fn key_session(g: &Global) -> Result<cairn::repo::wal::KeySession> {
    let cache = g.cache_dir()?;
    let backend = g.backend(false)?;
    let pw = g.password()?;
    Ok(cairn::repo::wal::KeySession::open(backend, &pw, &cache)?)
}

/// A shell word, quoted if it needs to be.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.,:=@%+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `restore_command` for this repository: this binary with the same repository, password
/// source, cache folder and store options. A password only in CAIRN_PASSWORD cannot be
/// written into a configuration file: that is an error naming the alternatives.
fn restore_command(g: &Global) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut words = vec![exe.to_string_lossy().into_owned()];
    let location = match std::path::Path::new(&g.repo) {
        p if !g.repo.contains("://") && p.exists() => {
            std::fs::canonicalize(p)?.to_string_lossy().into_owned()
        }
        _ => g.repo.clone(),
    };
    words.extend(["-r".to_string(), location]);
    match g.password_source() {
        PasswordSource::File(f) => {
            let f = std::fs::canonicalize(&f).unwrap_or(f);
            words.extend(["--password-file".into(), f.to_string_lossy().into_owned()]);
        }
        PasswordSource::Command(c) => {
            words.extend([
                "--password-command".into(),
                c.to_string_lossy().into_owned(),
            ]);
        }
        _ => bail!(
            "the restore_command PostgreSQL runs needs the password from a file or a command: give --password-file or --password-command (or write your own with --restore-command)"
        ),
    }
    if let Some(c) = &g.cache_dir {
        let c = std::fs::canonicalize(c).unwrap_or(c.clone());
        words.extend(["--cache-dir".into(), c.to_string_lossy().into_owned()]);
    }
    for o in &g.options {
        words.extend(["-o".into(), o.clone()]);
    }
    let mut cmd: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
    cmd.extend(["-q", "pg", "wal-fetch", "%f", "%p"].map(String::from));
    Ok(cmd.join(" "))
}

fn restore(g: &Global, a: &RestoreArgs) -> Result<i32> {
    let target = if let Some(t) = &a.target_time {
        Target::Time(parse_target_time(t)?)
    } else if let Some(x) = a.target_xid {
        Target::Xid(x)
    } else if let Some(n) = &a.target_name {
        Target::Name(n.clone())
    } else if let Some(l) = &a.target_lsn {
        Target::Lsn(l.parse().map_err(anyhow::Error::msg)?)
    } else {
        Target::Latest
    };
    let restore_command = match &a.restore_command {
        Some(c) => c.clone(),
        None => restore_command(g)?,
    };
    let repo = g.open()?;
    let base = match &a.base {
        Some(s) => Some(cairn::snapshot::select::find(&repo, s, &Default::default(), None)?.0),
        None => None,
    };
    let observer = Terminal::new(g.progress_style(), g.json);
    let o = cairn::pg::restore::restore(
        &repo,
        &PgRestoreOptions {
            pgdata: std::path::absolute(&a.pgdata)?,
            target,
            action: a.target_action.map(|t| match t {
                TargetAction::Promote => Action::Promote,
                TargetAction::Pause => Action::Pause,
                TargetAction::Shutdown => Action::Shutdown,
            }),
            timeline: a.target_timeline.clone(),
            delta: a.delta,
            restore_command,
            base,
            system_identifier: a.system_identifier,
            threads: g.threads(),
        },
        &observer,
    )?;
    if g.json {
        print_json(&serde_json::json!({
            "message_type": "summary",
            "snapshot_id": o.base.id.to_hex(),
            "pg": base_json(&o.base.pg),
            "summary": o.summary,
            "removed": o.removed,
        }))?;
    } else if !g.quiet {
        println!(
            "restored base backup {} (stopped {}) into {}: {} files, {} written; removed {}",
            o.base.id.short(),
            chrono::DateTime::from_timestamp_nanos(o.base.pg.stopped_ns).to_rfc3339(),
            a.pgdata.display(),
            o.summary.files,
            human(o.summary.bytes_written),
            o.removed
        );
        println!("recovery is set up (postgresql.auto.conf, recovery.signal): start the server");
    }
    Ok(0)
}

fn list(g: &Global) -> Result<i32> {
    let repo = g.open()?;
    let bases = catalog::base_backups(repo.snapshots()?);
    let wal = catalog::archived(&repo.wal())?;
    let mut rows = Vec::new();
    for b in &bases {
        let p = &b.pg;
        let (start, stop) = b.wal_range();
        let empty = catalog::ClusterWal::default();
        let w = wal.get(&p.system_identifier).unwrap_or(&empty);
        let missing = w.missing_for(p);
        rows.push((b, start, stop, missing));
    }
    if g.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(b, start, stop, missing)| {
                let mut j = base_json(&b.pg);
                j["snapshot_id"] = b.id.to_hex().into();
                j["short_id"] = b.id.short().into();
                j["start_wal"] = start.clone().into();
                j["stop_wal"] = stop.clone().into();
                j["wal_complete"] = missing.is_empty().into();
                j["missing"] = missing.clone().into();
                j
            })
            .collect();
        print_json(&v)?;
        return Ok(0);
    }
    println!(
        "{:<9} {:<25} {:<20} {:<3} {:<24} {:<24} wal",
        "id", "stopped", "system id", "tl", "first WAL", "last WAL"
    );
    for (b, start, stop, missing) in &rows {
        println!(
            "{:<9} {:<25} {:<20} {:<3} {:<24} {:<24} {}",
            b.id.short(),
            chrono::DateTime::from_timestamp_nanos(b.pg.stopped_ns).format("%Y-%m-%d %H:%M:%S%:z"),
            b.pg.system_identifier,
            b.pg.timeline,
            start,
            stop,
            if missing.is_empty() {
                "complete".to_string()
            } else {
                format!("{} missing, first {}", missing.len(), missing[0])
            }
        );
    }
    for (sysid, w) in &wal {
        let seg = catalog::segment_size_of(&bases, *sysid);
        let segs = w.segments(seg);
        for (tl, s) in &segs {
            if let (Some(a), Some(b)) = (s.first(), s.last()) {
                println!(
                    "cluster {sysid} timeline {tl}: {} segments archived, {} to {}",
                    s.len(),
                    cairn::pg::walname::segment_name(*tl, *a, seg),
                    cairn::pg::walname::segment_name(*tl, *b, seg)
                );
            }
        }
        for (tl, first, n) in catalog::gaps(w, seg) {
            println!("cluster {sysid} timeline {tl}: {n} segments missing from {first}");
        }
    }
    Ok(if rows.iter().any(|r| !r.3.is_empty()) {
        1
    } else {
        0
    })
}

fn check(g: &Global, a: &CheckArgs) -> Result<i32> {
    let repo = g.open()?;
    let mut srv = cairn::pg::server::Server::connect()?;
    let sysid = srv.system_identifier()?;
    // A switch with nothing written since the last one is a no-op (and would name a segment
    // archived long ago): a committed transaction id first makes sure there is a new one.
    srv.text("SELECT txid_current()::text")?;
    let name = srv.text("SELECT pg_walfile_name(pg_switch_wal())")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(a.timeout);
    loop {
        if repo.wal().header(sysid, &name)?.is_some() {
            if !g.quiet {
                println!("archiving works: {name} of cluster {sysid} arrived in the repository");
            }
            return Ok(0);
        }
        if std::time::Instant::now() >= deadline {
            let failed = srv
                .texts(
                    "SELECT failed_count::text, coalesce(last_failed_wal, ''), coalesce(last_failed_time::text, '') FROM pg_stat_archiver",
                    &[],
                )
                .unwrap_or_default();
            bail!(
                "{name} did not arrive within {} s (pg_stat_archiver: {} failures, last {} at {}): check archive_command and the server log",
                a.timeout,
                failed.first().cloned().flatten().unwrap_or_default(),
                failed.get(1).cloned().flatten().unwrap_or_default(),
                failed.get(2).cloned().flatten().unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
