//! Choosing snapshots: `latest`, full or short ids, `--at TIME`, and host/tag/path filters.

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::Repository;

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

/// Format ns since the epoch as `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn format_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Resolve `spec` (`latest`, or a full or unique short id) among the filtered snapshots; with
/// `at`, `latest` means the newest at or before that time.
pub fn find(
    repo: &Repository,
    spec: &str,
    filter: &Filter,
    at: Option<i64>,
) -> Result<(Id, Snapshot)> {
    let all = repo.snapshots()?;
    if spec == "latest" {
        return all
            .into_iter()
            .filter(|(_, s)| filter.matches(s) && at.is_none_or(|t| s.time_ns <= t))
            .max_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)))
            .ok_or_else(|| match at {
                Some(t) => Error::not_found(format!(
                    "no snapshot at or before {} matches",
                    format_time(t)
                )),
                None => Error::not_found("no snapshot matches"),
            });
    }
    let spec_l = spec.to_ascii_lowercase();
    if spec_l.is_empty() || spec_l.len() > 64 || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::usage(format!(
            "invalid snapshot {spec:?}: give an id, a unique id prefix, or latest"
        )));
    }
    let mut hits: Vec<(Id, Snapshot)> = all
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
        .collect();
    match hits.len() {
        0 => Err(Error::not_found(format!("snapshot {spec} not found"))),
        1 => Ok(hits.remove(0)),
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
}
