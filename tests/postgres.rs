//! `backup --stdin-from-command -- pg_dump` against a real PostgreSQL 15 cluster.
//!
//! The CI installs PostgreSQL (`.ci/run`), so a missing `initdb` fails this test.

use crate::pg_cluster::*;
use crate::util::*;

#[test]
fn pg_dump_through_stdin_from_command() {
    let pgdir = postgres_dir();
    let base = pgdir.path();
    let mut server = Cluster::initdb(base, "data");
    server.start(&[]);

    server.query(
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12,2));
         INSERT INTO accounts SELECT g, 'owner ' || md5(g::text), g * 1.25 FROM generate_series(1, 20000) g;
         CREATE INDEX ON accounts (owner);",
    );

    let env = Env::new();
    let pg_dump = || server.client("pg_dump", &[RESTRICT_KEY, "postgres"]);
    let c = pg_dump();
    let dump_cmd: Vec<&std::ffi::OsStr> = std::iter::once(c.get_program())
        .chain(c.get_args())
        .collect();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "backup",
        "--json",
        "--stdin-from-command",
        "--stdin-name",
        "db.sql",
        "--",
    ]
    .into_iter()
    .map(std::ffi::OsStr::new)
    .collect();
    args.extend_from_slice(&dump_cmd);
    let o = env.cairn(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "cairn backup of pg_dump failed\n{}",
        describe(&o)
    );

    let direct = ok(pg_dump()).stdout;
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
