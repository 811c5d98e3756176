//! Files cairn keeps on this machine: a local repository (objects 0600, folders 0700) and the
//! cache (private folders only, never a shared temporary folder, refused when others could
//! write it).

use crate::util::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
        .mode()
        & 0o7777
}

#[test]
fn local_repository_files_are_private() {
    let env = Env::new();
    let src = env.path("src");
    write_random(&src.join("big"), 3, 3 << 20);
    write(&src.join("small"), b"small\n");
    env.backup(&[src.to_str().unwrap()]);
    let o = env.cairn_with(&["key", "add"], |c| {
        c.env("CAIRN_NEW_PASSWORD", "second password");
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));

    assert_eq!(mode(&env.repo), 0o700, "repository folder");
    let mut files = 0;
    for p in walk(&env.repo) {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            assert_eq!(mode(&p), 0o700, "folder {}", p.display());
        } else {
            assert!(m.is_file(), "{} is not a file", p.display());
            assert_eq!(mode(&p), 0o600, "object {}", p.display());
            files += 1;
        }
    }
    // config, two keys, a snapshot, an index file, a data and a tree pack at least.
    assert!(files >= 7, "only {files} objects");
    for d in ["keys", "data", "index", "snapshots"] {
        assert!(env.repo.join(d).is_dir(), "no {d}/");
    }
    // The cache is private too.
    assert_eq!(mode(&env.cache), 0o700);
    for e in std::fs::read_dir(&env.cache).unwrap() {
        assert_eq!(mode(&e.unwrap().path()), 0o700);
    }
}

#[test]
fn a_cache_folder_others_can_write_is_refused() {
    let env = Env::new();
    // Pre-created by someone, open to all: refused, nothing written into it.
    std::fs::remove_dir_all(&env.cache).unwrap();
    std::fs::create_dir(&env.cache).unwrap();
    chmod(&env.cache, 0o777);
    let o = env.cairn(&["snapshots"]);
    let line = assert_fails_one_line(&o, 1, "snapshots with a 0777 cache folder");
    assert!(
        line.contains("refusing to use cache folder") && line.contains("--cache-dir"),
        "{line}"
    );
    assert_eq!(std::fs::read_dir(&env.cache).unwrap().count(), 0);

    // The per-repository folder is checked as well.
    chmod(&env.cache, 0o700);
    env.ok(&["snapshots"]);
    let sub = std::fs::read_dir(&env.cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().is_some_and(|n| n != "key-hints"))
        .unwrap();
    chmod(&sub, 0o757);
    assert_fails_one_line(&env.cairn(&["snapshots"]), 1, "a 0757 repository cache");
    chmod(&sub, 0o700);

    // A symbolic link in place of the cache folder, even to a private folder.
    let real = env.path("real-cache");
    std::fs::rename(&env.cache, &real).unwrap();
    std::os::unix::fs::symlink(&real, &env.cache).unwrap();
    let line = assert_fails_one_line(&env.cairn(&["snapshots"]), 1, "a symlinked cache");
    assert!(line.contains("symbolic link"), "{line}");
    std::fs::remove_file(&env.cache).unwrap();
    std::fs::rename(&real, &env.cache).unwrap();

    // Someone else's folder, however private.
    if is_root() {
        std::os::unix::fs::chown(&env.cache, Some(65534), Some(65534)).unwrap();
        let line = assert_fails_one_line(&env.cairn(&["snapshots"]), 1, "another user's cache");
        assert!(line.contains("belongs to uid 65534"), "{line}");
        std::os::unix::fs::chown(&env.cache, Some(0), Some(0)).unwrap();
    }
    env.ok(&["snapshots"]);
}

#[test]
fn without_home_there_is_no_cache_in_a_shared_temporary_folder() {
    let env = Env::new();
    let tmp = env.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    chmod(&tmp, 0o1777);
    let shared = Path::new("/tmp/.cache/cairn");
    let existed = shared.exists();
    // Without HOME, the user's home from the password database (as a cron job or a systemd
    // unit without User= expects); failing that, a usage error naming CAIRN_CACHE_DIR.
    let without_home = |xdg: Option<&str>| {
        let o = env.cairn_with(&["snapshots"], |c| {
            c.env_remove("CAIRN_CACHE_DIR")
                .env_remove("HOME")
                .env_remove("XDG_CACHE_HOME")
                .env("TMPDIR", &tmp);
            if let Some(x) = xdg {
                c.env("XDG_CACHE_HOME", x);
            }
        });
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            o.status.code() == Some(0) || err.contains("CAIRN_CACHE_DIR"),
            "{}",
            describe(&o)
        );
        o
    };
    without_home(None);
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "wrote into TMPDIR"
    );
    assert!(existed || !shared.exists(), "created {}", shared.display());

    // A relative XDG_CACHE_HOME is not a location either (XDG base directory spec).
    let o = without_home(Some("rel"));
    assert!(!env.path("rel").exists());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    // Leave the password-database home as it was (only this repository's cache was added).
    if o.status.code() == Some(0) {
        let id = std::fs::read_dir(&env.cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .find(|n| n != "key-hints");
        if let (Some(id), Some(home)) = (id, passwd_home()) {
            let _ = std::fs::remove_dir_all(home.join(".cache/cairn").join(id));
        }
    }

    // HOME alone is enough: ~/.cache/cairn, private.
    let home = env.path("home");
    std::fs::create_dir(&home).unwrap();
    let o = env.cairn_with(&["snapshots"], |c| {
        c.env_remove("CAIRN_CACHE_DIR")
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", &home);
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(mode(&home.join(".cache/cairn")), 0o700);
}

#[test]
fn a_busy_cache_falls_back_to_a_private_temporary_one_and_removes_it() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"content\n");
    env.backup(&[src.to_str().unwrap()]);
    let config: serde_json::Value =
        serde_json::from_slice(&env.ok(&["cat", "config"]).stdout).unwrap();
    let id = cairn::Id::from_hex(config["repository_id"].as_str().unwrap()).unwrap();
    // Hold the regular cache open in this process, as a running backup would.
    let held = cairn::cache::Cache::open(&env.cache, &id).unwrap();
    assert!(!held.is_temporary());
    // The fallback is made inside the private cache folder, never in TMPDIR (a shared folder
    // in general; here one that does not exist, so a fallback there would fail).
    let tmpdir = env.path("no-such-tmp");
    let o = env.cairn_with(&["snapshots", "--json"], |c| {
        c.env("TMPDIR", &tmpdir);
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&src.to_str().unwrap()[1..]),
        "{}",
        describe(&o)
    );
    assert!(!tmpdir.exists());
    let left: Vec<_> = std::fs::read_dir(&env.cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "key-hints")
        .collect();
    assert_eq!(left.len(), 1, "temporary cache left behind: {left:?}");
    drop(held);
}

/// This user's home folder from the password database.
fn passwd_home() -> Option<std::path::PathBuf> {
    let uid = unsafe { libc::geteuid() }.to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 5 && f[2] == uid).then(|| std::path::PathBuf::from(f[5]))
    })
}
