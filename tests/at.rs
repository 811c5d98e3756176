//! Point-in-time restore: `restore latest --at TIME`.

use crate::util::*;

#[test]
fn at_picks_the_newest_snapshot_not_after_the_time() {
    let env = Env::new();
    let src = env.path("src");
    let arg = src.to_str().unwrap().to_string();
    // Different sizes, so each change is seen even within one mtime tick.
    let versions = [
        ("2026-01-01T00:00:00Z", "january\n"),
        ("2026-02-01T00:00:00Z", "february!\n"),
        ("2026-03-01T00:00:00Z", "march, the third version\n"),
    ];
    for (i, (time, text)) in versions.iter().enumerate() {
        write(&src.join("file.txt"), text.as_bytes());
        write(&src.join(format!("only_in_{i}")), b"marker\n");
        if i > 0 {
            std::fs::remove_file(src.join(format!("only_in_{}", i - 1))).unwrap();
        }
        env.backup(&["--time", time, &arg]);
    }
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 3);

    let target = env.path("feb");
    let o = env.ok(&[
        "restore",
        "latest",
        "--at",
        "2026-02-15T00:00:00Z",
        "--target",
        target.to_str().unwrap(),
    ]);
    let dst = restored(&target, &src);
    assert_eq!(
        std::fs::read_to_string(dst.join("file.txt")).unwrap(),
        "february!\n",
        "{}",
        describe(&o)
    );
    assert!(
        dst.join("only_in_1").exists()
            && !dst.join("only_in_0").exists()
            && !dst.join("only_in_2").exists(),
        "{:?}",
        walk(&dst)
    );

    // Exactly at a snapshot's time includes it.
    let target = env.path("mar");
    env.ok(&[
        "restore",
        "latest",
        "--at",
        "2026-03-01T00:00:00Z",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(restored(&target, &src).join("file.txt")).unwrap(),
        "march, the third version\n"
    );

    // Plain latest is March too.
    let target = env.path("latest");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(restored(&target, &src).join("file.txt")).unwrap(),
        "march, the third version\n"
    );

    // Before every snapshot: an error, nothing restored.
    let target = env.path("none");
    let o = env.cairn(&[
        "restore",
        "latest",
        "--at",
        "2025-12-31T23:59:59Z",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_fails_one_line(&o, 1, "restore --at before all snapshots");
    assert!(
        !target.exists() || walk(&target).is_empty(),
        "a failed restore wrote {:?}",
        walk(&target)
    );

    let o = env.cairn(&[
        "restore",
        "latest",
        "--at",
        "last tuesday",
        "--target",
        target.to_str().unwrap(),
    ]);
    let line = assert_fails_one_line(&o, 1, "restore --at with an unparsable time");
    assert!(
        line.contains("last tuesday"),
        "the message should quote the bad time: {line}"
    );
}
