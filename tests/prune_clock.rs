//! Prune against wrong clocks, and rule 3 for backups that reuse a complete parent (review
//! 2026-12-07, PR1): a host's clock is moved with libfaketime; the store's timestamps (the
//! local folder's mtimes) are not.

use crate::util::*;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// A folder of a few files (about 1 MiB: several packs in a `small` repository).
fn make_folder(d: &Path) {
    for i in 0..4u64 {
        write_random(&d.join(format!("f{i}.bin")), 100 + i, 300 << 10);
    }
    write(&d.join("note.txt"), b"unchanged\n");
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e})\n{}", describe(o)))
}

/// `prune --json ARGS` with the cache `cache`, on a clock moved by `skew` (`None`: the real
/// clock); required to succeed.
fn prune(env: &Env, cache: &Path, skew: Option<&str>, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["prune", "--json"];
    a.extend_from_slice(args);
    let mut c = match skew {
        Some(s) => env.command_skewed(s),
        None => env.command(),
    };
    c.env("CAIRN_CACHE_DIR", cache).args(&a);
    let o = run(c, None);
    assert_eq!(o.status.code(), Some(0), "prune {skew:?}\n{}", describe(&o));
    let mut v = json(&o);
    v["stderr"] = String::from_utf8_lossy(&o.stderr).into();
    v
}

fn n(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64().unwrap_or_else(|| panic!("no {path:?} in {v}"))
}

/// A backup child on the environment's cache with `faults` injected.
fn spawn_backup(env: &Env, dir: &Path, faults: &str) -> std::process::Child {
    let mut c = env.command();
    c.env("CAIRN_TEST_FAULTS", faults)
        .args(["backup", "--json", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().expect("spawn cairn")
}

/// The review's reproduction. Host H backs up a folder (its cache marks the snapshot
/// complete) and starts the next backup of the unchanged folder, whose snapshot upload is
/// held (standing in for hours of scanning). Host X, meanwhile, forgets the first snapshot and
/// prunes (marking its packs), then prunes again on a clock 25 h ahead. That prune used to
/// delete the packs marked seconds earlier, and H then saved, with exit 0, a snapshot of
/// deleted packs. Now it deletes nothing (the marks are seconds old by the store's clock, and
/// the clocks disagree), says why, and everything H saved restores.
#[test]
fn a_prune_on_a_clock_25h_ahead_deletes_nothing_a_running_backup_needs() {
    let env = Env::small();
    let d = env.path("d");
    make_folder(&d);
    let copy = env.path("copy");
    copy_tree(&d, &copy);
    let s1 = snapshot_id(&env.backup(&[d.to_str().unwrap()]));
    let mut h = spawn_backup(&env, &d, "put:snapshots:slow=20000:1");
    // H has opened the repository and reached its snapshot upload well before this.
    std::thread::sleep(Duration::from_secs(3));

    let x = env.path("cache-x");
    let o = env.cairn_with(&["forget", &s1], |c| {
        c.env("CAIRN_CACHE_DIR", &x);
    });
    assert_eq!(o.status.code(), Some(0), "forget\n{}", describe(&o));
    let marked = prune(&env, &x, None, &[]);
    assert!(n(&marked, &["outcome", "packs_marked"]) > 0, "{marked}");
    let skewed = prune(&env, &x, Some("+25h"), &[]);
    assert_eq!(n(&skewed, &["plan", "delete", "packs"]), 0, "{skewed}");
    assert_eq!(n(&skewed, &["outcome", "packs_deleted"]), 0, "{skewed}");
    let why = skewed["plan"]["held_reason"].as_str().unwrap_or_default();
    assert!(why.contains("ahead of the store's"), "{skewed}");
    assert!(
        skewed["stderr"]
            .as_str()
            .unwrap()
            .contains("nothing is deleted by age"),
        "{skewed}"
    );

    let o = wait_output(&mut h, TIMEOUT, "backup H");
    assert_eq!(o.status.code(), Some(0), "backup H\n{}", describe(&o));
    let s2 = snapshot_id(&summary(&o));
    check_clean(&env, &[], "after the skewed prune");
    restore_matches(&env, &s2, &copy, &d, "r2");
    // With the real clock the packs H's snapshot uses are recovered or stay; nothing is lost.
    prune(&env, &x, None, &["--delete-after", "0s"]);
    prune(&env, &x, None, &["--delete-after", "0s"]);
    check_clean(&env, &["--read-data"], "after the real prunes");
    restore_matches(&env, &s2, &copy, &d, "r3");
}

/// A prune on a host whose clock is 2 h behind marks packs with the store's time, not its
/// own: a later prune with the right clock and a 1 h grace period keeps them marked (it used
/// to delete them at once: the mark looked 2 h old). A grace period of 0 s then deletes them.
#[test]
fn a_mark_made_on_a_clock_2h_behind_waits_the_whole_grace_period() {
    let env = Env::small();
    let d = env.path("d");
    make_folder(&d);
    let s1 = snapshot_id(&env.backup(&[d.to_str().unwrap()]));
    env.ok(&["forget", &s1]);
    let marked = prune(&env, &env.cache, Some("-2h"), &[]);
    let packs = n(&marked, &["outcome", "packs_marked"]);
    assert!(packs > 0, "{marked}");
    assert!(
        marked["plan"]["held_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("behind the store's"),
        "{marked}"
    );
    let later = prune(&env, &env.cache, None, &["--delete-after", "1h"]);
    assert_eq!(n(&later, &["plan", "delete", "packs"]), 0, "{later}");
    assert_eq!(
        n(&later, &["plan", "keep_marked", "packs"]),
        packs,
        "{later}"
    );
    let done = prune(&env, &env.cache, None, &["--delete-after", "0s"]);
    assert_eq!(n(&done, &["outcome", "packs_deleted"]), packs, "{done}");
    check_clean(&env, &["--read-data"], "after the prunes");
}

/// Packs no index file lists are aged by the store's clock: a prune 25 h ahead leaves a pack
/// an interrupted backup just stored (it used to delete it as older than the grace period).
#[test]
fn an_unindexed_pack_is_aged_by_the_stores_clock() {
    let env = Env::small();
    let d = env.path("d");
    make_folder(&d);
    let packs = || {
        // The kill comes before the next write is *asked*: the first may not have made
        // `data/` yet.
        if !env.repo.join("data").exists() {
            return 0;
        }
        walk(&env.repo.join("data"))
            .into_iter()
            .filter(|p| {
                // Not the temporary file of an upload the kill cut short.
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .count()
    };
    // Killed before its first index file: packs stored, none indexed.
    for n in 1..20 {
        let o = env.cairn_with(&["backup", "-q", d.to_str().unwrap()], |c| {
            c.env("CAIRN_TEST_KILL_AFTER_WRITES", n.to_string());
        });
        assert!(o.status.code().is_none(), "not killed\n{}", describe(&o));
        if packs() > 0 {
            break;
        }
    }
    let before = packs();
    assert!(before > 0, "the killed backups stored no pack");
    assert!(objects(&env.repo.join("index")).is_empty());
    let v = prune(&env, &env.cache, Some("+25h"), &[]);
    assert_eq!(n(&v, &["plan", "unindexed_delete", "packs"]), 0, "{v}");
    assert_eq!(
        n(&v, &["plan", "unindexed_keep", "packs"]),
        before as u64,
        "{v}"
    );
    assert_eq!(packs(), before);
}

/// Rule 3 (format.md §16) covers the "parent complete" shortcut. Host H backs up a folder,
/// adds a file, and backs up again: the new file and the changed folders above it are stored
/// (their new packs are what the old rule 3 listing checked), the unchanged subfolder is
/// reused from the complete parent without a lookup. H's uploads are held while host X
/// forgets the parent and prunes it away (`--delete-after 0s`, twice). H used to write, with
/// exit 0, a snapshot whose subfolder lives in deleted packs; now it refuses and writes no
/// snapshot, and the next backup stores everything again.
#[test]
fn a_backup_reusing_a_complete_parent_refuses_when_its_packs_were_pruned_meanwhile() {
    let env = Env::small();
    let d = env.path("d");
    make_folder(&d.join("sub"));
    let s1 = snapshot_id(&env.backup(&[d.to_str().unwrap()]));
    write(&d.join("new.txt"), b"added after the first backup\n");
    let copy = env.path("copy");
    copy_tree(&d, &copy);
    let mut h = spawn_backup(&env, &d, "put:data:slow=15000:*");
    // H has opened the repository (its index is merged: the shortcut holds) and reached
    // its first upload well before this.
    std::thread::sleep(Duration::from_secs(3));

    let x = env.path("cache-x");
    let o = env.cairn_with(&["forget", &s1], |c| {
        c.env("CAIRN_CACHE_DIR", &x);
    });
    assert_eq!(o.status.code(), Some(0), "forget\n{}", describe(&o));
    let marked = prune(&env, &x, None, &["--delete-after", "0s"]);
    assert!(n(&marked, &["outcome", "packs_marked"]) > 0, "{marked}");
    let deleted = prune(&env, &x, None, &["--delete-after", "0s"]);
    assert!(n(&deleted, &["outcome", "packs_deleted"]) > 0, "{deleted}");

    let o = wait_output(&mut h, TIMEOUT, "backup H");
    let line = assert_fails_one_line(&o, 1, "backup reusing pruned packs");
    assert!(
        line.contains("reused the parent snapshot's unchanged files"),
        "{line}"
    );
    assert!(objects(&env.repo.join("snapshots")).is_empty());
    check_clean(&env, &[], "after the refused backup");

    let s3 = snapshot_id(&env.backup(&[d.to_str().unwrap()]));
    check_clean(&env, &["--read-data"], "after backing up again");
    restore_matches(&env, &s3, &copy, &d, "r3");
}

/// Second review, N4: a pack lost from another snapshot does not stop a backup that reuses an
/// unchanged, complete parent: the superset check of rule 3 misses the pack, and the snapshot's
/// own blobs then decide (none of them is in it).
#[test]
fn a_pack_lost_from_another_snapshot_does_not_stop_a_shortcut_backup() {
    let env = Env::small();
    let d = env.path("d");
    let e = env.path("e");
    write_random(&d.join("one.bin"), 41, 300 << 10);
    write(&d.join("sub/small.txt"), b"d\n");
    write_random(&e.join("two.bin"), 42, 400 << 10);
    env.backup(&[d.to_str().unwrap()]);
    let before: Vec<_> = objects(&env.repo.join("data"));
    env.backup(&[e.to_str().unwrap()]);
    // Lose the packs only the snapshot of e uses.
    for p in objects(&env.repo.join("data")) {
        if !before.contains(&p) {
            std::fs::remove_file(&p).unwrap();
        }
    }
    // The unchanged d again: its parent is complete, its files are reused without lookups.
    let s = env.backup(&[d.to_str().unwrap()]);
    let id = snapshot_id(&s);
    let t = env.path("r");
    env.ok(&["restore", &id, "--target", t.to_str().unwrap()]);
    assert_same_tree(&d, &restored(&t, &d), false);
    // check still names the loss (e's blobs), and only that.
    let o = env.cairn(&["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
}
