//! `repair snapshots`: lost data packs and lost tree packs, through the binary.

use crate::util::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A source with several folders, files of 0.1 to 0.9 MiB and a few tiny ones.
fn make_source(src: &Path, seed: u64) {
    let dirs = ["a", "a/deep/er", "b", "c/d", "e"];
    for (i, d) in dirs.iter().enumerate() {
        for j in 0..3u64 {
            let n = (i as u64) * 10 + j;
            write_random(
                &src.join(d).join(format!("f{j}.bin")),
                seed * 1000 + n,
                (100 << 10) * (1 + (n % 9)),
            );
        }
        write(
            &src.join(d).join("small.txt"),
            format!("{d} {seed}\n").as_bytes(),
        );
    }
    write_random(&src.join("top.bin"), seed * 1000 + 999, 700 << 10);
    write_random(&src.join(ODD), seed * 1000 + 998, 600 << 10);
}

/// A file name with control characters: printed escaped (`\n`, `\e`).
const ODD: &str = "odd\nname\x1b.bin";

/// `cli::escape::bytes` for the names used here.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\x1b', "\\e")
}

/// Every pack in `data/` with the kinds of its blobs (`cat pack`).
fn packs(env: &Env) -> Vec<(String, PathBuf, BTreeSet<String>)> {
    objects(&env.repo.join("data"))
        .into_iter()
        .map(|p| {
            let id = p.file_name().unwrap().to_str().unwrap().to_string();
            let o = env.ok(&["cat", "pack", &id]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let kinds = v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["kind"].as_str().unwrap().to_string())
                .collect();
            (id, p, kinds)
        })
        .collect()
}

/// Files of the snapshots that use a blob of pack `id` (`find --pack`).
fn users_of_pack(env: &Env, id: &str) -> BTreeSet<String> {
    let o = env.ok(&["find", "--pack", id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("find --json: {e}\n{}", describe(&o)));
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect()
}

/// Every object in the repository but locks (a run may leave none, but takes one).
fn listing(env: &Env) -> Vec<PathBuf> {
    let mut v = objects(&env.repo);
    v.retain(|p| !p.starts_with(env.repo.join("locks")));
    v
}

fn check_code(env: &Env, args: &[&str]) -> i32 {
    let mut a = vec!["check"];
    a.extend_from_slice(args);
    let o = env.cairn(&a);
    o.status.code().unwrap_or(-1)
}

/// The damages of a `repair snapshots --json` run, per original snapshot id: (path, kind).
fn damages(v: &serde_json::Value) -> Vec<(String, Vec<(String, String)>)> {
    v["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let d = r["damages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["path"].as_str().unwrap().to_string(),
                        d["kind"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (r["id"].as_str().unwrap().to_string(), d)
        })
        .collect()
}

#[test]
fn a_lost_data_pack_costs_only_the_files_that_used_it() {
    let env = Env::small();
    let src = env.path("src");
    make_source(&src, 1);
    let copy = env.path("copy");
    copy_tree(&src, &copy);
    let sid = snapshot_id(&env.backup(&[src.to_str().unwrap()]));

    // A sound repository: nothing to repair, nothing written.
    let before = listing(&env);
    let o = env.ok(&["repair", "snapshots"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no snapshots were modified"),
        "{}",
        describe(&o)
    );
    assert_eq!(listing(&env), before);

    // Another snapshot, of other files: its packs are its own, so it needs no repair.
    let other = env.path("other");
    write_random(&other.join("x.bin"), 4242, 300 << 10);
    let other_id = snapshot_id(&env.backup(&[other.to_str().unwrap()]));
    let other_object = std::fs::read(env.repo.join("snapshots").join(&other_id)).unwrap();

    // Lose one data pack of the first snapshot: of those holding part of the oddly named
    // file, the one most files use.
    let odd_path = src.join(ODD).to_str().unwrap().to_string();
    let data: Vec<_> = packs(&env)
        .into_iter()
        .filter(|(_, _, k)| k.iter().all(|k| k == "Data"))
        .map(|(id, p, _)| {
            let users = users_of_pack(&env, &id);
            (users.len(), id, p, users)
        })
        .collect();
    assert!(data.len() >= 4, "too few data packs: {}", data.len());
    let (_, gone, gone_path, expected) = data
        .into_iter()
        .filter(|(_, _, _, users)| users.contains(&odd_path))
        .max()
        .unwrap();
    let expected: BTreeSet<String> = expected.iter().map(|p| esc(p)).collect();
    std::fs::remove_file(&gone_path).unwrap();
    assert_eq!(check_code(&env, &[]), 1, "check must see the lost pack");

    env.ok(&["repair", "index"]);
    assert_eq!(
        check_code(&env, &[]),
        1,
        "the snapshot still needs the lost blobs"
    );

    // A dry run names the damage and changes nothing.
    let before = listing(&env);
    let o = env.ok(&["repair", "snapshots", "--dry-run", "--forget"]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    for f in &expected {
        assert!(
            text.contains(&format!("file {f}: removed")),
            "{f} not named\n{}",
            describe(&o)
        );
    }
    assert!(
        !text.contains('\x1b'),
        "a raw control character reached the output"
    );
    assert!(text.contains("would modify 1 snapshots"), "{text}");
    assert_eq!(
        listing(&env),
        before,
        "a dry run wrote or deleted something"
    );

    let o = env.ok(&["repair", "snapshots", "--forget", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", describe(&o)));
    let d = damages(&v);
    assert_eq!(d.len(), 1, "{v}");
    assert_eq!(d[0].0, sid);
    assert_eq!(v["unchanged"], serde_json::json!([other_id]), "{v}");
    let named: BTreeSet<String> = d[0].1.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(named, expected, "damaged files named: {v}");
    assert!(d[0].1.iter().all(|(_, k)| k == "missing-content"), "{v}");
    let new_id = v["repaired"][0]["new"].as_str().unwrap().to_string();
    assert_eq!(v["repaired"][0]["removed"], true);

    // Sound again; the repaired snapshot replaces the original.
    assert_eq!(check_code(&env, &["--read-data"]), 0);
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 2);
    let other_after = std::fs::read(env.repo.join("snapshots").join(&other_id)).unwrap();
    assert_eq!(other_after, other_object, "a sound snapshot was rewritten");
    let snaps: Vec<_> = snaps
        .into_iter()
        .filter(|s| s["id"] != other_id.as_str())
        .collect();
    assert_eq!(snaps[0]["id"].as_str().unwrap(), new_id);
    assert!(
        snaps[0]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "repaired"),
        "{}",
        snaps[0]
    );

    // Every file that lost nothing restores bit for bit; the damaged ones are shorter, with
    // the size the repair reported.
    let t = env.path("restored");
    env.ok(&["restore", &new_id, "--target", t.to_str().unwrap()]);
    let root = restored(&t, &src);
    let sizes: std::collections::HashMap<String, u64> = v["repaired"][0]["damages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["new_size"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut intact = 0;
    for p in walk(&copy) {
        let rel = p.strip_prefix(&copy).unwrap();
        let snap_path = esc(src.join(rel).to_str().unwrap());
        let r = root.join(rel);
        if let Some(size) = sizes.get(&snap_path) {
            let got = std::fs::metadata(&r).unwrap().len();
            assert_eq!(got, *size, "{snap_path}");
            assert!(got < std::fs::metadata(&p).unwrap().len(), "{snap_path}");
        } else if p.is_file() {
            assert!(same_content(&p, &r), "{snap_path} differs");
            intact += 1;
        }
    }
    assert!(intact > 5, "only {intact} intact files");

    // Nothing left to repair.
    let o = env.ok(&["repair", "snapshots"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no snapshots were modified"),
        "{}",
        describe(&o)
    );
    let _ = gone;
}

#[test]
fn a_lost_tree_pack_empties_the_folders_it_held() {
    let env = Env::small();
    let src = env.path("src");
    make_source(&src, 2);
    let s1 = snapshot_id(&env.backup(&[src.to_str().unwrap()]));
    let first_tree_packs: Vec<_> = packs(&env)
        .into_iter()
        .filter(|(_, _, k)| k.iter().all(|k| k == "Tree"))
        .collect();
    assert_eq!(first_tree_packs.len(), 1, "one small tree pack expected");

    // Change only folder b: the second snapshot reuses the trees of a, c and e.
    write(&src.join("b/small.txt"), b"changed\n");
    let copy = env.path("copy");
    copy_tree(&src, &copy);
    let s2 = snapshot_id(&env.backup(&[src.to_str().unwrap()]));
    std::fs::remove_file(&first_tree_packs[0].1).unwrap();
    env.ok(&["repair", "index"]);
    assert_eq!(check_code(&env, &[]), 1);

    // Without --forget: the originals stay, even one whose root is lost (reported, exit 3).
    let o = env.cairn(&["repair", "snapshots", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = damages(&v);
    assert_eq!(d.len(), 2, "{v}");
    let first = v["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == s1.as_str())
        .unwrap();
    assert!(first["root_unreadable"].is_string(), "{first}");
    assert_eq!(first["removed"], false);
    let second = d.iter().find(|(id, _)| *id == s2).unwrap();
    let emptied: BTreeSet<String> = second.1.iter().map(|(p, _)| p.clone()).collect();
    let want: BTreeSet<String> = ["a", "c", "e"]
        .iter()
        .map(|n| src.join(n).to_str().unwrap().to_string())
        .collect();
    assert_eq!(emptied, want, "{v}");
    assert!(second.1.iter().all(|(_, k)| k == "unreadable-dir"), "{v}");
    let new_id = v["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == s2.as_str())
        .unwrap()["new"]
        .as_str()
        .unwrap()
        .to_string();

    // The damaged originals are still there: check still fails until they are forgotten.
    assert!(env.repo.join("snapshots").join(&s1).exists());
    assert!(env.repo.join("snapshots").join(&s2).exists());
    assert_eq!(check_code(&env, &[]), 1);
    env.ok(&["forget", &s1, &s2]);
    assert_eq!(check_code(&env, &["--read-data"]), 0);

    // b and the top-level file are whole; a, c and e are empty folders.
    let t = env.path("restored");
    env.ok(&["restore", &new_id, "--target", t.to_str().unwrap()]);
    let root = restored(&t, &src);
    assert_same_tree(&copy.join("b"), &root.join("b"), false);
    assert!(same_content(&copy.join("top.bin"), &root.join("top.bin")));
    for n in ["a", "c", "e"] {
        let entries: Vec<_> = std::fs::read_dir(root.join(n)).unwrap().collect();
        assert!(entries.is_empty(), "{n} is not empty");
    }
}
