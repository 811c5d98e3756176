//! Trees another key holder could write (sealed with the real keys through the library's own
//! encoder): a chain of 100 000 nested folders, a "billion laughs" of 2^20 paths over 21 tree
//! blobs, and a file of size 1 whose content repeats a 2 MiB blob 100 times. None may crash a
//! command or make its memory grow with the paths or the content list.

use crate::util::*;
use bytes::Bytes;
use cairn::Id;
use cairn::backend::Backend;
use cairn::format::VERSION;
use cairn::format::pack::BlobKind;
use cairn::format::tree::{Node, NodeKind, Tree};
use cairn::repo::Repository;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Write the trees `build` makes (bottom-up, returning the root) and a snapshot of them.
fn craft(env: &Env, build: impl FnOnce(&dyn Fn(Tree) -> Id) -> Id) {
    craft_blobs(env, |add| {
        build(&|t: Tree| add(BlobKind::Tree, t.encode().unwrap()))
    })
}

/// [`craft`] with blobs of any kind (`add(kind, bytes)`), so trees can name data blobs too.
fn craft_blobs(env: &Env, build: impl FnOnce(&dyn Fn(BlobKind, Vec<u8>) -> Id) -> Id) {
    craft_snapshot(env, "hostile", 1_700_000_000_000_000_000, |_, w| {
        build(&|kind: BlobKind, b: Vec<u8>| -> Id { w.add(kind, Bytes::from(b)).unwrap().0 })
    })
}

fn dir(name: &[u8], sub: Id) -> Node {
    let mut n = Node::new(name.to_vec(), NodeKind::Dir);
    n.subtree = Some(sub);
    n.mode = 0o40755;
    n
}

/// Run cairn with `args`; returns (exit code, stdout, stderr, peak RSS in KiB read from
/// /proc while it ran).
fn run_measured(env: &Env, args: &[&str]) -> (Option<i32>, Vec<u8>, String, u64) {
    let mut c = env.command();
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::copy(&mut out, &mut v).unwrap();
        v
    });
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut v = String::new();
        std::io::Read::read_to_string(&mut err, &mut v).unwrap();
        v
    });
    let start = Instant::now();
    let mut peak = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < TIMEOUT, "cairn {args:?} hangs");
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        reader.join().unwrap(),
        err_reader.join().unwrap(),
        peak,
    )
}

#[test]
fn a_chain_of_100k_nested_folders_is_refused_without_crashing() {
    let env = Env::new();
    craft(&env, |add| {
        let mut t = add(Tree {
            version: VERSION,
            nodes: vec![],
        });
        for _ in 0..100_000 {
            t = add(Tree {
                version: VERSION,
                nodes: vec![dir(b"d", t)],
            });
        }
        t
    });
    let o = env.cairn(&["ls", "latest"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nested deeper than"), "{err}");
    let target = env.path("target");
    let o = env.cairn(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nested deeper than"), "{err}");
    assert!(!err.contains("overflow"), "{err}");
}

#[test]
fn two_to_the_twenty_paths_over_21_trees_plan_in_flat_memory() {
    let env = Env::new();
    let k = 20;
    craft(&env, |add| {
        let mut f = Node::new(b"f".to_vec(), NodeKind::File);
        f.mode = 0o100644;
        let mut t = add(Tree {
            version: VERSION,
            nodes: vec![f],
        });
        for _ in 0..k {
            t = add(Tree {
                version: VERSION,
                nodes: vec![dir(b"a", t), dir(b"b", t)],
            });
        }
        t
    });
    let target = env.path("target");
    let (code, out, err, peak_kib) = run_measured(
        &env,
        &[
            "restore",
            "latest",
            "--dry-run",
            "--json",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let s = json_lines(&out)
        .into_iter()
        .find(|v| v["message_type"] == "summary")
        .expect("summary");
    assert_eq!(num(&s["summary"], "files"), 1 << k);
    // The old restore held one entry per path (~1.1 KB each: over 1 GB here).
    assert!(
        peak_kib < 200 << 10,
        "planning 2^{k} paths peaked at {} MiB",
        peak_kib >> 10
    );
}

/// A snapshot dated in the future (planted by another key holder, or a clock gone wrong) is
/// never taken as the parent of a backup: it would decide which files count as unchanged.
#[test]
fn a_future_dated_snapshot_is_never_a_parent() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"real content\n");
    env.backup(&[src.to_str().unwrap()]);
    let real = env.snapshots()[0]["id"].as_str().unwrap().to_string();
    {
        let backend = Backend::open(env.repo.to_str().unwrap(), false).unwrap();
        let repo = Repository::open(backend, env.password.as_bytes(), &env.cache).unwrap();
        let (_, mut snap) = repo.snapshots().unwrap().remove(0);
        snap.time_ns = 4_102_444_800_000_000_000; // 2100-01-01
        repo.save_snapshot(&snap).unwrap();
    }
    assert_eq!(env.snapshots().len(), 2);
    env.backup(&[src.to_str().unwrap()]);
    let snaps = env.snapshots();
    let newest_real = snaps
        .iter()
        .rfind(|s| s["id"] != real && !s["time"].as_str().unwrap_or("").starts_with("2100"))
        .expect("the new snapshot");
    assert_eq!(
        newest_real["parent"].as_str(),
        Some(real.as_str()),
        "{newest_real}"
    );
}

/// DM1: a file node of size 1 whose content repeats a 2 MiB blob 100 times (200 MiB listed).
/// `dump` writes it as its size says, one byte, without reading the blob (it ends more than
/// `CONTENT_SLACK` past the size; the tar path used to collect all 200 MiB in memory and then
/// cut it, zip streamed all of it), warns, and exits 3; a node whose content runs a little past
/// its size is cut to it, and good files are intact.
#[test]
fn dump_writes_a_file_as_its_size_says_whatever_its_content_lists() {
    let env = Env::new();
    craft_blobs(&env, |add| {
        let big = add(BlobKind::Data, random_bytes(11, 2 << 20));
        let abcdef = add(BlobKind::Data, b"abcdef".to_vec());
        let good = add(BlobKind::Data, b"good".to_vec());
        let file = |name: &[u8], content: Vec<Id>, size: u64| {
            let mut n = Node::new(name.to_vec(), NodeKind::File);
            n.mode = 0o100644;
            n.nlink = 1;
            n.content = content;
            n.size = size;
            n
        };
        add(
            BlobKind::Tree,
            Tree {
                version: VERSION,
                nodes: vec![
                    file(b"bomb", vec![big; 100], 1),
                    file(b"cut", vec![abcdef], 3),
                    file(b"ok", vec![good], 4),
                ],
            }
            .encode()
            .unwrap(),
        )
    });
    let want: [(&str, &[u8]); 3] = [("bomb", &[0]), ("cut", b"abc"), ("ok", b"good")];

    let o = env.cairn(&["dump", "latest", "/bomb"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert_eq!(o.stdout, [0]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "lists 209715200 bytes, implausibly more than its size of 1: only its first 0"
        ),
        "{err}"
    );
    let o = env.cairn(&["dump", "latest", "/cut"]);
    assert_eq!(
        (o.status.code(), o.stdout.as_slice()),
        (Some(3), &b"abc"[..])
    );
    let o = env.ok(&["dump", "latest", "/ok"]);
    assert_eq!(o.stdout, b"good");

    let o = env.cairn(&["dump", "--archive", "tar", "latest", "/"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr)
            .matches("warning:")
            .count(),
        2,
        "{}",
        describe(&o)
    );
    let mut got = Vec::new();
    for e in tar::Archive::new(o.stdout.as_slice()).entries().unwrap() {
        let mut e = e.unwrap();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut body).unwrap();
        got.push((
            String::from_utf8(e.path_bytes().into_owned()).unwrap(),
            body,
        ));
    }
    let want_owned: Vec<(String, Vec<u8>)> = want
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect();
    assert_eq!(got, want_owned);

    let o = env.cairn(&["dump", "--archive", "zip", "latest", "/"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(o.stdout.clone())).unwrap();
    let mut got = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut body).unwrap();
        got.push((f.name().to_string(), body));
    }
    assert_eq!(got, want_owned);
}
