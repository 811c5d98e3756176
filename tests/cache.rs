//! The local cache is only a cache: losing it loses nothing.

use crate::util::*;

#[test]
fn deleted_cache_is_rebuilt_from_the_repository() {
    let env = Env::new();
    let src = env.path("src");
    write_random(&src.join("data.bin"), 41, 5 << 20);
    write(&src.join("dir/small.txt"), b"small\n");
    write(&src.join("dir/other.txt"), b"other\n");
    let arg = src.to_str().unwrap();
    let trees = path_depth(&src) + 1;
    env.backup(&[arg]);
    assert!(
        env.cache.is_dir(),
        "backup did not use {} as its cache",
        env.cache.display()
    );

    std::fs::remove_dir_all(&env.cache).unwrap();
    let listed = env.ls("latest");
    for f in ["data.bin", "dir", "dir/small.txt", "dir/other.txt"] {
        let want = format!("{arg}/{f}");
        assert!(
            listed.contains(&want),
            "ls latest without a cache lacks {want}: {listed:?}"
        );
    }

    std::fs::remove_dir_all(&env.cache).unwrap();
    let target = env.path("target");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src), true);

    // Incremental after losing the cache: the parent's blobs are still known.
    std::fs::remove_dir_all(&env.cache).unwrap();
    let s = env.backup(&[arg]);
    assert_eq!(num(&s, "files_unmodified"), 3, "{s}");
    assert!(
        num(&s, "blobs_added") <= trees && num(&s, "bytes_added_raw") < 16 << 10,
        "backup after losing the cache re-added data: {s}"
    );

    // Full after losing the cache: everything is read, and every chunk is found in the index.
    std::fs::remove_dir_all(&env.cache).unwrap();
    let s = env.backup(&["--type", "full", arg]);
    assert_eq!(num(&s, "bytes_read"), (5 << 20) + 12, "{s}");
    assert!(
        num(&s, "blobs_added") <= trees && num(&s, "bytes_added_raw") < 16 << 10,
        "full backup after losing the cache re-added data: {s}"
    );
}
