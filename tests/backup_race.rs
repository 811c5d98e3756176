//! Backup reads the file it scanned (review finding B1): an entry swapped between the scan and
//! the read for a symlink or a fifo is never followed and never blocks the backup; and a
//! `--stdin-from-command` child does not see the repository password (finding Z1).

use crate::util::*;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const SECRET: &[u8] = b"TOP-SECRET-b1-0f9e2d7c41a8-do-not-store";
const FILES: usize = 16;
/// Backups at least, and at most, per race test; the loop stops between the two once enough
/// swaps were caught (warned about).
const MIN_BACKUPS: usize = 8;
const MAX_BACKUPS: usize = 80;
const ENOUGH_CAUGHT: u64 = 10;

/// What the racing thread puts in place of a file, half of the time.
#[derive(Clone, Copy)]
enum Swap {
    /// A symlink to the secret file outside the backed-up folder.
    Symlink,
    /// A fifo nobody writes to.
    Fifo,
}

/// A thread that keeps replacing `src/fNN` (atomically, by rename from a staging folder on the
/// same file system) with a fresh regular file, then with a `Swap`, until dropped.
struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Swapper {
    fn start(src: PathBuf, stage: PathBuf, secret: PathBuf, swap: Swap) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let (st, sw) = (stop.clone(), swaps.clone());
        let thread = std::thread::spawn(move || {
            let mut round = 0u64;
            while !st.load(Ordering::Relaxed) {
                for i in 0..FILES {
                    let dst = src.join(format!("f{i:02}"));
                    let tmp = stage.join(format!("t{i:02}"));
                    let _ = std::fs::remove_file(&tmp);
                    match swap {
                        Swap::Symlink => {
                            std::os::unix::fs::symlink(&secret, &tmp).expect("symlink");
                        }
                        Swap::Fifo => mkfifo(&tmp, 0o644),
                    }
                    std::fs::rename(&tmp, &dst).expect("rename the swap in");
                    std::fs::write(&tmp, format!("innocent {i} {round}\n")).expect("write");
                    std::fs::rename(&tmp, &dst).expect("rename the file back");
                    sw.fetch_add(1, Ordering::Relaxed);
                }
                round += 1;
            }
        });
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
        }
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("swapper thread panicked");
            }
        }
    }
}

/// Set up `src/` (the backed-up folder), `stage/` and `secret` (outside `src/`).
fn race_env() -> (Env, PathBuf, PathBuf, PathBuf) {
    let env = Env::new();
    let src = env.path("src");
    let stage = env.path("stage");
    let secret = env.path("secret");
    std::fs::create_dir_all(&stage).expect("mkdir");
    for i in 0..FILES {
        write(&src.join(format!("f{i:02}")), b"innocent\n");
    }
    // Some bigger steady files so each backup spends time reading, widening the window.
    for i in 0..4 {
        write_random(&src.join(format!("steady{i}")), 40 + i, 256 << 10);
    }
    write(&secret, SECRET);
    (env, src, stage, secret)
}

/// Run backups of `src` while `swapper` races them; returns the number of warnings that said
/// an entry changed during the backup. Every backup must finish (the util TIMEOUT turns a hang
/// into a failure) with exit 0, or 3 when it warned.
fn race_backups(env: &Env, src: &Path, swapper: &Swapper) -> u64 {
    let mut caught = 0u64;
    for n in 0..MAX_BACKUPS {
        if n >= MIN_BACKUPS && caught >= ENOUGH_CAUGHT {
            break;
        }
        let o = env.cairn(&[OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
        let code = o.status.code();
        let errors: Vec<String> = json_lines(&o.stdout)
            .into_iter()
            .filter(|v| v["message_type"] == "error")
            .map(|v| {
                let e = v["error"].as_str().unwrap_or_default().to_string();
                // Typed: a file swapped under the backup is "changed", and names its path.
                if e.contains("changed during backup") {
                    assert_eq!(v["kind"], "changed", "{v}");
                    assert!(v["item"].as_str().is_some_and(|i| e.contains(i)), "{v}");
                }
                e
            })
            .collect();
        let want = if errors.is_empty() { 0 } else { 3 };
        assert_eq!(
            code,
            Some(want),
            "backup {n}: exit code vs warnings {errors:?}\n{}",
            describe(&o)
        );
        caught += errors
            .iter()
            .filter(|e| e.contains("changed during backup") && e.contains("skipped"))
            .count() as u64;
    }
    assert!(
        swapper.swaps.load(Ordering::Relaxed) > 0,
        "the swapper never swapped"
    );
    caught
}

/// Restore every snapshot and look at every regular file restored: none may hold the secret.
fn assert_secret_never_stored(env: &Env) {
    let snaps = env.snapshots();
    assert!(!snaps.is_empty());
    for (k, s) in snaps.iter().enumerate() {
        let id = s["id"].as_str().expect("snapshot id");
        let target = env.path(&format!("restore-{k}"));
        let o = env.cairn(&["restore", id, "--target", target.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(0), "restore {id}\n{}", describe(&o));
        for p in walk(&target) {
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            if !m.is_file() {
                continue;
            }
            let data = std::fs::read(&p).expect("read restored file");
            assert!(
                !data.windows(SECRET.len()).any(|w| w == SECRET),
                "snapshot {id} stored the secret file's content as {}",
                p.display()
            );
        }
        std::fs::remove_dir_all(&target).expect("rm restore");
    }
}

#[test]
fn file_swapped_for_a_symlink_is_never_followed() {
    let (env, src, stage, secret) = race_env();
    let swapper = Swapper::start(src.clone(), stage, secret, Swap::Symlink);
    let caught = race_backups(&env, &src, &swapper);
    drop(swapper);
    assert_secret_never_stored(&env);
    assert!(
        caught > 0,
        "no backup warned about a file that changed during the backup"
    );
}

#[test]
fn file_swapped_for_a_fifo_never_hangs_the_backup() {
    let (env, src, stage, secret) = race_env();
    let swapper = Swapper::start(src.clone(), stage, secret, Swap::Fifo);
    let caught = race_backups(&env, &src, &swapper);
    drop(swapper);
    assert!(
        caught > 0,
        "no backup warned about a file that changed during the backup"
    );
}

/// A regular file that stays put keeps being backed up whole, next to the races.
#[test]
fn steady_files_survive_a_race() {
    let (env, src, stage, secret) = race_env();
    let swapper = Swapper::start(src.clone(), stage, secret, Swap::Symlink);
    race_backups(&env, &src, &swapper);
    drop(swapper);
    for i in 0..4 {
        let p = src.join(format!("steady{i}"));
        let o = env.ok(&[OsStr::new("dump"), OsStr::new("latest"), p.as_os_str()]);
        assert!(
            o.stdout == std::fs::read(&p).expect("read"),
            "{} differs",
            p.display()
        );
    }
}

#[test]
fn command_does_not_inherit_the_password() {
    let env = Env::new();
    let pwfile = env.path("pw");
    write(&pwfile, env.password.as_bytes());
    let o = env.cairn_with(
        &[
            "backup",
            "--stdin-from-command",
            "--stdin-name",
            "env.txt",
            "--",
            "sh",
            "-c",
            "env",
        ],
        |c| {
            c.env("CAIRN_PASSWORD_FILE", &pwfile)
                .env("CAIRN_PASSWORD_COMMAND", "echo cmd-secret-3141")
                .env("CAIRN_NEW_PASSWORD", "new-secret-2718")
                .env("CAIRN_FROM_PASSWORD", "from-secret-1618")
                .env("CAIRN_FROM_PASSWORD_FILE", &pwfile)
                .env("CAIRN_TEST_VISIBLE", "visible-42");
        },
    );
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let dumped = env.ok(&["dump", "latest", "/env.txt"]).stdout;
    let text = String::from_utf8_lossy(&dumped);
    // The command did run with an environment (so the checks below mean something).
    assert!(
        text.lines().any(|l| l == "CAIRN_TEST_VISIBLE=visible-42"),
        "env output incomplete:\n{text}"
    );
    for l in text.lines() {
        for prefix in [
            "CAIRN_PASSWORD",
            "CAIRN_NEW_PASSWORD",
            "CAIRN_FROM_PASSWORD",
        ] {
            assert!(
                !l.starts_with(prefix),
                "the command saw {l:?} in its environment"
            );
        }
    }
    for secret in [
        env.password.as_str(),
        "cmd-secret-3141",
        "new-secret-2718",
        "from-secret-1618",
    ] {
        assert!(
            !text.contains(secret),
            "the command's environment holds {secret:?}"
        );
    }
}

/// O_NOATIME is refused (EPERM) on a file we do not own without CAP_FOWNER: root without that
/// capability predicts wrongly, retries without the flag, and must still read every file.
#[test]
fn files_of_others_are_read_when_noatime_is_refused() {
    if !is_root() {
        return; // Only root can drop CAP_FOWNER and own files of another user here.
    }
    let env = Env::new();
    let src = env.path("src");
    for i in 0..3 {
        write(
            &src.join(format!("other{i}")),
            format!("other {i}\n").as_bytes(),
        );
        let c =
            std::ffi::CString::new(src.join(format!("other{i}")).as_os_str().as_encoded_bytes())
                .expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(
            unsafe { libc::lchown(c.as_ptr(), 65534, 65534) },
            0,
            "chown"
        );
    }
    write(&src.join("mine"), b"mine\n");
    let template = env.command();
    let mut c = std::process::Command::new("setpriv");
    c.arg("--bounding-set=-fowner")
        .arg(bin())
        .args(["backup", "--json"])
        .arg(&src)
        .current_dir(env.dir.path());
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let o = run(c, None);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    for (name, want) in [
        ("other0", "other 0\n"),
        ("other2", "other 2\n"),
        ("mine", "mine\n"),
    ] {
        let p = src.join(name);
        let o = env.ok(&[OsStr::new("dump"), OsStr::new("latest"), p.as_os_str()]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{name}");
    }
}
