//! `cairn X | head -1`: every command that prints exits 0, silently, when the reader of its
//! standard output has gone (issue 24, "Pipes"). The reader is closed before cairn starts, so
//! its very first write meets a broken pipe, whatever the size of the output.

use crate::util::*;
use std::process::Stdio;

/// Run `args` with standard output a pipe whose reader is already closed.
fn run_reader_gone(env: &Env, args: &[&str]) -> std::process::Output {
    // The write end of a pipe whose only reader, `true`, has exited.
    let mut reader = std::process::Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("run true");
    let writer = reader.stdin.take().expect("pipe");
    reader.wait().expect("wait for true");
    let mut c = env.command();
    c.args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    c.output().expect("run cairn")
}

#[test]
fn every_printing_command_exits_quietly_when_the_reader_goes_away() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    for i in 0..50 {
        write(
            &src.join(format!("sub/file-{i}.txt")),
            format!("line {i}\n").as_bytes(),
        );
    }
    let s = src.to_str().expect("utf-8 path");
    let first = snapshot_id(&env.backup(&[s]));
    write(&src.join("sub/file-0.txt"), b"changed\n");
    env.backup(&[s]);
    let file = format!("{s}/sub/file-1.txt");
    let commands: Vec<Vec<&str>> = vec![
        vec!["snapshots"],
        vec!["snapshots", "--json"],
        vec!["ls", "latest"],
        vec!["ls", "--json", "latest"],
        vec!["ls", "--long", "latest", s],
        vec!["find", "*.txt"],
        vec!["find", "--json", "*.txt"],
        vec!["diff", &first, "latest"],
        vec!["stats"],
        vec!["stats", "--json"],
        vec!["key", "list"],
        vec!["cat", "config"],
        vec!["cat", "snapshot", "latest"],
        vec!["dump", "latest", &file],
        vec!["dump", "latest", s],
        vec!["check"],
        vec!["forget", "--keep-last", "1", "--dry-run"],
        vec!["prune", "--dry-run"],
        vec!["pg", "list"],
        vec!["version"],
        vec!["--version"],
        vec!["--help"],
        vec!["backup", "--help"],
        vec!["completion", "bash"],
        vec!["completion", "zsh"],
        vec!["backup", s],
        vec!["restore", "latest", "--target", "restored", "--dry-run"],
    ];
    let mut bad = Vec::new();
    for args in &commands {
        let o = run_reader_gone(&env, args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        if o.status.code() != Some(0) || stderr.contains("panicked") || stderr.contains("error") {
            bad.push(format!(
                "cairn {}: {:?} {}",
                args.join(" "),
                o.status.code(),
                stderr.trim()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "not quiet on a closed pipe:\n{}",
        bad.join("\n")
    );
}

#[test]
fn a_failing_command_still_fails_when_stdout_is_closed() {
    // The quiet exit is only for a reader that went away: an error stays an error.
    let env = Env::new();
    let o = run_reader_gone(&env, &["ls", "deadbeef"]);
    assert_ne!(o.status.code(), Some(0), "{}", describe(&o));
}

#[test]
fn a_backup_whose_reader_went_away_still_finishes_its_snapshot() {
    // Progress lines meet the broken pipe first: the backup must go on and write its snapshot,
    // not stop half-way with a success code.
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    for i in 0..20 {
        write_random(&src.join(format!("f{i}")), i, 200_000);
    }
    let s = src.to_str().expect("utf-8 path");
    let before = env.snapshots().len();
    let o = run_reader_gone(&env, &["backup", "--json", s]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(env.snapshots().len(), before + 1, "no snapshot written");
    check_clean(&env, &[], "after a backup printing into a closed pipe");
}
