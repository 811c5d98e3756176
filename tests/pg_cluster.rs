//! A real PostgreSQL 15 cluster for the integration tests, run as user `postgres`: `initdb` with
//! data checksums, a server on a Unix socket of its own (no TCP), SQL through `psql`, and a guard
//! that stops the server however the test ends. Also a cairn repository that user `postgres`
//! owns ([`PgRepo`]), since PostgreSQL's `archive_command` runs as that user.
//!
//! The CI installs PostgreSQL (`.ci/run`): a missing `initdb` fails the tests, never skips them.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// pg_dump 15.14+ writes a random `\restrict` key unless given one; fix it so two dumps of the
/// same data are byte-identical.
pub const RESTRICT_KEY: &str = "--restrict-key=cairnintegrationtest";

/// How long a server may take to start, recover or archive before the test fails.
const PATIENCE: Duration = Duration::from_secs(120);

/// The path of a PostgreSQL program.
pub fn pg(tool: &str) -> String {
    format!("{PG_BIN}/{tool}")
}

/// Variables of the test's own environment that would steer a cairn started below (by us or by
/// a server's archive_command) somewhere else.
const CAIRN_VARS: &[&str] = &[
    "CAIRN_REPOSITORY",
    "CAIRN_PASSWORD",
    "CAIRN_PASSWORD_FILE",
    "CAIRN_PASSWORD_COMMAND",
    "CAIRN_CACHE_DIR",
    "CAIRN_THREADS",
    "CAIRN_TEST_FAULTS",
    "CAIRN_TEST_KILL_AFTER_WRITES",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
];

/// `program args` run as the postgres user, in `dir` (which postgres can enter), with none of
/// [`CAIRN_VARS`] inherited.
pub fn run_as_postgres(dir: &Path, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", program])
        .args(args)
        .current_dir(dir);
    for v in CAIRN_VARS {
        c.env_remove(v);
    }
    c
}

/// A PostgreSQL program run as the postgres user, in `dir`.
pub fn as_postgres(dir: &Path, tool: &str, args: &[&str]) -> Command {
    run_as_postgres(dir, &pg(tool), args)
}

/// Run `c`, requiring exit 0.
pub fn ok(c: Command) -> Output {
    let what = format!("{c:?}");
    let o = run(c, None);
    assert!(o.status.success(), "{what} failed\n{}", describe(&o));
    o
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

/// Give `p` to the postgres user.
pub fn chown_postgres(p: &Path) {
    let (uid, gid) = (uid_of("postgres", "-u"), uid_of("postgres", "-g"));
    std::os::unix::fs::chown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown postgres {}: {e}", p.display()));
}

/// A new folder `p` owned by postgres.
pub fn mkdir_postgres(p: &Path) {
    std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    chown_postgres(p);
}

/// Fail (never skip) when PostgreSQL 15 or root is missing; then a temporary folder owned by
/// postgres (tempdirs are 0700 root: postgres could not enter one).
pub fn postgres_dir() -> tempfile::TempDir {
    let initdb = pg("initdb");
    assert!(
        Path::new(&initdb).exists(),
        "{initdb} is missing: install PostgreSQL 15 (apt-get install postgresql; .ci/run does) — this test does not skip"
    );
    assert!(
        is_root(),
        "the PostgreSQL tests need root (to run the clusters as user postgres)"
    );
    let d = tempfile::Builder::new()
        .prefix("cairn-pg-")
        .tempdir()
        .expect("tempdir");
    chown_postgres(d.path());
    d
}

/// A port nobody listens on now. The servers listen on a Unix socket only, in a folder of their
/// own, so the number only names the socket file; distinct numbers keep the logs readable.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// One PostgreSQL cluster: a data directory and the server on it (when started). Dropping it
/// stops the server (immediate mode).
pub struct Cluster {
    /// The folder the cluster's files live in (postgres-owned); commands run here.
    pub dir: PathBuf,
    pub data: PathBuf,
    /// The folder holding the server's Unix socket.
    pub sock: PathBuf,
    pub port: u16,
    pub log: PathBuf,
    running: bool,
}

impl Cluster {
    /// A cluster on the data directory `dir/name`, which exists or will (initdb, a restore);
    /// socket folder, port and log of its own.
    pub fn at(dir: &Path, name: &str) -> Cluster {
        let sock = dir.join(format!("{name}.sock"));
        mkdir_postgres(&sock);
        Cluster {
            dir: dir.to_path_buf(),
            data: dir.join(name),
            sock,
            port: free_port(),
            log: dir.join(format!("{name}.log")),
            running: false,
        }
    }

    /// `initdb` (data checksums, trust, UTF8, C locale) into `dir/name`.
    pub fn initdb(dir: &Path, name: &str) -> Cluster {
        let c = Cluster::at(dir, name);
        ok(as_postgres(
            dir,
            "initdb",
            &[
                "-D",
                s(&c.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--data-checksums",
                "-N",
            ],
        ));
        c
    }

    /// Append `lines` to the cluster's postgresql.conf (settings `ALTER SYSTEM` can still
    /// override, unlike command-line ones).
    pub fn configure(&self, lines: &str) {
        use std::io::Write;
        let p = self.data.join("postgresql.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
        writeln!(f, "\n{lines}").expect("append to postgresql.conf");
    }

    /// The settings that make the cluster archive its WAL with `archive_command` (no
    /// archive_timeout: the tests switch WAL themselves).
    pub fn configure_archiving(&self, archive_command: &str) {
        self.configure(&format!(
            "wal_level = replica\nmax_wal_senders = 4\narchive_mode = on\n\
             archive_command = '{archive_command}'\narchive_timeout = 0\n\
             fsync = off\nshared_buffers = 32MB\n"
        ));
    }

    /// The server log so far (its last 6000 bytes), for failure messages.
    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let cut = t.len().saturating_sub(6000);
        let cut = (cut..t.len())
            .find(|&i| t.is_char_boundary(i))
            .unwrap_or(t.len());
        t[cut..].to_string()
    }

    /// Start the server with extra `-c name=value` settings; `Err` with pg_ctl's output and the
    /// server log when it does not come up.
    pub fn try_start(&mut self, settings: &[&str]) -> Result<(), String> {
        // pg_ctl hands -o to a shell: `''` is an empty value there.
        let mut opts = format!(
            "-k {} -p {} -c listen_addresses=''",
            s(&self.sock),
            self.port
        );
        for kv in settings {
            opts.push_str(&format!(" -c {kv}"));
        }
        // -l: the server must not inherit our output pipes, or reading them never ends.
        let o = run(
            as_postgres(
                &self.dir,
                "pg_ctl",
                &[
                    "-D",
                    s(&self.data),
                    "-l",
                    s(&self.log),
                    "-o",
                    &opts,
                    "-t",
                    "120",
                    "-w",
                    "start",
                ],
            ),
            None,
        );
        // Started or not, a postmaster may be up: stop it on drop.
        self.running = true;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl start of {} failed\n{}\nserver log:\n{}",
                self.data.display(),
                describe(&o),
                self.log_tail()
            ))
        }
    }

    /// [`Self::try_start`], required to succeed.
    pub fn start(&mut self, settings: &[&str]) {
        if let Err(e) = self.try_start(settings) {
            panic!("{e}");
        }
    }

    /// `pg_ctl stop` in shutdown mode `mode`.
    fn pg_ctl_stop(&self, mode: &str) -> Output {
        run(
            as_postgres(
                &self.dir,
                "pg_ctl",
                &["-D", s(&self.data), "-m", mode, "-w", "stop"],
            ),
            None,
        )
    }

    /// Stop the server (fast mode: a clean shutdown checkpoint).
    pub fn stop(&mut self) {
        if self.running {
            let o = self.pg_ctl_stop("fast");
            self.running = false;
            assert!(
                o.status.success() || !self.data.join("postmaster.pid").exists(),
                "pg_ctl stop failed\n{}",
                describe(&o)
            );
        }
    }

    /// Whether the postmaster is still there.
    pub fn alive(&self) -> bool {
        self.data.join("postmaster.pid").exists()
    }

    /// PostgreSQL client program `tool` connected to this server as postgres, then `args`.
    pub fn client(&self, tool: &str, args: &[&str]) -> Command {
        let port = self.port.to_string();
        let mut a = vec!["-h", s(&self.sock), "-p", &port, "-U", "postgres"];
        a.extend_from_slice(args);
        as_postgres(&self.dir, tool, &a)
    }

    /// `psql` on database `db` reading `sql` from stdin (each statement on its own; the rows of
    /// every query printed unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Output {
        let c = self.client(
            "psql",
            &[
                "-X",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-A",
                "-t",
                "-q",
                "-f",
                "-",
            ],
        );
        run(c, Some(sql.as_bytes().to_vec()))
    }

    /// Run `sql` on database `db`, required to succeed; its rows as trimmed text.
    pub fn query_db(&self, db: &str, sql: &str) -> String {
        let o = self.psql(db, sql);
        assert!(
            o.status.success(),
            "psql on {} failed: {sql}\n{}\nserver log:\n{}",
            self.data.display(),
            describe(&o),
            self.log_tail()
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// [`Self::query_db`] on database `postgres`.
    pub fn query(&self, sql: &str) -> String {
        self.query_db("postgres", sql)
    }

    /// Wait until `sql` gives `want`; fails with `what`, the last answer and the server log after
    /// two minutes, or at once when the server has gone away.
    pub fn wait_for(&self, sql: &str, want: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let o = self.psql("postgres", sql);
            let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if o.status.success() && got == want {
                return;
            }
            let last = format!("{got} {}", String::from_utf8_lossy(&o.stderr).trim());
            assert!(
                self.alive(),
                "{what}: the server on {} stopped (last answer to {sql:?}: {last})\nserver log:\n{}",
                self.data.display(),
                self.log_tail()
            );
            assert!(
                Instant::now() < deadline,
                "{what}: {sql:?} still gives {last:?}, not {want:?}, after {PATIENCE:?}\nserver log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The libpq variables that point a client (`cairn pg backup`, `pg check`) at this server.
    pub fn libpq_env(&self) -> Vec<(String, String)> {
        vec![
            ("PGHOST".into(), s(&self.sock).into()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), "postgres".into()),
            ("PGDATABASE".into(), "postgres".into()),
        ]
    }

    /// `pg_dumpall` of the whole cluster (fixed `\restrict` key: comparable byte for byte).
    pub fn dumpall(&self) -> Vec<u8> {
        ok(self.client("pg_dumpall", &[RESTRICT_KEY])).stdout
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl_stop("immediate");
        }
    }
}

/// A cairn repository, cache and password file owned by postgres, in a postgres-owned folder;
/// every command on it runs as postgres (`runuser`), as PostgreSQL's archive_command does.
pub struct PgRepo {
    pub repo: PathBuf,
    pub cache: PathBuf,
    pub password_file: PathBuf,
}

impl PgRepo {
    /// `dir/NAME` (repository), `dir/NAME.cache` and `dir/NAME.pw`; `cairn init` (a cheap key
    /// derivation, as the other tests' repositories).
    pub fn init(dir: &Path, name: &str) -> PgRepo {
        let r = PgRepo {
            repo: dir.join(name),
            cache: dir.join(format!("{name}.cache")),
            password_file: dir.join(format!("{name}.pw")),
        };
        write(&r.password_file, format!("{PASSWORD}\n").as_bytes());
        chmod(&r.password_file, 0o600);
        chown_postgres(&r.password_file);
        mkdir_postgres(&r.cache);
        let o = r.cairn_with(dir, &["init"], |c| {
            c.env("CAIRN_KDF_MEMORY_KIB", "1024")
                .env("CAIRN_KDF_ITERATIONS", "1");
        });
        assert!(o.status.success(), "cairn init\n{}", describe(&o));
        r
    }

    /// The global options that reach this repository.
    pub fn global_args(&self) -> Vec<String> {
        vec![
            "-r".into(),
            s(&self.repo).into(),
            "--password-file".into(),
            s(&self.password_file).into(),
            "--cache-dir".into(),
            s(&self.cache).into(),
        ]
    }

    /// The command line of cairn on this repository (for archive_command).
    pub fn command_line(&self) -> String {
        let mut v = vec![bin()];
        v.extend(self.global_args());
        v.join(" ")
    }

    /// `archive_command` as the documentation gives it.
    pub fn archive_command(&self) -> String {
        format!("{} pg wal-push %p", self.command_line())
    }

    /// cairn `args` on this repository, as postgres, in `cwd`, after `f` adjusts the command.
    pub fn cairn_with(&self, cwd: &Path, args: &[&str], f: impl FnOnce(&mut Command)) -> Output {
        let b = bin();
        let mut all: Vec<String> = self.global_args();
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut c = run_as_postgres(cwd, &b, &refs);
        f(&mut c);
        run(c, None)
    }

    /// cairn `args` as postgres in `cwd`.
    pub fn cairn(&self, cwd: &Path, args: &[&str]) -> Output {
        self.cairn_with(cwd, args, |_| {})
    }

    /// cairn `args` as postgres in `cwd`, required to exit 0.
    pub fn ok(&self, cwd: &Path, args: &[&str]) -> Output {
        let o = self.cairn(cwd, args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "cairn {} failed\n{}",
            args.join(" "),
            describe(&o)
        );
        o
    }

    /// cairn `args` against the server of `cluster` (libpq variables set), in its folder,
    /// required to exit 0.
    pub fn ok_on(&self, cluster: &Cluster, args: &[&str]) -> Output {
        let o = self.cairn_with(&cluster.dir, args, |c| {
            c.envs(cluster.libpq_env());
        });
        assert_eq!(
            o.status.code(),
            Some(0),
            "cairn {} (server on {}) failed\n{}\nserver log:\n{}",
            args.join(" "),
            cluster.data.display(),
            describe(&o),
            cluster.log_tail()
        );
        o
    }

    /// The JSON value cairn `args` print (the last line of stdout that is JSON, or the whole
    /// output), required to succeed.
    pub fn json(&self, cwd: &Path, args: &[&str]) -> serde_json::Value {
        let o = self.ok(cwd, args);
        parse_json(&o, &args.join(" "))
    }
}

/// The JSON of a command's stdout: the whole output, else its last line that parses.
pub fn parse_json(o: &Output, what: &str) -> serde_json::Value {
    if let Ok(v) = serde_json::from_slice(&o.stdout) {
        return v;
    }
    json_lines(&o.stdout)
        .pop()
        .unwrap_or_else(|| panic!("{what}: no JSON in the output\n{}", describe(o)))
}
