//! What a backup reuses from its parent, and when it must not: trees of unchanged folders,
//! access times, blobs the repository may have lost; and restoring over an earlier restore.

use crate::util::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn build(src: &Path) {
    std::fs::create_dir_all(src.join("d1/d2")).unwrap();
    std::fs::create_dir_all(src.join("e")).unwrap();
    write_random(&src.join("big"), 21, 3 << 20);
    write(&src.join("d1/small"), b"small file");
    write(&src.join("d1/d2/deep"), &random_bytes(22, 50_000));
    write(&src.join("e/other"), b"other");
}

/// Read every file (moving atimes under relatime: a fresh file's atime is not after its mtime).
fn read_all(root: &Path) {
    for p in walk(root) {
        if p.is_file() {
            std::fs::read(&p).unwrap();
        } else if p.is_dir() {
            std::fs::read_dir(&p).unwrap().for_each(drop);
        }
    }
}

#[test]
fn reading_the_files_changes_no_tree_and_atime_is_opt_in() {
    let env = Env::new();
    let src = env.path("src");
    build(&src);
    let arg = src.to_str().unwrap();
    // Make the atimes old, so that reading surely moves them.
    for p in walk(&src) {
        set_atime(&p, 1_000_000_000, 0);
    }
    set_atime(&src, 1_000_000_000, 0);
    let s1 = env.backup(&[arg]);
    read_all(&src);
    assert_ne!(
        std::fs::metadata(src.join("d1/small")).unwrap().atime(),
        1_000_000_000,
        "reading did not move the atime; the test cannot tell anything"
    );
    let s2 = env.backup(&[arg]);
    // (The folders above src may change under other tests: compare src's own tree.)
    let src_tree = |s: &serde_json::Value| subtree_id(&env, s["tree"].as_str().unwrap(), &src);
    assert_eq!(
        src_tree(&s2),
        src_tree(&s1),
        "only atimes moved, yet the tree of src changed: {s1} {s2}"
    );
    assert_eq!(num(&s2, "files_unmodified"), 4, "{s2}");

    // Without --atime a restored file gets atime = mtime; with it, the recorded atime.
    set_atime(&src.join("e/other"), 1_234_567_890, 123_456_789);
    set_mtime(&src.join("e/other"), 1_300_000_000, 5);
    env.backup(&[arg]);
    let t1 = env.path("t1");
    env.ok(&["restore", "latest", "--target", t1.to_str().unwrap()]);
    let m = std::fs::symlink_metadata(restored(&t1, &src).join("e/other")).unwrap();
    assert_eq!((m.atime(), m.atime_nsec()), (1_300_000_000, 5));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_300_000_000, 5));

    set_atime(&src.join("e/other"), 1_234_567_890, 123_456_789);
    let s4 = env.backup(&["--with-atime", arg]);
    assert_ne!(
        src_tree(&s4),
        src_tree(&s1),
        "--atime recorded nothing: {s4}"
    );
    let t2 = env.path("t2");
    env.ok(&["restore", "latest", "--target", t2.to_str().unwrap()]);
    let m = std::fs::symlink_metadata(restored(&t2, &src).join("e/other")).unwrap();
    assert_eq!((m.atime(), m.atime_nsec()), (1_234_567_890, 123_456_789));
    assert_same_tree(&src, &restored(&t2, &src), true);
}

#[test]
fn blobs_lost_from_the_repository_are_stored_again() {
    let env = Env::new();
    let src = env.path("src");
    build(&src);
    let arg = src.to_str().unwrap();
    env.backup(&[arg]);
    env.backup(&[arg]);
    // Lose every pack and index file, as if a broken prune had removed them. The parent's
    // trees are still in the local cache and its files look unchanged; the backup must
    // notice the index went away and not trust the parent's blobs.
    for sub in ["data", "index"] {
        let d = env.repo.join(sub);
        if d.exists() {
            std::fs::remove_dir_all(&d).unwrap();
            std::fs::create_dir_all(&d).unwrap();
        }
    }
    let s3 = env.backup(&[arg]);
    assert!(
        num(&s3, "bytes_read") >= 3 << 20,
        "unchanged files whose blobs are gone were not read again: {s3}"
    );
    let target = env.path("target");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src), true);
}

#[test]
fn restore_over_an_earlier_restore_fixes_what_differs() {
    let env = Env::new();
    let src = env.path("src");
    build(&src);
    let arg = src.to_str().unwrap();
    env.backup(&[arg]);
    let target = env.path("target");
    let t = target.to_str().unwrap();
    env.ok(&["restore", "latest", "--target", t]);
    let out = restored(&target, &src);
    // Damage the restored copy: change content (same size), remove a file, grow one.
    write(&out.join("d1/small"), b"SMALL FILE");
    std::fs::remove_file(out.join("e/other")).unwrap();
    write_random(&out.join("d1/d2/deep"), 23, 70_000);
    let o = env.ok(&["restore", "latest", "--target", t, "--json"]);
    assert_same_tree(&src, &out, true);
    let s = &summary(&o)["summary"];
    assert_eq!(
        num(s, "files_unchanged"),
        1,
        "only the big file was untouched: {s}"
    );
}

#[test]
fn hard_links_are_read_once() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    write_random(&src.join("a/first"), 31, 2 << 20);
    std::fs::hard_link(src.join("a/first"), src.join("a/b/second")).unwrap();
    std::fs::hard_link(src.join("a/first"), src.join("third")).unwrap();
    write(&src.join("plain"), b"not linked");
    let s = env.backup(&[src.to_str().unwrap()]);
    assert_eq!(
        num(&s, "bytes_read"),
        (2 << 20) + 10,
        "a file with three links was read more than once: {s}"
    );
    assert_eq!(num(&s, "files_new"), 4, "{s}");
    assert_eq!(num(&s, "bytes_total"), 3 * (2 << 20) + 10, "{s}");
    let target = env.path("target");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let out = restored(&target, &src);
    assert_same_tree(&src, &out, true);
    let ino = |p: &str| std::fs::metadata(out.join(p)).unwrap().ino();
    assert_eq!(ino("a/first"), ino("a/b/second"));
    assert_eq!(ino("a/first"), ino("third"));
}
