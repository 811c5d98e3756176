//! `dump --archive zip|tar` with names an archive cannot carry as they are (DM2): names that
//! differ only in bytes that are not UTF-8, a name equal to another's escaped form, and names
//! that a Windows extractor reads as a way out of its folder (`..\..\x.bat`, `.. `).

use crate::util::*;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

/// The odd folder: (raw name, content).
const FILES: &[(&[u8], &[u8])] = &[
    (b"n\xff", b"ff\n"),
    (b"n\xfe", b"fe\n"),
    (b"n%FF", b"literal percent\n"),
    (b"..\\..\\x.bat", b"@echo pwned\n"),
    (b"a\\b", b"backslash\n"),
    (b".. ", b"dots and a space\n"),
    (b"plain.txt", b"plain\n"),
];

fn odd_folder(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    for (name, content) in FILES {
        write(&src.join("odd").join(OsStr::from_bytes(name)), content);
    }
    env.backup(&[src.to_str().unwrap()]);
    src
}

/// Every entry name is unique, and no `/`-separated or `\`-separated part of it is `..` (nor
/// dots and spaces that Windows trims to `..`).
fn assert_safe_and_unique(names: &[Vec<u8>]) {
    let mut seen = HashSet::new();
    for n in names {
        let key = n.strip_suffix(b"/").unwrap_or(n);
        assert!(seen.insert(key.to_vec()), "{} twice", n.escape_ascii());
        for part in n.split(|&b| b == b'/' || b == b'\\') {
            assert!(
                part.trim_ascii_end() != b"..",
                "{} has a parent reference",
                n.escape_ascii()
            );
        }
    }
}

/// The files under `odd/` by their archive name (relative to `odd/`).
fn odd_files(entries: &BTreeMap<Vec<u8>, Vec<u8>>, base: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut prefix = base.to_vec();
    prefix.extend_from_slice(b"/odd/");
    entries
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix.as_slice())?.to_vec(), v.clone())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn expect(pairs: &[(&[u8], &[u8])]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

#[test]
fn zip_names_are_made_unique_and_safe_and_warned_about() {
    let env = Env::new();
    let src = odd_folder(&env);
    let o = env.cairn(&["dump", "--archive", "zip", "latest", src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("is written to the archive as").count(),
        5,
        "one warning per renamed file: {err}"
    );
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(o.stdout.clone()))
        .unwrap_or_else(|e| panic!("not a whole zip archive: {e}\n{}", describe(&o)));
    let mut names = Vec::new();
    let mut files = BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().as_bytes().to_vec();
        names.push(name.clone());
        if f.is_file() {
            let mut body = Vec::new();
            f.read_to_end(&mut body).unwrap();
            files.insert(name, body);
        }
    }
    assert_safe_and_unique(&names);
    assert!(
        names.iter().all(|n| !n.contains(&b'\\')),
        "{names:?} has a backslash"
    );
    let base = src.to_str().unwrap().trim_start_matches('/').as_bytes();
    assert_eq!(
        odd_files(&files, base),
        expect(&[
            (b"n%FF", b"literal percent\n"),
            (b"n%FE", b"fe\n"),
            (b"n%FF~1", b"ff\n"),
            (b"..%5C..%5Cx.bat", b"@echo pwned\n"),
            (b"a%5Cb", b"backslash\n"),
            (b"%2E%2E ", b"dots and a space\n"),
            (b"plain.txt", b"plain\n"),
        ])
    );
    // Python's zipfile reads it too and extracts nothing outside its target.
    let zip = env.path("out.zip");
    std::fs::write(&zip, &o.stdout).unwrap();
    let out = env.path("unzipped");
    let x = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
        ])
        .arg(&zip)
        .arg(&out)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", describe(&x));
    let odd = restored(&out, &src).join("odd");
    assert_eq!(std::fs::read(odd.join("n%FF~1")).unwrap(), b"ff\n");
    assert_eq!(walk(&odd).len(), FILES.len());
    for p in walk(&out) {
        assert!(
            p.starts_with(&odd) || odd.starts_with(&p),
            "{} extracted outside the folder",
            p.display()
        );
    }
}

#[test]
fn tar_keeps_raw_names_but_not_windows_parent_references() {
    let env = Env::new();
    let src = odd_folder(&env);
    let o = env.cairn(&["dump", "--archive", "tar", "latest", src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("is written to the archive as").count(),
        2,
        "one warning per renamed file: {err}"
    );
    let mut a = tar::Archive::new(o.stdout.as_slice());
    let mut names = Vec::new();
    let mut files = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path_bytes().into_owned();
        names.push(name.clone());
        if e.header().entry_type() == tar::EntryType::Regular {
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            files.insert(name, body);
        }
    }
    assert_safe_and_unique(&names);
    let base = src.to_str().unwrap().trim_start_matches('/').as_bytes();
    assert_eq!(
        odd_files(&files, base),
        expect(&[
            (b"n\xff", b"ff\n"),
            (b"n\xfe", b"fe\n"),
            (b"n%FF", b"literal percent\n"),
            (b"..%5C..%5Cx.bat", b"@echo pwned\n"),
            (b"a\\b", b"backslash\n"),
            (b"%2E%2E ", b"dots and a space\n"),
            (b"plain.txt", b"plain\n"),
        ])
    );
}
