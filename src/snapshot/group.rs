//! Grouping snapshots by host, paths and tags (restic's `--group-by`): the one place that says
//! which snapshots belong together. `snapshots --latest`/`--group-by`, `forget` and the choice
//! of a backup's parent all group through here.

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use std::collections::BTreeMap;

/// Which parts of a snapshot make its group (restic's `--group-by host,paths,tags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the sorted list of backed-up paths.
    pub paths: bool,
    /// Group by the sorted list of tags.
    pub tags: bool,
}

impl GroupBy {
    /// No grouping: every snapshot in one group.
    pub const NONE: GroupBy = GroupBy {
        host: false,
        paths: false,
        tags: false,
    };
    /// Host and paths: `forget`'s default, and what makes a backup's parent.
    pub const HOST_PATHS: GroupBy = GroupBy {
        host: true,
        paths: true,
        tags: false,
    };

    /// Parse a comma-separated subset of `host`, `paths`, `tags` (restic also takes `hosts`,
    /// `path`, `tag`); empty parts are ignored, so `""` means no grouping.
    pub fn parse(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy::NONE;
        for part in s.split(',') {
            match part.trim() {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                "" => {}
                other => {
                    return Err(Error::usage(format!(
                        "unknown grouping option {other:?} in --group-by {s:?}: use host, paths \
                         and/or tags, separated by commas, or \"\" for no grouping"
                    )));
                }
            }
        }
        Ok(g)
    }

    /// Whether any part is selected.
    pub fn is_grouping(&self) -> bool {
        self.host || self.paths || self.tags
    }

    /// The group key of a snapshot.
    pub fn key(&self, s: &Snapshot) -> GroupKey {
        self.key_of(
            &s.host,
            s.paths.iter().map(|p| p.as_slice()),
            s.tags.iter().map(String::as_str),
        )
    }

    /// The group key of a snapshot that would have this host, these paths and these tags
    /// (in any order; duplicates count).
    pub fn key_of<'a>(
        &self,
        host: &str,
        paths: impl IntoIterator<Item = &'a [u8]>,
        tags: impl IntoIterator<Item = &'a str>,
    ) -> GroupKey {
        GroupKey {
            host: self.host.then(|| host.to_string()),
            paths: self.paths.then(|| {
                let mut v: Vec<Vec<u8>> = paths.into_iter().map(<[u8]>::to_vec).collect();
                v.sort();
                v
            }),
            tags: self.tags.then(|| {
                let mut v: Vec<String> = tags.into_iter().map(String::from).collect();
                v.sort();
                v
            }),
        }
    }
}

/// What a group's snapshots share: only the parts selected by the [`GroupBy`] are `Some`.
/// Ordered by host, then paths, then tags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupKey {
    /// The host, when grouping by host.
    pub host: Option<String>,
    /// The sorted paths (raw bytes), when grouping by paths.
    pub paths: Option<Vec<Vec<u8>>>,
    /// The sorted tags, when grouping by tags.
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    /// The paths as display strings (lossy UTF-8), when grouping by paths.
    pub fn path_strings(&self) -> Option<Vec<String>> {
        self.paths.as_ref().map(|ps| {
            ps.iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        })
    }
}

/// Split snapshots into groups: groups ordered by key, snapshots newest first within a group
/// (equal times: the larger id first, as `latest` chooses).
pub fn group(
    snapshots: impl IntoIterator<Item = (Id, Snapshot)>,
    by: GroupBy,
) -> Vec<(GroupKey, Vec<(Id, Snapshot)>)> {
    let mut groups: BTreeMap<GroupKey, Vec<(Id, Snapshot)>> = BTreeMap::new();
    for (id, s) in snapshots {
        groups.entry(by.key(&s)).or_default().push((id, s));
    }
    groups
        .into_iter()
        .map(|(k, mut v)| {
            sort_newest_first(&mut v);
            (k, v)
        })
        .collect()
}

/// Sort newest first; equal times: the larger id first.
pub fn sort_newest_first(v: &mut [(Id, Snapshot)]) {
    v.sort_by(|a, b| b.1.time_ns.cmp(&a.1.time_ns).then(b.0.cmp(&a.0)));
}

/// The newest `n` snapshots of each group (groups as [`group`] returns them).
pub fn latest_per_group(
    snapshots: impl IntoIterator<Item = (Id, Snapshot)>,
    by: GroupBy,
    n: usize,
) -> Vec<(GroupKey, Vec<(Id, Snapshot)>)> {
    let mut groups = group(snapshots, by);
    for (_, v) in &mut groups {
        v.truncate(n);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(time: i64, host: &str, paths: &[&str], tags: &[&str]) -> Snapshot {
        Snapshot::for_test(time, host, paths, tags, Id::default())
    }

    fn id(n: u8) -> Id {
        let mut hex = format!("{n:02x}");
        hex.push_str(&"0".repeat(62));
        Id::from_hex(&hex).unwrap()
    }

    #[test]
    fn parse_group_by() {
        assert_eq!(GroupBy::parse("host,paths").unwrap(), GroupBy::HOST_PATHS);
        assert_eq!(GroupBy::parse("").unwrap(), GroupBy::NONE);
        assert_eq!(
            GroupBy::parse("tags,hosts").unwrap(),
            GroupBy {
                host: true,
                paths: false,
                tags: true
            }
        );
        let e = GroupBy::parse("host,colour").unwrap_err();
        assert!(e.to_string().contains("\"colour\""), "{e}");
    }

    #[test]
    fn groups_are_keyed_by_selected_parts_and_sorted_newest_first() {
        let list = vec![
            (id(1), snap(10, "a", &["/y", "/x"], &["t2", "t1"])),
            (id(2), snap(30, "a", &["/x", "/y"], &["t1", "t2"])),
            (id(3), snap(20, "b", &["/x", "/y"], &[])),
            (id(4), snap(30, "a", &["/x", "/y"], &[])),
        ];
        let g = group(list.clone(), GroupBy::HOST_PATHS);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].0.host.as_deref(), Some("a"));
        assert_eq!(g[0].0.tags, None);
        assert_eq!(
            g[0].0.path_strings(),
            Some(vec!["/x".to_string(), "/y".to_string()])
        );
        let ids: Vec<Id> = g[0].1.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, vec![id(4), id(2), id(1)], "newest first, ties by id");
        let g = group(list.clone(), GroupBy::parse("host,tags").unwrap());
        assert_eq!(g.len(), 3, "a untagged, a t1+t2 (order of tags ignored), b");
        let g = group(list.clone(), GroupBy::NONE);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].0, GroupKey::default());
        let l = latest_per_group(list, GroupBy::HOST_PATHS, 1);
        assert_eq!(l[0].1.len(), 1);
        assert_eq!(l[0].1[0].0, id(4));
        assert_eq!(l[1].1[0].0, id(3));
    }
}
