//! Exclude options of `backup`.

use crate::util::*;

#[test]
fn excluded_paths_are_absent() {
    let env = Env::new();
    let src = env.path("src");
    let files = [
        "keep.txt",
        "app.log",
        "sub/deep.log",
        "LOUD.LOG",
        "x.tmp",
        "y.TMP",
        "sub/z.Tmp",
        "tmp.keep",
        "secret.key",
        "sub/secret.key",
        "notes/secret.key.txt",
        "build/out.o",
        "build/keep.txt",
        "cache/.nobackup",
        "cache/data",
        "cache/nested/more",
        "sub/cache2/.nobackup",
        "sub/cache2/x",
        ".nobackup_not",
        "anchored/only/here",
        "sub/anchored/only/here",
    ];
    for f in files {
        write(&src.join(f), f.as_bytes());
    }
    let exfile = env.path("excludes.txt");
    let anchored = format!("{}/anchored/only", src.to_str().unwrap());
    write(
        &exfile,
        format!("# comment line\n\nsecret.key\n  build/*.o  \n{anchored}\n").as_bytes(),
    );

    let s = env.backup(&[
        "--exclude",
        "*.log",
        "--iexclude",
        "*.TMP",
        "--exclude-file",
        exfile.to_str().unwrap(),
        "--exclude-if-present",
        ".nobackup",
        src.to_str().unwrap(),
    ]);
    assert_eq!(num(&s, "errors"), 0, "{s}");

    let prefix = format!("{}/", src.to_str().unwrap());
    let mut got: Vec<String> = env
        .ls("latest")
        .into_iter()
        .filter_map(|p| p.strip_prefix(&prefix).map(String::from))
        .collect();
    got.sort();
    let mut want: Vec<String> = [
        "keep.txt",
        "LOUD.LOG",
        "tmp.keep",
        "sub",
        "notes",
        "notes/secret.key.txt",
        "build",
        "build/keep.txt",
        ".nobackup_not",
        "anchored",
        "sub/anchored",
        "sub/anchored/only",
        "sub/anchored/only/here",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    want.sort();
    assert_eq!(got, want, "paths in the snapshot (relative to the source)");
}

#[test]
fn exclude_file_that_does_not_exist_fails() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"f");
    let missing = env.path("nope.txt");
    let o = env.cairn(&[
        "backup",
        "--exclude-file",
        missing.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    let line = assert_fails_one_line(&o, 1, "backup with a missing exclude file");
    assert!(line.contains("nope.txt"), "{line}");
    assert!(env.snapshots().is_empty());
}
