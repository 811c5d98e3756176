//! Helpers shared by the integration tests: a throw-away repository environment that runs the
//! real `cairn` binary, file builders, and a tree comparison.

#![allow(dead_code)]

use std::ffi::{CString, OsStr};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery staple";

/// Longest any single cairn invocation may take before the test fails (instead of hanging).
pub const TIMEOUT: Duration = Duration::from_secs(150);

/// The binary under test: `$CAIRN_TEST_BIN` when set, else the one cargo built. (Worktrees
/// that share one CARGO_TARGET_DIR also share its uplifted `release/cairn`, which is whichever
/// worktree built last; point CAIRN_TEST_BIN at your own `release/deps/cairn-<hash>`.)
pub fn bin() -> String {
    std::env::var("CAIRN_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cairn").to_string())
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A temporary folder holding `repo/` and `cache/`, and the settings to reach them.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub cache: PathBuf,
    pub password: String,
    /// When set, cairn runs as this uid (and the same gid) through `setpriv`.
    pub run_as: Option<u32>,
    /// Extra environment for every cairn command (a remote store's settings).
    pub vars: Vec<(String, String)>,
}

impl Env {
    /// An environment without a repository yet.
    pub fn uninit() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("cairn-it-")
            .tempdir()
            .expect("tempdir");
        let repo = dir.path().join("repo");
        let cache = dir.path().join("cache");
        Env {
            dir,
            repo,
            cache,
            password: PASSWORD.to_string(),
            run_as: None,
            vars: Vec::new(),
        }
    }

    /// An environment whose repository is `location` in a remote store reached with `vars`
    /// (not initialised yet); the cache is local as usual.
    pub fn remote(location: &str, vars: Vec<(String, String)>) -> Env {
        let mut e = Env::uninit();
        e.repo = PathBuf::from(location);
        e.vars = vars;
        e
    }

    /// An environment with a freshly initialised repository.
    pub fn new() -> Env {
        Env::with_init(&[])
    }

    /// An environment initialised with extra `init` arguments.
    pub fn with_init(args: &[&str]) -> Env {
        let e = Env::uninit();
        e.init(args);
        e
    }

    /// A repository with small chunks (64 KiB) and 1 MiB packs, so a few MiB of data spread
    /// over many packs (prune, repair and concurrency tests).
    pub fn small() -> Env {
        Env::with_init(&["--chunk-size", "65536", "--pack-size", "1"])
    }

    pub fn init(&self, args: &[&str]) {
        let mut a = vec!["init"];
        a.extend_from_slice(args);
        self.ok(&a);
    }

    /// A path inside the environment's folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A `cairn` command with this environment's repository, password and cache.
    pub fn command(&self) -> Command {
        let mut c = match self.run_as {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        for v in [
            "CAIRN_PASSWORD_FILE",
            "CAIRN_PASSWORD_COMMAND",
            "CAIRN_NEW_PASSWORD",
            "CAIRN_NEW_PASSWORD_FILE",
            "CAIRN_THREADS",
        ] {
            c.env_remove(v);
        }
        c.env("CAIRN_REPOSITORY", &self.repo)
            .env("CAIRN_PASSWORD", &self.password)
            .env("CAIRN_CACHE_DIR", &self.cache)
            .env("CAIRN_KDF_MEMORY_KIB", "1024")
            .env("CAIRN_KDF_ITERATIONS", "1")
            .current_dir(self.dir.path());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    /// [`Self::command`] run under libfaketime with the clock moved by `offset` (`"+25h"`,
    /// `"-2h"`): a host whose clock is wrong. The store's timestamps are not moved.
    pub fn command_skewed(&self, offset: &str) -> Command {
        let base = self.command();
        let mut c = Command::new("faketime");
        c.arg("-f").arg(offset).arg(base.get_program());
        c.args(base.get_args());
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = base.get_current_dir() {
            c.current_dir(d);
        }
        c
    }

    /// Run cairn with `args` on a clock moved by `offset` ([`Self::command_skewed`]).
    pub fn cairn_skewed<S: AsRef<OsStr>>(&self, offset: &str, args: &[S]) -> Output {
        let mut c = self.command_skewed(offset);
        c.args(args);
        run(c, None)
    }

    /// Run cairn with `args` (stdin empty).
    pub fn cairn<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let mut c = self.command();
        c.args(args);
        run(c, None)
    }

    /// Run cairn with `args` after letting `f` adjust the command (env, ...).
    pub fn cairn_with<S: AsRef<OsStr>>(&self, args: &[S], f: impl FnOnce(&mut Command)) -> Output {
        let mut c = self.command();
        c.args(args);
        f(&mut c);
        run(c, None)
    }

    /// Run cairn with `args`, feeding `input` on stdin.
    pub fn cairn_stdin<S: AsRef<OsStr>>(&self, args: &[S], input: &[u8]) -> Output {
        let mut c = self.command();
        c.args(args);
        run(c, Some(input.to_vec()))
    }

    /// Run cairn and require exit 0.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let o = self.cairn(args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "cairn {} failed\n{}",
            show_args(args),
            describe(&o)
        );
        o
    }

    /// `backup --json ARGS`, required to succeed; returns the summary object.
    pub fn backup<S: AsRef<OsStr>>(&self, args: &[S]) -> serde_json::Value {
        let mut a: Vec<&OsStr> = vec![OsStr::new("backup"), OsStr::new("--json")];
        a.extend(args.iter().map(|s| s.as_ref()));
        let o = self.ok(&a);
        summary(&o)
    }

    /// All snapshots (`snapshots --json`), oldest first.
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let o = self.ok(&["snapshots", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("snapshots --json is not JSON ({e})\n{}", describe(&o)));
        v.as_array()
            .unwrap_or_else(|| panic!("snapshots --json is not an array: {v}"))
            .clone()
    }

    /// Paths listed by `ls --json SNAPSHOT`.
    pub fn ls(&self, snapshot: &str) -> Vec<String> {
        let o = self.ok(&["ls", "--json", snapshot]);
        json_lines(&o.stdout)
            .iter()
            .filter_map(|v| v["path"].as_str().map(String::from))
            .collect()
    }
}

fn show_args<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| format!("{:?}", a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run a command with a timeout, capturing stdout and stderr.
pub fn run(mut c: Command, input: Option<Vec<u8>>) -> Output {
    c.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    let feeder = input.map(|data| {
        let mut stdin = child.stdin.take().expect("stdin");
        std::thread::spawn(move || {
            // The child may exit before reading everything; that is for the test to judge.
            let _ = stdin.write_all(&data);
        })
    });
    let out = wait_output(&mut child, TIMEOUT, &format!("{c:?}"));
    if let Some(f) = feeder {
        let _ = f.join();
    }
    out
}

/// Wait for a child whose stdout/stderr are piped, killing it after `timeout`.
pub fn wait_output(child: &mut Child, timeout: Duration, what: &str) -> Output {
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {timeout:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: to.join().unwrap_or_default(),
        stderr: te.join().unwrap_or_default(),
    }
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn describe(o: &Output) -> String {
    let cut = |b: &[u8]| {
        if b.len() > 4000 {
            format!(
                "{}…[{} bytes]",
                String::from_utf8_lossy(&b[..4000]),
                b.len()
            )
        } else {
            String::from_utf8_lossy(b).into_owned()
        }
    };
    format!(
        "status: {}\nstdout: {}\nstderr: {}",
        o.status,
        cut(&o.stdout),
        cut(&o.stderr)
    )
}

/// The JSON lines of an output (lines that are not JSON are skipped).
pub fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `{"message_type":"summary"}` line of a `--json` command.
pub fn summary(o: &Output) -> serde_json::Value {
    json_lines(&o.stdout)
        .into_iter()
        .rev()
        .find(|v| v["message_type"] == "summary")
        .unwrap_or_else(|| panic!("no JSON summary in the output\n{}", describe(o)))
}

/// A u64 field of a JSON object.
pub fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("field {key:?} missing or not a number in {v}"))
}

/// Assert a failed command: exit code `code`, stderr exactly one non-empty line; returns it.
pub fn assert_fails_one_line(o: &Output, code: i32, what: &str) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: expected exit {code}\n{}",
        describe(o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one line on stderr\n{}",
        describe(o)
    );
    lines[0].to_string()
}

/// Deterministic pseudo-random bytes (xorshift64*): incompressible, distinct per seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let mut g = Rng::new(seed);
    while v.len() < len {
        v.extend_from_slice(&g.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03 | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut s = self.0;
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        self.0 = s;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Write `len` pseudo-random bytes to `path`, streaming.
pub fn write_random(path: &Path, seed: u64, len: u64) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    let mut f =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let mut g = Rng::new(seed);
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        for w in buf.chunks_mut(8) {
            let x = g.next().to_le_bytes();
            w.copy_from_slice(&x[..w.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
}

/// Create the parent folders of `path` and write `data` to it.
pub fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in path")
}

/// Set mtime (and leave atime) with ns precision, not following symlinks.
pub fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let ts = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: sec as libc::time_t,
            tv_nsec: nsec as _,
        },
    ];
    utimensat(path, ts);
}

/// Set atime (and leave mtime), not following symlinks.
pub fn set_atime(path: &Path, sec: i64, nsec: i64) {
    let ts = [
        libc::timespec {
            tv_sec: sec as libc::time_t,
            tv_nsec: nsec as _,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    utimensat(path, ts);
}

/// Create a fifo.
pub fn mkfifo(path: &Path, mode: u32) {
    let c = cpath(path);
    // SAFETY: valid path.
    let r = unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) };
    assert_eq!(
        r,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Every path below `root` (not `root` itself), parents before children, sorted.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", root.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    for p in names {
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).expect("lstat").is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

/// Whether two regular files hold the same bytes.
pub fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).expect("open a"),
        std::fs::File::open(b).expect("open b"),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).expect("read") {
            0 => break,
            k => n += k,
        }
    }
    n
}

fn user_xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = match xattr::list(p) {
        Ok(names) => names
            .filter(|n| n.as_bytes().starts_with(b"user."))
            .map(|n| {
                let val = xattr::get(p, &n).ok().flatten().unwrap_or_default();
                (n.as_bytes().to_vec(), val)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn kind(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_file() {
        "file"
    } else if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "chardev"
    } else {
        "other"
    }
}

/// Compare one entry's metadata (and content or link target); differences are appended.
fn compare_entry(a: &Path, b: &Path, diffs: &mut Vec<String>) {
    let ma = std::fs::symlink_metadata(a).expect("lstat source");
    let mb = match std::fs::symlink_metadata(b) {
        Ok(m) => m,
        Err(e) => {
            diffs.push(format!("{:?}: missing in the restore ({e})", b));
            return;
        }
    };
    let (ka, kb) = (kind(&ma), kind(&mb));
    if ka != kb {
        diffs.push(format!("{:?}: type {ka} restored as {kb}", b));
        return;
    }
    if ka != "symlink" && ma.mode() & 0o7777 != mb.mode() & 0o7777 {
        diffs.push(format!(
            "{:?}: mode {:o} restored as {:o}",
            b,
            ma.mode() & 0o7777,
            mb.mode() & 0o7777
        ));
    }
    if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
        diffs.push(format!(
            "{:?}: mtime {}.{:09} restored as {}.{:09}",
            b,
            ma.mtime(),
            ma.mtime_nsec(),
            mb.mtime(),
            mb.mtime_nsec()
        ));
    }
    if is_root() && (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
        diffs.push(format!(
            "{:?}: owner {}:{} restored as {}:{}",
            b,
            ma.uid(),
            ma.gid(),
            mb.uid(),
            mb.gid()
        ));
    }
    match ka {
        "file" => {
            if ma.len() != mb.len() {
                diffs.push(format!(
                    "{:?}: size {} restored as {}",
                    b,
                    ma.len(),
                    mb.len()
                ));
            } else if !same_content(a, b) {
                diffs.push(format!("{:?}: content differs", b));
            }
        }
        "symlink" => {
            let (ta, tb) = (
                std::fs::read_link(a).expect("readlink"),
                std::fs::read_link(b).expect("readlink"),
            );
            if ta != tb {
                diffs.push(format!(
                    "{:?}: link target {:?} restored as {:?}",
                    b, ta, tb
                ));
            }
        }
        _ => {}
    }
    if ka != "symlink" {
        let (xa, xb) = (user_xattrs(a), user_xattrs(b));
        if xa != xb {
            diffs.push(format!("{:?}: xattrs {:?} restored as {:?}", b, xa, xb));
        }
    }
}

/// Compare the tree at `src` with its restore at `dst`: the same entries with the same type,
/// mode bits, mtime (ns), owner (as root), content, link targets and user xattrs. With
/// `check_root`, `dst` itself must match `src` too. Returns the differences (empty = equal).
pub fn compare_trees(src: &Path, dst: &Path, check_root: bool) -> Vec<String> {
    let mut diffs = Vec::new();
    if check_root {
        compare_entry(src, dst, &mut diffs);
    }
    let sa: Vec<PathBuf> = walk(src)
        .iter()
        .map(|p| p.strip_prefix(src).expect("prefix").to_path_buf())
        .collect();
    let sb: Vec<PathBuf> = if dst.is_dir() {
        walk(dst)
            .iter()
            .map(|p| p.strip_prefix(dst).expect("prefix").to_path_buf())
            .collect()
    } else {
        Vec::new()
    };
    for extra in sb.iter().filter(|p| !sa.contains(p)) {
        diffs.push(format!(
            "{:?}: in the restore but not in the source",
            dst.join(extra)
        ));
    }
    for rel in &sa {
        compare_entry(&src.join(rel), &dst.join(rel), &mut diffs);
    }
    diffs
}

/// Assert `compare_trees` finds nothing.
pub fn assert_same_tree(src: &Path, dst: &Path, check_root: bool) {
    let d = compare_trees(src, dst, check_root);
    assert!(
        d.is_empty(),
        "restore of {} at {} differs:\n  {}",
        src.display(),
        dst.display(),
        d.join("\n  ")
    );
}

/// Where a restore of a whole snapshot puts `src`: below the target, at its absolute path.
pub fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").expect("absolute source path"))
}

/// Give every entry below `root` (and `root`) an atime an hour ahead, so that reading them
/// (relatime) does not change the atime a later backup records.
pub fn freeze_atimes(root: &Path) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    set_atime(root, now + 3600, 0);
    for p in walk(root) {
        set_atime(&p, now + 3600, 0);
    }
}

/// Repository objects under a folder (recursively): regular files named by 64 hex digits.
/// Tolerates a folder that does not exist yet and entries that vanish while listing (temporary
/// files renamed into place by a running backup).
pub fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => out.extend(objects(&p)),
            Ok(m) if m.is_file() => {
                let name = e.file_name();
                let n = name.as_bytes();
                if n.len() == 64 && n.iter().all(|b| b.is_ascii_hexdigit()) {
                    out.push(p);
                }
            }
            _ => {}
        }
    }
    out.sort();
    out
}

/// Number of directories from `/` down to `p` inclusive, plus the root: the trees a snapshot
/// of `p` needs above `p`'s own content.
pub fn path_depth(p: &Path) -> u64 {
    p.components().count() as u64
}

/// The id of the tree of folder `path` (absolute) inside the snapshot tree `root`.
pub fn subtree_id(env: &Env, root: &str, path: &Path) -> String {
    let mut id = root.to_string();
    for comp in path.components().skip(1) {
        let name = comp.as_os_str().to_str().expect("UTF-8 path");
        let o = env.ok(&["cat", "tree", &id]);
        let t: serde_json::Value = serde_json::from_slice(&o.stdout).expect("cat tree JSON");
        let node = t["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in tree {id}: {t}"));
        id = node["subtree"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no subtree: {node}"))
            .to_string();
    }
    id
}

/// lstat figures of every folder from `/` down to `p`'s parent (what a snapshot records of them).
pub fn ancestor_stats(p: &Path) -> Vec<(PathBuf, i64, i64, i64, i64, i64, i64)> {
    p.ancestors()
        .skip(1)
        .map(|a| {
            let m = std::fs::symlink_metadata(a).expect("lstat");
            (
                a.to_path_buf(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.atime(),
                m.atime_nsec(),
            )
        })
        .collect()
}

/// `utimensat` without following symlinks; panics with the path on failure.
fn utimensat(path: &Path, ts: [libc::timespec; 2]) {
    let c = cpath(path);
    // SAFETY: valid NUL-terminated path and two initialised timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        r,
        0,
        "utimensat {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// `cp -a FROM TO` (missing parents of `to` created first): a copy that keeps modes and times.
pub fn copy_tree(from: &Path, to: &Path) {
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// The snapshot id of a `backup --json` summary.
pub fn snapshot_id(s: &serde_json::Value) -> String {
    s["snapshot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot id in {s}"))
        .to_string()
}

/// `check ARGS` must exit 0.
pub fn check_clean(env: &Env, args: &[&str], what: &str) {
    let mut a = vec!["check"];
    a.extend_from_slice(args);
    let o = env.cairn(&a);
    assert_eq!(o.status.code(), Some(0), "{what}: check\n{}", describe(&o));
}

/// Restore snapshot `id` (of source `src`) into `target` and compare it with `copy`, the
/// source as it was when the snapshot was taken.
pub fn restore_matches(env: &Env, id: &str, copy: &Path, src: &Path, target: &str) {
    let t = env.path(target);
    let o = env.cairn(&["restore", id, "--target", t.to_str().expect("UTF-8 path")]);
    assert_eq!(o.status.code(), Some(0), "restore {id}\n{}", describe(&o));
    assert_same_tree(copy, &restored(&t, src), false);
}

/// Write a snapshot as another holder of the repository's keys could: `build` stores blobs
/// through one writer (trees bottom-up) and returns the root tree; once the writer has
/// finished, a snapshot of that root (host `host`, user `mallory`, path `/x`, taken at
/// `time_ns`) is saved.
pub fn craft_snapshot(
    env: &Env,
    host: &str,
    time_ns: i64,
    build: impl FnOnce(&cairn::repo::Repository, &cairn::repo::writer::BlobWriter) -> cairn::Id,
) {
    use cairn::format::snapshot::{Snapshot, SnapshotKind, Summary};
    use cairn::repo::writer::{BlobWriter, WriterOptions};
    let backend = cairn::backend::Backend::open(env.repo.to_str().unwrap(), false).unwrap();
    let repo = cairn::repo::Repository::open(backend, env.password.as_bytes(), &env.cache).unwrap();
    let w = BlobWriter::new(
        repo.clone(),
        WriterOptions {
            threads: 2,
            dry_run: false,
        },
    )
    .unwrap();
    let root = build(&repo, &w);
    w.finish().unwrap();
    repo.save_snapshot(&Snapshot {
        version: cairn::format::VERSION,
        time_ns,
        host: host.into(),
        user: "mallory".into(),
        paths: vec![serde_bytes::ByteBuf::from(b"/x".to_vec())],
        tags: vec![],
        tree: root,
        parent: None,
        kind: SnapshotKind::Full,
        summary: Summary::default(),
        program: "crafted".into(),
        pg: None,
    })
    .unwrap();
}
