//! Small things a user sees in the first week: honest snapshot kinds with their parents, and
//! the version.

use crate::util::*;

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
