//! Choosing snapshots: `latest`, full or short ids, `--at TIME`, and host/tag/path filters.

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::Repository;
use crate::time::format_time;

/// Host, tag and path filters (restic semantics: every given filter must match; a snapshot
/// matches `--tag a,b` if it has both, and any of several `--tag` options).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only snapshots of these hosts (any).
    pub hosts: Vec<String>,
    /// Tag sets; a snapshot matches when it has every tag of at least one set.
    pub tags: Vec<Vec<String>>,
    /// Only snapshots whose paths include all of these.
    pub paths: Vec<String>,
}

impl Filter {
    /// Whether a snapshot passes.
    pub fn matches(&self, s: &Snapshot) -> bool {
        if !self.hosts.is_empty() && !self.hosts.contains(&s.host) {
            return false;
        }
        if !self.tags.is_empty()
            && !self
                .tags
                .iter()
                .any(|set| set.iter().all(|t| s.tags.contains(t)))
        {
            return false;
        }
        let paths = s.path_strings();
        self.paths
            .iter()
            .all(|p| paths.iter().any(|q| q == p || q == p.trim_end_matches('/')))
    }
}

/// Parse a time: RFC 3339 (`2026-01-15T10:30:00Z`, offsets allowed), or `YYYY-MM-DD[ HH:MM[:SS]]`
/// in UTC. Returns ns since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    let s = s.trim();
    let bad = || {
        Error::usage(format!(
            "cannot parse time {s:?}: use RFC 3339 like 2026-01-15T10:30:00Z or 2026-01-15 10:30"
        ))
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt().ok_or_else(bad);
    }
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return t.and_utc().timestamp_nanos_opt().ok_or_else(bad);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(23, 59, 59)
            .and_then(|t| t.and_utc().timestamp_nanos_opt())
            .ok_or_else(bad);
    }
    Err(bad())
}

/// How far a snapshot's time may lie ahead of this host's clock and still count as a real,
/// current snapshot: five minutes, for ordinary skew between hosts. A snapshot dated later than
/// that (from a host whose clock runs ahead, or planted by another key holder) is "dated in the
/// future": it is never `latest`, never a backup's parent, never counted by `forget`'s
/// `--keep-last`/`--keep-hourly`/… buckets (it is kept, and reported), and `snapshots` flags it
/// (docs/design.md, "Snapshots dated in the future").
pub const FUTURE_SKEW_NS: i64 = 5 * 60 * 1_000_000_000;

/// This host's clock, in ns since the epoch.
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Whether a snapshot dated `time_ns` is dated in the future: more than [`FUTURE_SKEW_NS`]
/// after `now_ns`.
pub fn is_future(time_ns: i64, now_ns: i64) -> bool {
    time_ns > now_ns.saturating_add(FUTURE_SKEW_NS)
}

/// Resolve `spec` (`latest`, or a full or unique short id) and read that snapshot.
///
/// - `latest` is the newest snapshot passing `filter` (with `at`: at or before that time) that
///   is not dated in the future ([`is_future`]). It needs every snapshot's time, so every
///   snapshot is read; a damaged one is skipped with a warning, since it may have been the
///   newest.
/// - An id or a unique id prefix is resolved against the listing of snapshot names alone and
///   only the match is read: damage to any other snapshot does not concern it. Ids ignore
///   `filter` and `at` (restic's rule).
pub fn find(
    repo: &Repository,
    spec: &str,
    filter: &Filter,
    at: Option<i64>,
) -> Result<(Id, Snapshot)> {
    if spec == "latest" {
        let now = now_ns();
        let mut future = 0usize;
        let newest = repo
            .snapshots()?
            .into_iter()
            .filter(|(_, s)| filter.matches(s) && at.is_none_or(|t| s.time_ns <= t))
            .filter(|(_, s)| {
                let f = is_future(s.time_ns, now);
                future += usize::from(f);
                !f
            })
            .max_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        return newest.ok_or_else(|| {
            let passed = if future > 0 {
                format!(" ({future} dated in the future were passed over; give an id to use one)")
            } else {
                String::new()
            };
            match at {
                Some(t) => Error::not_found(format!(
                    "no snapshot at or before {} matches{passed}",
                    format_time(t)
                )),
                None => Error::not_found(format!("no snapshot matches{passed}")),
            }
        });
    }
    let spec_l = spec.to_ascii_lowercase();
    if spec_l.is_empty() || spec_l.len() > 64 || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::usage(format!(
            "invalid snapshot {spec:?}: give an id, a unique id prefix, or latest"
        )));
    }
    let mut hits: Vec<(Id, u64)> = repo
        .list(crate::backend::FileType::Snapshot)?
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
        .collect();
    match hits.len() {
        0 => Err(Error::not_found(format!("snapshot {spec} not found"))),
        1 => {
            let (id, size) = hits.remove(0);
            Ok((id, repo.load_snapshot_sized(&id, size)?))
        }
        n => Err(Error::usage(format!(
            "snapshot prefix {spec} is ambiguous ({n} snapshots match)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1_000_000_000);
        assert_eq!(parse_time("1970-01-01 00:00:02").unwrap(), 2_000_000_000);
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00").unwrap(), 0);
        assert!(parse_time("yesterday-ish").is_err());
        assert!(parse_time("2026-13-01").is_err());
    }

    #[test]
    fn future_means_beyond_the_skew() {
        let now = 1_000 * 1_000_000_000;
        assert!(!is_future(now, now));
        assert!(!is_future(now + FUTURE_SKEW_NS, now));
        assert!(is_future(now + FUTURE_SKEW_NS + 1, now));
        assert!(!is_future(i64::MAX, i64::MAX));
    }
}
