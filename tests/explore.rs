//! `stats`, `diff`, `find` and `tag` on real repositories made by the binary, in text and JSON,
//! compared with restic 0.14 (`/usr/bin/restic`) on the same folders where it is installed;
//! and `latest` with host/path filters in every command that takes a snapshot.

use crate::util::*;
use cairn::Id;
use cairn::format::VERSION;
use cairn::format::pack::BlobKind;
use cairn::format::tree::{Node, NodeKind, Tree};
use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A folder with odd names, a hard link pair, a symlink, an empty folder, and the same 200 KB
/// twice (so the data deduplicates).
fn fixture(src: &Path) {
    write(&src.join("a.txt"), b"alpha\n");
    write(&src.join("Report.TXT"), b"report\n");
    write(&src.join("with space.txt"), b"space\n");
    write(&src.join("line\nbreak.txt"), b"newline\n");
    write(
        &src.join(OsStr::from_bytes(b"caf\xe9.bin")),
        b"latin-1 name\n",
    );
    write(&src.join("docs/notes.txt"), b"notes\n");
    write(&src.join("docs/deep/notes.txt"), b"deep notes\n");
    write_random(&src.join("data/one.bin"), 7, 200_000);
    write_random(&src.join("data/two.bin"), 7, 200_000);
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::hard_link(src.join("a.txt"), src.join("docs/hard-a")).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
}

/// Entries and bytes a restore of `src` makes (hard links' bytes once), counting the folders
/// above it as a snapshot records them.
fn restore_figures(src: &Path) -> (u64, u64) {
    let mut inodes = HashSet::new();
    let mut size = 0;
    let all = walk(src);
    for p in &all {
        let m = std::fs::symlink_metadata(p).unwrap();
        if m.is_file() && inodes.insert((m.dev(), m.ino())) {
            size += m.len();
        }
    }
    // `/a/b/src` is recorded as the folders a, b and src below the root.
    (all.len() as u64 + path_depth(src) - 1, size)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not one JSON value ({e})\n{}", describe(o)))
}

fn ids(env: &Env) -> Vec<String> {
    env.snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// restic on a repository next to cairn's, or `None` when restic is not installed.
struct Restic {
    repo: PathBuf,
    cache: PathBuf,
}

impl Restic {
    fn new(env: &Env) -> Option<Restic> {
        if !Path::new("/usr/bin/restic").exists() {
            eprintln!("restic is not installed: comparison skipped");
            return None;
        }
        let r = Restic {
            repo: env.path("restic-repo"),
            cache: env.path("restic-cache"),
        };
        r.ok(&["init"]);
        Some(r)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let mut c = Command::new("/usr/bin/restic");
        c.args(args);
        // restic's -q also silences diff's change lines.
        if matches!(args.first(), Some(&"init" | &"backup")) {
            c.arg("-q");
        }
        c.env("RESTIC_REPOSITORY", &self.repo)
            .env("RESTIC_PASSWORD", "pw")
            .env("RESTIC_CACHE_DIR", &self.cache);
        let o = run(c, None);
        assert!(o.status.success(), "restic {args:?}\n{}", describe(&o));
        o
    }

    fn snapshot_ids(&self) -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_slice(&self.ok(&["snapshots", "--json"]).stdout)
                .expect("restic snapshots --json");
        let mut s: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["time"].as_str().unwrap().to_string(),
                    s["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        s.sort();
        s.into_iter().map(|(_, id)| id).collect()
    }
}

/// The change lines of a text `diff` (`M    /path`), as (modifier, path).
fn change_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| {
            l.len() > 5 && l.starts_with(['+', '-', 'M', 'T', 'U']) && l[5..].starts_with('/')
        })
        .map(|l| (l[..5].trim().to_string(), l[5..].to_string()))
        .collect()
}

#[test]
fn stats_counts_what_a_restore_writes_and_raw_data_shrinks_with_duplicates() {
    let env = Env::new();
    let src = env.path("src");
    fixture(&src);
    let arg = src.to_str().unwrap();
    env.backup(&[arg]);
    let (entries, bytes) = restore_figures(&src);

    let v = json(&env.ok(&["stats", "--json"]));
    assert_eq!(num(&v, "snapshots_count"), 1, "{v}");
    assert_eq!(num(&v, "total_file_count"), entries, "{v}");
    assert_eq!(num(&v, "total_size"), bytes, "hard link counted once: {v}");
    let text = stdout(&env.ok(&["stats"]));
    assert!(text.contains("Stats in restore-size mode:"), "{text}");
    assert!(
        text.contains(&format!("Total File Count:   {entries}")),
        "{text}"
    );

    let raw = json(&env.ok(&["stats", "--mode", "raw-data", "--json"]));
    let data = num(&raw, "data_uncompressed_size");
    assert!(
        data + 150_000 < bytes,
        "the second copy of 200 KB is stored once: {raw}"
    );
    assert!(
        num(&raw, "total_uncompressed_size") > data,
        "trees count too: {raw}"
    );
    assert_eq!(
        num(&raw, "total_blob_count"),
        num(&raw, "data_blob_count") + num(&raw, "tree_blob_count")
    );
    assert!(num(&raw, "total_size") > 0);
    assert!(raw["dedup_ratio"].as_f64().unwrap() > 1.5, "{raw}");
    assert_eq!(num(&raw, "restore_size"), bytes);
    let text = stdout(&env.ok(&["stats", "--mode", "raw-data"]));
    assert!(text.contains("Compression Ratio:"), "{text}");

    // A second snapshot of the same data doubles the restore size, not the unique blobs.
    env.backup(&[arg]);
    let v2 = json(&env.ok(&["stats", "--json"]));
    assert_eq!(num(&v2, "snapshots_count"), 2);
    assert_eq!(num(&v2, "total_file_count"), 2 * entries);
    assert_eq!(num(&v2, "total_size"), 2 * bytes);
    let raw2 = json(&env.ok(&["stats", "--mode", "raw-data", "--json"]));
    // (Only the trees of the folders above src may differ: the test's folder changed.)
    assert_eq!(num(&raw2, "data_blob_count"), num(&raw, "data_blob_count"));
    assert_eq!(
        num(&raw2, "data_uncompressed_size"),
        num(&raw, "data_uncompressed_size")
    );
    assert!(num(&raw2, "tree_blob_count") <= num(&raw, "tree_blob_count") + path_depth(&src));
    // One snapshot by id, and latest.
    let first = &ids(&env)[0];
    let one = json(&env.ok(&["stats", "--json", &first[..10]]));
    assert_eq!(num(&one, "total_size"), bytes);
    let latest = json(&env.ok(&["stats", "--json", "latest"]));
    assert_eq!(num(&latest, "snapshots_count"), 1);

    // restic counts the same entries and bytes for the same folder.
    if let Some(r) = Restic::new(&env) {
        r.ok(&["backup", arg]);
        let rv: serde_json::Value =
            serde_json::from_slice(&r.ok(&["stats", "--json"]).stdout).unwrap();
        assert_eq!(num(&rv, "total_size"), bytes, "restic: {rv}");
        assert_eq!(num(&rv, "total_file_count"), entries, "restic: {rv}");
    }
}

#[test]
fn diff_lists_adds_removes_changes_type_and_metadata_like_restic() {
    let env = Env::new();
    let src = env.path("src");
    fixture(&src);
    write_random(&src.join("unchanged/big.bin"), 9, 300_000);
    let arg = src.to_str().unwrap();
    let restic = Restic::new(&env);
    env.backup(&[arg]);
    if let Some(r) = &restic {
        r.ok(&["backup", arg]);
    }
    // Changes: content, removal (a file and a folder), addition (a folder with a file), a
    // symlink turned into a file, a mode change, and a copy of unchanged data.
    write(&src.join("with space.txt"), b"space, changed\n");
    std::fs::remove_file(src.join("Report.TXT")).unwrap();
    std::fs::remove_dir_all(src.join("docs/deep")).unwrap();
    write(&src.join("new dir/f"), b"new\n");
    std::fs::remove_file(src.join("link")).unwrap();
    write(&src.join("link"), b"now a file\n");
    chmod(&src.join("data/one.bin"), 0o600);
    std::fs::copy(src.join("unchanged/big.bin"), src.join("copy.bin")).unwrap();
    env.backup(&[arg]);
    if let Some(r) = &restic {
        r.ok(&["backup", arg]);
    }
    let s = ids(&env);
    let o = env.ok(&["diff", &s[0], &s[1]]);
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!(
            "comparing snapshot {} to {}:",
            &s[0][..8],
            &s[1][..8]
        )),
        "{text}"
    );
    let p = |rel: &str| format!("{arg}/{rel}");
    let got: BTreeSet<(String, String)> = change_lines(&text).into_iter().collect();
    let want: BTreeSet<(String, String)> = [
        ("M", p("with space.txt")),
        ("-", p("Report.TXT")),
        ("-", p("docs/deep/")),
        ("-", p("docs/deep/notes.txt")),
        ("+", p("new dir/")),
        ("+", p("new dir/f")),
        ("T", p("link")),
        ("+", p("copy.bin")),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_string(), p))
    .collect();
    assert_eq!(got, want, "{text}");
    assert!(
        !text.contains("unchanged"),
        "unchanged folder listed: {text}"
    );
    assert!(
        text.contains("Files:           2 new,     2 removed,     1 changed"),
        "{text}"
    );
    assert!(
        text.contains("Dirs:            1 new,     1 removed"),
        "{text}"
    );
    // copy.bin's data was already stored: only the small new files' blobs are added.
    let o = env.ok(&["diff", "--json", &s[0], &s[1]]);
    let lines = json_lines(&o.stdout);
    let stats = lines.last().unwrap();
    assert_eq!(stats["message_type"], "statistics", "{stats}");
    assert_eq!(stats["source_snapshot"], s[0].as_str());
    assert_eq!(num(stats, "changed_files"), 1);
    assert_eq!(num(&stats["added"], "files"), 2, "{stats}");
    assert_eq!(num(&stats["removed"], "dirs"), 1, "{stats}");
    assert_eq!(
        num(&stats["added"], "data_blobs"),
        3,
        "changed, new and link: {stats}"
    );
    assert!(num(&stats["added"], "bytes") < 10_000, "{stats}");
    assert_eq!(num(&stats["removed"], "data_blobs"), 3, "{stats}");
    let json_changes: BTreeSet<(String, String)> = lines
        .iter()
        .filter(|v| v["message_type"] == "change")
        .map(|v| {
            (
                v["modifier"].as_str().unwrap().to_string(),
                v["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(json_changes, want);

    // --metadata adds U for the mode change (and for folders whose times changed).
    let meta = stdout(&env.ok(&["diff", "--metadata", &s[0], &s[1]]));
    let meta_lines = change_lines(&meta);
    assert!(
        meta_lines.contains(&("U".to_string(), p("data/one.bin"))),
        "{meta}"
    );
    assert!(!change_lines(&text).iter().any(|(m, _)| m == "U"));
    // latest works with filters; a snapshot against itself has no changes.
    let same = stdout(&env.ok(&["diff", "latest", &s[1][..12]]));
    assert!(change_lines(&same).is_empty(), "{same}");

    // restic sees the same changes, in the same order, with the same counts.
    if let Some(r) = &restic {
        let rs = r.snapshot_ids();
        let rtext = stdout(&r.ok(&["diff", &rs[0], &rs[1]]));
        assert_eq!(
            change_lines(&text),
            change_lines(&rtext),
            "restic:\n{rtext}"
        );
        for l in ["Files:", "Dirs:", "Others:", "Data Blobs:"] {
            let line = |t: &str| t.lines().find(|x| x.starts_with(l)).map(String::from);
            assert_eq!(line(&text), line(&rtext), "restic:\n{rtext}");
        }
        // (With --metadata, restic also compares access times, which cairn does not record
        // by default: those lists differ.)
    }
}

#[test]
fn find_matches_names_paths_case_times_and_escapes_names() {
    let env = Env::new();
    let src = env.path("src");
    fixture(&src);
    set_mtime(&src.join("docs/notes.txt"), 1_600_000_000, 0);
    let arg = src.to_str().unwrap();
    let restic = Restic::new(&env);
    env.backup(&["--host", "h1", arg]);
    write(&src.join("later.txt"), b"later\n");
    env.backup(&["--host", "h2", arg]);
    if let Some(r) = &restic {
        r.ok(&["backup", arg]);
    }
    let s = ids(&env);
    let p = |rel: &str| format!("{arg}/{rel}");
    let paths = |o: &Output| -> Vec<String> {
        stdout(o)
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(String::from)
            .collect()
    };

    // A glob without / matches names at any depth; every snapshot is searched.
    let o = env.ok(&["find", "*.txt"]);
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!(
            "Found matching entries in snapshot {}",
            &s[0][..8]
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "\n\nFound matching entries in snapshot {}",
        &s[1][..8]
    )));
    let first: Vec<String> = [
        "a.txt",
        "docs/deep/notes.txt",
        "docs/notes.txt",
        "line\\nbreak.txt",
        "with space.txt",
    ]
    .iter()
    .map(|r| p(r))
    .collect();
    let all = paths(&o);
    assert_eq!(all.len(), 2 * first.len() + 1, "{text}");
    assert_eq!(all[..first.len()], first[..], "{text}");
    // Case: only with --ignore-case does *.txt find Report.TXT.
    assert!(!all.contains(&p("Report.TXT")));
    let o = env.ok(&["find", "-i", "*.txt", "--snapshot", &s[0][..8]]);
    assert!(paths(&o).contains(&p("Report.TXT")), "{}", stdout(&o));
    assert!(!stdout(&o).contains(&s[1][..8]), "one snapshot only");
    // With /, the pattern matches the path's end (or, anchored, the whole path); a matching
    // folder brings everything in it.
    let o = env.ok(&["find", "deep/notes.txt", "-s", "latest"]);
    assert_eq!(paths(&o), [p("docs/deep/notes.txt")]);
    let anchored = format!("{arg}/docs");
    let o = env.ok(&["find", &anchored, "-s", "latest"]);
    assert_eq!(
        paths(&o),
        [
            p("docs"),
            p("docs/deep"),
            p("docs/deep/notes.txt"),
            p("docs/hard-a"),
            p("docs/notes.txt")
        ]
    );
    // A name that is not UTF-8 is escaped.
    let o = env.ok(&["find", "caf*", "-s", "latest"]);
    assert_eq!(paths(&o), [p("caf\\xe9.bin")]);
    // Times: docs/notes.txt is from 2020.
    let o = env.ok(&[
        "find",
        "notes.txt",
        "--newest",
        "2021-01-01",
        "-s",
        "latest",
    ]);
    assert_eq!(paths(&o), [p("docs/notes.txt")]);
    let o = env.ok(&[
        "find",
        "notes.txt",
        "--oldest",
        "2021-01-01",
        "-s",
        "latest",
    ]);
    assert_eq!(paths(&o), [p("docs/deep/notes.txt")]);
    // --long: mode, ids, size, time.
    let o = env.ok(&["find", "--long", "a.txt", "-s", "latest"]);
    let line = stdout(&o).lines().nth(1).unwrap_or_default().to_string();
    assert!(line.starts_with("-rw"), "{line}");
    assert!(
        line.contains(" 6 ") && line.ends_with(&p("a.txt")),
        "{line}"
    );
    // Host filter.
    let o = env.ok(&["find", "later.txt", "--host", "h1"]);
    assert!(paths(&o).is_empty(), "{}", stdout(&o));
    // JSON: one array, one object per snapshot with hits.
    let v = json(&env.ok(&["find", "--json", "*.txt"]));
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2, "{v}");
    assert_eq!(arr[0]["snapshot"], s[0].as_str());
    assert_eq!(num(&arr[1], "hits"), 6);
    assert_eq!(arr[1]["matches"][0]["path"], p("a.txt"));
    assert_eq!(arr[1]["matches"][0]["type"], "file");
    let v = json(&env.ok(&["find", "--json", "nothing-matches"]));
    assert_eq!(v, serde_json::json!([]));

    // restic finds the same paths.
    if let Some(r) = &restic {
        for pat in [&["*.txt"][..], &["-i", "*.TXT"], &["docs"], &["deep/*"]] {
            let mut a = vec!["find"];
            a.extend_from_slice(pat);
            let rtext = stdout(&r.ok(&a));
            a.extend_from_slice(&["-s", "latest"]);
            let mine = stdout(&env.ok(&a));
            let lines = |t: &str| -> Vec<String> {
                t.lines()
                    .filter(|l| l.starts_with('/'))
                    .map(String::from)
                    .collect()
            };
            // restic prints names raw: compare the others.
            let plain = |v: Vec<String>| -> Vec<String> {
                v.into_iter()
                    .filter(|l| !l.contains("line") && !l.contains("caf"))
                    .collect()
            };
            assert_eq!(
                plain(lines(&mine)),
                plain(lines(&rtext)),
                "{pat:?}\n{rtext}"
            );
        }
    }
}

#[test]
fn find_shows_where_blobs_trees_and_packs_are_used() {
    let env = Env::new();
    let src = env.path("src");
    fixture(&src);
    let arg = src.to_str().unwrap();
    env.backup(&[arg]);
    let snap = &env.snapshots()[0];
    let sid = snap["id"].as_str().unwrap();
    let root = snap["tree"].as_str().unwrap();
    let data = subtree_id(&env, root, &src.join("data"));
    let t: serde_json::Value = json(&env.ok(&["cat", "tree", &data]));
    let blob = t["nodes"][0]["content"][0].as_str().unwrap().to_string();
    let p = |rel: &str| format!("{arg}/{rel}");

    // Both copies use the blob; a prefix is enough.
    let text = stdout(&env.ok(&["find", "--blob", &blob[..10]]));
    assert_eq!(
        text.matches(&format!("Found blob {blob}")).count(),
        2,
        "{text}"
    );
    assert!(
        text.contains(&format!(
            " ... in file {}\n     (tree {data})",
            p("data/one.bin")
        )),
        "{text}"
    );
    assert!(text.contains(&p("data/two.bin")), "{text}");
    assert!(
        text.contains(&format!(" ... in snapshot {}", &sid[..8])),
        "{text}"
    );
    let v = json(&env.ok(&["find", "--json", "--blob", &blob]));
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v[0]["object_type"], "blob");
    assert_eq!(v[0]["parent_tree"], data.as_str());
    assert_eq!(v[0]["snapshot"], sid);

    let text = stdout(&env.ok(&["find", "--tree", &data[..12]]));
    assert!(
        text.contains(&format!("Found tree {data}\n ... path {}", p("data"))),
        "{text}"
    );
    let text = stdout(&env.ok(&["find", "--tree", root]));
    assert!(text.contains(" ... path /\n"), "{text}");

    // The pack holding the blob: every user of any of its blobs.
    let mut pack = None;
    for f in objects(&env.repo.join("data")) {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        let h = json(&env.ok(&["cat", "pack", &name]));
        if h.to_string().contains(&blob) {
            pack = Some(name);
        }
    }
    let pack = pack.expect("a pack holds the blob");
    let text = stdout(&env.ok(&["find", "--pack", &pack[..8]]));
    assert!(text.contains(&format!("Found blob {blob}")), "{text}");
    assert!(text.contains(&p("data/two.bin")), "{text}");
    let text = stdout(&env.ok(&["find", "--show-pack-id", "--blob", &blob[..8]]));
    assert!(
        text.contains(&format!("Object belongs to pack {pack}")),
        "{text}"
    );

    // Usage: one id kind at a time, ids must be hex.
    assert_eq!(
        env.cairn(&["find", "--blob", "--tree", "ab"]).status.code(),
        Some(2)
    );
    let o = env.cairn(&["find", "--blob", "xyz"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
}

#[test]
fn tag_replaces_snapshots_and_the_new_ones_restore() {
    let env = Env::new();
    let src = env.path("src");
    fixture(&src);
    let arg = src.to_str().unwrap();
    env.backup(&[
        "--host",
        "h1",
        "--tag",
        "a",
        "--time",
        "2026-01-01 10:00:00",
        arg,
    ]);
    env.backup(&["--host", "h2", "--time", "2026-01-02 10:00:00", arg]);
    let before = ids(&env);
    let tree = env.snapshots()[0]["tree"].clone();

    let o = env.ok(&[
        "tag", "latest", "--host", "h1", "--add", "b,c", "--add", "a",
    ]);
    let text = stdout(&o);
    let s = env.snapshots();
    assert_eq!(s.len(), 2);
    let h1 = s.iter().find(|x| x["host"] == "h1").unwrap();
    let new = h1["id"].as_str().unwrap();
    assert_ne!(new, before[0]);
    assert_eq!(h1["tags"], serde_json::json!(["a", "b", "c"]));
    assert!(
        text.contains(&format!(
            "snapshot {} -> {} tags: a,b,c",
            &before[0][..8],
            &new[..8]
        )),
        "{text}"
    );
    assert!(
        !env.repo.join("snapshots").join(&before[0]).exists(),
        "old one deleted"
    );
    assert!(env.repo.join("snapshots").join(new).exists());
    assert_eq!(
        s.iter().find(|x| x["host"] == "h2").unwrap()["id"],
        before[1].as_str()
    );
    // Everything else is the same, and it restores.
    assert_eq!(h1["tree"], tree);
    assert_eq!(h1["time"], env.snapshots()[0]["time"]);
    let target = env.path("restored");
    env.ok(&[
        "restore",
        "latest",
        "--tag",
        "b",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_same_tree(&src, &restored(&target, &src), false);
    // The old id is gone for every command.
    let o = env.cairn(&["ls", &before[0]]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));

    // Nothing to change: no new snapshot.
    let o = env.ok(&["tag", new, "--add", "c"]);
    assert!(stdout(&o).contains("no snapshots were modified"));
    assert!(env.repo.join("snapshots").join(new).exists());
    // Remove, then set on all snapshots, then clear.
    env.ok(&["tag", &new[..8], "--remove", "a"]);
    let h1 = env
        .snapshots()
        .into_iter()
        .find(|x| x["host"] == "h1")
        .unwrap();
    assert_eq!(h1["tags"], serde_json::json!(["b", "c"]));
    // Without ids, --set and --remove need --all (issue 24: safer defaults); --add does not.
    for args in [vec!["tag", "--set", "x"], vec!["tag", "--remove", "b"]] {
        let o = env.cairn(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", describe(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--all"),
            "{}",
            describe(&o)
        );
    }
    let v = json(&env.ok(&["tag", "--json", "--set", "x", "--all"]));
    assert_eq!(v["changed"].as_array().unwrap().len(), 2, "{v}");
    for s in env.snapshots() {
        assert_eq!(s["tags"], serde_json::json!(["x"]), "{s}");
    }
    env.ok(&["tag", "--set", "", "--all"]);
    for s in env.snapshots() {
        assert_eq!(s["tags"], serde_json::json!([]), "{s}");
    }
    assert_eq!(
        std::fs::read_dir(env.repo.join("snapshots"))
            .unwrap()
            .count(),
        2
    );
    // Usage errors.
    let o = env.cairn(&["tag", "--set", "a", "--add", "b"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let o = env.cairn(&["tag", "latest"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    // Tags are escaped in text output.
    let o = env.ok(&["tag", "latest", "--add", "evil\x1b[2J"]);
    assert!(stdout(&o).contains("evil\\e[2J"), "{}", stdout(&o));
}

#[test]
fn latest_with_host_and_path_filters_in_every_command() {
    let env = Env::new();
    let a = env.path("a");
    let b = env.path("b");
    write(&a.join("file"), b"from a\n");
    write(&b.join("file"), b"from b, longer\n");
    let (sa, sb) = (a.to_str().unwrap(), b.to_str().unwrap());
    env.backup(&["--host", "web1", "--time", "2026-01-01 00:00:00", sa]);
    env.backup(&["--host", "web2", "--time", "2026-01-02 00:00:00", sb]);
    env.backup(&["--host", "web2", "--time", "2026-01-03 00:00:00", sa]);
    let s = ids(&env);

    // ls, dump, restore.
    let listed = env.ls("latest");
    assert!(listed.contains(&format!("{sa}/file")), "{listed:?}");
    let o = env.ok(&["ls", "--json", "latest", "--path", sb]);
    assert!(stdout(&o).contains(&format!("{sb}/file")));
    let o = env.ok(&["dump", "latest", &format!("{sa}/file"), "--host", "web1"]);
    assert_eq!(o.stdout, b"from a\n");
    let target = env.path("t");
    env.ok(&[
        "restore",
        "latest",
        "--host",
        "web2",
        "--path",
        sb,
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(restored(&target, &b).join("file")).unwrap(),
        b"from b, longer\n"
    );
    // stats, diff, find, tag.
    let v = json(&env.ok(&["stats", "--json", "latest", "--host", "web2", "--path", sb]));
    assert_eq!(num(&v, "total_size"), 15);
    let v = json(&env.ok(&["stats", "--json", "--host", "web2"]));
    assert_eq!(num(&v, "snapshots_count"), 2);
    let o = env.ok(&["diff", "latest", &s[2], "--host", "web1"]);
    assert!(
        change_lines(&stdout(&o)).is_empty(),
        "same tree: {}",
        stdout(&o)
    );
    assert!(stdout(&o).starts_with(&format!("comparing snapshot {}", &s[0][..8])));
    let o = env.ok(&[
        "find", "file", "-s", "latest", "--host", "web2", "--path", sb,
    ]);
    let text = stdout(&o);
    assert!(
        text.contains(&s[1][..8]) && text.contains(&format!("{sb}/file")),
        "{text}"
    );
    env.ok(&["tag", "latest", "--host", "web1", "--add", "picked"]);
    let tagged: Vec<_> = env
        .snapshots()
        .into_iter()
        .filter(|x| x["tags"] == serde_json::json!(["picked"]))
        .collect();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0]["host"], "web1");
    // No match is an error, not an empty result.
    let o = env.cairn(&["ls", "latest", "--host", "nobody"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
}

/// Write the trees `build` makes (bottom-up, returning the root) and a snapshot of them, as
/// another key holder could.
fn craft(env: &Env, time_ns: i64, build: impl FnOnce(&dyn Fn(Tree) -> Id) -> Id) {
    craft_snapshot(env, "hostile", time_ns, |_, w| {
        build(&|t: Tree| -> Id {
            w.add(BlobKind::Tree, bytes::Bytes::from(t.encode().unwrap()))
                .unwrap()
                .0
        })
    })
}

fn dir_node(name: &[u8], sub: Id) -> Node {
    let mut n = Node::new(name.to_vec(), NodeKind::Dir);
    n.subtree = Some(sub);
    n.mode = 0o40755;
    n
}

/// A "billion laughs" of 2^40 paths over 41 trees is counted from the trees, not path by
/// path; chains nested deeper than the walk allows are refused by every command, no crash.
#[test]
fn hostile_trees_are_counted_by_tree_and_deep_ones_refused() {
    let env = Env::new();
    let k = 40;
    craft(&env, 1_700_000_000_000_000_000, |add| {
        let mut f = Node::new(b"f".to_vec(), NodeKind::File);
        f.size = 3;
        let mut t = add(Tree {
            version: VERSION,
            nodes: vec![f],
        });
        for _ in 0..k {
            t = add(Tree {
                version: VERSION,
                nodes: vec![dir_node(b"a", t), dir_node(b"b", t)],
            });
        }
        t
    });
    let started = std::time::Instant::now();
    let v = json(&env.ok(&["stats", "--json"]));
    assert_eq!(
        num(&v, "total_file_count"),
        (1u64 << (k + 1)) - 2 + (1u64 << k)
    );
    assert_eq!(num(&v, "total_size"), 3 << k);
    let raw = json(&env.ok(&["stats", "--json", "--mode", "raw-data"]));
    assert_eq!(num(&raw, "tree_blob_count"), k + 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    for (i, leaf) in [&b"x"[..], b"y"].into_iter().enumerate() {
        // Newer than the first (2023), and in the past: `latest` is one of these.
        craft(&env, 1_750_000_000_000_000_000 + i as i64, |add| {
            let mut t = add(Tree {
                version: VERSION,
                nodes: vec![Node::new(leaf.to_vec(), NodeKind::File)],
            });
            for _ in 0..3000 {
                t = add(Tree {
                    version: VERSION,
                    nodes: vec![dir_node(b"d", t)],
                });
            }
            t
        });
    }
    let s = ids(&env);
    for args in [
        vec!["stats", "latest"],
        vec!["diff", &s[1], &s[2]],
        vec!["find", "-s", &s[2], "x"],
        vec!["find", "-s", &s[2], "--tree", "00"],
    ] {
        let o = env.cairn(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("nested deeper than"), "{args:?}: {err}");
    }
}
