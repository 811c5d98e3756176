//! Failures: exit codes, one-line messages, corruption detection, unreadable sources.

use crate::util::*;
use std::path::{Path, PathBuf};

fn small_backup(env: &Env) -> PathBuf {
    let src = env.path("src");
    write(&src.join("a.txt"), b"hello\n");
    write_random(&src.join("big"), 31, 6 << 20);
    env.backup(&[src.to_str().unwrap()]);
    src
}

#[test]
fn wrong_password() {
    let env = Env::new();
    small_backup(&env);
    for cmd in [
        &["snapshots"][..],
        &["ls", "latest"],
        &["backup", env.path("src").to_str().unwrap()],
    ] {
        let o = env.cairn_with(cmd, |c| {
            c.env("CAIRN_PASSWORD", "not the password");
        });
        let line = assert_fails_one_line(&o, 12, &format!("{cmd:?} with a wrong password"));
        assert!(line.contains("wrong password"), "message: {line}");
    }
    assert_eq!(
        env.snapshots().len(),
        1,
        "a backup with a wrong password wrote a snapshot"
    );
}

#[test]
fn missing_repository() {
    let env = Env::uninit();
    let missing = env.path("no/such/repo");
    let o = env.cairn(&["-r", missing.to_str().unwrap(), "snapshots"]);
    let line = assert_fails_one_line(&o, 10, "snapshots of a repository that does not exist");
    assert!(
        line.contains(missing.to_str().unwrap()),
        "the message should name the path: {line}"
    );
    assert!(!missing.exists(), "opening a missing repository created it");

    // The same through CAIRN_REPOSITORY, for a command that would write.
    let src = env.path("src");
    write(&src.join("f"), b"f");
    let o = env.cairn(&["backup", src.to_str().unwrap()]);
    assert_fails_one_line(&o, 10, "backup to a repository that does not exist");
    assert!(!env.repo.exists(), "backup created the missing repository");
}

#[test]
fn no_repository_given_is_exit_10() {
    let env = Env::uninit();
    for args in [vec!["snapshots"], vec!["-r", "", "snapshots"]] {
        let o = env.cairn_with(&args, |c| {
            c.env_remove("CAIRN_REPOSITORY");
        });
        let line = assert_fails_one_line(&o, 10, "a command without a repository");
        assert!(line.contains("no repository given"), "{line}");
    }
}

#[test]
fn a_bad_command_line_is_exit_2() {
    let env = Env::new();
    // No paths: nothing opened, clap's format (a usage hint after the error line).
    let o = env.cairn(&["backup"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing to back up"),
        "{}",
        describe(&o)
    );
    for args in [
        vec!["backup", "--no-such-flag", "x"],
        vec!["no-such-command"],
        vec!["pg", "restore", "--pgdata", "x"],
    ] {
        let o = env.cairn(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}\n{}", describe(&o));
    }
}

#[test]
fn init_refuses_a_folder_that_holds_other_files() {
    let env = Env::uninit();
    write(&env.repo.join("notes.txt"), b"not a repository");
    let o = env.cairn(&["init"]);
    let line = assert_fails_one_line(&o, 1, "init into a folder with a file in it");
    assert!(line.contains("--force"), "{line}");
    assert!(!env.repo.join("config").exists(), "a config was written");
    env.ok(&["init", "--force"]);
    assert!(env.repo.join("notes.txt").exists() && env.repo.join("config").exists());
    // An empty folder is fine.
    let empty = Env::uninit();
    std::fs::create_dir_all(&empty.repo).expect("mkdir");
    empty.ok(&["init"]);
}

#[test]
fn check_ends_with_the_command_that_fixes_what_it_found() {
    let env = Env::new();
    small_backup(&env);
    // A lost index: `repair index`.
    for f in objects(&env.repo.join("index")) {
        std::fs::remove_file(f).expect("rm index file");
    }
    let o = env.cairn(&["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.lines()
            .any(|l| l.starts_with("what to do:") && l.contains("`cairn repair index`")),
        "{out}"
    );
    env.ok(&["repair", "index"]);
    check_clean(&env, &[], "after repair index");
    // A damaged pack found by --read-data: `find --pack`/`find --blob` name what uses it.
    let pack = objects(&env.repo.join("data")).remove(0);
    let mut b = std::fs::read(&pack).expect("read pack");
    b[10] ^= 0x40;
    chmod(&pack, 0o644);
    std::fs::write(&pack, b).expect("write pack");
    let o = env.cairn(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("`cairn find --"), "{out}");
}

#[test]
fn unknown_snapshot() {
    let env = Env::new();
    small_backup(&env);
    let target = env.path("t");
    for cmd in [
        &["ls", "deadbeef"][..],
        &["dump", "deadbeef", "/x"],
        &["restore", "deadbeef", "--target", target.to_str().unwrap()],
    ] {
        let o = env.cairn(cmd);
        let line = assert_fails_one_line(&o, 1, &format!("{cmd:?}"));
        assert!(line.contains("not found"), "{cmd:?}: {line}");
        assert!(
            line.contains("deadbeef"),
            "{cmd:?} should name the snapshot: {line}"
        );
    }
    assert!(
        !target.exists(),
        "restore of an unknown snapshot created the target"
    );
}

/// The largest file under repo/data: a data pack.
fn largest_pack(repo: &Path) -> PathBuf {
    objects(&repo.join("data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("no pack")
}

#[test]
fn corrupt_pack_is_detected() {
    let env = Env::new();
    let src = small_backup(&env);
    let pack = largest_pack(&env.repo);
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    // Packs are written read-only or not: write through a fresh file either way.
    chmod(&pack, 0o644);
    std::fs::write(&pack, &bytes).unwrap();

    let target = env.path("t");
    let o = env.cairn(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "restore from a corrupt pack succeeded\n{}",
        describe(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("corrupt"),
        "restore: stderr does not say corrupt\n{}",
        describe(&o)
    );
    // The restore goes on past the damage and says which files it could not restore fully.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 files could not be fully restored"),
        "restore does not report the damaged file\n{}",
        describe(&o)
    );
    let big = restored(&target, &src).join("big");
    if big.exists() {
        assert!(
            !same_content(&src.join("big"), &big),
            "restore reported failure yet wrote correct data?"
        );
    }

    let path = format!("{}/big", src.to_str().unwrap());
    let o = env.cairn(&["dump", "latest", &path]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "dump of a file in a corrupt pack succeeded ({} bytes)\nstderr: {}",
        o.stdout.len(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("corrupt"),
        "dump: stderr does not say corrupt: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stdout.len() < 6 << 20,
        "dump wrote the whole file despite the corruption"
    );

    // --verify or not, a restore never leaves a file that silently differs.
    let target = env.path("t2");
    let o = env.cairn(&[
        "restore",
        "latest",
        "--verify",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", describe(&o));
}

fn truncate_snapshot(env: &Env) -> String {
    let snaps = objects(&env.repo.join("snapshots"));
    assert_eq!(snaps.len(), 1);
    let f = &snaps[0];
    let len = std::fs::metadata(f).unwrap().len();
    let full = std::fs::read(f).unwrap();
    chmod(f, 0o644);
    std::fs::write(f, &full[..len as usize / 2]).unwrap();
    f.file_name().unwrap().to_str().unwrap()[..8].to_string()
}

#[test]
fn truncated_snapshot_is_detected_with_a_fresh_cache() {
    let env = Env::new();
    small_backup(&env);
    let short = truncate_snapshot(&env);
    std::fs::remove_dir_all(&env.cache).unwrap();
    // Skipped with a one-line warning naming it; the command exits 3 (done, with damage).
    let o = env.cairn(&["snapshots"]);
    let line = assert_fails_one_line(
        &o,
        3,
        "snapshots with a truncated snapshot file (fresh cache)",
    );
    assert!(
        line.contains("corrupt") && line.contains(&short),
        "the message should name snapshot {short} as corrupt: {line}"
    );
}

/// The repository is what matters: a cached copy must not hide a damaged snapshot file.
#[test]
fn truncated_snapshot_is_detected_with_a_warm_cache() {
    let env = Env::new();
    small_backup(&env);
    env.ok(&["snapshots"]);
    let short = truncate_snapshot(&env);
    let o = env.cairn(&["snapshots"]);
    let line = assert_fails_one_line(
        &o,
        3,
        "snapshots with a truncated snapshot file (snapshot cached locally)",
    );
    assert!(
        line.contains("corrupt") && line.contains(&short),
        "the message should name snapshot {short} as corrupt: {line}"
    );
}

#[test]
fn unreadable_source_file_gives_exit_3_and_a_snapshot() {
    let mut env = Env::uninit();
    let src = env.path("src");
    write(&src.join("readable.txt"), b"readable\n");
    write(&src.join("secret.txt"), b"secret\n");
    chmod(&src.join("secret.txt"), 0o000);
    if is_root() {
        // Root reads mode-000 files: run cairn as nobody, with everything else open to it.
        chmod(env.dir.path(), 0o777);
        chmod(&src, 0o755);
        chmod(&src.join("readable.txt"), 0o644);
        env.run_as = Some(65534);
    }
    env.init(&[]);
    let o = env.cairn(&["backup", src.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "backup with an unreadable file should exit 3\n{}",
        describe(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("secret.txt"),
        "the warning should name the unreadable file\n{}",
        describe(&o)
    );
    assert!(
        !err.lines().any(|l| l.contains("/readable.txt")),
        "only the unreadable file should be warned about\n{}",
        describe(&o)
    );

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1, "the snapshot must still be written");
    assert_eq!(snaps[0]["summary"]["errors"], 1, "{}", snaps[0]);
    let path = format!("{}/readable.txt", src.to_str().unwrap());
    assert_eq!(env.ok(&["dump", "latest", &path]).stdout, b"readable\n");
}

/// Unmounts a tmpfs however the test ends.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_target_is_the_targets_problem_said_once_and_the_restore_stops() {
    assert!(is_root(), "this test mounts a small tmpfs: it needs root");
    let env = Env::new();
    let src = env.path("src");
    for i in 0..40 {
        write_random(&src.join(format!("f{i:02}")), 100 + i, 256 << 10);
    }
    env.backup(&[src.to_str().unwrap()]);
    let small = env.path("small");
    std::fs::create_dir_all(&small).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&small)
        .status()
        .expect("mount");
    assert!(st.success(), "cannot mount a tmpfs");
    let _guard = Tmpfs(small.clone());
    let o = env.cairn(&["restore", "latest", "--target", small.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !err.contains("damaged"),
        "a full target is not damaged content:\n{err}"
    );
    let per_file = err
        .lines()
        .filter(|l| l.contains("No space left on device") && l.contains("cannot write"))
        .count();
    assert_eq!(per_file, 1, "the cause is said once:\n{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: restore stopped") && last.contains("can take nothing more"),
        "{err}"
    );
}
