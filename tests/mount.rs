//! `cairn mount`: a real FUSE mount of a repository (the tests run as root, with fuse3
//! installed by .ci/run). A test that cannot mount fails; none is skipped.

use crate::util::*;
use std::ffi::OsStr;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `cairn mount`, unmounted (SIGTERM) when dropped.
struct Mounted {
    child: Option<Child>,
    dir: PathBuf,
}

fn is_mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    let d = dir.to_str().expect("UTF-8 path");
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(d))
}

impl Mounted {
    /// Mount `env`'s repository at `dir` (created), refreshing every second, and wait until
    /// the tree is there.
    fn new(env: &Env, dir: &Path, extra: &[&str]) -> Mounted {
        std::fs::create_dir_all(dir).expect("mkdir mountpoint");
        let mut c = env.command();
        c.arg("mount")
            .arg(dir)
            .args(["--refresh", "1s"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn cairn mount");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(is_mounted(dir) && dir.join("snapshots").is_dir()) {
            if let Some(st) = child.try_wait().expect("try_wait") {
                let o = wait_output(&mut child, TIMEOUT, "cairn mount");
                panic!(
                    "cairn mount exited ({st}) before mounting\n{}",
                    describe(&o)
                );
            }
            assert!(
                Instant::now() < deadline,
                "cairn mount did not mount in 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mounted {
            child: Some(child),
            dir: dir.to_path_buf(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Send `sig`, require a clean exit (0) and the mount gone.
    fn stop_with(mut self, sig: i32) {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let o = wait_output(&mut child, Duration::from_secs(30), "cairn mount exit");
        assert_eq!(o.status.code(), Some(0), "mount exit\n{}", describe(&o));
        assert!(!is_mounted(&self.dir), "still mounted after the signal");
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = wait_output(&mut c, Duration::from_secs(30), "cairn mount exit");
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.dir)
                .status();
        }
    }
}

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// Whether any process holds a lock on the cache database's LOCK file.
fn cache_is_locked(env: &Env) -> bool {
    let lock = std::fs::read_dir(&env.cache)
        .expect("cache folder")
        .flatten()
        .map(|e| e.path().join("LOCK"))
        .find(|p| p.exists())
        .expect("a cache database");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock)
        .expect("open LOCK");
    // SAFETY: a zeroed flock is valid; F_GETLK only writes into it.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    use std::os::fd::AsRawFd;
    // SAFETY: valid descriptor and struct.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
    assert_eq!(r, 0, "F_GETLK: {}", std::io::Error::last_os_error());
    fl.l_type != libc::F_UNLCK as libc::c_short
}

#[test]
fn the_mounted_latest_snapshot_matches_its_source() {
    let env = Env::new();
    let src = env.path("src");
    write_random(&src.join("big.bin"), 1, 3 << 20);
    write(&src.join("dir/small.txt"), b"small\n");
    write(&src.join("dir/empty"), b"");
    write(&src.join("dir/deeper/x.conf"), b"x = 1\n");
    write(&src.join("name with spaces \u{e9}"), b"odd name\n");
    chmod(&src.join("dir/small.txt"), 0o640);
    chmod(&src.join("dir/deeper"), 0o711);
    std::os::unix::fs::symlink("dir/small.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", src.join("dangling")).unwrap();
    mkfifo(&src.join("fifo"), 0o600);
    std::fs::hard_link(src.join("dir/small.txt"), src.join("hard")).unwrap();
    xattr::set(src.join("dir/small.txt"), "user.note", b"hello").unwrap();
    std::os::unix::fs::chown(src.join("dir/empty"), Some(1234), Some(5678)).unwrap();
    set_mtime(&src.join("dir/deeper/x.conf"), 1_600_000_000, 123_456_789);
    set_mtime(&src.join("dir/deeper"), 1_500_000_000, 1);
    let arg = src.to_str().unwrap();
    env.backup(&["--tag", "first", "--host", "alpha", arg]);
    let s = env.backup(&["--tag", "second", "--host", "beta", arg]);
    let id = snapshot_id(&s);

    let mnt = env.path("mnt");
    let m = Mounted::new(&env, &mnt, &[]);
    let latest = mnt.join("snapshots/latest");
    let mounted = restored(&latest, &src);
    // (diff reports any two fifos as different: compare_trees below covers it.)
    let o = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg("--exclude=fifo")
        .arg(&src)
        .arg(&mounted)
        .output()
        .expect("diff");
    assert!(
        o.status.success(),
        "diff -r --no-dereference\n{}",
        describe(&o)
    );
    // Modes, owners, mtimes (ns), link targets, user xattrs, content.
    assert_same_tree(&src, &mounted, true);
    let hard = std::fs::metadata(mounted.join("hard")).unwrap();
    assert_eq!(hard.nlink(), 2, "link count");
    assert_eq!(
        std::fs::symlink_metadata(mounted.join("link"))
            .unwrap()
            .len(),
        "dir/small.txt".len() as u64
    );

    // Every listing reaches the same snapshot.
    let short = &id[..8];
    for p in [
        format!("ids/{short}"),
        "hosts/beta/latest".to_string(),
        "tags/second/latest".to_string(),
        "ids/latest".to_string(),
    ] {
        let f = restored(&mnt.join(&p), &src).join("dir/small.txt");
        assert_eq!(std::fs::read(&f).unwrap(), b"small\n", "{p}");
    }
    assert_eq!(
        std::fs::read_dir(mnt.join("hosts"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<std::collections::BTreeSet<_>>(),
        ["alpha", "beta"].iter().map(|s| s.into()).collect()
    );
    assert!(std::fs::read_link(mnt.join("tags/first/latest")).is_ok());

    // Nothing can be changed.
    let f = mounted.join("dir/small.txt");
    assert_eq!(
        errno_of(std::fs::OpenOptions::new().write(true).open(&f)),
        Some(libc::EROFS)
    );
    assert_eq!(
        errno_of(std::fs::write(mounted.join("new"), b"x")),
        Some(libc::EROFS)
    );
    assert_eq!(
        errno_of(std::fs::create_dir(mounted.join("d"))),
        Some(libc::EROFS)
    );
    assert_eq!(errno_of(std::fs::remove_file(&f)), Some(libc::EROFS));
    assert_eq!(
        errno_of(std::fs::rename(&f, mounted.join("renamed"))),
        Some(libc::EROFS)
    );
    assert_eq!(errno_of(xattr::set(&f, "user.x", b"y")), Some(libc::EROFS));
    assert_eq!(errno_of(xattr::remove(&f, "user.note")), Some(libc::EROFS));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        errno_of(std::fs::set_permissions(
            &f,
            std::fs::Permissions::from_mode(0o777)
        )),
        Some(libc::EROFS)
    );
    assert_eq!(
        errno_of(std::os::unix::fs::chown(&f, Some(1), Some(1))),
        Some(libc::EROFS)
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("x", mounted.join("newlink"))),
        Some(libc::EROFS)
    );
    assert_eq!(
        errno_of(std::fs::hard_link(&f, mounted.join("newhard"))),
        Some(libc::EROFS)
    );
    // Reading still works after all that, and the xattr is listed.
    assert_eq!(std::fs::read(&f).unwrap(), b"small\n");
    assert_eq!(
        xattr::list(&f).unwrap().collect::<Vec<_>>(),
        vec![std::ffi::OsString::from("user.note")]
    );
    assert_eq!(
        errno_of(std::fs::create_dir(mnt.join("snapshots/new"))),
        Some(libc::EROFS)
    );
    m.stop_with(libc::SIGINT);
}

#[test]
fn random_ranges_of_a_large_file_fetch_only_their_blobs() {
    // 64 KiB chunks: the 96 MiB file is ~1500 blobs.
    let env = Env::small();
    let src = env.path("src");
    let len: u64 = 96 << 20;
    write_random(&src.join("large.bin"), 7, len);
    env.backup(&[src.to_str().unwrap()]);
    let mnt = env.path("mnt");
    let m = Mounted::new(&env, &mnt, &["--cache-size", "8M"]);
    let io = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
        s.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("rchar")
    };
    let before = io(m.pid());
    let local = std::fs::File::open(src.join("large.bin")).unwrap();
    let remote =
        std::fs::File::open(restored(&mnt.join("snapshots/latest"), &src).join("large.bin"))
            .unwrap();
    assert_eq!(remote.metadata().unwrap().len(), len);
    let mut rng = Rng::new(99);
    let mut asked = 0u64;
    for i in 0..40 {
        let n = 1 + (rng.next() % (200 << 10)) as usize;
        let off = if i == 0 {
            len - 10 // the very end, short read
        } else {
            rng.next() % (len - n as u64)
        };
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        let ka = local.read_at(&mut a, off).unwrap();
        let kb = remote.read_at(&mut b, off).unwrap();
        assert_eq!(ka, kb, "length at {off}");
        assert!(a[..ka] == b[..kb], "content at {off}+{n}");
        asked += n as u64;
    }
    let read = io(m.pid()) - before;
    // Each range touches a few 64 KiB blobs (and the kernel reads ahead a little, more on a
    // busy machine: 13.1 MB once in a loaded CI run): far less than the file.
    assert!(
        read < len / 6,
        "the mount read {read} bytes for {asked} bytes of random ranges of a {len}-byte file"
    );
    m.stop_with(libc::SIGTERM);
}

#[test]
fn hundreds_of_snapshots_are_listed() {
    let env = Env::new();
    let n = 300;
    for i in 0..n {
        // Two per second of recorded time: the second of each pair gets a suffix.
        let t = format!("2026-01-01 10:{:02}:{:02}", i / 120, (i / 2) % 60);
        env.cairn_stdin(
            &[
                "backup",
                "-q",
                "--stdin",
                "--stdin-name",
                "n.txt",
                "--time",
                &t,
            ],
            format!("{i}\n").as_bytes(),
        );
    }
    assert_eq!(env.snapshots().len(), n);
    let mnt = env.path("mnt");
    let m = Mounted::new(&env, &mnt, &[]);
    let names: Vec<String> = std::fs::read_dir(mnt.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), n + 1, "{names:?}");
    assert_eq!(names.iter().filter(|n| n.ends_with("-1")).count(), n / 2);
    assert_eq!(std::fs::read_dir(mnt.join("ids")).unwrap().count(), n + 1);
    // The last two share their time exactly: either may be the latest.
    let last = std::fs::read_to_string(mnt.join("snapshots/latest/n.txt")).unwrap();
    assert!(
        [format!("{}\n", n - 1), format!("{}\n", n - 2)].contains(&last),
        "{last:?}"
    );
    m.stop_with(libc::SIGTERM);
}

#[test]
fn a_snapshot_taken_while_mounted_appears_and_backup_and_prune_run_as_usual() {
    let env = Env::small();
    let src = env.path("src");
    write_random(&src.join("a.bin"), 1, 2 << 20);
    write(&src.join("keep.txt"), b"first\n");
    let arg = src.to_str().unwrap();
    let first = snapshot_id(&env.backup(&[arg]));
    let mnt = env.path("mnt");
    let m = Mounted::new(&env, &mnt, &[]);
    let in_snapshot = |snap: &str, f: &str| restored(&mnt.join(snap), &src).join(f);
    // The mount does not hold the cache.
    assert!(!cache_is_locked(&env), "the mount holds the cache's lock");

    // A backup while mounted: its own cache, not a temporary one (no second full merge), and
    // its snapshot shows within seconds.
    write(&src.join("keep.txt"), b"second\n");
    write_random(&src.join("b.bin"), 2, 2 << 20);
    let second = snapshot_id(&env.backup(&[arg]));
    let temp_left = std::fs::read_dir(&env.cache)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(temp_left, 0);
    let new = mnt.join(format!("ids/{}", &second[..8]));
    let t0 = Instant::now();
    while !new.is_dir() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the new snapshot did not appear"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("new snapshot visible after {:?}", t0.elapsed());
    assert_eq!(
        std::fs::read(in_snapshot(&format!("ids/{}", &second[..8]), "keep.txt")).unwrap(),
        b"second\n"
    );
    assert!(same_content(
        &src.join("b.bin"),
        &in_snapshot("snapshots/latest", "b.bin")
    ));

    // Forget the first snapshot and prune at once (packs repacked and deleted) while mounted:
    // prune works as usual, and the mount follows the new index.
    env.ok(&["forget", &first]);
    let o = env.ok(&["prune", "--instant-delete", "--max-unused", "0"]);
    assert!(o.status.success());
    check_clean(&env, &[], "after a prune while mounted");
    let t0 = Instant::now();
    loop {
        let gone = !mnt.join(format!("ids/{}", &first[..8])).exists();
        let ok = std::fs::read(in_snapshot("snapshots/latest", "a.bin"))
            .is_ok_and(|d| d == std::fs::read(src.join("a.bin")).unwrap());
        if gone && ok {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the mount did not follow the prune: first still listed {}, a.bin {:?}",
            !gone,
            std::fs::read(in_snapshot("snapshots/latest", "a.bin")).map(|d| d.len())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(same_content(
        &src.join("b.bin"),
        &in_snapshot("snapshots/latest", "b.bin")
    ));
    assert!(!cache_is_locked(&env));
    m.stop_with(libc::SIGTERM);
}

#[test]
fn without_fuse_the_mount_fails_at_once_with_one_line() {
    let env = Env::new();
    // A user who is not root, and no fusermount3 on the PATH.
    let mut c = Command::new("/usr/bin/setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .args(["mount", "/tmp"])
        .env("PATH", "/nonexistent")
        .env("CAIRN_REPOSITORY", &env.repo)
        .env("CAIRN_PASSWORD", PASSWORD);
    let t0 = Instant::now();
    let o = run(c, None);
    let msg = assert_fails_one_line(&o, 1, "mount without fusermount3");
    assert!(msg.contains("fusermount3"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Not a folder.
    let o = env.cairn(&[OsStr::new("mount"), env.repo.join("config").as_os_str()]);
    assert_fails_one_line(&o, 1, "mount on a file");
}

#[test]
fn without_dev_fuse_the_mount_fails_at_once_with_one_line() {
    let env = Env::new();
    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // A mount namespace of its own with an empty /dev: no /dev/fuse.
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs none /dev && exec "$0" mount "$1""#)
        .arg(bin())
        .arg(&mnt)
        .env("CAIRN_REPOSITORY", &env.repo)
        .env("CAIRN_PASSWORD", PASSWORD);
    let t0 = Instant::now();
    let o = run(c, None);
    let msg = assert_fails_one_line(&o, 1, "mount without /dev/fuse");
    assert!(msg.contains("/dev/fuse"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn allow_other_lets_other_users_in() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f.txt"), b"x\n");
    env.backup(&[src.to_str().unwrap()]);
    // A mount point other users can reach (the environment's folder is private).
    let open = tempfile::Builder::new()
        .prefix("cairn-it-mnt-")
        .tempdir()
        .unwrap();
    chmod(open.path(), 0o755);
    let mnt = open.path().join("mnt");
    let as_nobody = |p: &Path| {
        Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ls"])
            .arg(p)
            .output()
            .expect("setpriv ls")
    };
    let m = Mounted::new(&env, &mnt, &[]);
    assert!(!as_nobody(&mnt.join("snapshots")).status.success());
    m.stop_with(libc::SIGTERM);
    let m = Mounted::new(&env, &mnt, &["--allow-other"]);
    let o = as_nobody(&mnt.join("snapshots"));
    assert!(o.status.success(), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("latest"));
    m.stop_with(libc::SIGTERM);
}

#[test]
fn many_files_read_at_once_by_several_readers_match_their_source() {
    // Small chunks: the larger files are several blobs; the small ones are read ahead of
    // each other, opened by the background thread or by whichever reader comes first.
    let env = Env::small();
    let src = env.path("src");
    let mut rng = Rng::new(5);
    for i in 0..400u64 {
        let len = if i % 50 == 7 {
            200_000 + rng.next() % 600_000
        } else {
            rng.next() % 20_000
        };
        write_random(&src.join(format!("d{}/f{i:03}", i % 4)), i, len);
    }
    env.backup(&[src.to_str().unwrap()]);
    let mnt = env.path("mnt");
    let m = Mounted::new(&env, &mnt, &["--cache-size", "4M"]);
    let mounted = restored(&mnt.join("snapshots/latest"), &src);
    let files: Vec<PathBuf> = walk(&src)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| p.strip_prefix(&src).unwrap().to_path_buf())
        .collect();
    assert_eq!(files.len(), 400);
    std::thread::scope(|s| {
        for order in 0..3 {
            let (files, src, mounted) = (&files, &src, &mounted);
            s.spawn(move || {
                let mut v: Vec<&PathBuf> = files.iter().collect();
                match order {
                    1 => v.reverse(),
                    2 => v.sort_by_key(|p| p.file_name().map(|n| n.to_os_string())),
                    _ => {}
                }
                for f in v {
                    assert!(
                        same_content(&src.join(f), &mounted.join(f)),
                        "{} differs (reader {order})",
                        f.display()
                    );
                }
            });
        }
    });
    m.stop_with(libc::SIGTERM);
}
