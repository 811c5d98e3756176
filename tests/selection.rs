//! Choosing snapshots: a snapshot dated in the future (a host whose clock runs a year ahead,
//! through libfaketime) is never `latest`, never a parent and never counted by `forget
//! --keep-*`, and `snapshots` flags it; resolving an id reads only that snapshot, so damage to
//! another one does not concern it.

use crate::util::*;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// Run cairn through `faketime -f OFFSET` (a host whose clock is off by OFFSET).
fn faketime<S: AsRef<OsStr>>(env: &Env, offset: &str, args: &[S]) -> Output {
    let base = env.command();
    let mut c = Command::new("faketime");
    c.arg("-f")
        .arg(offset)
        .arg(base.get_program())
        .args(base.get_args())
        .args(args);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = base.get_current_dir() {
        c.current_dir(d);
    }
    run(c, None)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn dump(env: &Env, spec: &str, file: &Path) -> Vec<u8> {
    env.ok(&[OsStr::new("dump"), OsStr::new(spec), file.as_os_str()])
        .stdout
}

/// The review's FG1 reproduction: v1 backed up by a host a year ahead, then v2 and v3 by a
/// correct one. `forget --keep-last 1` keeps v3 (and the future one, with a warning), and
/// `latest` is v3 throughout.
#[test]
fn a_future_snapshot_is_not_latest_not_a_parent_and_not_counted() {
    let env = Env::new();
    let d = env.path("d");
    let f = d.join("f");
    write(&f, b"v1\n");
    let o = faketime(&env, "+365d", &["backup", "--json", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let future = snapshot_id(&summary(&o));
    write(&f, b"v2\n");
    let v2 = snapshot_id(&env.backup(&[d.to_str().unwrap()]));
    write(&f, b"v3\n");
    let v3 = snapshot_id(&env.backup(&[d.to_str().unwrap()]));

    // Parents: the year-ahead snapshot is never one.
    let snaps = env.snapshots();
    let by_id = |id: &str| {
        snaps
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {snaps:?}"))
            .clone()
    };
    assert!(by_id(&v2)["parent"].is_null(), "{snaps:?}");
    assert_eq!(by_id(&v3)["parent"], v2.as_str(), "{snaps:?}");
    // `snapshots` flags it: a JSON field and a marker after the time in the table.
    assert_eq!(by_id(&future)["dated_in_future"], true);
    assert_eq!(by_id(&v2)["dated_in_future"], false);
    let text = String::from_utf8_lossy(&env.ok(&["snapshots"]).stdout).into_owned();
    let marked: Vec<&str> = text
        .lines()
        .filter(|l| l.len() > 29 && &l[29..30] == "!")
        .collect();
    assert_eq!(marked.len(), 1, "{text}");
    assert!(marked[0].starts_with(&future[..8]), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("! 1 dated more than 5 min")),
        "{text}"
    );
    assert_eq!(dump(&env, "latest", &f), b"v3\n", "latest before forget");

    // forget --keep-last 1: the newest real snapshot and the future one stay.
    let o = env.ok(&["forget", "--keep-last", "1", "--dry-run", "--json"]);
    let groups: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let reasons = groups[0]["reasons"].as_array().unwrap();
    let why = |id: &str| {
        reasons
            .iter()
            .find(|r| r["snapshot"]["id"] == id)
            .map(|r| r["matches"].clone())
    };
    assert_eq!(
        why(&future),
        Some(serde_json::json!(["dated in the future (not counted)"]))
    );
    assert_eq!(why(&v3), Some(serde_json::json!(["last snapshot"])));
    assert_eq!(why(&v2), None);
    let o = env.ok(&["forget", "--keep-last", "1"]);
    let err = stderr(&o);
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains(&future[..8])),
        "forget warns about the future snapshot\n{}",
        describe(&o)
    );
    let left: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&v3) && left.contains(&future), "{left:?}");
    assert_eq!(dump(&env, "latest", &f), b"v3\n", "latest after forget");
    // It is still there to be looked at, by id.
    assert_eq!(dump(&env, &future[..8], &f), b"v1\n");

    // A next backup takes the newest real snapshot as its parent, not the future one.
    write(&f, b"v4\n");
    let v4 = snapshot_id(&env.backup(&[d.to_str().unwrap()]));
    let s4 = env
        .snapshots()
        .into_iter()
        .find(|s| s["id"] == v4.as_str())
        .unwrap();
    assert_eq!(s4["parent"], v3.as_str());
}

/// `latest` with only future snapshots: refused, saying why.
#[test]
fn latest_passes_over_future_snapshots_and_says_so() {
    let env = Env::new();
    let d = env.path("d");
    write(&d.join("f"), b"x\n");
    let o = faketime(&env, "+2d", &["backup", "-q", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let o = env.cairn(&["ls", "latest"]);
    assert_ne!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        stderr(&o).contains("1 dated in the future were passed over"),
        "{}",
        describe(&o)
    );
}

fn flip(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x20;
    chmod(p, 0o600);
    std::fs::write(p, &b).unwrap();
}

/// A restore of a good snapshot by id (full or prefix) reads no other snapshot: exit 0 and no
/// warning, although another snapshot is corrupt. `latest` must read them all (it needs their
/// times) and warns, exit 3: the damaged one may have been the newest.
#[test]
fn an_id_resolves_without_reading_other_snapshots() {
    let env = Env::new();
    let d = env.path("d");
    write(&d.join("f"), b"good\n");
    let good = snapshot_id(&env.backup(&[d.to_str().unwrap()]));
    write(&d.join("f"), b"other\n");
    let bad = snapshot_id(&env.backup(&[d.to_str().unwrap()]));
    flip(&env.repo.join("snapshots").join(&bad));
    for spec in [&good[..], &good[..8], &good[..5]] {
        // A fresh cache each time: the damaged object would be decoded if it were touched.
        std::fs::remove_dir_all(&env.cache).unwrap();
        let target = env.path(&format!("t-{}", spec.len()));
        let o = env.cairn(&["restore", spec, "--target", target.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "restore {spec}\n{}", describe(&o));
        assert!(
            !stderr(&o).contains("warning"),
            "restore {spec}\n{}",
            describe(&o)
        );
        assert_eq!(
            std::fs::read(restored(&target, &d).join("f")).unwrap(),
            b"good\n"
        );
    }
    // The damaged one by id: an error naming it.
    let o = env.cairn(&["ls", &bad[..8]]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(stderr(&o).contains(&bad[..8]), "{}", describe(&o));
    // latest: warns about the damaged one and falls back.
    std::fs::remove_dir_all(&env.cache).unwrap();
    let target = env.path("t-latest");
    let o = env.cairn(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert!(stderr(&o).contains(&bad[..8]), "{}", describe(&o));
}
