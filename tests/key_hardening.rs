//! Keys and secrets hardening (security review 2026-11-30: K1, K2, K3, L3, C1): parameter
//! bounds on every writer, bounded unlocking, escaped key listings, password sources.

use crate::util::*;
use cairn::format::keyfile::KeyFile;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The key files of a repository.
fn key_files(env: &Env) -> Vec<PathBuf> {
    objects(&env.repo.join("keys"))
}

/// The only key file of a repository, decoded with the library's own decoder.
fn only_key(env: &Env) -> (PathBuf, KeyFile) {
    let files = key_files(env);
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(&files[0]).unwrap();
    let kf = KeyFile::decode(&bytes, &"key").expect("decode the key file");
    (files[0].clone(), kf)
}

/// Store `bytes` as a key file named by their content hash, as the store expects.
fn plant_key(env: &Env, bytes: &[u8]) -> PathBuf {
    let name = cairn::Id::of_stored(bytes).to_hex();
    let path = env.repo.join("keys").join(name);
    write(&path, bytes);
    path
}

fn opens(env: &Env, password: &str) -> Output {
    env.cairn_with(&["snapshots", "--json"], |c| {
        c.env("CAIRN_PASSWORD", password);
    })
}

fn key_count(env: &Env) -> usize {
    key_files(env).len()
}

// ---- K1: KDF parameters are checked by every writer, before anything is written ----

#[test]
fn init_refuses_kdf_parameters_no_reader_accepts_and_leaves_no_repository() {
    for (var, value, what) in [
        ("CAIRN_KDF_ITERATIONS", "65", "65 iterations"),
        ("CAIRN_KDF_ITERATIONS", "0", "0 iterations"),
        ("CAIRN_KDF_MEMORY_KIB", "2097152", "2 GiB of memory"),
        (
            "CAIRN_KDF_MEMORY_KIB",
            "32",
            "32 KiB of memory (below the floor)",
        ),
    ] {
        let env = Env::uninit();
        let o = env.cairn_with(&["init"], |c| {
            c.env(var, value);
        });
        let line = assert_fails_one_line(&o, 1, &format!("init with {what}"));
        assert!(line.contains("KDF"), "init with {what}: {line}");
        assert!(
            !env.repo.exists(),
            "init with {what} left {} behind",
            env.repo.display()
        );
    }
    // The largest values every reader accepts are fine.
    let env = Env::uninit();
    let o = env.cairn_with(&["init"], |c| {
        c.env("CAIRN_KDF_ITERATIONS", "64");
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(opens(&env, PASSWORD).status.code(), Some(0));
}

#[test]
fn key_passwd_and_add_with_bad_parameters_change_nothing() {
    let env = Env::new();
    let (before, _) = only_key(&env);
    for (cmd, var, value) in [
        ("passwd", "CAIRN_KDF_ITERATIONS", "65"),
        ("passwd", "CAIRN_KDF_MEMORY_KIB", "2097152"),
        ("add", "CAIRN_KDF_ITERATIONS", "65"),
        ("add", "CAIRN_KDF_MEMORY_KIB", "4194304"),
    ] {
        let o = env.cairn_with(&["key", cmd], |c| {
            c.env("CAIRN_NEW_PASSWORD", "new password").env(var, value);
        });
        let line = assert_fails_one_line(&o, 1, &format!("key {cmd} with {var}={value}"));
        assert!(line.contains("KDF"), "{line}");
        assert_eq!(
            key_files(&env),
            vec![before.clone()],
            "key {cmd} {var}={value}"
        );
        assert_eq!(
            opens(&env, PASSWORD).status.code(),
            Some(0),
            "the old password stopped working after key {cmd} {var}={value}"
        );
        assert_ne!(opens(&env, "new password").status.code(), Some(0));
    }
}

// ---- L3: empty new passwords ----

#[test]
fn empty_new_password_is_refused_like_init() {
    let env = Env::new();
    let empty = env.path("empty-pw");
    write(&empty, b"\n");
    for cmd in ["add", "passwd"] {
        let o = env.cairn_with(&["key", cmd], |c| {
            c.env("CAIRN_NEW_PASSWORD", "");
        });
        let line = assert_fails_one_line(&o, 1, &format!("key {cmd} with an empty password"));
        assert!(line.contains("empty password"), "{line}");
        let o = env.cairn(&["key", cmd, "--new-password-file", empty.to_str().unwrap()]);
        assert_fails_one_line(&o, 1, &format!("key {cmd} with an empty password file"));
    }
    assert_eq!(key_count(&env), 1);
    assert_eq!(opens(&env, PASSWORD).status.code(), Some(0));
    assert_ne!(opens(&env, "").status.code(), Some(0));
}

// ---- K2: bounded unlocking ----

/// A copy of the repository's key file with a 1 MiB host name opens with the same password
/// (the host is not authenticated). Unlocking must skip it by its listed size, without reading
/// it: with it as the only key, the repository does not open, and the message names it.
#[test]
fn oversized_key_file_is_skipped_unread() {
    let env = Env::new();
    let (orig, mut kf) = only_key(&env);
    let orig_bytes = std::fs::read(&orig).unwrap();
    kf.host = "h".repeat(1 << 20);
    let big = plant_key(&env, &cairn::format::encode(&kf).unwrap());
    std::fs::remove_file(&orig).unwrap();
    let fresh = env.path("fresh-cache");
    let o = env.cairn_with(&["snapshots", "--json"], |c| {
        c.env("CAIRN_CACHE_DIR", &fresh);
    });
    let line = assert_fails_one_line(&o, 12, "open with only an oversized key file");
    let short = &big.file_name().unwrap().to_str().unwrap()[..8];
    assert!(line.contains(short) && line.contains("bytes"), "{line}");
    // Back with the real key next to it, it is listed as unusable and does not get in the way.
    write(&orig, &orig_bytes);
    let o = env.ok(&["key", "list"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(short) && out.contains("unusable"), "{out}");
    assert!(!out.contains("hhhh"), "{out}");
}

#[test]
fn stray_and_unreadable_key_files_do_not_abort_unlocking() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"data\n");
    env.backup(&[src.to_str().unwrap()]);
    // A file in a nested folder is not a key file (listings take direct children only) and is
    // ignored. A name sorting first, with junk inside: "corrupt", skipped.
    write(
        &env.repo.join("keys/sub").join("1".repeat(64)),
        b"junk in a sub-folder",
    );
    write(&env.repo.join("keys").join("0".repeat(64)), b"junk");
    // A fresh cache: no remembered key, every key file is looked at.
    let o = env.cairn_with(&["snapshots", "--json"], |c| {
        c.env("CAIRN_CACHE_DIR", env.path("fresh-cache"));
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    // key list shows the broken ones as unusable instead of failing.
    let o = env.ok(&["key", "list"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("unusable"), "{out}");
    // A wrong password still says so, and names what was skipped.
    let o = opens(&env, "wrong");
    let line = assert_fails_one_line(&o, 12, "wrong password with junk key files");
    assert!(line.contains("wrong password"), "{line}");
    assert!(line.contains("corrupt"), "{line}");
    assert!(
        !line.contains("11111111"),
        "a nested file was taken for a key: {line}"
    );
}

/// A planted key file at the readers' limits (1 GiB, 64 passes, 64 lanes), named to sort before
/// the real key, under a 768 MiB address-space limit (so argon2 cannot run it): it neither stops
/// nor aborts the open. (Which key is tried first is checked by
/// `cheapest_key_is_tried_first_and_the_remembered_one_before_it`.)
#[test]
fn expensive_planted_key_does_not_stop_the_real_one() {
    let env = Env::new();
    let (orig, real) = only_key(&env);
    let real_name = orig.file_name().unwrap().to_str().unwrap().to_string();
    let mut planted = real.clone();
    planted.kdf.memory_kib = 1 << 20;
    planted.kdf.iterations = 64;
    planted.kdf.parallelism = 64;
    planted.sealed_master = vec![0x5a; real.sealed_master.len()];
    let mut salt = 0u64;
    let bytes = loop {
        planted.salt[..8].copy_from_slice(&salt.to_le_bytes());
        let b = cairn::format::encode(&planted).unwrap();
        if cairn::Id::of_stored(&b).to_hex() < real_name {
            break b;
        }
        salt += 1;
        assert!(salt < 1_000_000, "cannot grind a name below {real_name}");
    };
    plant_key(&env, &bytes);
    for cache in ["fresh-1", "fresh-2"] {
        let o = env.cairn_with(&["snapshots", "--json"], |c| {
            c.env("CAIRN_CACHE_DIR", env.path(cache));
            limit_address_space(c, 768 << 20);
        });
        assert_eq!(
            o.status.code(),
            Some(0),
            "the planted key was run first\n{}",
            describe(&o)
        );
    }
}

/// The key id `key list --json` marks as the one this session opened with.
fn current_key(env: &Env, cache: &Path) -> String {
    let o = env.cairn_with(&["key", "list", "--json"], |c| {
        c.env("CAIRN_CACHE_DIR", cache);
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cur: Vec<&serde_json::Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["current"] == true)
        .collect();
    assert_eq!(cur.len(), 1, "{v}");
    cur[0]["id"].as_str().unwrap().to_string()
}

/// Two keys for the same password: the default test cost, and one 4 times as expensive named to
/// sort first. Without a remembered key the cheap one is tried (and opens) first; with the
/// expensive one remembered, it is tried first.
#[test]
fn cheapest_key_is_tried_first_and_the_remembered_one_before_it() {
    let env = Env::new();
    let (cheap, _) = only_key(&env);
    let cheap_name = cheap.file_name().unwrap().to_str().unwrap().to_string();
    let o = env.cairn_with(&["key", "add"], |c| {
        c.env("CAIRN_NEW_PASSWORD", PASSWORD)
            .env("CAIRN_KDF_MEMORY_KIB", "4096");
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let added = key_files(&env).into_iter().find(|p| *p != cheap).unwrap();
    let mut kf = KeyFile::decode(&std::fs::read(&added).unwrap(), &"key").unwrap();
    assert_eq!(kf.kdf.memory_kib, 4096);
    // The creation time is not authenticated: changing it renames the key, which still opens.
    let bytes = loop {
        let b = kf.encode().unwrap();
        if cairn::Id::of_stored(&b).to_hex() < cheap_name {
            break b;
        }
        kf.created_ns += 1;
    };
    std::fs::remove_file(&added).unwrap();
    let expensive = plant_key(&env, &bytes);
    let expensive_name = expensive.file_name().unwrap().to_str().unwrap().to_string();
    assert!(expensive_name < cheap_name);

    let fresh = env.path("fresh-cache");
    assert_eq!(current_key(&env, &fresh), cheap_name, "cheapest first");
    let hints = objects_any(&fresh.join("key-hints"));
    assert_eq!(hints.len(), 1, "{hints:?}");
    write(&hints[0], format!("{expensive_name}\n").as_bytes());
    assert_eq!(
        current_key(&env, &fresh),
        expensive_name,
        "the remembered key first"
    );
}

fn limit_address_space(c: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe and touches no state of the parent.
    unsafe {
        c.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn the_key_that_opened_is_remembered_as_a_hint_only() {
    let env = Env::new();
    let hints = env.cache.join("key-hints");
    let files: Vec<PathBuf> = objects_any(&hints);
    assert_eq!(files.len(), 1, "init leaves one hint: {files:?}");
    let (orig, _) = only_key(&env);
    let name = orig.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap().trim(), name);
    // A hint that names no key, or is garbage, is ignored.
    write(&files[0], b"not a key id\n");
    assert_eq!(opens(&env, PASSWORD).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap().trim(), name);
    write(&files[0], "f".repeat(64).as_bytes());
    assert_eq!(opens(&env, PASSWORD).status.code(), Some(0));
    // passwd moves the hint to the new key.
    let o = env.cairn_with(&["key", "passwd"], |c| {
        c.env("CAIRN_NEW_PASSWORD", "new");
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let (new_key, _) = only_key(&env);
    let new_name = new_key.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap().trim(), new_name);
    // A hint pointing to a key the password does not open does not stop the right one.
    let o = env.cairn_with(&["key", "add"], |c| {
        c.env("CAIRN_PASSWORD", "new")
            .env("CAIRN_NEW_PASSWORD", "other");
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(opens(&env, "other").status.code(), Some(0));
    assert_eq!(opens(&env, "new").status.code(), Some(0));
}

/// Regular files directly in `dir`.
fn objects_any(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file());
    v.sort();
    v
}

// ---- K3 / T1: key list prints the unauthenticated fields escaped ----

#[test]
fn key_list_escapes_host_and_user() {
    let env = Env::new();
    let (_, mut kf) = only_key(&env);
    kf.host = "evil\x1b]0;pwned\x07\x1b[2J".into();
    kf.user = "u\u{9b}31m".into();
    kf.created_ns += 1;
    // The same sealed master under the same password: a planted copy opens as well.
    plant_key(&env, &kf.encode().unwrap());
    let o = env.ok(&["key", "list"]);
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(!out.contains('\u{9b}'), "{out:?}");
    assert!(out.contains("evil\\e]0;pwned\\x07\\e[2J"), "{out}");
    assert!(out.contains("u\\u{9b}31m"), "{out}");
}

// ---- L3: password sources ----

#[test]
fn failing_password_command_is_not_echoed() {
    let env = Env::new();
    let o = env.cairn_with(
        &["snapshots", "--password-command", "echo hunter2; exit 3"],
        |c| {
            c.env_remove("CAIRN_PASSWORD");
        },
    );
    let line = assert_fails_one_line(&o, 1, "a failing password command");
    assert!(!line.contains("hunter2"), "{line}");
    assert!(line.contains("password command failed"), "{line}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("hunter2"));
}

#[test]
fn explicit_password_options_beat_the_environment() {
    let env = Env::new();
    let pw = env.path("pw");
    write(&pw, format!("{PASSWORD}\n").as_bytes());
    let wrong = env.path("wrong-pw");
    write(&wrong, b"wrong\n");
    // --password-file and --password-command on the command line beat CAIRN_PASSWORD.
    let o = env.cairn_with(
        &["snapshots", "--password-file", pw.to_str().unwrap()],
        |c| {
            c.env("CAIRN_PASSWORD", "wrong");
        },
    );
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let cmd = format!("cat {}", pw.display());
    let o = env.cairn_with(&["snapshots", "--password-command", &cmd], |c| {
        c.env("CAIRN_PASSWORD", "wrong");
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    // CAIRN_PASSWORD beats CAIRN_PASSWORD_FILE / _COMMAND from the environment.
    let o = env.cairn_with(&["snapshots"], |c| {
        c.env("CAIRN_PASSWORD_FILE", &wrong)
            .env("CAIRN_PASSWORD_COMMAND", "echo wrong");
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    // Without CAIRN_PASSWORD, the file from the environment is used, then the command.
    let o = env.cairn_with(&["snapshots"], |c| {
        c.env_remove("CAIRN_PASSWORD")
            .env("CAIRN_PASSWORD_FILE", &pw)
            .env("CAIRN_PASSWORD_COMMAND", "echo wrong");
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let o = env.cairn_with(&["snapshots"], |c| {
        c.env_remove("CAIRN_PASSWORD")
            .env("CAIRN_PASSWORD_COMMAND", &cmd);
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
}

#[test]
fn non_utf8_password_in_the_environment_is_used_as_bytes() {
    let env = Env::uninit();
    let raw: &[u8] = b"caf\xe9 latin-1";
    let pw = env.path("pw");
    write(&pw, raw);
    let o = env.cairn_with(&["init", "--password-file", pw.to_str().unwrap()], |c| {
        c.env_remove("CAIRN_PASSWORD");
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    // The same bytes in CAIRN_PASSWORD open it; a CAIRN_PASSWORD_FILE with another password
    // comes after CAIRN_PASSWORD, so a skipped variable would show as a wrong password.
    let wrong = env.path("wrong");
    write(&wrong, b"wrong");
    let o = env.cairn_with(&["snapshots"], |c| {
        c.env("CAIRN_PASSWORD", OsStr::from_bytes(raw))
            .env("CAIRN_PASSWORD_FILE", &wrong);
    });
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
}

// ---- C1: key files of the withdrawn format 1 ----

#[test]
fn old_format_key_file_gives_a_clear_error() {
    let env = Env::new();
    let (orig, _) = only_key(&env);
    let mut bytes = std::fs::read(&orig).unwrap();
    bytes[0] = 1;
    let old = plant_key(&env, &bytes);
    std::fs::remove_file(&orig).unwrap();
    let o = opens(&env, PASSWORD);
    let line = assert_fails_one_line(&o, 12, "a repository with a format-1 key file");
    assert!(line.contains("format version 1"), "{line}");
    assert!(!line.contains("wrong password"), "{line}");
    let short = &old.file_name().unwrap().to_str().unwrap()[..8];
    assert!(line.contains(short), "{line}");
}
