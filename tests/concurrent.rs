//! Several processes on one repository at once: backups while a prune runs, and backups killed
//! half way.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Source `k` in round `r`: files shared by every source (the same content in each), files
/// shared with the next source, and its own; some change per round, and in round 2 source 0
/// holds round 0's version of its own file again (whose blobs only forgotten snapshots use).
fn make_source(src: &Path, k: u64, round: u64) {
    for j in 0..3u64 {
        write_random(&src.join(format!("common/c{j}.bin")), 7000 + j, 300 << 10);
    }
    write_random(
        &src.join("pair/p.bin"),
        8000 + (k / 2) * 10 + round,
        400 << 10,
    );
    let own_round = if k == 0 && round == 2 { 0 } else { round };
    write_random(
        &src.join(format!("own/o{k}.bin")),
        9000 + k * 100 + own_round,
        (32 << 20) + k * 4096,
    );
    write(
        &src.join("own/note.txt"),
        format!("source {k} round {round}\n").as_bytes(),
    );
}

/// A `cairn` child with the environment's settings, output captured.
fn spawn(env: &Env, args: &[&str], cache: Option<&Path>) -> std::process::Child {
    let mut c = env.command();
    if let Some(d) = cache {
        c.env("CAIRN_CACHE_DIR", d);
    }
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().expect("spawn cairn")
}

/// The message of the prune race described at [`prune_during_backups_never_fails_spuriously`].
const INDEX_RACE: &str = "cannot be read; nothing was changed";

/// Four backups of partly overlapping sources at once, and a prune (default grace period, after
/// a `forget`) among them; then phase two of the prune. Nothing may be lost, and the prune
/// must succeed the first time (the index-listing race, [`INDEX_RACE`], is fixed). Each backup has its own cache (as backups from different hosts do; see
/// [`backups_sharing_one_cache_all_succeed`] for one host).
#[test]
fn backups_running_during_a_prune_lose_nothing() {
    backups_during_a_prune(false, false);
}

/// The same with `cairn unlock --remove-all` in the middle of the prune (held 20 s in its
/// first old-index delete through the store's fault hook, its lock refreshed every 200 ms) and
/// a second prune run to the end meanwhile: the first stops with "the repository lock was
/// lost" and never writes its lock again (review LK1), and nothing kept is lost.
#[test]
fn backups_during_a_prune_whose_lock_is_removed_lose_nothing() {
    backups_during_a_prune(false, true);
}

/// A prune among the backups whose lock `cairn unlock --remove-all` removes once it has
/// planned, and a second prune (its own cache) that runs meanwhile; see
/// [`backups_during_a_prune_whose_lock_is_removed_lose_nothing`].
fn prune_whose_lock_is_removed(env: &Env) {
    use std::io::BufRead;
    let mut c = env.command();
    c.args(["prune", "--max-unused", "0"])
        .env("CAIRN_TEST_FAULTS", "delete:index:slow=20000:1")
        .env("CAIRN_TEST_LOCK_REFRESH_MS", "200")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut first = c.spawn().expect("spawn cairn");
    let stdout = first.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The plan's last line: execution starts next.
    loop {
        match rx.recv_timeout(TIMEOUT) {
            Ok(l) if l.starts_with("unused space left after the prune") => break,
            Ok(_) => {}
            Err(_) => {
                let o = wait_output(&mut first, TIMEOUT, "first prune");
                panic!("the first prune printed no plan\n{}", describe(&o));
            }
        }
    }
    let o = env.ok(&["unlock", "--remove-all"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("removed lock"),
        "{}",
        describe(&o)
    );
    let second_cache = env.path("cache-second-prune");
    let mut second = spawn(env, &["prune", "--max-unused", "0"], Some(&second_cache));
    let so = wait_output(&mut second, TIMEOUT, "second prune");
    assert_eq!(so.status.code(), Some(0), "second prune\n{}", describe(&so));
    let fo = wait_output(&mut first, TIMEOUT, "first prune");
    let _ = reader.join();
    let line = assert_fails_one_line(&fo, 11, "the prune whose lock was removed");
    assert!(line.contains("lock was lost"), "{line}");
    assert!(objects(&env.repo.join("locks")).is_empty());
}

/// A prune planned while backups write index files must not take a file written after its
/// merge for an unreadable one (it used to list `index/` a second time and refuse with "index
/// file X cannot be read"): `plan` now works from what the merge listed and could not read.
/// `prune --dry-run` (the same planning, without the lock) runs in a loop while two backups run.
#[test]
fn prune_during_backups_never_fails_spuriously() {
    let env = Env::small();
    let srcs: Vec<PathBuf> = (0..2).map(|k| env.path(&format!("s{k}"))).collect();
    for (k, s) in srcs.iter().enumerate() {
        make_source(s, k as u64, 0);
        write_random(&s.join("big.bin"), k as u64, 64 << 20);
    }
    let mut children: Vec<_> = srcs
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let cache = env.path(&format!("cache-{k}"));
            spawn(
                &env,
                &["backup", "--json", "--threads", "1", s.to_str().unwrap()],
                Some(&cache),
            )
        })
        .collect();
    // Plans (a dry run plans as a prune does, without the lock) while the backups write index
    // files every 8 packs.
    let mut runs = 0;
    while children
        .iter_mut()
        .any(|c| matches!(c.try_wait(), Ok(None)))
        && runs < 200
    {
        let o = env.cairn(&["prune", "--dry-run"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "prune run {runs}\n{}",
            describe(&o)
        );
        runs += 1;
    }
    for c in children.iter_mut() {
        let o = wait_output(c, TIMEOUT, "backup");
        assert_eq!(o.status.code(), Some(0), "backup\n{}", describe(&o));
    }
}

/// Processes that open the same cache folder at once fall back to a private temporary cache
/// when RocksDB's `LOCK` is busy, and also survive RocksDB's rotation of its info log (`LOG` →
/// `LOG.old.<time>`, old ones deleted) while another opens: that race ("IO error: … while
/// unlink() file: …/LOG.old.<n>") used to fail the backup; it is now retried
/// (`cache::is_log_race`). Eight backups of one host start together, ten rounds.
#[test]
fn backups_sharing_one_cache_all_succeed() {
    let env = Env::small();
    let srcs: Vec<PathBuf> = (0..8).map(|k| env.path(&format!("s{k}"))).collect();
    for (k, s) in srcs.iter().enumerate() {
        make_source(s, k as u64, 0);
    }
    for round in 0..10 {
        let mut children: Vec<_> = srcs
            .iter()
            .map(|s| spawn(&env, &["backup", "--json", s.to_str().unwrap()], None))
            .collect();
        for (k, c) in children.iter_mut().enumerate() {
            let o = wait_output(c, TIMEOUT, "backup");
            assert_eq!(
                o.status.code(),
                Some(0),
                "round {round}, backup {k}\n{}",
                describe(&o)
            );
        }
    }
    check_clean(&env, &[], "after the backups");
}

fn backups_during_a_prune(retry_on_race: bool, remove_lock: bool) {
    let env = Env::small();
    let srcs: Vec<PathBuf> = (0..4).map(|k| env.path(&format!("s{k}"))).collect();
    // (snapshot, copy of its source, source)
    let mut kept: Vec<(String, PathBuf, PathBuf)> = Vec::new();
    let mut forget = Vec::new();
    for (k, s) in srcs.iter().enumerate() {
        make_source(s, k as u64, 0);
        let copy = env.path(&format!("copies/r0-{k}"));
        copy_tree(s, &copy);
        let id = snapshot_id(&env.backup(&[s.to_str().unwrap()]));
        if k < 2 {
            forget.push(id);
        } else {
            kept.push((id, copy, s.clone()));
        }
    }
    for (k, s) in srcs.iter().enumerate().take(2) {
        make_source(s, k as u64, 1);
        let copy = env.path(&format!("copies/r1-{k}"));
        copy_tree(s, &copy);
        let id = snapshot_id(&env.backup(&[s.to_str().unwrap()]));
        kept.push((id, copy, s.clone()));
    }
    let mut a = vec!["forget"];
    a.extend(forget.iter().map(|s| s.as_str()));
    env.ok(&a);

    // Round 2: four backups at once, and a prune (default grace period) among them.
    let mut copies = Vec::new();
    for (k, s) in srcs.iter().enumerate() {
        make_source(s, k as u64, 2);
        let copy = env.path(&format!("copies/r2-{k}"));
        copy_tree(s, &copy);
        copies.push(copy);
    }
    let mut children: Vec<_> = srcs
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let cache = env.path(&format!("cache-{k}"));
            let cache = Some(cache.as_path());
            // One thread each: the backups outlast the prune.
            spawn(
                &env,
                &["backup", "--json", "--threads", "1", s.to_str().unwrap()],
                cache,
            )
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let t0 = std::time::Instant::now();
    if remove_lock {
        prune_whose_lock_is_removed(&env);
    }
    for attempt in (0..).take_while(|_| !remove_lock) {
        let mut prune = spawn(&env, &["prune", "--max-unused", "0"], None);
        let po = wait_output(&mut prune, TIMEOUT, "prune");
        let raced =
            po.status.code() == Some(1) && String::from_utf8_lossy(&po.stderr).contains(INDEX_RACE);
        if raced && retry_on_race && attempt < 50 {
            continue;
        }
        assert_eq!(po.status.code(), Some(0), "prune\n{}", describe(&po));
        break;
    }
    // A prune on a host whose clock is 25 h ahead, while the backups may still run (review
    // PR1): the packs just marked, and the packs the backups uploaded but not yet indexed,
    // are recent by the store's clock, and the clocks disagree: nothing is deleted.
    let mut skewed = env.command_skewed("+25h");
    skewed
        .args(["prune", "--json", "--max-unused", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let so = wait_output(
        &mut skewed.spawn().expect("spawn cairn"),
        TIMEOUT,
        "skewed prune",
    );
    assert_eq!(so.status.code(), Some(0), "skewed prune\n{}", describe(&so));
    let v: serde_json::Value = serde_json::from_slice(&so.stdout).unwrap();
    assert_eq!(
        v["outcome"]["packs_deleted"],
        0,
        "skewed prune\n{}",
        describe(&so)
    );
    let mut running = 0;
    for c in children.iter_mut() {
        if matches!(c.try_wait(), Ok(None)) {
            running += 1;
        }
    }
    eprintln!(
        "backups still running when the prune ended ({:?}): {running}",
        t0.elapsed()
    );
    for (k, c) in children.iter_mut().enumerate() {
        let o = wait_output(c, TIMEOUT, "backup");
        assert_eq!(o.status.code(), Some(0), "backup {k}\n{}", describe(&o));
        kept.push((
            snapshot_id(&summary(&o)),
            copies[k].clone(),
            srcs[k].clone(),
        ));
    }

    // Phase two of the prune, now that nothing runs.
    env.ok(&["prune", "--delete-after", "0s"]);
    check_clean(&env, &["--read-data"], "after the prunes");
    assert_eq!(env.snapshots().len(), kept.len());
    for (i, (id, copy, src)) in kept.iter().enumerate() {
        restore_matches(&env, id, copy, src, &format!("r{i}"));
    }
}

/// Packs `check` notes as in no index file yet (recent leftovers of an interrupted backup).
fn unindexed_notes(env: &Env) -> Vec<String> {
    let o = env.cairn(&["check", "--json"]);
    assert_eq!(o.status.code(), Some(0), "check\n{}", describe(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| {
            let n = n.as_str()?;
            let hex = n.strip_prefix("pack ")?.split(' ').next()?;
            (hex.len() == 64).then(|| hex.to_string())
        })
        .collect()
}

#[test]
fn a_killed_backup_leaves_a_sound_repository() {
    let env = Env::small();
    let src = env.path("src");
    let mut kept: Vec<(String, PathBuf)> = Vec::new();
    make_source(&src, 0, 0);
    let copy = env.path("copies/base");
    copy_tree(&src, &copy);
    kept.push((snapshot_id(&env.backup(&[src.to_str().unwrap()])), copy));
    let mut killed = 0;
    for (i, n) in [1u32, 3, 7, 15].into_iter().enumerate() {
        let round = 10 + i as u64;
        make_source(&src, 1, round);
        // Enough new data for about 20 packs: every kill point falls inside the backup.
        write_random(&src.join("big.bin"), round, 20 << 20);
        let o = env.cairn_with(&["backup", "-q", src.to_str().unwrap()], |c| {
            c.env("CAIRN_TEST_KILL_AFTER_WRITES", n.to_string());
        });
        if o.status.code().is_none() {
            killed += 1;
        } else {
            assert_eq!(o.status.code(), Some(0), "backup at {n}\n{}", describe(&o));
        }
        // Sound: unindexed packs of the killed backup are recent, so only noted.
        unindexed_notes(&env);
        // The next backup completes and restores.
        let copy = env.path(&format!("copies/{n}"));
        copy_tree(&src, &copy);
        kept.push((snapshot_id(&env.backup(&[src.to_str().unwrap()])), copy));
        let (id, c) = kept.last().unwrap();
        restore_matches(&env, id, c, &src, &format!("after-{n}"));
    }
    assert!(killed >= 3, "only {killed} backups were killed");

    // Age the leftovers past prune's minimum age for unindexed packs; prune deletes them
    // and everything still restores.
    let leftovers = unindexed_notes(&env);
    let old = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 2 * 3600;
    for hex in &leftovers {
        let p = env.repo.join("data").join(&hex[..2]).join(hex);
        set_mtime(&p, old, 0);
    }
    let o = env.ok(&["prune", "--delete-after", "0s", "--max-unused", "0"]);
    for hex in &leftovers {
        let p = env.repo.join("data").join(&hex[..2]).join(hex);
        assert!(!p.exists(), "leftover {hex} kept\n{}", describe(&o));
    }
    check_clean(&env, &["--read-data"], "after the prune");
    assert!(unindexed_notes(&env).is_empty());
    for (i, (id, copy)) in kept.iter().enumerate() {
        restore_matches(&env, id, copy, &src, &format!("final-{i}"));
    }
}
