//! The virtual folders above the snapshots' trees: which names `snapshots/`, `ids/`,
//! `hosts/<host>/` and `tags/<tag>/` show, and where each folder's `latest` points. Pure: built
//! from a list of snapshots and the current time ([`Listing::new_at`]), no I/O. A snapshot
//! dated in the future is listed but never `latest` (docs/design.md §8).

use crate::format::snapshot::Snapshot;
use crate::format::tree::is_valid_name;
use crate::id::Id;
use crate::snapshot::select::{is_future, now_ns};
use std::collections::BTreeMap;

/// What the mount needs of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// Snapshot id.
    pub id: Id,
    /// Time, ns since the epoch.
    pub time_ns: i64,
    /// Host name.
    pub host: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Root tree.
    pub tree: Id,
}

impl SnapshotEntry {
    /// The entry of snapshot `id`.
    pub fn new(id: Id, s: &Snapshot) -> Self {
        SnapshotEntry {
            id,
            time_ns: s.time_ns,
            host: s.host.clone(),
            tags: s.tags.clone(),
            tree: s.tree,
        }
    }
}

/// One folder of snapshots: names (a time, with `-1`, `-2`… when several share a second) →
/// index into [`Listing::snapshots`], and the name `latest` points to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folder {
    /// Name → snapshot index.
    pub names: BTreeMap<String, usize>,
    /// Name of the newest snapshot not dated in the future, the target of `latest`.
    pub latest: Option<String>,
}

/// The name of a folder's `latest` link.
pub const LATEST: &str = "latest";

impl Folder {
    /// The folder of `members` (indexes into `all`, which is sorted oldest first), named by
    /// `time_name`; `latest` skips snapshots dated in the future of `now`.
    fn new(
        all: &[SnapshotEntry],
        members: impl Iterator<Item = usize>,
        time_name: &dyn Fn(i64) -> String,
        now: i64,
    ) -> Folder {
        let mut f = Folder::default();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for i in members {
            let base = time_name(all[i].time_ns);
            let n = seen.entry(base.clone()).or_insert(0);
            let name = if *n == 0 { base } else { format!("{base}-{n}") };
            *n += 1;
            if !is_future(all[i].time_ns, now) {
                f.latest = Some(name.clone());
            }
            f.names.insert(name, i);
        }
        f
    }
}

/// Every virtual folder of the mount for one list of snapshots.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The snapshots, oldest first (by time, then id).
    pub snapshots: Vec<SnapshotEntry>,
    /// `snapshots/`.
    pub all: Folder,
    /// `ids/`: short id → snapshot index (and `latest`).
    pub ids: Folder,
    /// `hosts/<host>/`.
    pub hosts: BTreeMap<String, Folder>,
    /// `tags/<tag>/`.
    pub tags: BTreeMap<String, Folder>,
    /// Time of the newest snapshot (the virtual folders' mtime), or 0.
    pub newest_ns: i64,
}

/// A host or tag as a folder name: `/` and NUL become `_`; empty, `.` and `..` get a leading
/// `_` too, so every host and tag has a folder.
pub fn folder_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    if is_valid_name(n.as_bytes()) {
        n
    } else {
        format!("_{n}")
    }
}

/// A snapshot time as a folder name: local time, to the second (`2026-11-21T14:03:12`).
pub fn local_time_name(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

impl Listing {
    /// The listing of `snapshots` (any order), folders named by `time_name`, at this host's
    /// current time.
    pub fn new(snapshots: Vec<SnapshotEntry>, time_name: &dyn Fn(i64) -> String) -> Listing {
        Listing::new_at(snapshots, time_name, now_ns())
    }

    /// The listing of `snapshots` (any order), folders named by `time_name`, with `now` (ns)
    /// deciding which snapshots are dated in the future.
    pub fn new_at(
        mut snapshots: Vec<SnapshotEntry>,
        time_name: &dyn Fn(i64) -> String,
        now: i64,
    ) -> Listing {
        snapshots.sort_by(|a, b| a.time_ns.cmp(&b.time_ns).then(a.id.cmp(&b.id)));
        snapshots.dedup_by(|a, b| a.id == b.id);
        let all = Folder::new(&snapshots, 0..snapshots.len(), time_name, now);
        // Short ids: 8 hex digits, more when two snapshots share a prefix.
        let mut len = 8;
        while len < 64 {
            let mut p: Vec<String> = snapshots
                .iter()
                .map(|s| s.id.to_hex()[..len].into())
                .collect();
            p.sort();
            if p.windows(2).all(|w| w[0] != w[1]) {
                break;
            }
            len += 4;
        }
        let mut ids = Folder::default();
        for (i, s) in snapshots.iter().enumerate() {
            let short = s.id.to_hex()[..len].to_string();
            ids.names.insert(short.clone(), i);
            if !is_future(s.time_ns, now) {
                ids.latest = Some(short);
            }
        }
        let mut by_host: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut by_tag: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, s) in snapshots.iter().enumerate() {
            by_host.entry(folder_name(&s.host)).or_default().push(i);
            let mut tags: Vec<String> = s.tags.iter().map(|t| folder_name(t)).collect();
            tags.sort();
            tags.dedup();
            for t in tags {
                by_tag.entry(t).or_default().push(i);
            }
        }
        let hosts = by_host
            .into_iter()
            .map(|(h, m)| (h, Folder::new(&snapshots, m.into_iter(), time_name, now)))
            .collect();
        let tags = by_tag
            .into_iter()
            .map(|(t, m)| (t, Folder::new(&snapshots, m.into_iter(), time_name, now)))
            .collect();
        let newest_ns = snapshots.last().map_or(0, |s| s.time_ns);
        Listing {
            snapshots,
            all,
            ids,
            hosts,
            tags,
            newest_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, time_s: i64, host: &str, tags: &[&str]) -> SnapshotEntry {
        SnapshotEntry {
            id: Id([n; 32]),
            time_ns: time_s * 1_000_000_000 + i64::from(n),
            host: host.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tree: Id([0; 32]),
        }
    }

    fn utc(ns: i64) -> String {
        crate::time::format_time(ns).replace(' ', "T")
    }

    #[test]
    fn folders_name_by_time_with_suffixes_and_point_latest_at_the_newest() {
        let l = Listing::new(
            vec![
                entry(3, 100, "web", &["daily"]),
                entry(1, 100, "db", &["daily", "a/b", "daily"]),
                entry(2, 50, "web", &[]),
                entry(4, 200, "", &[".."]),
            ],
            &utc,
        );
        let names: Vec<&str> = l.all.names.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "1970-01-01T00:00:50",
                "1970-01-01T00:01:40",
                "1970-01-01T00:01:40-1",
                "1970-01-01T00:03:20"
            ]
        );
        // Same second: the older (here the smaller ns) has no suffix.
        assert_eq!(
            l.snapshots[l.all.names["1970-01-01T00:01:40"]].id,
            Id([1; 32])
        );
        assert_eq!(l.all.latest.as_deref(), Some("1970-01-01T00:03:20"));
        // Per host: no suffix needed where the host has one snapshot in that second.
        assert_eq!(
            l.hosts["web"].names.keys().collect::<Vec<_>>(),
            ["1970-01-01T00:00:50", "1970-01-01T00:01:40"]
        );
        assert_eq!(
            l.hosts["web"].latest.as_deref(),
            Some("1970-01-01T00:01:40")
        );
        assert!(l.hosts.contains_key("_"), "an empty host gets a folder");
        // Tags: deduplicated, made safe as names.
        assert_eq!(l.tags["daily"].names.len(), 2);
        assert!(l.tags.contains_key("a_b"));
        assert!(l.tags.contains_key("_.."));
        // Short ids, latest = newest.
        assert_eq!(l.ids.names.len(), 4);
        assert!(l.ids.names.contains_key("04040404"));
        assert_eq!(l.ids.latest.as_deref(), Some("04040404"));
        assert_eq!(l.newest_ns, 200_000_000_004);
    }

    #[test]
    fn short_ids_grow_until_unique_and_empty_listings_are_empty() {
        let mut a = entry(1, 1, "h", &[]);
        let mut b = entry(2, 2, "h", &[]);
        a.id = Id([0xab; 32]);
        b.id = Id([0xab; 32]);
        b.id.0[5] = 0;
        let l = Listing::new(vec![a, b], &utc);
        assert!(
            l.ids.names.keys().all(|k| k.len() == 12),
            "{:?}",
            l.ids.names
        );
        let e = Listing::new(vec![], &utc);
        assert!(e.all.names.is_empty() && e.all.latest.is_none() && e.hosts.is_empty());
    }

    #[test]
    fn latest_never_points_at_a_snapshot_dated_in_the_future() {
        // Now is 1000 s; the snapshot at 100 000 s is a day ahead, the one at 1200 s within
        // the skew.
        let now = 1_000 * 1_000_000_000;
        let l = Listing::new_at(
            vec![
                entry(1, 500, "web", &["t"]),
                entry(2, 1_200, "db", &[]),
                entry(3, 100_000, "web", &["t"]),
            ],
            &utc,
            now,
        );
        assert_eq!(l.all.names.len(), 3, "listed all the same");
        assert_eq!(
            l.all.latest.as_deref(),
            Some(utc(l.snapshots[1].time_ns).as_str())
        );
        assert_eq!(l.ids.latest.as_deref(), Some("02020202"));
        assert_eq!(
            l.hosts["web"].latest.as_deref(),
            Some(utc(l.snapshots[0].time_ns).as_str())
        );
        assert_eq!(
            l.tags["t"].latest.as_deref(),
            Some(utc(l.snapshots[0].time_ns).as_str())
        );
    }
}
