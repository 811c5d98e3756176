//! Small things a user sees in the first week: honest snapshot kinds with their parents, and
//! the version.

use crate::util::*;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

#[test]
fn a_snapshot_without_a_parent_is_full_and_listings_show_parents() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"one\n");
    let arg = src.to_str().unwrap();
    env.backup(&[arg]);
    write(&src.join("g"), b"two\n");
    env.backup(&[arg]);
    env.backup(&["--type", "differential", arg]);
    let s = env.snapshots();
    assert_eq!(s.len(), 3);
    assert_eq!(
        s[0]["kind"], "full",
        "the first backup read everything: {}",
        s[0]
    );
    assert!(s[0]["parent"].is_null());
    assert_eq!(s[1]["kind"], "incremental");
    assert_eq!(s[1]["parent"], s[0]["id"]);
    assert_eq!(s[2]["kind"], "differential");
    assert_eq!(
        s[2]["parent"], s[0]["id"],
        "differential: parent = the last full"
    );
    let text = String::from_utf8_lossy(&env.ok(&["snapshots"]).stdout).into_owned();
    let short = &s[0]["id"].as_str().unwrap()[..8];
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" incremental "))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains(short),
        "parent's short id missing: {text}"
    );
    // A stream is read whole: full.
    let o = env.cairn_stdin(
        &["backup", "--stdin", "--stdin-name", "x.sql", "--json"],
        b"x",
    );
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(env.snapshots()[3]["kind"], "full");
}

#[test]
fn version_names_the_repository_format() {
    let env = Env::uninit();
    for args in [&["version"][..], &["--version"][..]] {
        let o = env.ok(args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("repository format: config 2, key files 2"),
            "{out}"
        );
    }
    let o = env.ok(&["version", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["formats"]["objects"], 1);
}

#[test]
fn completion_scripts_load_and_man_pages_render() {
    let env = Env::uninit();
    let o = env.ok(&["completion", "bash"]);
    let script = env.path("cairn.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "bash -n {p} && source {p} && complete -p cairn",
            p = script.display()
        ))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", describe(&check));
    assert!(String::from_utf8_lossy(&check.stdout).contains("_cairn cairn"));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let o = env.ok(&["completion", shell]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("cairn") && out.contains("restore"),
            "{shell}: {out}"
        );
    }
    let dir = env.path("man");
    env.ok(&["generate-man", dir.to_str().unwrap()]);
    for page in [
        "cairn.1",
        "cairn-restore.1",
        "cairn-key-passwd.1",
        "cairn-backup.1",
    ] {
        let o = std::process::Command::new("man")
            .arg("-l")
            .arg(dir.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(o.status.success(), "{page}: {}", describe(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{page}: {text}"
        );
    }
}

/// `dump` of a folder is a tar archive that extracts to the same tree a restore makes: odd
/// names, a symlink, a hard link, modes, ns mtimes, xattrs, a file larger than the stream
/// window; a file alone still dumps as its bytes.
#[test]
fn a_dumped_folder_extracts_like_a_restore() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("plain.txt"), b"plain\n");
    write(&src.join("sub dir/with\nnewline"), b"odd\n");
    let odd = std::ffi::OsStr::from_bytes(b"non-utf8-\xff\xfe");
    write(&src.join("sub dir").join(odd), b"bytes\n");
    write(
        &src.join(format!("{}/deep", "n".repeat(150))),
        b"long path\n",
    );
    write_random(&src.join("big.bin"), 3, 12 << 20);
    std::os::unix::fs::symlink("plain.txt", src.join("link")).unwrap();
    std::fs::hard_link(src.join("plain.txt"), src.join("sub dir/hard")).unwrap();
    xattr::set(src.join("plain.txt"), "user.cairn", b"value").unwrap();
    set_mtime(&src.join("plain.txt"), 1_500_000_000, 123_456_789);
    chmod(&src.join("big.bin"), 0o640);
    env.backup(&[src.to_str().unwrap()]);

    let restored_dir = env.path("restored");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        restored_dir.to_str().unwrap(),
    ]);
    let tarball = env.path("out.tar");
    let o = env.ok(&["dump", "latest", src.to_str().unwrap()]);
    std::fs::write(&tarball, &o.stdout).unwrap();
    let out = env.path("extracted");
    std::fs::create_dir_all(&out).unwrap();
    let x = std::process::Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&out)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", describe(&x));
    let a = restored(&restored_dir, &src);
    let b = restored(&out, &src);
    assert_same_tree(&a, &b, true);
    let m = std::fs::metadata(b.join("plain.txt")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 123_456_789));
    assert_eq!(
        m.ino(),
        std::fs::metadata(b.join("sub dir/hard")).unwrap().ino()
    );
    let o = env.ok(&["dump", "latest", src.join("big.bin").to_str().unwrap()]);
    assert!(same_content_bytes(&src.join("big.bin"), &o.stdout));
}

fn same_content_bytes(p: &std::path::Path, bytes: &[u8]) -> bool {
    std::fs::read(p).unwrap() == bytes
}

/// `--archive zip` lists every file, directory and symlink of the folder.
#[test]
fn a_folder_dumps_as_zip_with_every_file() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"a\n");
    write(&src.join("sub/b.txt"), b"b\n");
    write_random(&src.join("sub/big.bin"), 5, 9 << 20);
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    let o = env.ok(&["dump", "--archive", "zip", "latest", src.to_str().unwrap()]);
    let zip = env.path("out.zip");
    std::fs::write(&zip, &o.stdout).unwrap();
    let out = env.path("unzipped");
    let x = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); print('\\n'.join(z.namelist())); z.extractall(sys.argv[2])",
        ])
        .arg(&zip)
        .arg(&out)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", describe(&x));
    let names = String::from_utf8_lossy(&x.stdout);
    let base = src.to_str().unwrap().trim_start_matches('/');
    for n in ["a.txt", "sub/", "sub/b.txt", "sub/big.bin", "link"] {
        assert!(
            names.lines().any(|l| l == format!("{base}/{n}")),
            "{n} missing from {names}"
        );
    }
    let r = restored(&out, &src);
    assert!(same_content(
        &src.join("sub/big.bin"),
        &r.join("sub/big.bin")
    ));
    assert_eq!(std::fs::read(r.join("sub/b.txt")).unwrap(), b"b\n");
}
