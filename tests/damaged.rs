//! Damaged and hostile repositories: one bad object is reported and skipped, the rest stays
//! usable (exit 3 = done, with warnings); listings count only real object names; hostile sizes
//! and index entries are refused before they cost memory or panic; untrusted names never reach
//! the terminal raw.

use crate::util::*;
use cairn::Id;
use cairn::backend::Backend;
use cairn::crypto::label;
use cairn::format::index::IndexFile;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Object files directly under `repo/<dir>`.
fn names(env: &Env, dir: &str) -> BTreeSet<PathBuf> {
    objects(&env.repo.join(dir)).into_iter().collect()
}

fn short(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap()[..8].to_string()
}

/// Flip one byte in the middle of a repository object (keeping its size).
fn flip(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x20;
    chmod(p, 0o600);
    std::fs::write(p, &b).unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `warning:` lines of a run.
fn warnings(o: &Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .map(String::from)
        .collect()
}

/// Exit 3, and exactly the warnings expected, each naming one of `shorts`.
fn assert_partial(o: &Output, shorts: &[&str], what: &str) {
    assert_eq!(o.status.code(), Some(3), "{what}: exit\n{}", describe(o));
    let w = warnings(o);
    assert_eq!(w.len(), shorts.len(), "{what}: warnings\n{}", describe(o));
    for s in shorts {
        assert!(
            w.iter().any(|l| l.contains(s) && l.contains("skipped")),
            "{what}: no warning names {s}\n{}",
            describe(o)
        );
    }
}

fn snapshot_ids(o: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", describe(o)));
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_corrupt_index_file_is_skipped_with_a_fresh_cache() {
    let env = Env::new();
    let a = env.path("a");
    write_random(&a.join("one.bin"), 1, 3 << 20);
    env.backup(&[a.to_str().unwrap()]);
    let first = names(&env, "index");
    let b = env.path("b");
    write_random(&b.join("two.bin"), 2, 2 << 20);
    write(&b.join("small.txt"), b"small\n");
    env.backup(&[b.to_str().unwrap()]);
    let second: Vec<PathBuf> = names(&env, "index").difference(&first).cloned().collect();
    assert!(!first.is_empty() && !second.is_empty());

    let bad = first.iter().next().unwrap();
    flip(bad);
    let bad_short = short(bad);
    std::fs::remove_dir_all(&env.cache).unwrap();

    // Listing snapshots reads no index file (opened, not indexed).
    let o = env.cairn(&["snapshots", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(snapshot_ids(&o).len(), 2, "{}", describe(&o));
    assert!(warnings(&o).is_empty(), "{}", describe(&o));

    // Snapshot b's blobs are all in intact index files: it restores completely.
    let target = env.path("t");
    let o = env.cairn(&[
        "restore",
        "latest",
        "--path",
        b.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_partial(&o, &[&bad_short], "restore past a corrupt index file");
    assert_same_tree(&b, &restored(&target, &b), true);

    // Not recorded as merged: every run says so again, until the file is repaired.
    // (`ls` would not notice: it reads only trees, cached by the restore above.)
    let o = env.cairn(&[
        "restore",
        "latest",
        "--path",
        b.to_str().unwrap(),
        "--target",
        env.path("t1").to_str().unwrap(),
    ]);
    assert_partial(&o, &[&bad_short], "restore, second run");
    // Snapshot a needs the skipped file: a clean error, not a panic.
    let o = env.cairn(&[
        "restore",
        "latest",
        "--path",
        a.to_str().unwrap(),
        "--target",
        env.path("t2").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", describe(&o));
}

#[test]
fn a_flipped_snapshot_is_skipped_and_the_others_listed() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"content\n");
    for (i, t) in [
        "2026-01-01 00:00:00",
        "2026-01-02 00:00:00",
        "2026-01-03 00:00:00",
    ]
    .iter()
    .enumerate()
    {
        write(&src.join("n"), format!("{i}").as_bytes());
        env.backup(&["--time", t, src.to_str().unwrap()]);
    }
    let all = snapshot_ids(&env.ok(&["snapshots", "--json"]));
    assert_eq!(all.len(), 3);
    // Damage the newest: `latest` falls back to the one before, with a warning.
    let newest = env.repo.join("snapshots").join(&all[2]);
    flip(&newest);
    std::fs::remove_dir_all(&env.cache).unwrap();

    let o = env.cairn(&["snapshots", "--json"]);
    assert_partial(&o, &[&all[2][..8]], "snapshots with one flipped snapshot");
    assert_eq!(snapshot_ids(&o), all[..2].to_vec());
    let o = env.cairn(&["snapshots"]);
    assert_partial(&o, &[&all[2][..8]], "snapshots (table)");
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 snapshots"));

    let target = env.path("t");
    let o = env.cairn(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_partial(&o, &[&all[2][..8]], "restore latest");
    assert_eq!(
        std::fs::read(restored(&target, &src).join("n")).unwrap(),
        b"1"
    );
    // Asking for the damaged one by id names it.
    let o = env.cairn(&["ls", &all[2][..8]]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
}

#[test]
fn stray_names_and_upper_case_copies_are_ignored() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"content\n");
    env.backup(&[src.to_str().unwrap()]);
    let snap = objects(&env.repo.join("snapshots")).remove(0);
    let hex = snap.file_name().unwrap().to_str().unwrap().to_string();
    let bytes = std::fs::read(&snap).unwrap();
    for dir in ["snapshots/sub", "index/x", "keys/x"] {
        write(&env.repo.join(dir).join(&hex), &bytes);
    }
    write(&env.repo.join("snapshots").join(hex.to_uppercase()), &bytes);
    write(&env.repo.join("snapshots").join(&hex[..40]), &bytes);
    write(&env.repo.join("data").join(&hex), &bytes);
    std::fs::remove_dir_all(&env.cache).unwrap();

    let o = env.ok(&["snapshots", "--json"]);
    assert_eq!(snapshot_ids(&o), vec![hex.clone()]);
    assert!(warnings(&o).is_empty(), "{}", describe(&o));
    // A prefix is not ambiguous: the upper-case copy is not a second snapshot.
    let o = env.ok(&["ls", &hex[..8]]);
    assert!(warnings(&o).is_empty(), "{}", describe(&o));
    env.ok(&[
        "restore",
        &hex[..8],
        "--target",
        env.path("t").to_str().unwrap(),
    ]);
}

#[test]
fn an_index_entry_past_its_pack_is_refused_not_a_panic() {
    let env = Env::new();
    let src = env.path("src");
    write_random(&src.join("big.bin"), 7, 3 << 20);
    env.backup(&[src.to_str().unwrap()]);

    // Another key holder's index file: every pack's first entry moved past the pack's end
    // (offset + length wraps u32), sealed with the real key. It replaces the real ones.
    let backend = Backend::open(env.repo.to_str().unwrap(), false).unwrap();
    let accept = |_: &Id, _: &cairn::crypto::MasterKey| true;
    let (_, _, master) =
        cairn::repo::keys::unlock(&backend, env.password.as_bytes(), None, &accept).unwrap();
    let sealer = master.sealer();
    let mut crafted = Vec::new();
    for p in objects(&env.repo.join("index")) {
        let sealed = std::fs::read(&p).unwrap();
        let plain = sealer.open(label::INDEX, &sealed, &"index").unwrap();
        let mut f = IndexFile::decode(&plain, &"index").unwrap();
        for pack in &mut f.packs {
            pack.blobs[0].offset = u32::MAX - 10;
            pack.blobs[0].length = 1100;
        }
        f.validate(&"crafted").unwrap_err();
        let sealed = sealer
            .seal(label::INDEX, &cairn::format::encode(&f).unwrap())
            .unwrap();
        let id = Id::of_stored(&sealed);
        std::fs::remove_file(&p).unwrap();
        write(&env.repo.join("index").join(id.to_hex()), &sealed);
        crafted.push(id.short());
    }
    std::fs::remove_dir_all(&env.cache).unwrap();

    let target = env.path("t");
    let o = env.cairn(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(stderr(&o).contains("exceeds the pack"), "{}", describe(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", describe(&o));
    assert_eq!(warnings(&o).len(), crafted.len(), "{}", describe(&o));

    let full = objects(&env.repo.join("index")).remove(0);
    let o = env.cairn(&["cat", "index", full.file_name().unwrap().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let err = stderr(&o);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("corrupt"),
        "{}",
        describe(&o)
    );
}

/// A sparse file of `len` bytes: huge on paper, nothing on disk.
fn sparse(p: &Path, len: u64) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::File::create(p).unwrap().set_len(len).unwrap();
}

#[test]
fn oversized_objects_are_refused_without_reading_them() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"content\n");
    env.backup(&[src.to_str().unwrap()]);
    // 64 GiB each: reading either whole would exhaust memory or time out.
    let big_snap = Id::of_stored(b"planted snapshot").to_hex();
    let big_index = Id::of_stored(b"planted index").to_hex();
    sparse(&env.repo.join("snapshots").join(&big_snap), 64 << 30);
    sparse(&env.repo.join("index").join(&big_index), 64 << 30);
    std::fs::remove_dir_all(&env.cache).unwrap();

    let started = std::time::Instant::now();
    let o = env.cairn(&["snapshots", "--json"]);
    assert_partial(&o, &[&big_snap[..8]], "planted huge snapshot");
    assert_eq!(snapshot_ids(&o).len(), 1);
    assert!(stderr(&o).contains("over the limit"), "{}", describe(&o));
    let o = env.cairn(&["ls", "latest"]);
    assert_partial(
        &o,
        &[&big_snap[..8], &big_index[..8]],
        "planted huge objects",
    );
    assert!(stderr(&o).contains("over the limit"), "{}", describe(&o));
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}",
        started.elapsed()
    );

    // A huge config cannot be skipped: one line, no attempt to read it.
    std::fs::remove_file(env.repo.join("config")).unwrap();
    sparse(&env.repo.join("config"), 64 << 30);
    let o = env.cairn(&["snapshots"]);
    let line = assert_fails_one_line(&o, 1, "a planted huge config");
    assert!(line.contains("config is corrupt"), "{line}");
}

#[test]
fn untrusted_names_are_escaped_for_the_terminal() {
    let env = Env::new();
    let src = env.path("src");
    let evil = "a\x1b]0;pwned\x07b";
    write(&src.join(evil), b"x");
    std::os::unix::fs::symlink("\x1b[2J", src.join("link")).unwrap();
    env.backup(&[
        "--host",
        "h\x1b[31mEVIL",
        "--tag",
        "t\x07",
        src.to_str().unwrap(),
    ]);
    for args in [
        &["snapshots"][..],
        &["ls", "latest"],
        &["ls", "-l", "latest"],
    ] {
        let o = env.ok(args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            !out.contains('\x1b') && !out.contains('\x07'),
            "{args:?} printed raw control characters:\n{out}"
        );
    }
    let o = env.ok(&["ls", "-l", "latest"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("a\\e]0;pwned\\x07b"), "{out}");
    assert!(out.contains("-> \\e[2J"), "{out}");
    let o = env.ok(&["snapshots"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("h\\e[31mEVIL"));
    // JSON keeps the real names (JSON escaping is enough there).
    assert!(env.ls("latest").iter().any(|p| p.ends_with(evil)));
}
