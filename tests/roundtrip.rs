//! Back up an awkward tree and restore it: every type, mode, time, link and name comes back.

use crate::util::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const SPARSE_SIZE: u64 = 30 << 20;

/// Build the tree; returns whether a user xattr could be set on this file system.
/// `big` adds the 20 MiB file and the 30 MiB sparse one.
fn build(src: &Path, big: bool) -> bool {
    std::fs::create_dir_all(src).unwrap();
    write(&src.join("empty"), b"");
    write(&src.join("one"), b"x");
    write(&src.join("hundred_k"), &random_bytes(1, 100_000));
    if big {
        write_random(&src.join("big.bin"), 2, 20 << 20);
        // Sparse: 30 MiB with a few 4 KiB blocks written near the start.
        let f = std::fs::File::create(src.join("sparse.img")).unwrap();
        f.set_len(SPARSE_SIZE).unwrap();
        use std::os::unix::fs::FileExt;
        for (i, off) in [0u64, 1 << 20, (2 << 20) + 7].into_iter().enumerate() {
            f.write_all_at(&random_bytes(100 + i as u64, 4096), off)
                .unwrap();
        }
    }

    write(&src.join("name with spaces.txt"), b"spaces\n");
    write(&src.join("new\nline"), b"newline\n");
    write(&src.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name\n");
    write(&src.join("nested/a/b/c/deep.txt"), b"deep\n");
    std::fs::create_dir_all(src.join("nested/empty")).unwrap();
    std::fs::create_dir_all(src.join("empty_dir")).unwrap();
    std::os::unix::fs::symlink("one", src.join("link_to_file")).unwrap();
    std::os::unix::fs::symlink("../hundred_k", src.join("nested/link_up")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", src.join("dangling")).unwrap();
    write(&src.join("hl_a"), &random_bytes(3, 5000));
    std::fs::hard_link(src.join("hl_a"), src.join("nested/hl_b")).unwrap();
    mkfifo(&src.join("fifo"), 0o640);

    write(&src.join("private.txt"), b"private\n");
    chmod(&src.join("private.txt"), 0o600);
    write(&src.join("script.sh"), b"#!/bin/sh\necho hi\n");
    chmod(&src.join("script.sh"), 0o755);
    write(&src.join("setuid"), b"setuid\n");
    chmod(&src.join("setuid"), 0o4755);
    write(&src.join("private_dir/inside"), b"inside\n");
    chmod(&src.join("private_dir/inside"), 0o640);
    chmod(&src.join("private_dir"), 0o700);
    if big {
        // Read-only and in several blobs: every blob after the first reopens it for writing.
        chmod(&src.join("big.bin"), 0o444);
    }
    if is_root() {
        // Owned by someone else: restore must not keep the creator as owner.
        std::os::unix::fs::lchown(src.join("hundred_k"), Some(1234), Some(5678)).unwrap();
    }

    let xattr_ok = match xattr::set(src.join("one"), "user.cairn", b"v") {
        Ok(()) => {
            xattr::set(src.join("nested"), "user.cairn.dir", b"dir value").unwrap();
            true
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => false,
        Err(e) => panic!("setting a user xattr failed: {e}"),
    };

    // Nanosecond mtimes everywhere; children before their folders, the root last.
    let mut all = walk(src);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(
            p,
            1_600_000_000 + i as i64 * 3601,
            100_000_001 + i as i64 * 7_654_321,
        );
    }
    set_mtime(src, 1_500_000_000, 999_999_999);
    xattr_ok
}

#[test]
fn odd_tree_round_trips() {
    let env = Env::new();
    let src = env.path("src");
    let xattr_ok = build(&src, true);
    let alloc = std::fs::metadata(src.join("sparse.img")).unwrap().blocks() * 512;
    assert!(
        alloc < 1 << 20,
        "precondition: the source sparse file should be sparse, has {alloc} bytes allocated"
    );

    let s = env.backup(&[src.to_str().unwrap()]);
    assert_eq!(num(&s, "errors"), 0, "backup reported errors: {s}");
    // Files (hl_a and hl_b counted separately): empty one hundred_k big.bin sparse.img spaces
    // newline café deep.txt hl_a hl_b private.txt script.sh setuid inside.
    assert_eq!(num(&s, "files_new"), 15, "{s}");

    let target = env.path("target");
    let o = env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(o.stderr.is_empty(), "restore warned:\n{}", describe(&o));
    let dst = restored(&target, &src);
    assert_same_tree(&src, &dst, true);

    // Hard links come back as one inode.
    let (a, b) = (
        std::fs::metadata(dst.join("hl_a")).unwrap(),
        std::fs::metadata(dst.join("nested/hl_b")).unwrap(),
    );
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "hl_a and nested/hl_b restored as separate files"
    );
    assert_eq!(a.nlink(), 2);

    // Holes stay holes.
    let m = std::fs::metadata(dst.join("sparse.img")).unwrap();
    assert_eq!(m.len(), SPARSE_SIZE);
    let alloc = m.blocks() * 512;
    assert!(
        alloc < SPARSE_SIZE / 2,
        "restored sparse file has {alloc} of {SPARSE_SIZE} bytes allocated"
    );

    if xattr_ok {
        assert_eq!(
            xattr::get(dst.join("one"), "user.cairn")
                .unwrap()
                .as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(
            xattr::get(dst.join("nested"), "user.cairn.dir")
                .unwrap()
                .as_deref(),
            Some(&b"dir value"[..])
        );
    }
    // The fifo is a fifo (compare_trees checked the type; make the point explicit).
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(dst.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn subfolder_restores_directly_into_the_target() {
    let env = Env::new();
    let src = env.path("src");
    build(&src, false);
    env.backup(&[src.to_str().unwrap()]);
    let sub = src.join("nested");
    let target = env.path("t2");
    let spec = format!("latest:{}", sub.to_str().unwrap());
    env.ok(&["restore", &spec, "--target", target.to_str().unwrap()]);
    assert!(
        target.join("a/b/c/deep.txt").is_file(),
        "nested/a/b/c/deep.txt should be at TARGET/a/b/c/deep.txt; target holds {:?}",
        walk(&target)
    );
    assert!(
        !target.join("nested").exists() && !target.join("tmp").exists(),
        "subfolder restore nested its path: {:?}",
        walk(&target)
    );
    assert_same_tree(&sub, &target, false);
}

/// The comparison the round-trip tests rely on notices each kind of difference.
#[test]
fn comparison_notices_each_kind_of_difference() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"abc");
    write(&src.join("d/g"), b"g");
    std::os::unix::fs::symlink("f", src.join("l")).unwrap();
    let xattr_ok = xattr::set(src.join("f"), "user.k", b"1").is_ok();
    env.backup(&[src.to_str().unwrap()]);
    let fresh = |name: &str| {
        let t = env.path(name);
        env.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
        let d = restored(&t, &src);
        assert_same_tree(&src, &d, true);
        d
    };
    type Mutation = Box<dyn Fn(&Path)>;
    let mut mutations: Vec<(&str, Mutation)> = vec![
        // Content changes keep the mtime, so that only the content can be noticed.
        (
            "content",
            Box::new(|d: &Path| {
                let m = std::fs::metadata(d.join("f")).unwrap();
                std::fs::write(d.join("f"), b"abd").unwrap();
                set_mtime(&d.join("f"), m.mtime(), m.mtime_nsec());
            }),
        ),
        (
            "size",
            Box::new(|d: &Path| {
                let m = std::fs::metadata(d.join("f")).unwrap();
                std::fs::write(d.join("f"), b"abcd").unwrap();
                set_mtime(&d.join("f"), m.mtime(), m.mtime_nsec());
            }),
        ),
        ("mode", Box::new(|d: &Path| chmod(&d.join("d/g"), 0o666))),
        ("mtime", Box::new(|d: &Path| set_mtime(&d.join("d"), 1, 1))),
        (
            "symlink mtime",
            Box::new(|d: &Path| set_mtime(&d.join("l"), 1, 1)),
        ),
        ("root mtime", Box::new(|d: &Path| set_mtime(d, 1, 1))),
        (
            "link target",
            Box::new(|d: &Path| {
                std::fs::remove_file(d.join("l")).unwrap();
                std::os::unix::fs::symlink("d/g", d.join("l")).unwrap();
            }),
        ),
        (
            "missing",
            Box::new(|d: &Path| std::fs::remove_file(d.join("d/g")).unwrap()),
        ),
        (
            "extra",
            Box::new(|d: &Path| std::fs::write(d.join("d/extra"), b"").unwrap()),
        ),
        (
            "type",
            Box::new(|d: &Path| {
                std::fs::remove_file(d.join("d/g")).unwrap();
                std::fs::create_dir(d.join("d/g")).unwrap();
            }),
        ),
    ];
    if xattr_ok {
        mutations.push((
            "xattr",
            Box::new(|d: &Path| xattr::set(d.join("f"), "user.k", b"2").unwrap()),
        ));
    }
    for (i, (what, m)) in mutations.iter().enumerate() {
        let d = fresh(&format!("t{i}"));
        m(&d);
        assert!(
            !compare_trees(&src, &d, true).is_empty(),
            "a changed {what} went unnoticed"
        );
    }
}
