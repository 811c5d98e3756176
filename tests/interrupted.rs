//! A backup killed midway leaves only complete packs and index files; the next run reuses them.

use crate::util::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Kills the backup if the test fails while it runs (else it would outlive the temp folder).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const FILES: u64 = 10;
const FILE_SIZE: u64 = 20 << 20;

#[test]
fn killed_backup_is_resumed() {
    let env = Env::with_init(&["--pack-size", "1"]);
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..FILES {
        write_random(&src.join(format!("part{i:02}")), 70 + i, FILE_SIZE);
    }
    let total = FILES * FILE_SIZE;
    let arg = src.to_str().unwrap();

    let mut c = env.command();
    c.args(["backup", arg])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut guard = KillOnDrop(c.spawn().expect("spawn backup"));
    let child = &mut guard.0;
    let index = env.repo.join("index");
    let deadline = Instant::now() + Duration::from_secs(120);
    let finished_early = loop {
        if !objects(&index).is_empty() {
            break false;
        }
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        assert!(
            Instant::now() < deadline,
            "no index file appeared within 120 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert!(
        !finished_early,
        "the backup ended ({status}) before any index file appeared"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the backup finished before it could be killed ({status})"
    );
    assert!(
        env.snapshots().is_empty(),
        "a killed backup left a snapshot"
    );
    let indexed = objects(&index).len();

    let s = env.backup(&[arg]);
    eprintln!("killed after {indexed} index files; resumed backup: {s}");
    assert_eq!(num(&s, "files_new"), FILES, "{s}");
    assert_eq!(num(&s, "bytes_read"), total, "{s}");
    let added = num(&s, "bytes_added_raw");
    // At least one index file (8 packs of >= 1 chunk of >= 512 KiB) was complete before the kill.
    assert!(
        added + (4 << 20) <= total,
        "the resumed backup added {added} of {total} bytes: nothing from the killed run ({indexed} index files) was reused\n{s}"
    );
    assert_eq!(env.snapshots().len(), 1);

    let target = env.path("target");
    env.ok(&[
        "restore",
        "latest",
        "--verify",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_same_tree(&src, &restored(&target, &src), true);
}
