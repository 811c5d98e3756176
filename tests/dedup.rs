//! Deduplication: unchanged data and copies add no data blobs.

use crate::util::*;
use std::path::Path;

/// Files: a (3 MiB), b (100 KB), c (1 B), sub/d (2 MiB). Trees: the path's folders plus sub.
fn build(src: &Path) {
    std::fs::create_dir_all(src.join("sub")).unwrap();
    write_random(&src.join("a"), 11, 3 << 20);
    write(&src.join("b"), &random_bytes(12, 100_000));
    write(&src.join("c"), b"c");
    write_random(&src.join("sub/d"), 13, 2 << 20);
}

#[test]
fn unchanged_data_and_copies_add_only_trees() {
    let env = Env::new();
    let src = env.path("src");
    build(&src);
    let arg = src.to_str().unwrap();
    let total = (3 << 20) + 100_000 + 1 + (2 << 20);
    // Trees a snapshot of src can hold: "/", each folder down to src, and src/sub.
    let trees = path_depth(&src) + 1;

    let s1 = env.backup(&[arg]);
    assert_eq!(num(&s1, "files_new"), 4, "{s1}");
    assert!(
        num(&s1, "bytes_added_raw") >= total,
        "first backup added less than the data: {s1}"
    );

    let s2 = env.backup(&[arg]);
    assert_eq!(
        num(&s2, "files_unmodified"),
        4,
        "second backup of unchanged data: {s2}"
    );
    assert_eq!(num(&s2, "files_new") + num(&s2, "files_changed"), 0, "{s2}");
    assert_eq!(
        num(&s2, "bytes_read"),
        0,
        "unchanged files were read again: {s2}"
    );
    assert!(
        num(&s2, "blobs_added") <= trees,
        "second backup added more blobs than there are trees ({trees}): {s2}"
    );
    assert!(
        num(&s2, "bytes_added_raw") < 16 << 10,
        "second backup added {} bytes: {s2}",
        num(&s2, "bytes_added_raw")
    );
    assert_eq!(
        s2["parent"], s1["snapshot_id"],
        "second backup should use the first as parent"
    );

    // A copy under another name: read (new file), but every chunk is known.
    std::fs::copy(src.join("a"), src.join("a copy")).unwrap();
    let s3 = env.backup(&[arg]);
    assert_eq!(num(&s3, "files_new"), 1, "{s3}");
    assert_eq!(num(&s3, "files_unmodified"), 4, "{s3}");
    assert_eq!(num(&s3, "bytes_read"), 3 << 20, "{s3}");
    assert!(
        num(&s3, "blobs_added") <= trees,
        "the copy added data blobs: {s3}"
    );
    assert!(
        num(&s3, "bytes_added_raw") < 8 << 10,
        "the copy added {} bytes: {s3}",
        num(&s3, "bytes_added_raw")
    );

    let target = env.path("target");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src), true);
}

#[test]
fn full_backup_rereads_but_stores_nothing_new() {
    let env = Env::new();
    let src = env.path("src");
    build(&src);
    let arg = src.to_str().unwrap();
    env.backup(&[arg]);
    let s = env.backup(&["--type", "full", arg]);
    assert_eq!(
        num(&s, "files_new"),
        4,
        "a full backup has no parent, every file is new: {s}"
    );
    assert_eq!(s["parent"], serde_json::Value::Null, "{s}");
    assert_eq!(
        num(&s, "bytes_read"),
        (3 << 20) + 100_000 + 1 + (2 << 20),
        "{s}"
    );
    assert!(
        num(&s, "blobs_added") <= path_depth(&src) + 1,
        "full backup of known data added data blobs: {s}"
    );
    assert!(num(&s, "bytes_added_raw") < 16 << 10, "{s}");
}
