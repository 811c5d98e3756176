//! Backing up a stream: `--stdin` and `--stdin-from-command`.

use crate::util::*;

#[test]
fn stdin_round_trips_through_dump() {
    let env = Env::new();
    let mut data = b"-- a dump\nINSERT INTO t VALUES (1);\n".to_vec();
    data.extend(random_bytes(21, 3 << 20));
    data.extend_from_slice(b"\n-- end\n");
    let o = env.cairn_stdin(
        &["backup", "--json", "--stdin", "--stdin-name", "db.sql"],
        &data,
    );
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let s = summary(&o);
    assert_eq!(num(&s, "bytes_read"), data.len() as u64, "{s}");

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/db.sql"]));

    let o = env.ok(&["dump", "latest", "/db.sql"]);
    assert_eq!(
        o.stdout.len(),
        data.len(),
        "dump returned {} bytes, stdin had {}",
        o.stdout.len(),
        data.len()
    );
    assert!(o.stdout == data, "dump differs from what was piped in");

    // An empty stream is a valid (empty) file.
    let o = env.cairn_stdin(&["backup", "--stdin", "--stdin-name", "empty"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let o = env.ok(&["dump", "latest", "/empty"]);
    assert!(o.stdout.is_empty());
}

#[test]
fn failing_command_writes_no_snapshot() {
    let env = Env::new();
    let o = env.cairn(&[
        "backup",
        "--stdin-from-command",
        "--stdin-name",
        "ok.txt",
        "--",
        "sh",
        "-c",
        "printf 'hello\\n'",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(env.ok(&["dump", "latest", "/ok.txt"]).stdout, b"hello\n");
    assert_eq!(env.snapshots().len(), 1);

    let o = env.cairn(&[
        "backup",
        "--stdin-from-command",
        "--stdin-name",
        "x",
        "--",
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "a command exiting 3 must fail the backup\n{}",
        describe(&o)
    );
    assert!(
        !o.stderr.is_empty(),
        "the failure must be explained on stderr\n{}",
        describe(&o)
    );
    assert_eq!(
        env.snapshots().len(),
        1,
        "a snapshot was written for a failed command"
    );

    let o = env.cairn(&[
        "backup",
        "--stdin-from-command",
        "--stdin-name",
        "y",
        "--",
        "/nonexistent/program",
    ]);
    assert_fails_one_line(&o, 1, "backup from a command that cannot start");
    assert_eq!(env.snapshots().len(), 1);
}
