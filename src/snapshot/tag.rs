//! `tag`: add, remove or replace the tags of snapshots.
//!
//! A snapshot is immutable and named by its content, so changing its tags writes a new snapshot
//! (everything else the same) and then deletes the old one. The new one is stored first: a
//! crash in between leaves both, never neither.

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::Repository;

/// What to do with the tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagOptions {
    /// Tags to add (kept in the order given, after the existing ones).
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
    /// Replace all tags with these (an empty list removes every tag). Not together with
    /// `add` or `remove`.
    pub set: Option<Vec<String>>,
}

impl TagOptions {
    /// Refuse requests that do nothing or mix `set` with `add`/`remove`.
    pub fn check(&self) -> Result<()> {
        match &self.set {
            Some(_) if !self.add.is_empty() || !self.remove.is_empty() => Err(Error::usage(
                "--set cannot be combined with --add or --remove",
            )),
            None if self.add.is_empty() && self.remove.is_empty() => {
                Err(Error::usage("nothing to do: give --add, --remove or --set"))
            }
            _ => Ok(()),
        }
    }

    /// The tags `old` would have afterwards, or `None` if the set of tags stays the same.
    pub fn apply(&self, old: &[String]) -> Option<Vec<String>> {
        let new: Vec<String> = match &self.set {
            Some(set) => {
                let mut v: Vec<String> = Vec::new();
                for t in set {
                    if !v.contains(t) {
                        v.push(t.clone());
                    }
                }
                v
            }
            None => {
                let mut v: Vec<String> = old.to_vec();
                for t in &self.add {
                    if !v.contains(t) {
                        v.push(t.clone());
                    }
                }
                v.retain(|t| !self.remove.contains(t));
                v
            }
        };
        let mut a: Vec<&String> = old.iter().collect();
        let mut b: Vec<&String> = new.iter().collect();
        a.sort();
        a.dedup();
        b.sort();
        if a == b { None } else { Some(new) }
    }
}

/// One snapshot whose tags changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retagged {
    /// The snapshot before (now deleted).
    pub old: Id,
    /// The snapshot written in its place.
    pub new: Id,
    /// Its tags.
    pub tags: Vec<String>,
}

/// What [`tag`] did.
#[derive(Debug, Default)]
pub struct TagOutcome {
    /// Snapshots replaced.
    pub changed: Vec<Retagged>,
    /// Snapshots whose tags were already as asked.
    pub unchanged: Vec<Id>,
    /// Snapshots that could not be changed, and why (the others were still done).
    pub failed: Vec<(Id, Error)>,
}

/// Change the tags of `snapshots` as `opts` says: for each whose tags change, write the new
/// snapshot, then delete the old one.
pub fn tag(
    repo: &Repository,
    snapshots: Vec<(Id, Snapshot)>,
    opts: &TagOptions,
) -> Result<TagOutcome> {
    opts.check()?;
    let mut out = TagOutcome::default();
    for (old, snap) in snapshots {
        let Some(tags) = opts.apply(&snap.tags) else {
            out.unchanged.push(old);
            continue;
        };
        let mut s = snap;
        s.tags = tags.clone();
        match retag(repo, &old, &s) {
            Ok(new) => out.changed.push(Retagged { old, new, tags }),
            Err(e) => out.failed.push((old, e)),
        }
    }
    Ok(out)
}

fn retag(repo: &Repository, old: &Id, s: &Snapshot) -> Result<Id> {
    let new = repo.save_snapshot(s)?;
    // Equal content would be the same object: deleting "the old one" would delete the new.
    if new != *old {
        repo.delete_snapshot(old)?;
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tag_sets() {
        let add = TagOptions {
            add: v(&["b", "c"]),
            ..Default::default()
        };
        assert_eq!(add.apply(&v(&["a", "b"])), Some(v(&["a", "b", "c"])));
        assert_eq!(add.apply(&v(&["c", "b"])), None);
        let rm = TagOptions {
            remove: v(&["a"]),
            add: v(&["a"]),
            ..Default::default()
        };
        assert_eq!(rm.apply(&v(&["a", "x"])), Some(v(&["x"])));
        let set = TagOptions {
            set: Some(v(&["y", "x", "y"])),
            ..Default::default()
        };
        assert_eq!(set.apply(&v(&["x", "y"])), None);
        assert_eq!(set.apply(&v(&["x"])), Some(v(&["y", "x"])));
        let clear = TagOptions {
            set: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(clear.apply(&v(&["x"])), Some(vec![]));
        assert!(clear.check().is_ok());
        assert!(TagOptions::default().check().is_err());
        let both = TagOptions {
            set: Some(vec![]),
            add: v(&["a"]),
            ..Default::default()
        };
        assert!(both.check().is_err());
    }
}
