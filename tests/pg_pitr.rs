//! PostgreSQL point-in-time recovery end to end against a real PostgreSQL 15: base backups with
//! `pg backup`, WAL archived by the server through `pg wal-push`, restores with `pg restore` that
//! the server then recovers (`pg wal-fetch` as its restore_command), to a time, a restore point,
//! a transaction id, an LSN or the end of the archive; faults on the archiving path; retention.
//!
//! A marker table records how far each recovery got: every target must give back exactly the
//! markers up to it and nothing later. Tests that share one cluster check several requirements;
//! each is a named part, all parts run, and the test fails listing every part that failed.

use crate::pg_cluster::*;
use crate::util::*;
use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The markers, in the order the main test commits them, with what follows each.
const MARKERS: &[&str] = &[
    "before-base-1",
    "after-base-1",
    "before-time-target",
    "before-restore-point",
    "in-target-xid",
    "before-target-lsn",
    "after-target-lsn",
    "after-base-2",
    "on-timeline-2",
];

/// One primary cluster archiving into one repository, both in one postgres-owned folder.
/// (Fields drop in order: the server stops before the folder goes.)
struct Site {
    primary: Cluster,
    repo: PgRepo,
    dir: tempfile::TempDir,
}

impl Site {
    /// initdb, a repository, archive_command = cairn wal-push into it, the server started, a
    /// marker table with marker 0 and some pgbench tables (primary keys: btree indexes for
    /// amcheck).
    fn new() -> Site {
        let dir = postgres_dir();
        let repo = PgRepo::init(dir.path(), "repo");
        let mut primary = Cluster::initdb(dir.path(), "primary");
        primary.configure_archiving(&repo.archive_command());
        primary.start(&[]);
        primary.query("CREATE TABLE markers (id int PRIMARY KEY, label text NOT NULL UNIQUE)");
        ok(primary.client("pgbench", &["-i", "-q", "-s", "1", "postgres"]));
        mark(&primary, 0);
        Site { primary, repo, dir }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `pg backup --pgdata` of the primary (`--json`): the snapshot id.
    fn backup(&self) -> String {
        let o = self.repo.ok_on(
            &self.primary,
            &[
                "--json",
                "pg",
                "backup",
                "--pgdata",
                self.primary.data.to_str().unwrap(),
            ],
        );
        let v = parse_json(&o, "pg backup --json");
        v["snapshot_id"]
            .as_str()
            .unwrap_or_else(|| panic!("pg backup --json has no snapshot_id: {v}"))
            .to_string()
    }

    /// `pg restore --pgdata DIR/name ARGS` (DIR/name missing unless made before): a cluster on
    /// it, not started. The data directory must be 0700 and postgres's.
    fn restore(&self, name: &str, args: &[&str]) -> Cluster {
        let c = Cluster::at(self.dir(), name);
        let mut a = vec!["pg", "restore", "--pgdata", c.data.to_str().unwrap()];
        a.extend_from_slice(args);
        self.repo.ok(self.dir(), &a);
        let m = std::fs::metadata(&c.data)
            .unwrap_or_else(|e| panic!("pg restore made no {}: {e}", c.data.display()));
        assert_eq!(
            m.mode() & 0o777,
            0o700,
            "pg restore left {} mode {:o}, PostgreSQL wants 0700",
            c.data.display(),
            m.mode() & 0o777
        );
        c
    }

    /// [`Self::restore`] with `args` and `--target-action promote` unless `--latest`, started
    /// without archiving until recovery is over: it must hold exactly the markers `0..=upto`.
    /// Returns the cluster, stopped.
    fn recover(&self, name: &str, args: &[&str], upto: usize) -> Cluster {
        let mut a = args.to_vec();
        if !a.contains(&"--latest") {
            a.extend_from_slice(&["--target-action", "promote"]);
        }
        let what = format!("recovery with {}", a.join(" "));
        let mut c = self.restore(name, &a);
        start_promoted(&mut c, false, &what);
        assert_eq!(markers(&c), expected(0..=upto), "{what}");
        c.stop();
        c
    }

    /// `pg wal-fetch NAME` into a fresh file: its bytes, or `None` when cairn says it has no such
    /// file — and then it must have written nothing.
    fn fetch(&self, name: &str) -> Option<Vec<u8>> {
        fetch_from(&self.repo, self.dir(), name)
    }

    /// `pg list --json`.
    fn list(&self) -> Vec<serde_json::Value> {
        let v = self.repo.json(self.dir(), &["pg", "list", "--json"]);
        v.as_array()
            .unwrap_or_else(|| panic!("pg list --json is not an array: {v}"))
            .clone()
    }
}

/// `pg wal-fetch NAME` from `repo` into a fresh file below `dir`; see [`Site::fetch`].
fn fetch_from(repo: &PgRepo, dir: &Path, name: &str) -> Option<Vec<u8>> {
    let out = dir.join("fetched");
    mkdir_postgres(&out);
    let dest = out.join(name);
    let _ = std::fs::remove_file(&dest);
    let o = repo.cairn(dir, &["pg", "wal-fetch", name, dest.to_str().unwrap()]);
    if o.status.success() {
        let b = std::fs::read(&dest)
            .unwrap_or_else(|e| panic!("wal-fetch {name} exited 0 but wrote no file: {e}"));
        let _ = std::fs::remove_file(&dest);
        Some(b)
    } else {
        assert!(
            !dest.exists(),
            "wal-fetch {name} failed but left {}\n{}",
            dest.display(),
            describe(&o)
        );
        None
    }
}

/// Run each part, collect the failures, and fail at the end naming all of them.
struct Parts(Vec<String>);

impl Parts {
    fn run(&mut self, name: &str, f: impl FnOnce()) {
        eprintln!("--- part: {name}");
        if let Err(e) = catch_unwind(AssertUnwindSafe(f)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            self.0.push(format!("[{name}] {msg}"));
        }
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} part(s) failed:\n\n{}",
            self.0.len(),
            self.0.join("\n\n")
        );
    }
}

fn mark(c: &Cluster, id: usize) {
    c.query(&format!(
        "INSERT INTO markers VALUES ({id}, '{}')",
        MARKERS[id]
    ));
}

/// Other transactions, so no target sits next to the end of the WAL.
fn churn(c: &Cluster, k: u32) {
    c.query(&format!(
        "UPDATE pgbench_accounts SET abalance = abalance + {k} WHERE aid % 97 = {};
         INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, {k}, {k}, now());
         UPDATE pgbench_branches SET bbalance = bbalance + {k};",
        k % 97
    ));
}

/// The markers a cluster holds, `id:label` joined by commas.
fn markers(c: &Cluster) -> String {
    c.query("SELECT coalesce(string_agg(id || ':' || label, ',' ORDER BY id), '') FROM markers")
}

/// What [`markers`] gives when the markers `ids` (in order) are there.
fn expected(ids: std::ops::RangeInclusive<usize>) -> String {
    ids.map(|i| format!("{i}:{}", MARKERS[i]))
        .collect::<Vec<_>>()
        .join(",")
}

/// Write some WAL and switch to a new segment: the name of the segment the switch closed.
fn switch(c: &Cluster, k: u32) -> String {
    churn(c, k);
    c.query("SELECT pg_walfile_name(pg_switch_wal())")
}

/// Wait until the server has archived `segment` (and every one before it).
fn wait_archived(c: &Cluster, segment: &str) {
    c.wait_for(
        &format!("SELECT coalesce(last_archived_wal >= '{segment}', false) FROM pg_stat_archiver"),
        "t",
        &format!("archiving of {segment}"),
    );
}

fn failed_count(c: &Cluster) -> u64 {
    c.query("SELECT failed_count FROM pg_stat_archiver")
        .parse()
        .expect("failed_count")
}

/// Wait until the server has failed to archive at least once more than `before` times.
fn wait_failure(c: &Cluster, before: u64, what: &str) {
    c.wait_for(
        &format!("SELECT failed_count > {before} FROM pg_stat_archiver"),
        "t",
        what,
    );
}

/// `ALTER SYSTEM SET archive_command` and a reload, waited for.
fn set_archive_command(c: &Cluster, cmd: &str) {
    c.query(&format!(
        "ALTER SYSTEM SET archive_command = '{cmd}'; SELECT pg_reload_conf();"
    ));
    c.wait_for("SHOW archive_command", cmd, "reload of archive_command");
}

/// Back to the archive_command of postgresql.conf.
fn reset_archive_command(c: &Cluster, repo: &PgRepo) {
    c.query("ALTER SYSTEM RESET archive_command; SELECT pg_reload_conf();");
    c.wait_for(
        "SHOW archive_command",
        &repo.archive_command(),
        "reload of archive_command",
    );
}

/// A segment's bytes as they are in the primary's pg_wal now.
fn segment_bytes(c: &Cluster, name: &str) -> Vec<u8> {
    let p = c.data.join("pg_wal").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The segment number in a WAL file name (16 MiB segments: 256 a log id).
fn seg_no(name: &str) -> u64 {
    let hi = u64::from_str_radix(&name[8..16], 16).expect("WAL name");
    let lo = u64::from_str_radix(&name[16..24], 16).expect("WAL name");
    hi * 256 + lo
}

fn seg_name(tli: u32, no: u64) -> String {
    format!("{tli:08X}{:08X}{:08X}", no / 256, no % 256)
}

/// `hi/lo` hex as PostgreSQL prints an LSN.
fn lsn(s: &str) -> u64 {
    let (hi, lo) = s
        .split_once('/')
        .unwrap_or_else(|| panic!("{s:?} is not an LSN"));
    u64::from_str_radix(hi, 16).expect("LSN") << 32 | u64::from_str_radix(lo, 16).expect("LSN")
}

/// The start LSN of the base backup a recovered cluster came from (its `backup_label.old`).
fn recovered_from(c: &Cluster) -> u64 {
    let p = c.data.join("backup_label.old");
    let t = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (did the restore write backup_label?)", p.display()));
    let line = t
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .unwrap_or_else(|| panic!("no START WAL LOCATION in {}:\n{t}", p.display()));
    lsn(line.split_whitespace().next().expect("LSN"))
}

/// The pg-base snapshots (`snapshots --json --tag pg-base`).
fn base_backups(site: &Site) -> Vec<serde_json::Value> {
    let v = site
        .repo
        .json(site.dir(), &["snapshots", "--json", "--tag", "pg-base"]);
    v.as_array()
        .unwrap_or_else(|| panic!("snapshots --json is not an array: {v}"))
        .clone()
}

/// The `pg` object of the pg-base snapshot whose id starts like `id` (or `id` like it).
fn pg_of(snaps: &[serde_json::Value], id: &str) -> serde_json::Value {
    snaps
        .iter()
        .find(|s| {
            let sid = s["id"].as_str().unwrap_or_default();
            !sid.is_empty() && (sid.starts_with(id) || id.starts_with(sid))
        })
        .unwrap_or_else(|| panic!("no pg-base snapshot {id} in {snaps:?}"))["pg"]
        .clone()
}

fn start_lsn(pg: &serde_json::Value) -> u64 {
    lsn(pg["start_lsn"]
        .as_str()
        .unwrap_or_else(|| panic!("no start_lsn in {pg}")))
}

/// The first line where two dumps differ, for the failure message.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i), lb.get(i));
        if x != y {
            return format!("line {}: original {x:?}, restored {y:?}", i + 1);
        }
    }
    "no line differs (line endings?)".into()
}

/// amcheck on every database that takes connections: `bt_index_check` (with heapallindexed) on
/// every btree index and `verify_heapam` on every table; returns how many indexes were checked.
fn amcheck(c: &Cluster) -> u64 {
    let dbs = c.query("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1");
    let mut n = 0;
    for db in dbs.lines() {
        let checked = c.query_db(
            db,
            "CREATE EXTENSION IF NOT EXISTS amcheck;
             SELECT count(bt_index_check(c.oid, true)) FROM pg_index i
               JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
              WHERE a.amname = 'btree' AND c.relpersistence <> 't' AND i.indisready AND i.indisvalid;",
        );
        n += checked.parse::<u64>().expect("count");
        let corrupt = c.query_db(
            db,
            "SELECT coalesce(string_agg(c.relname || ': ' || v.msg, '; '), '')
               FROM pg_class c, verify_heapam(c.oid) v
              WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence <> 't';",
        );
        assert_eq!(corrupt, "", "verify_heapam in {db} finds corruption");
    }
    n
}

/// `cairn check` must pass.
fn check_passes(site: &Site) {
    let o = site.repo.cairn(site.dir(), &["check"]);
    assert_eq!(o.status.code(), Some(0), "check\n{}", describe(&o));
}

/// Start a restored cluster (no archiving unless `archive`) and wait until recovery is over
/// (`pg_is_in_recovery()` false).
fn start_promoted(c: &mut Cluster, archive: bool, what: &str) {
    let settings: &[&str] = if archive { &[] } else { &["archive_mode=off"] };
    c.start(settings);
    c.wait_for("SELECT pg_is_in_recovery()", "f", what);
}

/// Base backups, markers at each kind of target, a second base backup, then restores to each
/// target (from the older backup), pause, delta, the end of the archive (pg_dumpall, amcheck), a
/// promoted restore archiving timeline 2, and restores that follow or ignore that timeline.
#[test]
fn pg_pitr_every_target_gives_back_exactly_its_marker() {
    let site = Site::new();
    let p = &site.primary;
    let mut parts = Parts(Vec::new());

    // The history: markers 0..=7, other transactions between them, two base backups.
    let b1 = site.backup();
    mark(p, 1);
    churn(p, 1);
    mark(p, 2);
    p.query("SELECT pg_switch_wal()");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let time_target = p.query(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    churn(p, 2);
    mark(p, 3);
    p.query("SELECT pg_create_restore_point('cairn-target')");
    churn(p, 3);
    let xid = p.query(&format!(
        "BEGIN; INSERT INTO markers VALUES (4, '{}'); SELECT pg_current_xact_id(); COMMIT;",
        MARKERS[4]
    ));
    churn(p, 4);
    mark(p, 5);
    let lsn_target = p.query("SELECT pg_current_wal_insert_lsn()");
    mark(p, 6);
    churn(p, 5);
    let b2 = site.backup();
    mark(p, 7);
    churn(p, 6);
    site.repo.ok_on(p, &["pg", "check"]);
    let original_dump = p.dumpall();
    let sysid = p.query("SELECT system_identifier FROM pg_control_system()");
    let version: u64 = p.query("SHOW server_version_num").parse().unwrap();

    let mut b1_start = 0;
    let mut b2_start = 0;
    parts.run(
        "snapshots --json --tag pg-base: one element per base backup",
        || {
            let snaps = base_backups(&site);
            assert_eq!(snaps.len(), 2, "two base backups, listed: {snaps:?}");
            for id in [&b1, &b2] {
                let pg = pg_of(&snaps, id);
                assert_eq!(pg["system_identifier"], sysid.as_str(), "{id}: {pg}");
                assert_eq!(pg["timeline"], 1, "{id}: {pg}");
                assert_eq!(pg["server_version"], version, "{id}: {pg}");
                for k in ["stop_lsn", "start_wal", "stop_wal", "started", "stopped"] {
                    assert!(pg[k].is_string(), "{id}: no {k} in {pg}");
                }
                assert!(
                    lsn(pg["stop_lsn"].as_str().unwrap()) > start_lsn(&pg),
                    "{pg}"
                );
            }
            b1_start = start_lsn(&pg_of(&snaps, &b1));
            b2_start = start_lsn(&pg_of(&snaps, &b2));
        },
    );
    parts.run("pg list: both base backups have all their WAL", || {
        let l = site.list();
        assert_eq!(l.len(), 2, "{l:?}");
        for e in &l {
            assert_eq!(e["wal_complete"], true, "{e}");
            assert!(
                e["start_wal"].is_string() && e["stop_wal"].is_string(),
                "{e}"
            );
        }
    });

    let targets: [(&str, &str, &str, usize); 4] = [
        ("time", "--target-time", &time_target, 2),
        ("name", "--target-name", "cairn-target", 3),
        ("xid", "--target-xid", &xid, 4),
        ("lsn", "--target-lsn", &lsn_target, 5),
    ];
    for (kind, flag, value, upto) in targets {
        let name =
            format!("{flag} {value} gives markers 0..={upto} only (from the older base backup)");
        parts.run(&name, || {
            let c = site.recover(&format!("target-{kind}"), &[flag, value], upto);
            if b1_start != 0 {
                assert_eq!(
                    recovered_from(&c),
                    b1_start,
                    "{name}: not recovered from the older base backup {b1} (the only one that \
                     started before the target)"
                );
            }
        });
    }

    parts.run(
        "--target-action pause: paused in recovery at the restore point (into an empty DIR)",
        || {
            let data = site.dir().join("paused");
            mkdir_postgres(&data);
            chmod(&data, 0o700);
            let mut c = site.restore(
                "paused",
                &["--target-name", "cairn-target", "--target-action", "pause"],
            );
            c.start(&["archive_mode=off"]);
            c.wait_for(
                "SELECT pg_get_wal_replay_pause_state()",
                "paused",
                "pause at the target",
            );
            assert_eq!(c.query("SELECT pg_is_in_recovery()"), "t");
            assert_eq!(c.query("SELECT pg_is_wal_replay_paused()"), "t");
            assert_eq!(markers(&c), expected(0..=3));
            c.stop();
        },
    );

    parts.run(
        "--delta over a recovered data directory (the time target's, promoted to a timeline of its own) to --target-xid",
        || {
            site.recover("target-time", &["--delta", "--target-xid", &xid], 4);
        },
    );

    let mut tl2_ok = false;
    parts.run(
        "--latest: pg_dumpall identical to the original's, amcheck and checksums clean, from the newer base backup",
        || {
            let mut c = site.restore("latest", &["--latest"]);
            // Archiving on: this cluster's new timeline goes into the same repository (below).
            start_promoted(&mut c, true, "recovery to the end of the archive");
            assert_eq!(markers(&c), expected(0..=7));
            let dump = c.dumpall();
            assert!(
                dump == original_dump,
                "pg_dumpall of the restore differs from the original's ({} vs {} bytes): {}",
                dump.len(),
                original_dump.len(),
                first_difference(&original_dump, &dump)
            );
            if b2_start != 0 {
                assert_eq!(recovered_from(&c), b2_start, "not from the newer base backup {b2}");
            }
            let n = amcheck(&c);
            assert!(n >= 4, "amcheck checked only {n} btree indexes");

            // Promoted: it archives timeline 2 (history file, .partial, segments), no failure.
            let tli = c.query("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)");
            assert_eq!(tli, "00000002", "the promoted restore writes timeline {tli}");
            c.query(&format!("INSERT INTO markers VALUES (8, '{}')", MARKERS[8]));
            let seg = switch(&c, 7);
            assert!(seg.starts_with("00000002"), "{seg}");
            wait_archived(&c, &seg);
            assert_eq!(
                c.query("SELECT failed_count || '/' || coalesce(last_failed_wal, '-') FROM pg_stat_archiver"),
                "0/-",
                "the promoted cluster failed to archive\nserver log:\n{}",
                c.log_tail()
            );
            let history = site
                .fetch("00000002.history")
                .expect("00000002.history is not in the repository");
            assert_eq!(
                history,
                std::fs::read(c.data.join("pg_wal/00000002.history")).unwrap(),
                "the archived 00000002.history differs from the server's"
            );
            let stored = site.fetch(&seg).unwrap_or_else(|| panic!("{seg} is not in the repository"));
            assert!(stored == segment_bytes(&c, &seg), "the archived {seg} differs");
            c.stop();
            let o = ok(as_postgres(
                site.dir(),
                "pg_checksums",
                &["--check", "-D", c.data.to_str().unwrap()],
            ));
            assert!(
                String::from_utf8_lossy(&o.stdout).contains("Bad checksums:  0"),
                "{}",
                describe(&o)
            );
            tl2_ok = true;
        },
    );

    if tl2_ok {
        parts.run("--latest follows the newest timeline (2)", || {
            site.recover("latest-tl2", &["--latest"], 8);
        });
        parts.run("--latest --target-timeline 1 stays on timeline 1", || {
            site.recover("latest-tl1", &["--latest", "--target-timeline", "1"], 7);
        });
        parts.run(
            "a time target before the newer backup's start is still reached from the older one after timeline 2",
            || {
                site.recover("target-time-again", &["--target-time", &time_target], 2);
            },
        );
    }

    parts.run(
        "check: the repository and its WAL timelines are whole",
        || {
            check_passes(&site);
        },
    );
    parts.run("the primary never failed to archive", || {
        assert_eq!(failed_count(p), 0, "server log:\n{}", p.log_tail());
    });
    parts.finish();
}

/// wal-push killed at each of its writes, then retried by PostgreSQL, succeeds; an unreachable
/// or unwritable repository makes it fail and PostgreSQL keeps the segments until it works
/// again: every segment ends up stored, byte for byte.
#[test]
fn pg_wal_push_faults_lose_no_segment() {
    let site = Site::new();
    let p = &site.primary;
    let first = switch(p, 1);
    wait_archived(p, &first);
    let b = site.backup();
    let mut parts = Parts(Vec::new());

    parts.run(
        "wal-push killed mid-upload (at each write of a batch of three), retried by PostgreSQL, succeeds",
        || {
            let mut killed = 0;
            for n in 0..10 {
                // Three segments ready before the push that is killed (archive_command `false`
                // holds them back), so the kill falls inside a batch.
                set_archive_command(p, "false");
                let segs: Vec<String> = (0..3).map(|k| switch(p, 10 + 3 * n + k)).collect();
                let bytes: Vec<Vec<u8>> = segs.iter().map(|s| segment_bytes(p, s)).collect();
                let since = std::fs::metadata(&p.log).map_or(0, |m| m.len() as usize);
                set_archive_command(
                    p,
                    &format!(
                        "CAIRN_TEST_KILL_AFTER_WRITES={n} {}",
                        site.repo.archive_command()
                    ),
                );
                // Killed, or done in fewer writes than n (archived): then every write of a push
                // has been a kill point.
                let failed = wait_archived_or_killed(p, &segs[0], since);
                reset_archive_command(p, &site.repo);
                if failed {
                    killed += 1;
                }
                // PostgreSQL restarts the archiver (10 s) and it tries again.
                wait_archived(p, &segs[2]);
                for (s, b) in segs.iter().zip(&bytes) {
                    let stored = site.fetch(s).unwrap_or_else(|| {
                        panic!("{s} (a push killed after {n} writes) is not stored")
                    });
                    assert!(
                        stored == *b,
                        "{s} (a push killed after {n} writes) is stored with other bytes"
                    );
                }
                if !failed {
                    break;
                }
            }
            eprintln!("wal-push killed at {killed} write(s)");
            assert!(
                killed > 0,
                "CAIRN_TEST_KILL_AFTER_WRITES never killed wal-push"
            );
        },
    );

    let outage = |what: &str, break_it: &dyn Fn(), fix: &dyn Fn()| {
        let before = failed_count(p);
        break_it();
        let segs: Vec<String> = (0..3).map(|k| switch(p, 30 + k)).collect();
        let bytes: Vec<Vec<u8>> = segs.iter().map(|s| segment_bytes(p, s)).collect();
        wait_failure(p, before, &format!("wal-push failing while {what}"));
        for s in &segs {
            assert!(
                p.data
                    .join(format!("pg_wal/archive_status/{s}.ready"))
                    .exists()
                    && p.data.join(format!("pg_wal/{s}")).exists(),
                "{s}: PostgreSQL no longer holds it as unarchived while {what}"
            );
        }
        fix();
        p.query("SELECT pg_reload_conf()");
        let last = segs.last().unwrap();
        wait_archived(p, last);
        for (s, b) in segs.iter().zip(&bytes) {
            let stored = site
                .fetch(s)
                .unwrap_or_else(|| panic!("{s}, archived after {what}, is not stored"));
            assert!(stored == *b, "{s} is stored with other bytes");
        }
    };

    parts.run(
        "an unreachable repository (-r to nowhere): wal-push fails, then catches up",
        || {
            let bad = site.repo.archive_command().replace(
                site.repo.repo.to_str().unwrap(),
                "/nonexistent/cairn-repository",
            );
            outage(
                "the repository is unreachable",
                &|| set_archive_command(p, &bad),
                &|| reset_archive_command(p, &site.repo),
            );
        },
    );

    parts.run(
        "an unwritable repository folder: wal-push fails, then catches up",
        || {
            let dirs: Vec<PathBuf> = std::iter::once(site.repo.repo.clone())
                .chain(walk(&site.repo.repo).into_iter().filter(|d| d.is_dir()))
                .collect();
            let modes: Vec<u32> = dirs
                .iter()
                .map(|d| std::fs::metadata(d).unwrap().mode() & 0o7777)
                .collect();
            outage(
                "the repository folder is unwritable",
                &|| dirs.iter().for_each(|d| chmod(d, 0o555)),
                &|| dirs.iter().zip(&modes).for_each(|(d, m)| chmod(d, *m)),
            );
        },
    );

    parts.run(
        "pg list: the base backup's WAL is complete after the faults",
        || {
            let l = site.list();
            assert_eq!(l.len(), 1, "{l:?}");
            assert_eq!(l[0]["wal_complete"], true, "{}", l[0]);
            assert!(
                l[0]["snapshot_id"]
                    .as_str()
                    .is_some_and(|s| b.starts_with(s) || s.starts_with(&b))
            );
        },
    );
    parts.run("every segment since the first is stored", || {
        let last = switch(p, 99);
        wait_archived(p, &last);
        for no in seg_no(&first)..=seg_no(&last) {
            let name = seg_name(1, no);
            assert!(
                site.fetch(&name).is_some(),
                "{name} is missing from the repository"
            );
        }
    });
    parts.run("check after the faults", || {
        check_passes(&site);
    });
    parts.finish();
}

/// Wait until `seg` is archived (false) or the server log (after byte `since`) says an archive_command on it failed
/// (true). An archive_command killed by a signal is no failure pg_stat_archiver counts: the
/// archiver exits (FATAL) and the postmaster starts another 10 s later.
fn wait_archived_or_killed(c: &Cluster, seg: &str, since: usize) -> bool {
    let archived =
        format!("SELECT coalesce(last_archived_wal >= '{seg}', false) FROM pg_stat_archiver");
    let failed = "failed archive command was: ";
    let suffix = format!("wal-push pg_wal/{seg}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let log = std::fs::read_to_string(&c.log).unwrap_or_default();
        if log
            .get(since..)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(failed) && l.trim_end().ends_with(&suffix))
        {
            return true;
        }
        if c.query(&archived) == "t" {
            return false;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{seg} neither archived nor failed after 120 s\nserver log:\n{}",
            c.log_tail()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Pushing a stored file again with the same bytes succeeds, with other bytes fails; a name not
/// stored is not fetched (and nothing written); another cluster's segment is refused; wal-push
/// takes the other `.ready` segments along.
#[test]
fn pg_wal_push_and_fetch_refuse_what_they_must() {
    let site = Site::new();
    let p = &site.primary;
    let mut parts = Parts(Vec::new());
    let seg = switch(p, 1);
    let bytes = segment_bytes(p, &seg);
    wait_archived(p, &seg);
    let copies = site.dir().join("copies");
    mkdir_postgres(&copies);
    let copy = copies.join(&seg);

    parts.run(
        "wal-push of a stored segment with the same bytes succeeds",
        || {
            write(&copy, &bytes);
            chown_postgres(&copy);
            site.repo
                .ok(&p.data, &["pg", "wal-push", copy.to_str().unwrap()]);
        },
    );
    parts.run(
        "wal-push of a stored name with other bytes fails; the stored bytes stay",
        || {
            let mut other = bytes.clone();
            other[8 << 20 | 4321] ^= 0xff;
            write(&copy, &other);
            chown_postgres(&copy);
            let o = site
                .repo
                .cairn(&p.data, &["pg", "wal-push", copy.to_str().unwrap()]);
            assert_ne!(o.status.code(), Some(0), "{}", describe(&o));
            assert!(!o.stderr.is_empty(), "a silent refusal\n{}", describe(&o));
            assert!(site.fetch(&seg).unwrap() == bytes, "{seg} changed");
        },
    );
    parts.run(
        "wal-fetch of a name not stored fails and writes nothing",
        || {
            for name in ["0000000100000000000000F0", "00000007.history"] {
                assert!(site.fetch(name).is_none(), "wal-fetch {name} gave a file");
            }
        },
    );
    parts.run("wal-push batches the other .ready segments", || {
        set_archive_command(p, "false");
        let before = failed_count(p);
        let segs: Vec<String> = (0..3).map(|k| switch(p, 20 + k)).collect();
        wait_failure(p, before, "archive_command false");
        let rel = format!("pg_wal/{}", segs[0]);
        site.repo.ok(&p.data, &["pg", "wal-push", &rel]);
        for s in &segs {
            let stored = site
                .fetch(s)
                .unwrap_or_else(|| panic!("{s} was not pushed with {}", segs[0]));
            assert!(stored == segment_bytes(p, s), "{s} stored with other bytes");
        }
        reset_archive_command(p, &site.repo);
        p.query("SELECT pg_reload_conf()");
        wait_archived(p, segs.last().unwrap());
    });
    parts.run("wal-push of another cluster's segment is refused", || {
        let other = Cluster::initdb(site.dir(), "foreign");
        let repo2 = PgRepo::init(site.dir(), "repo2");
        let name = "000000010000000000000001";
        let foreign = site.dir().join("foreign-wal").join(name);
        mkdir_postgres(foreign.parent().unwrap());
        std::fs::copy(other.data.join("pg_wal").join(name), &foreign).unwrap();
        chown_postgres(&foreign);
        let o = repo2.cairn(&p.data, &["pg", "wal-push", foreign.to_str().unwrap()]);
        assert_ne!(
            o.status.code(),
            Some(0),
            "a segment of system {} pushed from the data directory of system {}\n{}",
            other_sysid(&other),
            p.query("SELECT system_identifier FROM pg_control_system()"),
            describe(&o)
        );
        eprintln!("refusal: {}", String::from_utf8_lossy(&o.stderr));
        assert!(
            fetch_from(&repo2, site.dir(), name).is_none(),
            "the foreign segment is stored"
        );
        // The same push from its own cluster's data directory is fine: the refusal was the
        // system identifier's.
        let o = repo2.cairn(&other.data, &["pg", "wal-push", foreign.to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "push from its own cluster\n{}",
            describe(&o)
        );
    });
    parts.finish();
}

/// The system identifier in a (stopped) cluster's pg_control.
fn other_sysid(c: &Cluster) -> String {
    let o = ok(as_postgres(
        &c.dir,
        "pg_controldata",
        &[c.data.to_str().unwrap()],
    ));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Database system identifier:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Two base backups; forget the older and prune: the WAL only it needed is gone, every segment
/// the newer one needs (and after) is still there, and it still restores to the end.
#[test]
fn pg_prune_drops_only_wal_no_kept_base_backup_needs() {
    let site = Site::new();
    let b1 = site.backup();
    let p = &site.primary;
    switch(p, 1);
    mark(p, 1);
    switch(p, 2);
    let b2 = site.backup();
    mark(p, 2);
    let last = switch(p, 3);
    wait_archived(p, &last);
    let mut parts = Parts(Vec::new());

    let l = site.list();
    let start_of = |id: &str| -> u64 {
        let e = l
            .iter()
            .find(|e| {
                e["snapshot_id"]
                    .as_str()
                    .is_some_and(|s| id.starts_with(s) || s.starts_with(id))
            })
            .unwrap_or_else(|| panic!("{id} not in pg list: {l:?}"));
        seg_no(e["start_wal"].as_str().expect("start_wal"))
    };
    let (s1, s2) = (start_of(&b1), start_of(&b2));
    assert!(s1 < s2, "base backups start at segments {s1} and {s2}");
    let end = seg_no(&last);

    parts.run(
        "before prune: every segment from the first on is stored",
        || {
            for no in 1..=end {
                assert!(
                    site.fetch(&seg_name(1, no)).is_some(),
                    "{} missing",
                    seg_name(1, no)
                );
            }
        },
    );
    site.repo.ok(site.dir(), &["forget", &b1]);
    site.repo.ok(site.dir(), &["prune"]);
    parts.run(
        "prune drops the WAL only the forgotten base backup needed",
        || {
            let kept: Vec<String> = (1..s2)
                .map(|no| seg_name(1, no))
                .filter(|n| site.fetch(n).is_some())
                .collect();
            assert!(kept.is_empty(), "still stored after prune: {kept:?}");
        },
    );
    parts.run(
        "prune keeps every segment the kept base backup needs, and later ones",
        || {
            for no in s2..=end {
                assert!(
                    site.fetch(&seg_name(1, no)).is_some(),
                    "{} was pruned although base backup {b2} needs it",
                    seg_name(1, no)
                );
            }
            let l = site.list();
            assert_eq!(l.len(), 1, "{l:?}");
            assert_eq!(l[0]["wal_complete"], true, "{}", l[0]);
        },
    );
    parts.run("check after prune", || {
        check_passes(&site);
    });
    parts.run(
        "the kept base backup restores to the end of the archive",
        || {
            site.recover("latest", &["--latest"], 2);
        },
    );
    parts.finish();
}
