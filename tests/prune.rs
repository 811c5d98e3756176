//! Prune, check, repair index and locks, on real repositories through the binary.

use crate::util::*;
use std::path::{Path, PathBuf};

/// Source state `i`: ten files, each rewritten in some states, one added per state.
fn make_state(src: &Path, i: u64) {
    for f in 0..10u64 {
        // File f changes every (f + 1) states.
        let version = i / (f + 1);
        write_random(
            &src.join(format!("f{f}.bin")),
            f * 1000 + version,
            (64 << 10) * (f + 1),
        );
    }
    write_random(&src.join(format!("added-{i}.bin")), 50_000 + i, 300 << 10);
    if i >= 2 {
        let _ = std::fs::remove_file(src.join(format!("added-{}.bin", i - 2)));
    }
}

fn dir_size(p: &Path) -> u64 {
    walk(p)
        .iter()
        .filter_map(|f| std::fs::symlink_metadata(f).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Back up `n` states of a source; returns the source path, each snapshot's id and a copy of
/// the source as it was.
fn history(env: &Env, n: u64) -> (PathBuf, Vec<(String, PathBuf)>) {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        make_state(&src, i);
        let s = env.backup(&[src.to_str().unwrap()]);
        let copy = env.path(&format!("states/{i}"));
        copy_tree(&src, &copy);
        out.push((snapshot_id(&s), copy));
    }
    (src, out)
}

/// `cairn forget ID...`.
fn forget(env: &Env, ids: &[&str]) {
    let mut a = vec!["forget"];
    a.extend_from_slice(ids);
    env.ok(&a);
    for id in ids {
        assert!(!env.repo.join("snapshots").join(id).exists());
    }
}

#[test]
fn forget_and_prune_keep_exactly_what_the_remaining_snapshots_need() {
    let env = Env::small();
    let (src, snaps) = history(&env, 6);
    check_clean(&env, &["--read-data"], "after the backups");
    let before = dir_size(&env.repo.join("data"));

    // Forget every other snapshot, then prune in two phases.
    forget(&env, &[&snaps[0].0, &snaps[2].0, &snaps[4].0]);
    let o = env.ok(&["prune", "--max-unused", "0", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let marked = v["outcome"]["packs_marked"].as_u64().unwrap();
    assert!(marked > 0, "nothing marked\n{}", describe(&o));
    assert_eq!(v["outcome"]["packs_deleted"], 0, "{}", describe(&o));
    // Phase one deletes nothing: the repository only grows by the repacked copies.
    assert!(dir_size(&env.repo.join("data")) >= before);
    check_clean(&env, &["--read-data"], "after marking");
    for (i, (id, state)) in snaps.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        restore_matches(&env, id, state, &src, &format!("r1-{i}"));
    }

    // Phase two: the grace period is over (0s), the marked packs go.
    let o = env.ok(&["prune", "--delete-after", "0s", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["outcome"]["packs_deleted"].as_u64().unwrap(),
        marked,
        "{}",
        describe(&o)
    );
    let after = dir_size(&env.repo.join("data"));
    assert!(after < before, "no space freed: {before} -> {after}");
    check_clean(&env, &["--read-data"], "after deleting");
    for (i, (id, state)) in snaps.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        restore_matches(&env, id, state, &src, &format!("r2-{i}"));
    }

    // Nothing left to do.
    let o = env.ok(&["prune", "--delete-after", "0s", "--max-unused", "0"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("nothing to do"),
        "{}",
        describe(&o)
    );

    // Forget all but the last, and prune in the same command: the repository shrinks to what
    // that one holds alone.
    env.ok(&[
        "forget",
        "--keep-last",
        "1",
        "--prune",
        "--instant-delete",
        "--max-unused",
        "0",
    ]);
    assert_eq!(env.snapshots().len(), 1);
    check_clean(&env, &["--read-data"], "after the last prune");
    restore_matches(&env, &snaps[5].0, &snaps[5].1, &src, "r3");
    let alone = dir_size(&env.repo.join("data"));
    let fresh = Env::small();
    let fsrc = fresh.path("src");
    copy_tree(&snaps[5].1, &fsrc);
    fresh.backup(&[fsrc.to_str().unwrap()]);
    let reference = dir_size(&fresh.repo.join("data"));
    // Same content in a fresh repository: within 10% (pack boundaries differ).
    assert!(
        alone <= reference + reference / 10,
        "pruned repository holds {alone} bytes, a fresh backup of the same state {reference}"
    );
}

#[test]
fn dry_run_changes_nothing() {
    let env = Env::small();
    let (_, snaps) = history(&env, 3);
    forget(&env, &[&snaps[0].0]);
    let listing = |env: &Env| {
        let mut v = objects(&env.repo);
        v.sort();
        v
    };
    let before = listing(&env);
    let o = env.ok(&[
        "prune",
        "--dry-run",
        "--instant-delete",
        "--max-unused",
        "0",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("dry run"),
        "{}",
        describe(&o)
    );
    let o = env.ok(&["prune", "-n", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert!(v["plan"]["mark"]["packs"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(listing(&env), before);
}

#[test]
fn a_backup_never_dedups_against_a_marked_pack_and_a_used_marked_pack_is_recovered() {
    let env = Env::small();
    let (src, snaps) = history(&env, 2);
    // Keep the first snapshot object aside: putting it back later is what a backup that
    // deduplicated against its packs before they were marked looks like.
    let first = env.repo.join("snapshots").join(&snaps[0].0);
    let saved = std::fs::read(&first).unwrap();
    forget(&env, &[&snaps[0].0]);
    let o = env.ok(&["prune", "--json", "--max-unused", "unlimited"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["outcome"]["packs_marked"].as_u64().unwrap() > 0, "{v}");

    // A backup of state 0 again: its blobs live only in marked packs, so they are stored anew.
    let again = env.path("again");
    copy_tree(&snaps[0].1, &again);
    let s = env.backup(&[again.to_str().unwrap()]);
    assert!(
        s["data_added"].as_u64().unwrap_or(0) > 0 || s["blobs_added"].as_u64().unwrap_or(0) > 0,
        "nothing stored again: {s}"
    );

    // The old snapshot reappears (a slow backup that finished after the marking).
    write(&first, &saved);
    let o = env.ok(&["prune", "--json", "--delete-after", "0s"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["plan"]["recover"]["packs"].as_u64().unwrap() > 0,
        "no pack recovered\n{}",
        describe(&o)
    );
    check_clean(&env, &["--read-data"], "after recovering");
    restore_matches(&env, &snaps[0].0, &snaps[0].1, &src, "r0");
    restore_matches(&env, &snaps[1].0, &snaps[1].1, &src, "r1");
}

/// Kill a prune (SIGKILL) before each of its writes and deletes in turn; after each, the
/// repository must check clean, keep every remaining snapshot, and the next prune must finish.
#[test]
fn a_prune_killed_at_any_step_leaves_a_valid_repository() {
    let env = Env::small();
    let (src, snaps) = history(&env, 8);
    forget(
        &env,
        &[
            &snaps[0].0,
            &snaps[1].0,
            &snaps[3].0,
            &snaps[4].0,
            &snaps[6].0,
        ],
    );
    // A first prune marks; the template is the state before the second, which repacks,
    // rewrites the index and deletes.
    env.ok(&["prune", "--max-unused", "0"]);
    forget(&env, &[&snaps[2].0]);
    let template = env.path("template");
    copy_tree(&env.repo, &template);
    let kept = [5usize, 7];
    let mut points = 0;
    for n in 0..200u32 {
        std::fs::remove_dir_all(&env.repo).unwrap();
        copy_tree(&template, &env.repo);
        let _ = std::fs::remove_dir_all(&env.cache);
        let o = env.cairn_with(
            &["prune", "--delete-after", "0s", "--max-unused", "0"],
            |c| {
                c.env("CAIRN_TEST_KILL_AFTER_WRITES", n.to_string());
            },
        );
        let killed = o.status.code().is_none();
        if !killed {
            assert_eq!(o.status.code(), Some(0), "prune at {n}\n{}", describe(&o));
        }
        // Whatever happened, the repository checks clean and holds the kept snapshots.
        check_clean(&env, &[], &format!("killed before write {n}"));
        let i = kept[n as usize % 2];
        restore_matches(&env, &snaps[i].0, &snaps[i].1, &src, &format!("k{n}"));
        // Every third time, a prune on a host whose clock is a day off runs first (review
        // PR1): it may mark and repack, but deletes nothing by age, and loses nothing.
        if n % 3 == 0 {
            let skew = if n % 2 == 0 { "+25h" } else { "-25h" };
            let o = env.cairn_skewed(
                skew,
                &["prune", "--delete-after", "0s", "--max-unused", "0"],
            );
            assert_eq!(
                o.status.code(),
                Some(0),
                "{skew} prune after {n}\n{}",
                describe(&o)
            );
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("nothing is deleted by age"),
                "{skew} prune after {n}\n{}",
                describe(&o)
            );
            check_clean(&env, &[], &format!("{skew} prune after {n}"));
        }
        // The next prune (a stale lock of a dead process does not stop it) finishes the job.
        env.ok(&["prune", "--delete-after", "0s", "--max-unused", "0"]);
        check_clean(&env, &["--read-data"], &format!("finished after {n}"));
        if !killed {
            break;
        }
        points += 1;
    }
    assert!(points >= 20, "only {points} kill points");
}

#[test]
fn check_names_damage_and_repair_index_recovers_what_the_packs_hold() {
    let env = Env::small();
    let (src, snaps) = history(&env, 3);
    check_clean(&env, &["--read-data"], "fresh");
    let data = objects(&env.repo.join("data"));

    // A flipped byte in a data pack: only reading the data finds it.
    let victim = data
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
        .clone();
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&victim, &bytes).unwrap();
    check_clean(&env, &[], "a flipped byte, structure only");
    let o = env.cairn(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&name[..8]),
        "the pack is not named\n{}",
        describe(&o)
    );
    let o = env.cairn(&["check", "--read-data", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"pack-corrupt"), "{v}");
    assert!(kinds.contains(&"bad-blob"), "{v}");
    bytes[100] ^= 1;
    std::fs::write(&victim, &bytes).unwrap();

    // A truncated pack: the size says so.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap();
    f.set_len(bytes.len() as u64 - 10).unwrap();
    let o = env.cairn(&["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("bytes, the index says"));
    std::fs::write(&victim, &bytes).unwrap();

    // A deleted pack: missing, named.
    let gone = data[0].clone();
    let saved = std::fs::read(&gone).unwrap();
    std::fs::remove_file(&gone).unwrap();
    let o = env.cairn(&["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("missing"));
    std::fs::write(&gone, &saved).unwrap();
    check_clean(&env, &[], "pack put back");

    // A deleted index file: snapshots reference blobs the index lacks.
    let index = objects(&env.repo.join("index"));
    std::fs::remove_file(&index[0]).unwrap();
    let o = env.cairn(&["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    // repair index reads the pack headers back into a complete index.
    let o = env.ok(&["repair", "index"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("indexed"),
        "{}",
        describe(&o)
    );
    check_clean(&env, &["--read-data"], "after repair index");
    for (i, (id, state)) in snaps.iter().enumerate() {
        restore_matches(&env, id, state, &src, &format!("r{i}"));
    }

    // Every index file gone: the packs alone rebuild it.
    for f in objects(&env.repo.join("index")) {
        std::fs::remove_file(f).unwrap();
    }
    env.ok(&["repair", "index"]);
    check_clean(&env, &["--read-data-subset", "1/2"], "rebuilt from nothing");
    check_clean(&env, &["--read-data-subset", "2/2"], "rebuilt from nothing");
    restore_matches(&env, &snaps[2].0, &snaps[2].1, &src, "rlast");
}

#[test]
fn locks_exclude_prunes_and_unlock_clears_stale_ones() {
    use cairn::backend::Backend;
    use cairn::crypto::label;
    use cairn::id::Id;
    let env = Env::small();
    let (_, snaps) = history(&env, 2);
    forget(&env, &[&snaps[0].0]);

    // A lock held by a live process of this host.
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let backend = Backend::open(env.repo.to_str().unwrap(), false).unwrap();
    let accept = |_: &Id, _: &cairn::crypto::MasterKey| true;
    let (_, _, master) =
        cairn::repo::keys::unlock(&backend, env.password.as_bytes(), None, &accept).unwrap();
    let now = cairn::repo::keys::now_ns();
    let lock = cairn::format::lock::Lock {
        version: 1,
        host: cairn::repo::keys::current_host(),
        user: "tester".into(),
        pid: holder.id(),
        command: "prune".into(),
        created_ns: now,
        refreshed_ns: now,
    };
    let sealed = master
        .sealer()
        .seal(label::LOCK, &cairn::format::encode(&lock).unwrap())
        .unwrap();
    let lid = Id::of_stored(&sealed);
    write(&env.repo.join("locks").join(lid.to_hex()), &sealed);

    let o = env.cairn(&["prune"]);
    let line = assert_fails_one_line(&o, 11, "prune while another holds the lock");
    assert!(line.contains(&holder.id().to_string()), "{line}");
    // Not stale: plain unlock leaves it.
    env.ok(&["unlock"]);
    assert!(env.repo.join("locks").join(lid.to_hex()).exists());
    // Backups and checks take no lock.
    check_clean(&env, &[], "while locked");
    // The holder dies: the lock is stale at once.
    holder.kill().unwrap();
    holder.wait().unwrap();
    env.ok(&["prune"]);
    let o = env.ok(&["unlock"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 locks removed"),
        "{}",
        describe(&o)
    );
    assert!(objects(&env.repo.join("locks")).is_empty());

    // --remove-all removes a live one too.
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let lock = cairn::format::lock::Lock {
        pid: holder.id(),
        ..lock
    };
    let sealed = master
        .sealer()
        .seal(label::LOCK, &cairn::format::encode(&lock).unwrap())
        .unwrap();
    write(
        &env.repo.join("locks").join(Id::of_stored(&sealed).to_hex()),
        &sealed,
    );
    env.ok(&["unlock", "--remove-all"]);
    assert!(objects(&env.repo.join("locks")).is_empty());
    holder.kill().unwrap();
    holder.wait().unwrap();
    env.ok(&["prune"]);
}

/// How long the first prune of the lost-lock tests is held in one delete: long enough for an
/// `unlock --remove-all` and a whole second prune meanwhile (checked, not assumed).
const HELD_MS: u64 = 20_000;

/// LK1: a prune is held in a delete (the store's fault hook), `cairn unlock --remove-all`
/// removes its lock and a second prune (another cache, as from another host) runs to the end.
/// The first prune's refresh thread (every 200 ms here) must not write its lock again, and the
/// prune must stop with `Locked` ("the repository lock was lost") at its next check instead of
/// deleting on. `ready` says when the first prune is inside the held delete. Returns the first
/// prune's output.
fn prune_loses_its_lock(
    env: &Env,
    args: &[&str],
    faults: &str,
    ready: impl Fn() -> bool,
) -> std::process::Output {
    let mut c = env.command();
    c.args(args)
        .env("CAIRN_TEST_FAULTS", faults)
        .env("CAIRN_TEST_LOCK_REFRESH_MS", "200")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut first = c.spawn().expect("spawn cairn");
    let t0 = std::time::Instant::now();
    while !ready() {
        assert!(
            matches!(first.try_wait(), Ok(None)),
            "the first prune ended before reaching the held delete"
        );
        assert!(t0.elapsed() < TIMEOUT, "the first prune never got there");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let locks = env.repo.join("locks");
    assert!(!objects(&locks).is_empty(), "the first prune's lock");
    let o = env.ok(&["unlock", "--remove-all"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("removed lock"),
        "{}",
        describe(&o)
    );
    assert!(objects(&locks).is_empty(), "{}", describe(&o));
    let second = env.cairn_with(&["prune"], |c| {
        c.env("CAIRN_CACHE_DIR", env.path("cache-second"));
    });
    assert_eq!(
        second.status.code(),
        Some(0),
        "second prune\n{}",
        describe(&second)
    );
    assert!(
        matches!(first.try_wait(), Ok(None)),
        "the first prune ended before the second finished: raise HELD_MS for this machine"
    );
    // Until the first prune ends, with a refresh due every 200 ms: no lock is written again.
    while matches!(first.try_wait(), Ok(None)) {
        assert_eq!(
            objects(&locks),
            Vec::<PathBuf>::new(),
            "a lock appeared after the second prune ended"
        );
        assert!(t0.elapsed() < TIMEOUT, "the first prune never ended");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = wait_output(&mut first, TIMEOUT, "first prune");
    let line = assert_fails_one_line(&out, 11, "the prune whose lock was removed");
    assert!(line.contains("lock was lost"), "{line}");
    assert!(line.contains("removed by someone else"), "{line}");
    assert!(objects(&locks).is_empty());
    out
}

/// Backup a (24 MiB of its own data, many packs), backup b, forget a. Returns the source, b's
/// id and a copy of b's source.
fn a_then_b_forget_a(env: &Env) -> (PathBuf, String, PathBuf) {
    let src = env.path("src");
    write_random(&src.join("big.bin"), 1, 24 << 20);
    let a = snapshot_id(&env.backup(&[src.to_str().unwrap()]));
    std::fs::remove_file(src.join("big.bin")).unwrap();
    write_random(&src.join("small.bin"), 2, 100 << 10);
    let copy = env.path("copy");
    copy_tree(&src, &copy);
    let b = snapshot_id(&env.backup(&[src.to_str().unwrap()]));
    forget(env, &[&a]);
    (src, b, copy)
}

/// The review's scenario: the first prune held in its first old-index delete (step 3).
#[test]
fn a_prune_whose_lock_is_removed_mid_way_stops_and_never_recreates_it() {
    let env = Env::small();
    let (src, kept, copy) = a_then_b_forget_a(&env);
    // a's packs are only marked: no repack, so step 2 writes the only new index file.
    let o = env.ok(&["prune", "--dry-run", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["plan"]["repack"]["packs"], 0, "{plan}");
    assert!(
        plan["plan"]["mark"]["packs"].as_u64().unwrap() > 0,
        "{plan}"
    );
    let index = env.repo.join("index");
    let before = objects(&index);
    assert!(before.len() >= 2, "two old index files to delete");
    prune_loses_its_lock(
        &env,
        &["prune"],
        &format!("delete:index:slow={HELD_MS}:1"),
        // The new index is written: step 3 is next.
        || objects(&index).iter().any(|f| !before.contains(f)),
    );
    check_clean(&env, &["--read-data"], "after the two prunes");
    assert_eq!(env.snapshots().len(), 1);
    restore_matches(&env, &kept, &copy, &src, "r");
    env.ok(&["prune", "--delete-after", "0s"]);
    check_clean(&env, &["--read-data"], "after a third prune");
    restore_matches(&env, &kept, &copy, &src, "r2");
}

/// The first prune held in its first pack delete (step 4) of many: the lock is checked again
/// between batches of deletes, so it stops with packs still undeleted.
#[test]
fn a_prune_whose_lock_is_removed_stops_between_pack_deletes() {
    let env = Env::small();
    let (src, kept, copy) = a_then_b_forget_a(&env);
    let o = env.ok(&["prune", "--dry-run", "--instant-delete", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let doomed = plan["plan"]["delete"]["packs"].as_u64().unwrap();
    assert!(doomed > 8, "more packs to delete than one batch: {plan}");
    let data = env.repo.join("data");
    let packs_before = objects(&data).len() as u64;
    let index = env.repo.join("index");
    let old_index = objects(&index);
    prune_loses_its_lock(
        &env,
        &["prune", "--instant-delete"],
        &format!("delete:data:slow={HELD_MS}:1"),
        // The old index files are gone: step 4 has begun.
        || !objects(&index).iter().any(|f| old_index.contains(f)),
    );
    let left = objects(&data).len() as u64;
    assert!(
        left > packs_before - doomed,
        "the first prune deleted all {doomed} packs after losing its lock ({left} left of {packs_before})"
    );
    check_clean(&env, &["--read-data"], "after the two prunes");
    restore_matches(&env, &kept, &copy, &src, "r");
}

#[test]
fn prune_refuses_when_a_snapshot_needs_a_missing_blob() {
    let env = Env::small();
    let (_, snaps) = history(&env, 2);
    // Lose the index: blobs the snapshots need are unknown, so nothing may be deleted.
    for f in objects(&env.repo.join("index")) {
        std::fs::remove_file(f).unwrap();
    }
    let _ = std::fs::remove_dir_all(&env.cache);
    let before = objects(&env.repo);
    let o = env.cairn(&["prune", "--instant-delete"]);
    let line = assert_fails_one_line(&o, 1, "prune with blobs missing from the index");
    assert!(line.contains("nothing was changed"), "{line}");
    let mut after = objects(&env.repo);
    after.retain(|p| !p.starts_with(env.repo.join("locks")));
    assert_eq!(after, before);
    let _ = snaps;
}

/// A store that serves an old index file again after a prune (rollback, format.md §16): a cache
/// that merged the prune's index ignores it (rule 2); a fresh cache that is shown only the old
/// file deduplicates against deleted packs, and the backup refuses to write its snapshot
/// (rule 3).
#[test]
fn an_old_index_served_again_never_yields_a_snapshot_of_deleted_packs() {
    let env = Env::small();
    let (src, snaps) = history(&env, 1);
    let old_index = env.path("old-index");
    copy_tree(&env.repo.join("index"), &old_index);
    env.ok(&["forget", &snaps[0].0]);
    env.ok(&["prune", "--instant-delete"]);
    assert!(objects(&env.repo.join("data")).is_empty());
    let new_index = objects(&env.repo.join("index"));

    // Rule 2: the old files come back next to the new one: ignored, with any cache.
    for f in objects(&old_index) {
        std::fs::copy(&f, env.repo.join("index").join(f.file_name().unwrap())).unwrap();
    }
    check_clean(&env, &[], "old index files served again");
    let _ = std::fs::remove_dir_all(&env.cache);
    check_clean(&env, &[], "old index files served again, fresh cache");

    // Rule 3: the store hides the new file; a fresh cache sees only the old ones.
    for f in &new_index {
        std::fs::remove_file(f).unwrap();
    }
    let _ = std::fs::remove_dir_all(&env.cache);
    let o = env.cairn(&["backup", src.to_str().unwrap()]);
    let line = assert_fails_one_line(&o, 1, "backup against deleted packs");
    assert!(line.contains("no longer in the repository"), "{line}");
    assert!(objects(&env.repo.join("snapshots")).is_empty());
}

/// Random sequences of backups, forgets and prunes with random options: after every prune the
/// repository checks clean with every blob read, and every remaining snapshot restores bit for
/// bit; at the end the repository holds about what a fresh one with the remaining states holds.
#[test]
fn random_forget_prune_sequences_keep_every_remaining_snapshot() {
    let options: [&[&str]; 7] = [
        &["--max-unused", "0"],
        &["--max-unused", "unlimited"],
        &["--delete-after", "0s"],
        &["--delete-after", "0s", "--max-unused", "0"],
        &["--instant-delete"],
        &["--repack-small", "--delete-after", "0s"],
        &["--max-repack-size", "1M", "--max-unused", "0"],
    ];
    for seed in [1u64, 2] {
        let env = Env::small();
        let mut rng = Rng::new(seed);
        let src = env.path("src");
        std::fs::create_dir_all(&src).unwrap();
        let mut live: Vec<(String, PathBuf)> = Vec::new();
        let mut state = 0u64;
        for round in 0..5 {
            for _ in 0..2 {
                make_state(&src, state + seed * 100);
                let s = env.backup(&[src.to_str().unwrap()]);
                let copy = env.path(&format!("states/{state}"));
                copy_tree(&src, &copy);
                live.push((snapshot_id(&s), copy));
                state += 1;
            }
            // Forget a random non-empty subset, never all.
            let mut gone = Vec::new();
            live.retain(|(id, _)| {
                if rng.next() % 2 == 0 {
                    gone.push(id.clone());
                    false
                } else {
                    true
                }
            });
            if live.is_empty() {
                live.push((
                    gone.pop().unwrap(),
                    env.path(&format!("states/{}", state - 1)),
                ));
            }
            if !gone.is_empty() {
                let mut a = vec!["forget"];
                a.extend(gone.iter().map(String::as_str));
                env.ok(&a);
            }
            let opts = options[(rng.next() % options.len() as u64) as usize];
            let mut a = vec!["prune"];
            a.extend_from_slice(opts);
            env.ok(&a);
            check_clean(
                &env,
                &["--read-data"],
                &format!("seed {seed} round {round} {opts:?}"),
            );
            for (i, (id, copy)) in live.iter().enumerate() {
                restore_matches(&env, id, copy, &src, &format!("r{seed}-{round}-{i}"));
            }
        }
        // Everything unused goes; what is left is about what the live snapshots need.
        env.ok(&["prune", "--instant-delete", "--max-unused", "0"]);
        check_clean(&env, &["--read-data"], "final");
        let kept = dir_size(&env.repo.join("data"));
        let fresh = Env::small();
        let fsrc = fresh.path("src");
        for (_, copy) in &live {
            let _ = std::fs::remove_dir_all(&fsrc);
            copy_tree(copy, &fsrc);
            fresh.backup(&[fsrc.to_str().unwrap()]);
        }
        let reference = dir_size(&fresh.repo.join("data"));
        assert!(
            kept <= reference + reference / 10,
            "seed {seed}: pruned repository holds {kept} bytes, a fresh one with the live states {reference}"
        );
    }
}
