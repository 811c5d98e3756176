//! `forget`: remove snapshots named by id, or those a retention policy does not keep, applied
//! to each group (`--group-by`) separately, with restic's semantics and JSON shape
//! (docs/design.md §15).

use super::inspect::{FilterArgs, escaped_paths, group_key_text, snapshot_json};
use super::{Global, escape, print_json};
use anyhow::{Result, bail};
use cairn::Id;
use cairn::format::snapshot::Snapshot;
use cairn::snapshot::forget;
use cairn::snapshot::group::{GroupBy, GroupKey};
use cairn::snapshot::policy::{Applied, Counters, Duration, KeepPolicy};
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// Snapshots to remove (ids, unique id prefixes, or latest); not together with --keep-*
    pub ids: Vec<String>,
    /// Keep the N newest snapshots (-1 or "unlimited": all)
    #[arg(short = 'l', long, value_name = "N", default_value_t = 0, value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_last: i32,
    /// Keep the newest snapshot of each of the N newest hours (local time; -1: of every hour)
    #[arg(short = 'H', long, value_name = "N", default_value_t = 0, value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_hourly: i32,
    /// Keep the newest snapshot of each of the N newest days (-1: of every day)
    #[arg(short = 'd', long, value_name = "N", default_value_t = 0, value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_daily: i32,
    /// Keep the newest snapshot of each of the N newest ISO weeks (-1: of every week)
    #[arg(short = 'w', long, value_name = "N", default_value_t = 0, value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_weekly: i32,
    /// Keep the newest snapshot of each of the N newest months (-1: of every month)
    #[arg(short = 'm', long, value_name = "N", default_value_t = 0, value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_monthly: i32,
    /// Keep the newest snapshot of each of the N newest years (-1: of every year)
    #[arg(short = 'y', long, value_name = "N", default_value_t = 0, value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_yearly: i32,
    /// Keep snapshots newer than the newest snapshot minus D (like 1y2m3d4h; m = months)
    #[arg(long, value_name = "D", value_parser = Duration::parse)]
    pub keep_within: Option<Duration>,
    /// Keep the newest snapshot of every hour within D of the newest snapshot
    #[arg(long, value_name = "D", value_parser = Duration::parse)]
    pub keep_within_hourly: Option<Duration>,
    /// Keep the newest snapshot of every day within D of the newest snapshot
    #[arg(long, value_name = "D", value_parser = Duration::parse)]
    pub keep_within_daily: Option<Duration>,
    /// Keep the newest snapshot of every ISO week within D of the newest snapshot
    #[arg(long, value_name = "D", value_parser = Duration::parse)]
    pub keep_within_weekly: Option<Duration>,
    /// Keep the newest snapshot of every month within D of the newest snapshot
    #[arg(long, value_name = "D", value_parser = Duration::parse)]
    pub keep_within_monthly: Option<Duration>,
    /// Keep the newest snapshot of every year within D of the newest snapshot
    #[arg(long, value_name = "D", value_parser = Duration::parse)]
    pub keep_within_yearly: Option<Duration>,
    /// Keep snapshots with these tags (comma = all of them; repeat = any set)
    #[arg(long, value_name = "TAGS")]
    pub keep_tag: Vec<String>,
    /// Apply the policy to each group of snapshots with the same host, paths and/or tags
    /// (comma-separated; "" = all snapshots in one group)
    #[arg(short = 'g', long, default_value = "host,paths")]
    pub group_by: String,
    /// Only print what would be removed
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Prune afterwards (with --dry-run, print prune's plan only)
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_options: super::maintain::PruneOptionArgs,
}

/// A `--keep-*` count: a number from -1 up, or `unlimited` (= -1).
fn parse_count(s: &str) -> Result<i32, String> {
    if s == "unlimited" {
        return Ok(-1);
    }
    match s.parse::<i32>() {
        Ok(n) if n >= -1 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a count: use a number from 0 up, or -1 or unlimited"
        )),
    }
}

impl ForgetArgs {
    fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            within_hourly: self.keep_within_hourly,
            within_daily: self.keep_within_daily,
            within_weekly: self.keep_within_weekly,
            within_monthly: self.keep_within_monthly,
            within_yearly: self.keep_within_yearly,
            // restic's tag lists: split at commas, spaces trimmed, empty tags kept (an empty
            // tag matches snapshots without tags).
            tags: self
                .keep_tag
                .iter()
                .map(|t| t.split(',').map(|s| s.trim().to_string()).collect())
                .collect(),
        }
    }
}

pub fn run(g: &Global, a: &ForgetArgs) -> Result<i32> {
    let policy = a.policy();
    let by = GroupBy::parse(&a.group_by)?;
    if !a.ids.is_empty() {
        if !policy.is_empty() {
            bail!("give snapshot ids or a --keep-* policy, not both");
        }
    } else {
        policy.validate()?;
    }
    let repo = g.open()?;
    let filter = a.filter.filter();
    if !a.ids.is_empty() {
        let remove = forget::named(&repo, &a.ids, &filter)?;
        if !g.json {
            for (id, s) in &remove {
                println!(
                    "{} snapshot {} of {} at {}",
                    if a.dry_run {
                        "would remove"
                    } else {
                        "removing"
                    },
                    id.short(),
                    escape::text(&s.host),
                    local_time(s.time_ns)
                );
            }
        }
        delete(&repo, &remove, a.dry_run, g.json)?;
        if g.json {
            let grp = json!({"tags": null, "host": "", "paths": null, "keep": null,
                "remove": remove.iter().map(|(id, s)| snapshot_json(id, s)).collect::<Vec<_>>(),
                "reasons": null});
            print_json(&[grp])?;
        }
        return after(g, &repo, a);
    }
    let results = forget::plan(&repo, &filter, by, &policy)?;
    // Snapshots dated in the future are kept and not counted (snapshot/policy.rs); say so, also with
    // --json (stderr), since they are usually a wrong clock or a planted snapshot.
    let now = cairn::snapshot::select::now_ns();
    for (_, r) in &results {
        for (id, s) in r.keep.iter().filter(|(id, _)| r.future.contains(id)) {
            eprintln!(
                "warning: snapshot {} of {} is dated {}, {} ahead of this host's clock: kept, \
                 and not counted by --keep-*; check the clock of the host that made it, and \
                 forget it by id if it is not wanted",
                id.short(),
                escape::text(&s.host),
                local_time(s.time_ns),
                ahead(s.time_ns, now)
            );
        }
    }
    if !g.json {
        println!("applying policy: {}", escape::text(&policy.to_string()));
        for (k, r) in &results {
            print_group(k, r, by.is_grouping());
        }
    }
    let remove = forget::removals(&results);
    delete(&repo, &remove, a.dry_run, g.json)?;
    if g.json {
        let v: Vec<Value> = results.iter().map(|(k, r)| group_json(k, r)).collect();
        print_json(&v)?;
    }
    after(g, &repo, a)
}

/// `--prune`: prune right after forgetting (its JSON, if any, is a second line), through the
/// same printing of the library's prune session as `cairn prune`.
fn after(
    g: &Global,
    repo: &std::sync::Arc<cairn::repo::Repository>,
    a: &ForgetArgs,
) -> Result<i32> {
    if !a.prune {
        return Ok(0);
    }
    let opts = a.prune_options.options()?;
    super::maintain::prune_open(g, repo, &opts, a.dry_run)
}

/// Delete the snapshots (not in a dry run) and say how many.
fn delete(
    repo: &cairn::repo::Repository,
    remove: &[(Id, Snapshot)],
    dry_run: bool,
    json: bool,
) -> Result<()> {
    if !dry_run {
        forget::delete(repo, remove)?;
    }
    if !json {
        println!(
            "{} {} snapshots",
            if dry_run { "would remove" } else { "removed" },
            remove.len()
        );
    }
    Ok(())
}

/// How far `t` lies after `now`, for a human (`365d 0h`, `2h 5m`).
fn ahead(t: i64, now: i64) -> String {
    let mins = (i128::from(t) - i128::from(now)).max(0) / 60_000_000_000;
    let (d, h, m) = (mins / 1440, mins / 60 % 24, mins % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else {
        format!("{h}h {m}m")
    }
}

/// A time in the local zone (the zone whose calendar the policy used).
fn local_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// One group for a human: a header, the kept snapshots with their reasons, the removed ones.
fn print_group(k: &GroupKey, r: &Applied, grouped: bool) {
    println!();
    if grouped {
        println!("snapshots for {}:", group_key_text(k));
    }
    let row = |id: &Id, s: &Snapshot, reason: &str| {
        println!(
            "{:<9} {:<19} {:<14} {:<16} {:<20} {}",
            id.short(),
            local_time(s.time_ns),
            escape::text(&s.host),
            escape::text(&s.tags.join(",")),
            reason,
            escaped_paths(s)
        );
    };
    let header = || {
        println!(
            "{:<9} {:<19} {:<14} {:<16} {:<20} paths",
            "id", "time (local)", "host", "tags", "reasons"
        );
        println!("{}", "-".repeat(100));
    };
    println!("keep {} snapshots:", r.keep.len());
    if !r.keep.is_empty() {
        header();
        for ((id, s), why) in r.keep.iter().zip(&r.reasons) {
            let mut m = why.matches.iter();
            row(id, s, m.next().map(String::as_str).unwrap_or(""));
            for more in m {
                println!("{:<9} {:<19} {:<14} {:<16} {more}", "", "", "", "");
            }
        }
    }
    println!("remove {} snapshots:", r.remove.len());
    if !r.remove.is_empty() {
        header();
        for (id, s) in &r.remove {
            row(id, s, "");
        }
    }
}

/// restic's counters: only the non-zero ones.
fn counters_json(c: &Counters) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("last", c.last),
        ("hourly", c.hourly),
        ("daily", c.daily),
        ("weekly", c.weekly),
        ("monthly", c.monthly),
        ("yearly", c.yearly),
    ] {
        if v != 0 {
            m.insert(k.into(), v.into());
        }
    }
    Value::Object(m)
}

/// One group in restic's `forget --json` shape; empty lists are `null`, as restic writes them.
fn group_json(k: &GroupKey, r: &Applied) -> Value {
    let list = |v: &[(Id, Snapshot)]| -> Value {
        if v.is_empty() {
            Value::Null
        } else {
            v.iter().map(|(id, s)| snapshot_json(id, s)).collect()
        }
    };
    let reasons: Value = if r.reasons.is_empty() {
        Value::Null
    } else {
        r.keep
            .iter()
            .zip(&r.reasons)
            .map(|((id, s), why)| {
                json!({"snapshot": snapshot_json(id, s), "matches": why.matches,
                    "counters": counters_json(&why.counters)})
            })
            .collect()
    };
    json!({
        "tags": k.tags.clone().filter(|t| !t.is_empty()),
        "host": k.host.clone().unwrap_or_default(),
        "paths": k.path_strings(),
        "keep": list(&r.keep),
        "remove": list(&r.remove),
        "reasons": reasons,
    })
}
