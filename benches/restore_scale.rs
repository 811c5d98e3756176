//! Synthetic scale test of restore (a benchmark, not a CI test): synthesize a snapshot of N
//! files through the library (no source files, no backup), then run the real `cairn` binary on
//! it as a child and report each command's wall time and peak RSS (`wait4` rusage, so only that
//! child counts):
//!
//! - `cairn restore latest --target DIR -q` (the restored tree is deleted afterwards),
//! - `cairn restore latest --target DIR --dry-run -q`,
//! - `cairn ls latest > /dev/null`.
//!
//! The goal: peak RSS flat (under 200 MB) from 10^4 to 10^7 files. The snapshot is laid out
//! as folders of 1000 files (`scale/dNNNNN/fNNN`), with a level of group folders above them
//! when there are more than 1000 folders (`scale/gNNN/dNNNNN/fNNN`), so no folder holds more
//! than 1000 entries. All files share 16 small contents (the index stays tiny, but every file
//! costs a blob lookup and a write); every node is realistic (mode 0644, this user's uid/gid,
//! mtime, size, distinct inode numbers, nlink 1), so every tree is distinct.
//!
//! Run: `CAIRN_SCALE_FILES=1000000 cargo bench --bench restore_scale` (default 100000).
//! Options: `CAIRN_SCALE_EMPTY=1` makes every file empty (no content blob);
//! `CAIRN_SCALE_RESTORE=0` skips the real restore (only `ls` and the dry run, which create no
//! files: quick even at 10^7 files, where creating and deleting the files takes an hour);
//! `CAIRN_SCALE_KEEP=1` keeps the scratch folder (repository and cache, for profiling the
//! commands by hand) and prints its path;
//! `CAIRN_SCALE_DIR` is the scratch folder (default /var/tmp; the repository, cache and
//! restore target go in a temporary folder inside it, removed at the end).
//! Each measurement prints one line: `restore_scale files=N op=OP wall_s=S peak_rss_mib=M`.

use bytes::Bytes;
use cairn::backend::Backend;
use cairn::crypto::kdf::KdfParams;
use cairn::format::VERSION;
use cairn::format::pack::BlobKind;
use cairn::format::snapshot::{Snapshot, SnapshotKind, Summary};
use cairn::format::tree::{Node, NodeKind, Tree};
use cairn::id::Id;
use cairn::repo::writer::{BlobWriter, WriterOptions};
use cairn::repo::{InitOptions, Repository};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const PER_DIR: u64 = 1000;
const CONTENTS: usize = 16;
const PASSWORD: &str = "scale";

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// What every node shares.
struct Owner {
    uid: u32,
    gid: u32,
    user: String,
    mtime_ns: i64,
}

impl Owner {
    fn node(&self, name: String, kind: NodeKind, inode: u64) -> Node {
        let mut n = Node::new(name.into_bytes(), kind);
        n.mode = match kind {
            NodeKind::Dir => 0o040755,
            _ => 0o100644,
        };
        n.uid = self.uid;
        n.gid = self.gid;
        n.user = self.user.clone();
        n.mtime_ns = self.mtime_ns;
        n.ctime_ns = self.mtime_ns;
        n.inode = inode;
        n.device = 2049;
        n.nlink = if kind == NodeKind::Dir { 2 } else { 1 };
        n
    }
}

/// Stores trees through the writer.
struct Trees<'a> {
    writer: &'a BlobWriter,
    count: u64,
}

impl Trees<'_> {
    fn store(&mut self, nodes: Vec<Node>) -> Id {
        let tree = Tree {
            version: VERSION,
            nodes,
        };
        let bytes = Bytes::from(tree.encode().expect("encode tree"));
        self.count += 1;
        self.writer.add(BlobKind::Tree, bytes).expect("add tree").0
    }
}

/// Synthesize the repository and its one snapshot; returns the number of trees written.
fn synthesize(repo_dir: &Path, cache_dir: &Path, files: u64, empty: bool) -> u64 {
    let backend = Backend::open(repo_dir.to_str().expect("utf8"), true).expect("backend");
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        },
        ..Default::default()
    };
    let repo = Repository::init(backend, PASSWORD.as_bytes(), &opts, cache_dir).expect("init");
    let writer = BlobWriter::new(
        repo.clone(),
        WriterOptions {
            threads: 2,
            dry_run: false,
        },
    )
    .expect("writer");
    // 16 contents of different sizes (100 B to ~4 KiB).
    let contents: Vec<(Id, u64)> = (0..CONTENTS)
        .map(|k| {
            let line = format!("synthetic content {k:02} for the restore scale benchmark\n");
            let data = line.repeat(2 + k * k / 3);
            let (id, _) = writer
                .add(BlobKind::Data, Bytes::from(data.clone().into_bytes()))
                .expect("add data");
            (id, data.len() as u64)
        })
        .collect();
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let owner = Owner {
        uid,
        gid,
        user: std::env::var("USER").unwrap_or_default(),
        mtime_ns: now_ns() - 86_400_000_000_000,
    };
    let mut trees = Trees {
        writer: &writer,
        count: 0,
    };
    let dirs = files.div_ceil(PER_DIR);
    let grouped = dirs > PER_DIR;
    let mut inode = 1000u64;
    let mut made = 0u64;
    let mut bytes_total = 0u64;
    let mut top: Vec<Node> = Vec::new();
    let mut group: Vec<Node> = Vec::new();
    for d in 0..dirs {
        let mut nodes = Vec::with_capacity(PER_DIR as usize);
        for f in 0..PER_DIR.min(files - made) {
            inode += 1;
            let mut n = owner.node(format!("f{f:03}"), NodeKind::File, inode);
            if !empty {
                let (id, size) = contents[(made as usize + f as usize) % CONTENTS];
                n.content = vec![id];
                n.size = size;
                bytes_total += size;
            }
            nodes.push(n);
        }
        made += nodes.len() as u64;
        inode += 1;
        let mut dn = owner.node(format!("d{d:05}"), NodeKind::Dir, inode);
        dn.subtree = Some(trees.store(nodes));
        if grouped {
            group.push(dn);
            if group.len() as u64 == PER_DIR || d + 1 == dirs {
                inode += 1;
                let mut gn = owner.node(format!("g{:03}", d / PER_DIR), NodeKind::Dir, inode);
                gn.subtree = Some(trees.store(std::mem::take(&mut group)));
                top.push(gn);
            }
        } else {
            top.push(dn);
        }
    }
    let mut scale = owner.node("scale".into(), NodeKind::Dir, 999);
    scale.subtree = Some(trees.store(top));
    let root = trees.store(vec![scale]);
    let tree_count = trees.count;
    let stats = writer.finish().expect("finish");
    let started = now_ns();
    let snap = Snapshot {
        version: VERSION,
        time_ns: started,
        host: "scale-bench".into(),
        user: owner.user.clone(),
        paths: vec![serde_bytes::ByteBuf::from(b"/scale".to_vec())],
        tags: vec!["synthetic".into()],
        tree: root,
        parent: None,
        kind: SnapshotKind::Full,
        summary: Summary {
            files_new: files,
            dirs: tree_count,
            bytes_total,
            blobs_added: stats.blobs,
            bytes_added_raw: stats.bytes_raw,
            bytes_added_stored: stats.bytes_stored,
            started_ns: started,
            finished_ns: started,
            ..Default::default()
        },
        program: format!("cairn {} (restore_scale bench)", env!("CARGO_PKG_VERSION")),
        pg: None,
    };
    repo.save_snapshot(&snap).expect("save snapshot");
    // The child must find the cache free (RocksDB holds a lock while the repository is open).
    drop(repo);
    tree_count
}

/// Run `cairn ARGS` with stdout to /dev/null; returns (wall seconds, peak RSS in KiB).
fn measure(bin: &Path, env: &[(&str, &Path)], args: &[&str]) -> (f64, u64) {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .env("CAIRN_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t = Instant::now();
    let child = cmd.spawn().expect("spawn cairn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for this child only.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our un-waited child; the pointers are valid for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t.elapsed().as_secs_f64();
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "cairn {args:?} failed: status {status:#x}"
    );
    // The child is reaped: std must not wait for it again (dropping a Child does not).
    drop(child);
    (wall, ru.ru_maxrss as u64)
}

/// Count regular files under `dir` (checks the restore wrote them all).
fn count_files(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let t = e.file_type().expect("type");
        if t.is_dir() {
            n += count_files(&e.path());
        } else if t.is_file() {
            n += 1;
        }
    }
    n
}

/// Remove a big restored tree with two threads (one per half of its folders).
fn remove_tree(dir: &Path) {
    let mut leaves: Vec<PathBuf> = Vec::new();
    let scale = dir.join("scale");
    if let Ok(rd) = std::fs::read_dir(&scale) {
        for e in rd.flatten() {
            leaves.push(e.path());
        }
    }
    let half = leaves.len() / 2;
    let (a, b) = leaves.split_at(half);
    std::thread::scope(|s| {
        for part in [a, b] {
            s.spawn(move || {
                for p in part {
                    let _ = std::fs::remove_dir_all(p);
                }
            });
        }
    });
    let _ = std::fs::remove_dir_all(dir);
}

fn line(files: u64, op: &str, wall: f64, rss_kib: u64) {
    println!(
        "restore_scale files={files} op={op} wall_s={wall:.1} peak_rss_mib={:.1}",
        rss_kib as f64 / 1024.0
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("restore_scale: benchmark");
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let files: u64 = std::env::var("CAIRN_SCALE_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let empty = std::env::var("CAIRN_SCALE_EMPTY").is_ok_and(|v| v == "1");
    let real = std::env::var("CAIRN_SCALE_RESTORE").map_or(true, |v| v != "0");
    let keep = std::env::var("CAIRN_SCALE_KEEP").is_ok_and(|v| v == "1");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_cairn"));
    let scratch = tempfile::tempdir_in(
        std::env::var("CAIRN_SCALE_DIR").unwrap_or_else(|_| "/var/tmp".into()),
    )
    .expect("tmp");
    let repo_dir = scratch.path().join("repo");
    let cache_dir = scratch.path().join("cache");
    let target = scratch.path().join("restored");

    let t = Instant::now();
    let trees = synthesize(&repo_dir, &cache_dir, files, empty);
    println!(
        "restore_scale files={files} op=synthesize trees={trees} empty={empty} wall_s={:.1}",
        t.elapsed().as_secs_f64()
    );

    let env: [(&str, &Path); 2] = [
        ("CAIRN_REPOSITORY", &repo_dir),
        ("CAIRN_CACHE_DIR", &cache_dir),
    ];
    let tgt = target.to_str().expect("utf8");
    if keep {
        let kept = scratch.keep();
        println!(
            "restore_scale kept repository={} cache={} password={PASSWORD}",
            kept.join("repo").display(),
            kept.join("cache").display()
        );
    }
    let (wall, rss) = measure(&bin, &env, &["ls", "latest"]);
    line(files, "ls", wall, rss);
    let (wall, rss) = measure(
        &bin,
        &env,
        &["restore", "latest", "--target", tgt, "--dry-run", "-q"],
    );
    line(files, "restore_dry_run", wall, rss);
    if !real {
        return;
    }
    let (wall, rss) = measure(&bin, &env, &["restore", "latest", "--target", tgt, "-q"]);
    line(files, "restore", wall, rss);

    let t = Instant::now();
    let restored = count_files(&target);
    assert_eq!(restored, files, "restored file count");
    remove_tree(&target);
    println!(
        "restore_scale files={files} op=count_and_delete wall_s={:.1}",
        t.elapsed().as_secs_f64()
    );
}
