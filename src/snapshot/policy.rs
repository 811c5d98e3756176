//! Retention policies (`forget --keep-*`): which snapshots of one group to keep, and why.
//!
//! The semantics are restic 0.14's (`internal/restic/snapshot_policy.go`), reason strings
//! included, with two additions from later restic versions: a count of `-1` means unlimited,
//! and the CLI refuses an empty policy ([`KeepPolicy::validate`]). In short:
//!
//! - Snapshots are taken newest first. Each `--keep-{last,hourly,daily,weekly,monthly,yearly} N`
//!   is a bucket with a counter: a snapshot whose period (its own number for `last`; the local
//!   calendar hour, day, ISO week (`year*100 + week`), month or year otherwise) differs from that
//!   of the previous snapshot the bucket took is kept while the counter lasts, and the counter
//!   goes down. So the newest snapshot of each of the N newest periods is kept.
//! - `--keep-within D` keeps every snapshot strictly newer than the newest snapshot's time
//!   minus D; `--keep-within-{hourly,..} D` keeps the newest snapshot of every period within D.
//!   D is subtracted with calendar arithmetic in local time, as Go's `AddDate` does (months and
//!   days may overflow: one month before March 31 is March 3 or 2), then the hours as a fixed
//!   duration. "Newest" ignores snapshots dated after now.
//! - Snapshots dated in the future (more than [`FUTURE_SKEW_NS`] after now: a host whose clock
//!   runs ahead, or another key holder's planted snapshot) are kept with the reason
//!   [`FUTURE_REASON`] and take no part in the count buckets, so they never push real snapshots
//!   out of `--keep-last` and the like. This is cairn's one deliberate departure from restic,
//!   which counts them (docs/design.md, "Snapshots dated in the future").
//! - `--keep-tag a,b` keeps every snapshot that has all of `a` and `b` (an empty tag matches a
//!   snapshot without tags); several `--keep-tag` keep a snapshot matching any of them.
//!
//! Periods are local calendar periods: [`apply`] uses chrono's `Local` (the `TZ` variable), and
//! [`apply_in`] takes any time zone.

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
pub use crate::snapshot::select::FUTURE_SKEW_NS;
use crate::snapshot::select::is_future;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike};
use std::fmt;

/// restic's calendar duration (`1y2m3d4h`: years, months, days, hours), for `--keep-within*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Duration {
    /// Years.
    pub years: i32,
    /// Months (`m` is months, not minutes).
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Hours.
    pub hours: i32,
}

impl Duration {
    /// Parse restic's syntax: numbers each followed by a unit `y`, `m` (months), `d` or `h`,
    /// e.g. `1y2m3d4h`, `36h`, `2m`. Surrounding spaces are ignored; the empty string is the
    /// zero duration; a unit given twice takes the last value (as restic does). Numbers may be
    /// negative; [`KeepPolicy::validate`] refuses those.
    pub fn parse(s: &str) -> Result<Duration> {
        let input = s;
        let bad = |why: String| Error::usage(format!("invalid duration {input:?}: {why}"));
        let mut d = Duration::default();
        let mut rest = s.trim();
        while !rest.is_empty() {
            let (negative, r) = match rest.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad(format!(
                    "no number found at {r:?} (use e.g. 1y2m3d4h: y years, m months, d days, h hours)"
                )));
            }
            let num: i32 = r[..digits]
                .parse()
                .map_err(|_| bad(format!("number {} is too large", &r[..digits])))?;
            let num = if negative { -num } else { num };
            let r = &r[digits..];
            let Some(unit) = r.chars().next() else {
                return Err(bad(format!(
                    "no unit found after number {num} (use y, m, d or h)"
                )));
            };
            match unit {
                'y' => d.years = num,
                'm' => d.months = num,
                'd' => d.days = num,
                'h' => d.hours = num,
                other => {
                    return Err(bad(format!(
                        "invalid unit {other:?} after number {num} (use y, m, d or h)"
                    )));
                }
            }
            rest = &r[unit.len_utf8()..];
        }
        Ok(d)
    }

    /// Whether all parts are zero (such a duration keeps nothing and counts as not given).
    pub fn is_zero(&self) -> bool {
        *self == Duration::default()
    }

    /// Whether any part is negative.
    pub fn is_negative(&self) -> bool {
        self.years < 0 || self.months < 0 || self.days < 0 || self.hours < 0
    }
}

impl std::str::FromStr for Duration {
    type Err = Error;
    fn from_str(s: &str) -> Result<Duration> {
        Duration::parse(s)
    }
}

impl fmt::Display for Duration {
    /// restic's form: the non-zero parts in the order y, m, d, h (`1y3d`); zero is empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, u) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{u}")?;
            }
        }
        Ok(())
    }
}

/// A retention policy (restic's `ExpirePolicy`). Counts: `0` = off, `N > 0` = the newest
/// snapshot of each of the N newest periods, `-1` = of every period. Durations: `None` or zero
/// = off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// Keep the N newest snapshots.
    pub last: i32,
    /// Keep the newest snapshot of each of the N newest hours.
    pub hourly: i32,
    /// ... days.
    pub daily: i32,
    /// ... ISO weeks.
    pub weekly: i32,
    /// ... months.
    pub monthly: i32,
    /// ... years.
    pub yearly: i32,
    /// Keep every snapshot newer than the newest one minus this.
    pub within: Option<Duration>,
    /// Keep the newest snapshot of every hour within this of the newest snapshot.
    pub within_hourly: Option<Duration>,
    /// ... of every day.
    pub within_daily: Option<Duration>,
    /// ... of every ISO week.
    pub within_weekly: Option<Duration>,
    /// ... of every month.
    pub within_monthly: Option<Duration>,
    /// ... of every year.
    pub within_yearly: Option<Duration>,
    /// Keep snapshots having all tags of any of these sets.
    pub tags: Vec<Vec<String>>,
}

/// Given and non-zero.
fn set(d: &Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

impl KeepPolicy {
    fn counts(&self) -> [(i32, &'static str); 6] {
        [
            (self.last, "last"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ]
    }

    /// The counters before any snapshot is taken (the counts as given).
    fn counters(&self) -> Counters {
        Counters {
            last: self.last,
            hourly: self.hourly,
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
            yearly: self.yearly,
        }
    }

    fn withins(&self) -> [(Option<Duration>, &'static str); 5] {
        [
            (set(&self.within_hourly), "hourly"),
            (set(&self.within_daily), "daily"),
            (set(&self.within_weekly), "weekly"),
            (set(&self.within_monthly), "monthly"),
            (set(&self.within_yearly), "yearly"),
        ]
    }

    /// Whether the policy asks for nothing (every count 0, no duration, no tags). restic 0.14
    /// keeps everything then; [`validate`](Self::validate) refuses it.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && self.counts().iter().all(|(n, _)| *n == 0)
            && set(&self.within).is_none()
            && self.withins().iter().all(|(d, _)| d.is_none())
    }

    /// Refuse what restic (since 0.15) refuses: counts below -1, negative durations, and an
    /// empty policy (which would remove nothing; give snapshot ids to remove those).
    pub fn validate(&self) -> Result<()> {
        if let Some((n, what)) = self.counts().into_iter().find(|(n, _)| *n < -1) {
            return Err(Error::usage(format!(
                "--keep-{what} {n}: use a count of 0 or more, or -1 (unlimited)"
            )));
        }
        let durations = [
            (self.within, "within"),
            (self.within_hourly, "within-hourly"),
            (self.within_daily, "within-daily"),
            (self.within_weekly, "within-weekly"),
            (self.within_monthly, "within-monthly"),
            (self.within_yearly, "within-yearly"),
        ];
        if let Some((Some(d), what)) = durations
            .into_iter()
            .find(|(d, _)| d.is_some_and(|d| d.is_negative()))
        {
            return Err(Error::usage(format!(
                "--keep-{what} {d}: durations cannot be negative"
            )));
        }
        if self.is_empty() {
            return Err(Error::usage(
                "no policy was specified, no snapshots will be removed (give --keep-* options, or snapshot ids to remove)",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for KeepPolicy {
    /// restic's summary: `keep 2 daily snapshots, daily snapshots within 1m and all snapshots
    /// with tags [[a, b]] and all snapshots within 1d of the newest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let keeps: Vec<String> = self
            .counts()
            .iter()
            .filter(|(n, _)| *n != 0)
            .map(|(n, what)| {
                let what = if *what == "last" { "latest" } else { what };
                match n {
                    -1 => format!("unlimited {what}"),
                    n => format!("{n} {what}"),
                }
            })
            .collect();
        if !keeps.is_empty() {
            s = format!("{} snapshots", keeps.join(", "));
        }
        let keepw: Vec<String> = self
            .withins()
            .iter()
            .filter_map(|(d, what)| d.map(|d| format!("{what} snapshots within {d}")))
            .collect();
        if !keepw.is_empty() {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&keepw.join(", "));
        }
        if !self.tags.is_empty() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            let sets: Vec<String> = self.tags.iter().map(|t| tag_list(t)).collect();
            s.push_str(&format!("all snapshots with tags [{}]", sets.join(" ")));
        }
        if let Some(d) = set(&self.within) {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            s.push_str(&format!("all snapshots within {d} of the newest"));
        }
        write!(f, "keep {s}")
    }
}

/// restic's form of a tag list: `[a, b]`.
fn tag_list(t: &[String]) -> String {
    format!("[{}]", t.join(", "))
}

/// The bucket counters after a kept snapshot (restic's `counters`): what is left of each count
/// (`-1` stays `-1`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// `--keep-last` left.
    pub last: i32,
    /// `--keep-hourly` left.
    pub hourly: i32,
    /// `--keep-daily` left.
    pub daily: i32,
    /// `--keep-weekly` left.
    pub weekly: i32,
    /// `--keep-monthly` left.
    pub monthly: i32,
    /// `--keep-yearly` left.
    pub yearly: i32,
}

/// Why one snapshot is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepReason {
    /// The snapshot.
    pub id: Id,
    /// restic's reason strings, in restic's order: `has tags [a, b]`, `within 1d`,
    /// `last snapshot`, `hourly snapshot`, ..., `yearly snapshot`, `hourly within 2d`, ...,
    /// `yearly within 1y`; `policy is empty` for an empty policy.
    pub matches: Vec<String>,
    /// The counters after this snapshot.
    pub counters: Counters,
}

/// The outcome for one group: snapshots newest first.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Snapshots kept.
    pub keep: Vec<(Id, Snapshot)>,
    /// Snapshots not kept.
    pub remove: Vec<(Id, Snapshot)>,
    /// One per kept snapshot, in the order of `keep`.
    pub reasons: Vec<KeepReason>,
    /// The kept snapshots dated in the future (more than [`FUTURE_SKEW_NS`] after now), newest
    /// first: kept whatever the policy says and not counted by any bucket.
    pub future: Vec<Id>,
}

/// The reason given for keeping a snapshot dated in the future.
pub const FUTURE_REASON: &str = "dated in the future (not counted)";

/// Apply `policy` to one group, with local calendar periods (`TZ`) and the current time.
pub fn apply(policy: &KeepPolicy, snapshots: Vec<(Id, Snapshot)>) -> Applied {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    apply_in(policy, snapshots, now, &chrono::Local)
}

#[derive(Clone, Copy)]
enum Period {
    /// Every snapshot its own period (`last`).
    Each,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// The period number of a local time (restic's bucket functions).
fn period(p: Period, t: &NaiveDateTime, nr: usize) -> i64 {
    let (y, m, d, h) = (
        i64::from(t.year()),
        i64::from(t.month()),
        i64::from(t.day()),
        i64::from(t.hour()),
    );
    match p {
        Period::Each => nr as i64,
        Period::Hour => y * 1_000_000 + m * 10_000 + d * 100 + h,
        Period::Day => y * 10_000 + m * 100 + d,
        Period::Week => {
            let w = t.iso_week();
            i64::from(w.year()) * 100 + i64::from(w.week())
        }
        Period::Month => y * 100 + m,
        Period::Year => y,
    }
}

/// Go's `time.Date` for a wall time in `tz`: the offset in force at the wall time read as UTC
/// decides, unless that lands outside its zone period; then the offset in force at the
/// result. (Picks one side of a gap or fold the way Go does, so thresholds equal restic's.)
fn local_to_utc<Tz: TimeZone>(wall: NaiveDateTime, tz: &Tz) -> Option<NaiveDateTime> {
    let off1 = tz.offset_from_utc_datetime(&wall).fix().local_minus_utc();
    let guess = wall.checked_sub_signed(TimeDelta::seconds(off1.into()))?;
    let off = tz.offset_from_utc_datetime(&guess).fix().local_minus_utc();
    wall.checked_sub_signed(TimeDelta::seconds(off.into()))
}

/// ns since the epoch of `latest - d` (restic: `latest.AddDate(-y, -m, -d).Add(-h hours)`), as
/// i128 so that no duration overflows; `None` if the date leaves chrono's range.
fn within_start<Tz: TimeZone>(latest_ns: i64, d: &Duration, tz: &Tz) -> Option<i128> {
    let local = DateTime::from_timestamp_nanos(latest_ns)
        .with_timezone(tz)
        .naive_local();
    // Go's normalisation: months into years first, then days counted from the 1st.
    let months = i64::from(local.year()) * 12 + i64::from(local.month0())
        - i64::from(d.years) * 12
        - i64::from(d.months);
    let year = i32::try_from(months.div_euclid(12)).ok()?;
    let month = u32::try_from(months.rem_euclid(12)).ok()? + 1;
    let date = NaiveDate::from_ymd_opt(year, month, 1)?.checked_add_signed(TimeDelta::try_days(
        i64::from(local.day()) - 1 - i64::from(d.days),
    )?)?;
    let utc = local_to_utc(date.and_time(local.time()), tz)?.and_utc();
    Some(
        i128::from(utc.timestamp()) * 1_000_000_000 + i128::from(utc.timestamp_subsec_nanos())
            - i128::from(d.hours) * 3_600_000_000_000,
    )
}

/// restic's `HasTags`: the snapshot has every tag of `set`; an empty tag matches a snapshot
/// without tags.
fn has_tags(s: &Snapshot, set: &[String]) -> bool {
    for t in set {
        if t.is_empty() && s.tags.is_empty() {
            return true;
        }
        if !s.tags.contains(t) {
            return false;
        }
    }
    true
}

/// Apply `policy` to one group of snapshots, with periods in `tz` and `now_ns` as the current
/// time (snapshots dated after it do not count as the newest for `--keep-within*`; those dated
/// more than [`FUTURE_SKEW_NS`] after it are kept and not counted by any bucket). Snapshots are
/// sorted newest first (equal times: larger id first; restic keeps its listing order).
pub fn apply_in<Tz: TimeZone>(
    policy: &KeepPolicy,
    mut snapshots: Vec<(Id, Snapshot)>,
    now_ns: i64,
    tz: &Tz,
) -> Applied {
    crate::snapshot::group::sort_newest_first(&mut snapshots);
    let mut out = Applied::default();
    // Dated in the future: kept, reported, and out of every bucket (they sort first).
    let n_future = snapshots
        .iter()
        .take_while(|(_, s)| is_future(s.time_ns, now_ns))
        .count();
    let rest = snapshots.split_off(n_future);
    for (id, s) in snapshots {
        out.future.push(id);
        out.reasons.push(KeepReason {
            id,
            matches: vec![FUTURE_REASON.into()],
            counters: policy.counters(),
        });
        out.keep.push((id, s));
    }
    let snapshots = rest;
    if policy.is_empty() {
        out.reasons
            .extend(snapshots.iter().map(|(id, _)| KeepReason {
                id: *id,
                matches: vec!["policy is empty".into()],
                counters: Counters::default(),
            }));
        out.keep.extend(snapshots);
        return out;
    }
    // The newest snapshot not dated after now; with none, every snapshot is "within".
    let latest = snapshots
        .iter()
        .map(|(_, s)| s.time_ns)
        .filter(|&t| t < now_ns)
        .max();
    let start = |d: &Duration| -> i128 {
        match latest {
            None => i128::MIN,
            Some(l) => within_start(l, d, tz).unwrap_or(if d.is_negative() {
                i128::MAX
            } else {
                i128::MIN
            }),
        }
    };
    let within = set(&policy.within).map(|d| (d, start(&d)));
    let mut buckets: Vec<(i32, Period, Option<i64>, &str)> = vec![
        (policy.last, Period::Each, None, "last snapshot"),
        (policy.hourly, Period::Hour, None, "hourly snapshot"),
        (policy.daily, Period::Day, None, "daily snapshot"),
        (policy.weekly, Period::Week, None, "weekly snapshot"),
        (policy.monthly, Period::Month, None, "monthly snapshot"),
        (policy.yearly, Period::Year, None, "yearly snapshot"),
    ];
    let periods = [
        Period::Hour,
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Year,
    ];
    let mut within_buckets: Vec<(Duration, i128, Period, Option<i64>, String)> = policy
        .withins()
        .iter()
        .zip(periods)
        .filter_map(|((d, what), p)| {
            d.map(|d| (d, start(&d), p, None, format!("{what} within {d}")))
        })
        .collect();
    for (nr, (id, s)) in snapshots.into_iter().enumerate() {
        let local = DateTime::from_timestamp_nanos(s.time_ns)
            .with_timezone(tz)
            .naive_local();
        let time = i128::from(s.time_ns);
        let mut matches = Vec::new();
        for set in &policy.tags {
            if has_tags(&s, set) {
                matches.push(format!("has tags {}", tag_list(set)));
            }
        }
        if let Some((d, from)) = &within {
            if time > *from {
                matches.push(format!("within {d}"));
            }
        }
        for (count, p, last, reason) in &mut buckets {
            if *count > 0 || *count == -1 {
                let v = period(*p, &local, nr);
                if *last != Some(v) {
                    *last = Some(v);
                    if *count > 0 {
                        *count -= 1;
                    }
                    matches.push((*reason).to_string());
                }
            }
        }
        for (_, from, p, last, reason) in &mut within_buckets {
            if time > *from {
                let v = period(*p, &local, nr);
                if *last != Some(v) {
                    *last = Some(v);
                    matches.push(reason.clone());
                }
            }
        }
        if matches.is_empty() {
            out.remove.push((id, s));
        } else {
            out.reasons.push(KeepReason {
                id,
                matches,
                counters: Counters {
                    last: buckets[0].0,
                    hourly: buckets[1].0,
                    daily: buckets[2].0,
                    weekly: buckets[3].0,
                    monthly: buckets[4].0,
                    yearly: buckets[5].0,
                },
            });
            out.keep.push((id, s));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::group::{GroupBy, group};
    use chrono::{FixedOffset, MappedLocalTime, Utc};
    use std::collections::{BTreeMap, HashSet};

    /// Europe/Berlin without a tz database: CET, and CEST from 01:00 UTC of March's last
    /// Sunday to 01:00 UTC of October's (the EU rule, in force since 1996).
    #[derive(Debug, Clone, Copy)]
    struct Berlin;

    fn last_sunday(y: i32, m: u32) -> NaiveDate {
        let next = if m == 12 {
            NaiveDate::from_ymd_opt(y + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(y, m + 1, 1)
        }
        .unwrap();
        let last = next.pred_opt().unwrap();
        last - TimeDelta::days(last.weekday().num_days_from_sunday().into())
    }

    fn east(h: i32) -> FixedOffset {
        FixedOffset::east_opt(h * 3600).unwrap()
    }

    impl Berlin {
        fn at(utc: &NaiveDateTime) -> FixedOffset {
            let y = utc.year();
            let start = last_sunday(y, 3).and_hms_opt(1, 0, 0).unwrap();
            let end = last_sunday(y, 10).and_hms_opt(1, 0, 0).unwrap();
            if *utc >= start && *utc < end {
                east(2)
            } else {
                east(1)
            }
        }
    }

    impl TimeZone for Berlin {
        type Offset = FixedOffset;
        fn from_offset(_: &FixedOffset) -> Self {
            Berlin
        }
        fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<FixedOffset> {
            self.offset_from_local_datetime(&local.and_hms_opt(12, 0, 0).unwrap())
        }
        fn offset_from_local_datetime(
            &self,
            local: &NaiveDateTime,
        ) -> MappedLocalTime<FixedOffset> {
            let fits: Vec<FixedOffset> = [east(2), east(1)]
                .into_iter()
                .filter(|o| {
                    Berlin::at(&(*local - TimeDelta::seconds(o.local_minus_utc().into()))) == *o
                })
                .collect();
            match fits[..] {
                [] => MappedLocalTime::None,
                [o] => MappedLocalTime::Single(o),
                [a, b, ..] => MappedLocalTime::Ambiguous(a, b),
            }
        }
        fn offset_from_utc_date(&self, utc: &NaiveDate) -> FixedOffset {
            Berlin::at(&utc.and_hms_opt(0, 0, 0).unwrap())
        }
        fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> FixedOffset {
            Berlin::at(utc)
        }
    }

    const NOW: i64 = i64::MAX;

    fn ns(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    fn id(n: u64) -> Id {
        Id::from_hex(&format!("{n:064x}")).unwrap()
    }

    fn snap(time_ns: i64, host: &str, tags: &[&str]) -> Snapshot {
        Snapshot::for_test(time_ns, host, &["/data"], tags, Id::default())
    }

    fn list(times: &[i64]) -> Vec<(Id, Snapshot)> {
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| (id(i as u64 + 1), snap(t, "h", &[])))
            .collect()
    }

    /// Kept times with their reasons, newest first.
    fn kept(p: &KeepPolicy, l: Vec<(Id, Snapshot)>) -> Vec<(i64, Vec<String>)> {
        let a = apply_in(p, l, NOW, &Berlin);
        assert_eq!(a.keep.len(), a.reasons.len());
        a.keep
            .iter()
            .zip(&a.reasons)
            .map(|((id, s), r)| {
                assert_eq!(*id, r.id);
                (s.time_ns, r.matches.clone())
            })
            .collect()
    }

    fn d(s: &str) -> Option<Duration> {
        Some(Duration::parse(s).unwrap())
    }

    #[test]
    fn durations_parse_like_restic() {
        let p = |s| Duration::parse(s).unwrap();
        assert_eq!(
            p("1y2m3d4h"),
            Duration {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        assert_eq!(p("36h").hours, 36);
        assert_eq!(p(" 2m ").months, 2);
        assert_eq!(p("1d2d").days, 2, "the last value of a unit wins");
        assert!(p("").is_zero());
        assert!(p("0d").is_zero());
        assert!(p("-1d").is_negative());
        assert_eq!(p("1y2m3d4h").to_string(), "1y2m3d4h");
        assert_eq!(p("3d0h").to_string(), "3d");
        for bad in ["1", "d", "1x", "1y2", "y1", "1.5d", "99999999999d", "1d x"] {
            let e = Duration::parse(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Usage);
            assert!(
                e.to_string().contains(&format!("{bad:?}")),
                "error for {bad:?} names it: {e}"
            );
        }
    }

    #[test]
    fn empty_and_invalid_policies() {
        let empty = KeepPolicy::default();
        assert!(empty.is_empty());
        let e = empty.validate().unwrap_err();
        assert!(e.to_string().contains("no policy"), "{e}");
        assert!(!e.to_string().contains('\n'));
        let zero = KeepPolicy {
            within: d("0d"),
            ..Default::default()
        };
        assert!(zero.is_empty(), "a zero duration is no policy");
        // restic 0.14 keeps everything under an empty policy.
        let a = apply_in(&empty, list(&[1, 2]), NOW, &Berlin);
        assert_eq!(a.keep.len(), 2);
        assert_eq!(a.reasons[0].matches, vec!["policy is empty"]);
        let neg = KeepPolicy {
            daily: -2,
            ..Default::default()
        };
        assert!(neg.validate().unwrap_err().to_string().contains("-2"));
        let neg = KeepPolicy {
            within_daily: d("-1d"),
            ..Default::default()
        };
        assert!(neg.validate().is_err());
        let ok = KeepPolicy {
            daily: -1,
            tags: vec![vec!["a".into(), "b".into()]],
            within: d("1d"),
            within_monthly: d("1y"),
            ..Default::default()
        };
        ok.validate().unwrap();
        assert_eq!(
            ok.to_string(),
            "keep unlimited daily snapshots, monthly snapshots within 1y and all snapshots \
             with tags [[a, b]] and all snapshots within 1d of the newest"
        );
    }

    #[test]
    fn hourly_buckets_follow_local_wall_hours_across_dst() {
        let p = KeepPolicy {
            hourly: 10,
            ..Default::default()
        };
        // Autumn: 00:30 and 01:30 UTC are both 02:30 local (CEST, then CET): one bucket.
        let k = kept(
            &p,
            list(&[ns(2021, 10, 31, 0, 30), ns(2021, 10, 31, 1, 30)]),
        );
        assert_eq!(
            k,
            vec![(ns(2021, 10, 31, 1, 30), vec!["hourly snapshot".into()])]
        );
        // Spring: 00:30 UTC = 01:30 CET, 01:30 UTC = 03:30 CEST: two buckets.
        let k = kept(&p, list(&[ns(2021, 3, 28, 0, 30), ns(2021, 3, 28, 1, 30)]));
        assert_eq!(k.len(), 2);
        // Days: 21:30 and 22:30 UTC on Oct 30 are Oct 30 23:30 and Oct 31 00:30 local.
        let p = KeepPolicy {
            daily: 10,
            ..Default::default()
        };
        let k = kept(
            &p,
            list(&[ns(2021, 10, 30, 21, 30), ns(2021, 10, 30, 22, 30)]),
        );
        assert_eq!(k.len(), 2, "two local days");
        // In winter the same UTC times are one local day (Nov 30 22:30, 23:30).
        let k = kept(
            &p,
            list(&[ns(2021, 11, 30, 21, 30), ns(2021, 11, 30, 22, 30)]),
        );
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn weeks_are_iso_weeks() {
        let p = KeepPolicy {
            weekly: 10,
            ..Default::default()
        };
        // Thu 2020-12-31 and Sat 2021-01-02 are in week 53 of 2020; Mon 2021-01-04 starts
        // week 1 of 2021.
        let k = kept(
            &p,
            list(&[
                ns(2020, 12, 31, 12, 0),
                ns(2021, 1, 2, 12, 0),
                ns(2021, 1, 4, 12, 0),
            ]),
        );
        let times: Vec<i64> = k.iter().map(|x| x.0).collect();
        assert_eq!(times, vec![ns(2021, 1, 4, 12, 0), ns(2021, 1, 2, 12, 0)]);
        assert_eq!(
            period(
                Period::Week,
                &NaiveDate::from_ymd_opt(2021, 1, 2)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap(),
                0
            ),
            202053
        );
    }

    #[test]
    fn within_uses_calendar_arithmetic_like_go_add_date() {
        // Newest: 2023-03-26 12:00 CEST (10:00 UTC). 1d back is 2023-03-25 12:00 CET = 11:00
        // UTC, not 24 hours (10:00 UTC).
        let p = KeepPolicy {
            within: d("1d"),
            ..Default::default()
        };
        let k = kept(
            &p,
            list(&[
                ns(2023, 3, 25, 10, 30),
                ns(2023, 3, 25, 11, 30),
                ns(2023, 3, 26, 10, 0),
            ]),
        );
        let times: Vec<i64> = k.iter().map(|x| x.0).collect();
        assert_eq!(times, vec![ns(2023, 3, 26, 10, 0), ns(2023, 3, 25, 11, 30)]);
        assert_eq!(k[0].1, vec!["within 1d"]);
        // From March 31, one month back is "February 31" = March 3 (2023), not Feb 28.
        let p = KeepPolicy {
            within: d("1m"),
            ..Default::default()
        };
        let k = kept(
            &p,
            list(&[
                ns(2023, 3, 1, 12, 0),
                ns(2023, 3, 3, 10, 0),
                ns(2023, 3, 3, 11, 30),
                ns(2023, 3, 31, 10, 0),
            ]),
        );
        let times: Vec<i64> = k.iter().map(|x| x.0).collect();
        assert_eq!(times, vec![ns(2023, 3, 31, 10, 0), ns(2023, 3, 3, 11, 30)]);
        // The boundary itself is not "within" (restic: strictly after).
        let p = KeepPolicy {
            within: d("2h"),
            ..Default::default()
        };
        let k = kept(&p, list(&[ns(2023, 1, 1, 10, 0), ns(2023, 1, 1, 12, 0)]));
        assert_eq!(k.len(), 1);
        // Snapshots dated after now do not count as the newest.
        let l = list(&[
            ns(2023, 1, 1, 10, 0),
            ns(2023, 1, 1, 12, 0),
            ns(2030, 1, 1, 0, 0),
        ]);
        let a = apply_in(&p, l, ns(2024, 1, 1, 0, 0), &Berlin);
        assert_eq!(a.keep.len(), 2, "the 2030 one (after the start) and 12:00");
        // Go's choice for wall times in a gap or a fold.
        let wall = |y, mo, dd, h, mi| {
            NaiveDate::from_ymd_opt(y, mo, dd)
                .unwrap()
                .and_hms_opt(h, mi, 0)
                .unwrap()
        };
        let utc = |t: NaiveDateTime| t.and_utc().timestamp_nanos_opt().unwrap();
        assert_eq!(
            utc(local_to_utc(wall(2021, 3, 28, 2, 30), &Berlin).unwrap()),
            ns(2021, 3, 28, 1, 30),
            "02:30 does not exist: 03:30 CEST"
        );
        assert_eq!(
            utc(local_to_utc(wall(2021, 10, 31, 2, 30), &Berlin).unwrap()),
            ns(2021, 10, 31, 1, 30),
            "02:30 twice: Go takes CET east of Greenwich"
        );
    }

    #[test]
    fn future_snapshots_are_kept_but_not_counted() {
        let now = ns(2026, 12, 7, 12, 0);
        let l = list(&[
            ns(2027, 12, 7, 12, 0),                  // a year ahead
            ns(2026, 12, 7, 10, 0),                  // real
            ns(2026, 12, 7, 11, 0),                  // real, newest
            now + super::FUTURE_SKEW_NS,             // within the skew: a real one
            now + super::FUTURE_SKEW_NS + 1_000_000, // just beyond it
        ]);
        let p = KeepPolicy {
            last: 2,
            daily: 1,
            ..Default::default()
        };
        let a = apply_in(&p, l, now, &Berlin);
        assert_eq!(a.future, vec![id(1), id(5)]);
        let got: Vec<(Id, Vec<String>)> = a
            .reasons
            .iter()
            .map(|r| (r.id, r.matches.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (id(1), vec![FUTURE_REASON.to_string()]),
                (id(5), vec![FUTURE_REASON.to_string()]),
                (
                    id(4),
                    vec!["last snapshot".to_string(), "daily snapshot".to_string()]
                ),
                (id(3), vec!["last snapshot".to_string()]),
            ]
        );
        assert_eq!(a.reasons[0].counters.last, 2, "not counted");
        assert_eq!(
            a.remove.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![id(2)]
        );
    }

    #[test]
    fn tags_unlimited_counts_and_counters() {
        let l = vec![
            (id(1), snap(ns(2022, 1, 1, 10, 0), "h", &["a", "b"])),
            (id(2), snap(ns(2022, 1, 1, 11, 0), "h", &[])),
            (id(3), snap(ns(2022, 1, 2, 10, 0), "h", &["a"])),
            (id(4), snap(ns(2022, 1, 3, 10, 0), "h", &[])),
        ];
        let p = KeepPolicy {
            tags: vec![vec!["b".into(), "a".into()], vec!["".into()]],
            ..Default::default()
        };
        let a = apply_in(&p, l.clone(), NOW, &Berlin);
        let got: Vec<(Id, Vec<String>)> = a
            .reasons
            .iter()
            .map(|r| (r.id, r.matches.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (id(4), vec!["has tags []".to_string()]),
                (id(2), vec!["has tags []".to_string()]),
                (id(1), vec!["has tags [b, a]".to_string()]),
            ],
            "an empty tag matches untagged snapshots"
        );
        let p = KeepPolicy {
            last: 2,
            daily: -1,
            ..Default::default()
        };
        let a = apply_in(&p, l, NOW, &Berlin);
        let got: Vec<(Id, Vec<String>, Counters)> = a
            .reasons
            .iter()
            .map(|r| (r.id, r.matches.clone(), r.counters))
            .collect();
        let c = |last| Counters {
            last,
            daily: -1,
            ..Default::default()
        };
        assert_eq!(
            got,
            vec![
                (
                    id(4),
                    vec!["last snapshot".into(), "daily snapshot".into()],
                    c(1)
                ),
                (
                    id(3),
                    vec!["last snapshot".into(), "daily snapshot".into()],
                    c(0)
                ),
                (id(2), vec!["daily snapshot".into()], c(0)),
            ]
        );
        assert_eq!(a.remove.len(), 1);
        assert_eq!(a.remove[0].0, id(1));
    }

    /// An independent statement of restic's rule: for each count, the first (newest) snapshot
    /// of each of the first N distinct local periods, periods named by formatted strings.
    fn oracle(p: &KeepPolicy, mut l: Vec<(Id, Snapshot)>) -> Vec<(Id, Vec<String>)> {
        l.sort_by(|a, b| b.1.time_ns.cmp(&a.1.time_ns).then(b.0.cmp(&a.0)));
        let fmt = |s: &Snapshot, f: &str| {
            DateTime::from_timestamp_nanos(s.time_ns)
                .with_timezone(&Berlin)
                .format(f)
                .to_string()
        };
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); l.len()];
        for (i, (_, s)) in l.iter().enumerate() {
            for set in &p.tags {
                if set.iter().all(|t| s.tags.contains(t)) {
                    reasons[i].push(format!("has tags [{}]", set.join(", ")));
                }
            }
        }
        // The newest snapshot is at noon on a day <= 28, so chrono's month arithmetic
        // (which clamps) and Go's (which overflows) agree.
        let newest = DateTime::from_timestamp_nanos(l[0].1.time_ns).with_timezone(&Berlin);
        let start = |d: &Duration| -> i64 {
            let date = newest
                .date_naive()
                .checked_sub_months(chrono::Months::new((d.years * 12 + d.months) as u32))
                .unwrap()
                - TimeDelta::days(d.days.into());
            let local = Berlin
                .from_local_datetime(&date.and_time(newest.time()))
                .single()
                .unwrap();
            local.timestamp_nanos_opt().unwrap() - i64::from(d.hours) * 3_600_000_000_000
        };
        if let Some(w) = set(&p.within) {
            let from = start(&w);
            for (i, (_, s)) in l.iter().enumerate() {
                if s.time_ns > from {
                    reasons[i].push(format!("within {w}"));
                }
            }
        }
        let formats = ["%Y%m%d%H", "%Y%m%d", "%G%V", "%Y%m", "%Y"];
        let names = ["hourly", "daily", "weekly", "monthly", "yearly"];
        let mut counted = vec![(p.last, None, "last")];
        for ((n, f), name) in [p.hourly, p.daily, p.weekly, p.monthly, p.yearly]
            .into_iter()
            .zip(formats)
            .zip(names)
        {
            counted.push((n, Some(f), name));
        }
        for (n, f, name) in counted {
            if n == 0 {
                continue;
            }
            let mut seen = HashSet::new();
            for (i, (_, s)) in l.iter().enumerate() {
                let key = f.map(|f| fmt(s, f)).unwrap_or_else(|| i.to_string());
                if seen.insert(key) {
                    if n >= 0 && seen.len() as i32 > n {
                        break;
                    }
                    reasons[i].push(format!("{name} snapshot"));
                }
            }
        }
        for ((d, f), name) in p.withins().iter().map(|x| x.0).zip(formats).zip(names) {
            let Some(d) = d else { continue };
            let from = start(&d);
            let mut seen = HashSet::new();
            for (i, (_, s)) in l.iter().enumerate() {
                if s.time_ns > from && seen.insert(fmt(s, f)) {
                    reasons[i].push(format!("{name} within {d}"));
                }
            }
        }
        l.into_iter()
            .zip(reasons)
            .filter(|(_, r)| !r.is_empty())
            .map(|((id, _), r)| (id, r))
            .collect()
    }

    /// Years of hourly snapshots on three hosts, with gaps from an hour to a few weeks; each
    /// host's newest at noon UTC on the 15th.
    fn timeline(seed: u64) -> Vec<(Id, Snapshot)> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let hour = 3_600_000_000_000i64;
        let mut out = Vec::new();
        let mut n = 0;
        for (h, host) in ["a", "b", "c"].into_iter().enumerate() {
            let end = ns(2023, 5 + h as u32, 15, 12, 0);
            let mut t = ns(2020, 1, 1, 0, 0) + (h as i64) * 20 * 60_000_000_000;
            while t < end {
                n += 1;
                let tags: &[&str] = match rnd() % 50 {
                    0 => &["keep"],
                    1 => &["keep", "monthly"],
                    _ => &[],
                };
                out.push((id(n), snap(t, host, tags)));
                t += match rnd() % 100 {
                    0..=84 => hour,
                    85..=94 => hour * (2 + (rnd() % 30) as i64),
                    95..=98 => hour * 24 * (1 + (rnd() % 10) as i64),
                    _ => hour * 24 * (10 + (rnd() % 30) as i64),
                };
            }
            n += 1;
            out.push((id(n), snap(end, host, &[])));
        }
        out
    }

    #[test]
    fn policies_over_generated_timelines_match_the_oracle() {
        let policies = vec![
            KeepPolicy {
                last: 5,
                ..Default::default()
            },
            KeepPolicy {
                hourly: 100,
                ..Default::default()
            },
            KeepPolicy {
                daily: 400,
                ..Default::default()
            },
            KeepPolicy {
                weekly: 60,
                monthly: 20,
                ..Default::default()
            },
            KeepPolicy {
                last: 3,
                hourly: 24,
                daily: 7,
                weekly: 4,
                monthly: 12,
                yearly: -1,
                ..Default::default()
            },
            KeepPolicy {
                hourly: -1,
                ..Default::default()
            },
            KeepPolicy {
                within: d("1y2m3d4h"),
                ..Default::default()
            },
            KeepPolicy {
                within_hourly: d("2d"),
                within_daily: d("2m"),
                within_weekly: d("6m"),
                within_monthly: d("2y"),
                within_yearly: d("10y"),
                ..Default::default()
            },
            KeepPolicy {
                tags: vec![vec!["keep".into()], vec!["monthly".into(), "keep".into()]],
                daily: 3,
                within_weekly: d("1m12h"),
                ..Default::default()
            },
        ];
        for seed in [1, 2] {
            let all = timeline(seed);
            assert!(all.len() > 5_000, "{}", all.len());
            let groups = group(all, GroupBy::HOST_PATHS);
            assert_eq!(groups.len(), 3);
            for p in &policies {
                for (key, l) in &groups {
                    let a = apply_in(p, l.clone(), NOW, &Berlin);
                    assert_eq!(a.keep.len() + a.remove.len(), l.len());
                    let got: Vec<(Id, Vec<String>)> = a
                        .reasons
                        .iter()
                        .map(|r| (r.id, r.matches.clone()))
                        .collect();
                    let want = oracle(p, l.clone());
                    if got != want {
                        let g: BTreeMap<_, _> = got.into_iter().collect();
                        let w: BTreeMap<_, _> = want.into_iter().collect();
                        let diff: Vec<String> = g
                            .keys()
                            .chain(w.keys())
                            .filter(|k| g.get(*k) != w.get(*k))
                            .take(5)
                            .map(|k| {
                                format!(
                                    "{}: got {:?}, want {:?}",
                                    &k.to_hex()[56..],
                                    g.get(k),
                                    w.get(k)
                                )
                            })
                            .collect();
                        panic!("seed {seed}, {key:?}, {p}: {diff:#?}");
                    }
                }
            }
        }
    }
}
