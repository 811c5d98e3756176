//! `backup --stdin-from-command -- pg_dump` against a real PostgreSQL 15 cluster.
//!
//! The CI installs PostgreSQL (`.ci/run`), so a missing `initdb` fails this test.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// pg_dump 15.14+ writes a random `\restrict` key unless given one; fix it so two dumps of the
/// same data are byte-identical.
const RESTRICT_KEY: &str = "--restrict-key=cairnintegrationtest";

fn pg(tool: &str) -> String {
    format!("{PG_BIN}/{tool}")
}

/// A command run as the postgres user, in `dir` (which postgres can enter).
fn as_postgres(dir: &Path, tool: &str, args: &[&str]) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", &pg(tool)])
        .args(args)
        .current_dir(dir);
    c
}

fn ok(c: Command) -> Output {
    let what = format!("{c:?}");
    let o = run(c, None);
    assert!(o.status.success(), "{what} failed\n{}", describe(&o));
    o
}

/// Stops the server however the test ends.
struct Server {
    dir: PathBuf,
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let d = self.data.to_str().unwrap().to_string();
        let _ = run(
            as_postgres(
                &self.dir,
                "pg_ctl",
                &["-D", &d, "-m", "immediate", "-w", "stop"],
            ),
            None,
        );
    }
}

fn uid_of(user: &str, flag: &str) -> u32 {
    let o = Command::new("id")
        .args([flag, user])
        .output()
        .expect("run id");
    assert!(
        o.status.success(),
        "no user {user}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

#[test]
fn pg_dump_through_stdin_from_command() {
    let initdb = pg("initdb");
    assert!(
        Path::new(&initdb).exists(),
        "{initdb} is missing: install PostgreSQL 15 (apt-get install postgresql; .ci/run does) — this test does not skip"
    );
    assert!(
        is_root(),
        "the PostgreSQL test needs root (to run the cluster as user postgres)"
    );

    let pgdir = tempfile::Builder::new()
        .prefix("cairn-pg-")
        .tempdir()
        .unwrap();
    let base = pgdir.path().to_path_buf();
    let (uid, gid) = (uid_of("postgres", "-u"), uid_of("postgres", "-g"));
    let sock = base.join("sock");
    std::fs::create_dir(&sock).unwrap();
    for p in [&base, &sock] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    }
    let data = base.join("data");
    let (d, s) = (
        data.to_str().unwrap().to_string(),
        sock.to_str().unwrap().to_string(),
    );
    let log = base.join("server.log");

    ok(as_postgres(
        &base,
        "initdb",
        &[
            "-D",
            &d,
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ],
    ));
    // -l: the server must not inherit our output pipes, or reading them never ends.
    let opts = format!("-k {s} -c listen_addresses=''");
    let started = run(
        as_postgres(
            &base,
            "pg_ctl",
            &[
                "-D",
                &d,
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        ),
        None,
    );
    let _server = Server {
        dir: base.clone(),
        data: data.clone(),
    };
    assert!(
        started.status.success(),
        "pg_ctl start failed\n{}\nserver log:\n{}",
        describe(&started),
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let sql = "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12,2));
               INSERT INTO accounts SELECT g, 'owner ' || md5(g::text), g * 1.25 FROM generate_series(1, 20000) g;
               CREATE INDEX ON accounts (owner);";
    ok(as_postgres(
        &base,
        "psql",
        &[
            "-h",
            &s,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ],
    ));

    let env = Env::new();
    let dump_cmd = [
        "runuser",
        "-u",
        "postgres",
        "--",
        &pg("pg_dump"),
        RESTRICT_KEY,
        "-h",
        &s,
        "-U",
        "postgres",
        "postgres",
    ];
    let mut args = vec![
        "backup",
        "--json",
        "--stdin-from-command",
        "--stdin-name",
        "db.sql",
        "--",
    ];
    args.extend_from_slice(&dump_cmd);
    let o = env.cairn(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "cairn backup of pg_dump failed\n{}",
        describe(&o)
    );

    let direct = ok(as_postgres(
        &base,
        "pg_dump",
        &[RESTRICT_KEY, "-h", &s, "-U", "postgres", "postgres"],
    ))
    .stdout;
    let text = String::from_utf8_lossy(&direct);
    assert!(
        text.contains("CREATE TABLE public.accounts")
            && text.contains("owner c4ca4238a0b923820dcc509a6f75849b"),
        "pg_dump output lacks the table"
    );

    let stored = env.ok(&["dump", "latest", "/db.sql"]).stdout;
    assert_eq!(
        stored.len(),
        direct.len(),
        "cairn holds {} bytes of dump, pg_dump now gives {}",
        stored.len(),
        direct.len()
    );
    assert!(
        stored == direct,
        "the dump restored by cairn differs from a direct pg_dump"
    );
    assert_eq!(num(&summary(&o), "bytes_read"), direct.len() as u64);
}
