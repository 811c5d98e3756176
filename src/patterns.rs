//! Include/exclude patterns, with restic's meaning: a pattern without `/` matches a name at any
//! depth; a pattern with `/` matches the whole absolute path (a leading `/` anchors it,
//! otherwise it may start at any depth); `**` crosses directories. A matched directory is
//! skipped whole.

use crate::error::{Error, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::path::Path;

/// A compiled set of patterns.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    set: Option<GlobSet>,
    count: usize,
}

fn glob_for(pat: &str) -> String {
    let p = pat.trim_end_matches('/');
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("**/{p}")
    }
}

impl Patterns {
    /// Compile case-sensitive patterns and case-insensitive ones.
    pub fn new(patterns: &[String], ipatterns: &[String]) -> Result<Patterns> {
        let mut b = GlobSetBuilder::new();
        let mut count = 0;
        for (list, ci) in [(patterns, false), (ipatterns, true)] {
            for p in list.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
                let g = GlobBuilder::new(&glob_for(p))
                    .case_insensitive(ci)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| Error::usage(format!("invalid pattern {p:?}: {e}")))?;
                b.add(g);
                count += 1;
            }
        }
        let set = if count == 0 {
            None
        } else {
            Some(
                b.build()
                    .map_err(|e| Error::usage(format!("invalid patterns: {e}")))?,
            )
        };
        Ok(Patterns { set, count })
    }

    /// Read patterns from files (one per line, `#` comments, blank lines ignored).
    pub fn read_files(files: &[std::path::PathBuf]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Error::io(format!("cannot read exclude file {}", f.display()), e))?;
            out.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        Ok(out)
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether an absolute path matches.
    pub fn matches(&self, path: &Path) -> bool {
        self.set.as_ref().is_some_and(|s| s.is_match(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn restic_like_semantics() {
        let p = Patterns::new(
            &["*.o".into(), "/tmp/x".into(), "cache/data".into()],
            &["*.JPG".into()],
        )
        .unwrap();
        assert!(p.matches(Path::new("/a/b/c.o")));
        assert!(!p.matches(Path::new("/a/b/c.oo")));
        assert!(p.matches(Path::new("/tmp/x")));
        assert!(!p.matches(Path::new("/y/tmp/x")));
        assert!(p.matches(Path::new("/home/u/cache/data")));
        assert!(p.matches(Path::new("/p/photo.jpg")));
        assert!(!Patterns::new(&[], &[]).unwrap().matches(Path::new("/x")));
        assert!(Patterns::new(&["[".into()], &[]).is_err());
    }
}
