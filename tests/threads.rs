//! The snapshot does not depend on the number of threads: same chunks, same trees.

use crate::util::*;

#[test]
fn tree_id_is_independent_of_thread_count() {
    let env = Env::new();
    // The root tree also records the folders above the source. Under /tmp, other tests create
    // folders all the time (changing /tmp's mtime); cargo's per-target tmp dir stays put.
    let outside = tempfile::Builder::new()
        .prefix("cairn-threads-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let src = outside.path().join("src");
    for i in 0..12u64 {
        write_random(
            &src.join(format!("d{}/f{i}", i % 3)),
            50 + i,
            (i + 1) * 300_000,
        );
    }
    write_random(&src.join("large"), 49, 12 << 20);
    write(&src.join("d0/tiny"), b"t");
    // Trees record atimes; keep reads from moving them between the two runs.
    freeze_atimes(&src);
    let arg = src.to_str().unwrap();

    let before = ancestor_stats(&src);
    let one = env.backup(&["--type", "full", arg, "--threads", "1"]);
    let four = env.backup(&["--type", "full", arg, "--threads", "4"]);
    let ancestors_unchanged = ancestor_stats(&src) == before;
    assert_eq!(num(&one, "files_new"), 14, "{one}");
    assert_eq!(
        num(&four, "bytes_read"),
        num(&one, "bytes_read"),
        "the second full backup must read everything too: {four}"
    );

    let (r1, r4) = (
        one["tree"].as_str().unwrap(),
        four["tree"].as_str().unwrap(),
    );
    assert_eq!(
        subtree_id(&env, r1, &src),
        subtree_id(&env, r4, &src),
        "--threads 1 and --threads 4 give different trees for the source"
    );
    // Should anything still change the folders above the source, only the source's tree must match.
    if ancestors_unchanged {
        assert_eq!(
            r1, r4,
            "--threads 1 and --threads 4 give different root trees:\n{one}\n{four}"
        );
        assert_eq!(
            num(&four, "blobs_added"),
            0,
            "identical data backed up again added blobs: {four}"
        );
    } else {
        eprintln!(
            "threads: folders above the source changed between the runs; compared the source's tree only"
        );
        assert!(
            num(&four, "blobs_added") <= path_depth(&src),
            "only trees of changed parent folders may be new: {four}"
        );
    }

    let (t1, t4) = (env.path("t1"), env.path("t4"));
    for (s, t) in [(&one, &t1), (&four, &t4)] {
        let id = s["snapshot_id"].as_str().unwrap();
        env.ok(&[
            "restore",
            id,
            "--target",
            t.to_str().unwrap(),
            "--threads",
            "3",
        ]);
        assert_same_tree(&src, &restored(t, &src), true);
    }
    assert_same_tree(&restored(&t1, &src), &restored(&t4, &src), true);
}
