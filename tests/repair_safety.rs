//! Repairs never destroy what could be recovered (issue 20: RS1, RI1, I3, I4): `repair
//! snapshots` refuses to run on an incomplete index, `repair index` keeps verified entries of
//! a pack whose header is damaged, `check` reads every header, and flaky answers are tried
//! again before anything is called damaged.

use crate::util::*;
use std::path::{Path, PathBuf};

/// Two folders backed up separately: (a, b, snapshot of a, snapshot of b, the index files
/// the backup of b wrote).
fn two_snapshots(env: &Env) -> (PathBuf, PathBuf, String, String, Vec<PathBuf>) {
    let a = env.path("a");
    let b = env.path("b");
    write_random(&a.join("one.bin"), 1, 300 << 10);
    write(&a.join("small.txt"), b"a\n");
    write_random(&b.join("two.bin"), 2, 400 << 10);
    write(&b.join("sub/small.txt"), b"b\n");
    let sa = snapshot_id(&env.backup(&[a.to_str().unwrap()]));
    let before = objects(&env.repo.join("index"));
    let sb = snapshot_id(&env.backup(&[b.to_str().unwrap()]));
    let mut new = objects(&env.repo.join("index"));
    new.retain(|p| !before.contains(p));
    assert!(!new.is_empty());
    (a, b, sa, sb, new)
}

/// Every object in the repository but locks, with its content.
fn state(env: &Env) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = objects(&env.repo)
        .into_iter()
        .filter(|p| !p.starts_with(env.repo.join("locks")))
        .map(|p| {
            let c = std::fs::read(&p).unwrap();
            (p, c)
        })
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[offset] ^= 1;
    std::fs::write(path, b).unwrap();
}

/// The largest pack: (path, size, sealed header length).
fn largest_pack(env: &Env) -> (PathBuf, usize, usize) {
    let p = objects(&env.repo.join("data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let b = std::fs::read(&p).unwrap();
    let h = u32::from_le_bytes(b[b.len() - 4..].try_into().unwrap()) as usize;
    (p, b.len(), h)
}

#[test]
fn repair_snapshots_refuses_on_a_skipped_index_file_and_changes_nothing() {
    let env = Env::small();
    let (_, b, _, sb, new) = two_snapshots(&env);
    flip(&new[0], 40);
    let before = state(&env);
    for args in [
        vec!["repair", "snapshots"],
        vec!["repair", "snapshots", "--forget"],
        vec!["repair", "snapshots", "--dry-run"],
    ] {
        let o = env.cairn(&args);
        assert_ne!(o.status.code(), Some(0), "{args:?}\n{}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("repair index"), "{args:?}\n{}", describe(&o));
        assert!(err.contains("nothing was changed"), "{}", describe(&o));
        assert_eq!(state(&env), before, "{args:?} changed the repository");
    }
    // What the tool says next recovers everything.
    env.ok(&["repair", "index"]);
    check_clean(&env, &["--read-data"], "after repair index");
    let t = env.path("r");
    env.ok(&["restore", &sb, "--target", t.to_str().unwrap()]);
    assert_same_tree(&b, &restored(&t, &b), false);
}

#[test]
fn repair_snapshots_refuses_while_packs_are_unindexed() {
    let env = Env::small();
    let (_, b, _, sb, new) = two_snapshots(&env);
    // An index file missing from the listing (an eventually consistent store, a provider
    // hiding it): its packs are in data/ but in no index file.
    let aside = env.path("aside");
    std::fs::create_dir_all(&aside).unwrap();
    for f in &new {
        std::fs::rename(f, aside.join(f.file_name().unwrap())).unwrap();
    }
    let before = state(&env);
    let o = env.cairn(&["repair", "snapshots", "--forget"]);
    assert_ne!(o.status.code(), Some(0), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no index file lists"), "{}", describe(&o));
    assert!(err.contains("repair index"), "{}", describe(&o));
    assert_eq!(state(&env), before);
    env.ok(&["repair", "index"]);
    check_clean(&env, &[], "after repair index");
    let t = env.path("r");
    env.ok(&["restore", &sb, "--target", t.to_str().unwrap()]);
    assert_same_tree(&b, &restored(&t, &b), false);
}

#[test]
fn a_damaged_pack_header_is_found_by_check_and_repair_index_keeps_its_blobs() {
    let env = Env::new();
    let src = env.path("src");
    write_random(&src.join("big.bin"), 7, 3 << 20);
    write(&src.join("small.txt"), b"small\n");
    let sid = snapshot_id(&env.backup(&[src.to_str().unwrap()]));
    let (pack, size, hlen) = largest_pack(&env);
    flip(&pack, size - 4 - hlen / 2);

    // Restore never needs the header; check (without --read-data) now reads it.
    let t1 = env.path("r1");
    env.ok(&["restore", &sid, "--target", t1.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&t1, &src), false);
    let o = env.cairn(&["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("header cannot be read"), "{}", describe(&o));
    // The header pass can be narrowed (a large remote repository) or skipped.
    let o = env.cairn(&["check", "--read-headers-subset", "100%"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    env.ok(&["check", "--no-read-headers"]);
    let o = env.cairn(&["check", "--read-headers-subset", "0/3"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--read-headers-subset"),
        "{}",
        describe(&o)
    );

    // repair index keeps the old entries, each blob read back and verified.
    let o = env.cairn(&["repair", "index"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("read back and verified"), "{}", describe(&o));
    assert!(!err.contains("left out"), "{}", describe(&o));

    // Nothing is lost: every blob was verified and copied into a new pack; the damaged pack
    // is in no index file now (young: only noted), so check --read-data is clean.
    let t2 = env.path("r2");
    env.ok(&["restore", &sid, "--target", t2.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&t2, &src), false);
    let o = env.ok(&["check", "--read-data", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["notes"].as_array().unwrap().len(), 1, "{v}");
    assert!(pack.exists(), "the damaged pack is deleted only by a prune");
    let o = env.ok(&["repair", "snapshots", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no snapshots would be modified"),
        "{}",
        describe(&o)
    );
    // A second repair index leaves the damaged pack out (nothing describes it any more) and
    // loses nothing.
    let o = env.cairn(&["repair", "index"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    env.ok(&[
        "restore",
        &sid,
        "--target",
        env.path("r3").to_str().unwrap(),
    ]);
}

#[test]
fn repair_index_drops_only_the_blobs_that_fail_their_check() {
    let env = Env::with_init(&["--chunk-size", "65536"]);
    let src = env.path("src");
    write_random(&src.join("big.bin"), 8, 2 << 20);
    let sid = snapshot_id(&env.backup(&[src.to_str().unwrap()]));
    let (pack, size, hlen) = largest_pack(&env);
    flip(&pack, size - 4 - hlen / 2);
    flip(&pack, 100); // inside the first blob
    let o = env.cairn(&["repair", "index", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v["packs_salvaged"][0];
    assert_eq!(s["dropped"].as_array().unwrap().len(), 1, "{v}");
    // How many blobs share the pack depends on the key-dependent chunk boundaries.
    assert!(s["kept"].as_u64().unwrap() >= 1, "{v}");
    // The snapshot lost exactly one blob: repair snapshots cuts it out of one file.
    let o = env.ok(&["repair", "snapshots", "--dry-run", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["repaired"][0]["id"], sid.as_str(), "{r}");
    assert_eq!(
        r["repaired"][0]["damages"][0]["blobs_missing"].as_u64(),
        Some(1),
        "{r}"
    );
}

#[test]
fn flaky_answers_are_tried_again_before_anything_is_called_damaged() {
    let env = Env::small();
    let (_, b, _, sb, _) = two_snapshots(&env);
    let packs = objects(&env.repo.join("data")).len();
    // The first reads of data/ answer "not found", then short bodies: a store that is not
    // consistent for a moment. Nothing may be left out.
    for fault in ["get:data:missing:1-2", "get:data:short:1-2"] {
        let o = env.cairn_with(&["repair", "index", "--json"], |c| {
            c.env("CAIRN_TEST_FAULTS", fault);
        });
        assert_eq!(o.status.code(), Some(0), "{fault}\n{}", describe(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v["packs_indexed"].as_u64(),
            Some(packs as u64),
            "{fault}: {v}"
        );
        assert!(v["packs_unreadable"].as_array().unwrap().is_empty(), "{v}");
        assert!(v["packs_salvaged"].as_array().unwrap().is_empty(), "{v}");
    }
    // A tree read answered "not found" once does not empty a folder.
    let o = env.cairn_with(&["repair", "snapshots", "--json"], |c| {
        c.env("CAIRN_TEST_FAULTS", "get:data:missing:1");
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["repaired"].as_array().unwrap().is_empty(), "{v}");
    check_clean(&env, &["--read-data"], "after flaky repairs");
    let t = env.path("r");
    env.ok(&["restore", &sb, "--target", t.to_str().unwrap()]);
    assert_same_tree(&b, &restored(&t, &b), false);
}

#[test]
fn repair_index_stops_when_listed_packs_answer_not_found() {
    let env = Env::small();
    let (_, b, _, sb, _) = two_snapshots(&env);
    let before = state(&env);
    // The store lists the packs but answers 404 for every read: nothing is disproved.
    let o = env.cairn_with(&["repair", "index"], |c| {
        c.env("CAIRN_TEST_FAULTS", "get:data:missing:*");
    });
    assert_ne!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing was changed"),
        "{}",
        describe(&o)
    );
    assert_eq!(state(&env), before);
    let t = env.path("r");
    env.ok(&["restore", &sb, "--target", t.to_str().unwrap()]);
    assert_same_tree(&b, &restored(&t, &b), false);
}

#[test]
fn a_destroyed_pack_left_out_by_repair_index_does_not_block_the_repairs_after_it() {
    let env = Env::small();
    let (a, _, sa, sb, _) = two_snapshots(&env);
    // Overwrite one pack that only snapshot b uses with random bytes of the same size.
    let users = |id: &str| -> String {
        let o = env.ok(&["find", "--pack", id, "--json"]);
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let victim = objects(&env.repo.join("data"))
        .into_iter()
        .find(|p| {
            let id = p.file_name().unwrap().to_str().unwrap();
            let u = users(id);
            u.contains("two.bin") && !u.contains("one.bin")
        })
        .expect("a pack of b only");
    let len = std::fs::metadata(&victim).unwrap().len() as usize;
    std::fs::write(&victim, random_bytes(99, len)).unwrap();
    let o = env.cairn(&["repair", "index"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("left out"),
        "{}",
        describe(&o)
    );
    // The left-out pack can add nothing: repair snapshots goes ahead and cuts what it held.
    let o = env.ok(&["repair", "snapshots", "--forget", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["repaired"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["repaired"][0]["id"], sb.as_str(), "{v}");
    // Then prune runs (the destroyed pack is unindexed and young: kept for now) and a's
    // snapshot is whole.
    env.ok(&["prune"]);
    let t = env.path("r");
    env.ok(&["restore", &sa, "--target", t.to_str().unwrap()]);
    assert_same_tree(&a, &restored(&t, &a), false);
}

#[test]
fn a_truncated_pack_loses_only_what_lies_past_its_end() {
    let env = Env::with_init(&["--chunk-size", "65536"]);
    let src = env.path("src");
    write_random(&src.join("big.bin"), 9, 2 << 20);
    env.backup(&[src.to_str().unwrap()]);
    let (pack, size, _) = largest_pack(&env);
    let f = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
    f.set_len((size / 2) as u64).unwrap();
    let o = env.cairn(&["repair", "index", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v["packs_salvaged"][0];
    // Chunk boundaries depend on the repository's key, so how many blobs lie before the cut
    // varies; what must hold is that some are kept and every one dropped lies past the end.
    assert!(s["kept"].as_u64().unwrap() >= 1, "{v}");
    let dropped = s["dropped"].as_array().unwrap();
    assert!(!dropped.is_empty(), "{v}");
    for d in dropped {
        assert!(
            d[1].as_str()
                .unwrap()
                .contains("beyond the end of the pack"),
            "a blob before the cut was dropped: {v}"
        );
    }
}

/// A refresh that fails once (the store erring) is tried again soon; only a removed object, a
/// rival lock or an overdue lock means the lock is lost (second review, N7).
#[test]
fn one_failed_lock_refresh_does_not_stop_a_prune() {
    let env = Env::small();
    let (_, b, sa, sb, _) = two_snapshots(&env);
    env.ok(&["forget", &sa]);
    // The prune is held 3 s in its first index delete; meanwhile its lock is refreshed every
    // second, and the second lock write fails.
    let o = env.cairn_with(&["prune"], |c| {
        c.env("CAIRN_TEST_LOCK_REFRESH_MS", "1000").env(
            "CAIRN_TEST_FAULTS",
            "delete:index:slow=3000:1,put:locks:error:2",
        );
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(objects(&env.repo.join("locks")).is_empty());
    check_clean(&env, &["--read-data"], "after the prune");
    let t = env.path("r");
    env.ok(&["restore", &sb, "--target", t.to_str().unwrap()]);
    assert_same_tree(&b, &restored(&t, &b), false);
}

/// Second review, N8: `unlock` on a host whose clock is an hour ahead does not take a live
/// prune's lock for stale (the store's clock says it is fresh).
#[test]
fn unlock_on_a_host_with_a_clock_ahead_spares_a_live_lock() {
    let env = Env::small();
    let (_, _, sa, _, _) = two_snapshots(&env);
    env.ok(&["forget", &sa]);
    let mut c = env.command();
    c.args(["prune"])
        .env("CAIRN_TEST_FAULTS", "delete:index:slow=8000:1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut prune = c.spawn().unwrap();
    let start = std::time::Instant::now();
    while objects(&env.repo.join("locks")).is_empty() {
        assert!(start.elapsed().as_secs() < 30, "the prune took no lock");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut u = env.command_skewed("+1h");
    u.arg("unlock");
    let o = run(u, None);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("removed lock"),
        "{}",
        describe(&o)
    );
    let po = wait_output(&mut prune, std::time::Duration::from_secs(120), "prune");
    assert_eq!(po.status.code(), Some(0), "{}", describe(&po));
    check_clean(&env, &[], "after the prune");
}
