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
//! - `--keep-tag a,b` keeps every snapshot that has all of `a` and `b` (an empty tag matches a
//!   snapshot without tags); several `--keep-tag` keep a snapshot matching any of them.
//!
//! Periods are local calendar periods: [`apply`] uses chrono's `Local` (the `TZ` variable), and
//! [`apply_in`] takes any time zone.

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
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
}

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
    let date = NaiveDate::from_ymd_opt(year, month, 1)?.checked_add_signed(
        TimeDelta::try_days(i64::from(local.day()) - 1 - i64::from(d.days))?,
    )?;
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
/// time (snapshots dated after it do not count as the newest for `--keep-within*`). Snapshots
/// are sorted newest first (equal times: larger id first; restic keeps its listing order).
pub fn apply_in<Tz: TimeZone>(
    policy: &KeepPolicy,
    mut snapshots: Vec<(Id, Snapshot)>,
    now_ns: i64,
    tz: &Tz,
) -> Applied {
    crate::snapshot::group::sort_newest_first(&mut snapshots);
    let mut out = Applied::default();
    if policy.is_empty() {
        out.reasons = snapshots
            .iter()
            .map(|(id, _)| KeepReason {
                id: *id,
                matches: vec!["policy is empty".into()],
                counters: Counters::default(),
            })
            .collect();
        out.keep = snapshots;
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
