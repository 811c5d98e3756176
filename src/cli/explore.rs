//! `stats`, `diff`, `find`, `tag`: looking through snapshots, and changing their tags.
//!
//! Output follows restic 0.14's commands of the same names; names, hosts and tags from the
//! repository are escaped in text output (`escape`), JSON keeps its own escaping.

use super::inspect::{FilterArgs, mode_string};
use super::{Global, escape, human, print_json};
use anyhow::{Result, bail};
use cairn::Id;
use cairn::format::snapshot::Snapshot;
use cairn::format::tree::{Node, NodeKind};
use cairn::patterns::Patterns;
use cairn::snapshot::diff::{DiffOptions, DiffStat, diff};
use cairn::snapshot::find::{
    IdHit, IdPrefix, IdQuery, IdSet, PathQuery, find_ids, find_paths, pack_blobs, select_snapshots,
};
use cairn::snapshot::select::{find, parse_time};
use cairn::snapshot::stats::{StatsMode, StatsOptions, stats};
use cairn::snapshot::tag::{TagOptions, tag};
use cairn::time::format_time;
use serde_json::json;
use std::io::Write;

/// Counting modes of `stats`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Entries and bytes a restore would write (hard links once per snapshot)
    RestoreSize,
    /// Unique blobs referenced: raw and stored size, compression, deduplication
    RawData,
}

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Snapshots: ids, prefixes or latest (default: all that pass the filters)
    pub snapshots: Vec<String>,
    /// What to count
    #[arg(long, value_enum, default_value = "restore-size")]
    pub mode: Mode,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run_stats(g: &Global, a: &StatsArgs) -> Result<i32> {
    let repo = g.open()?;
    let snaps = select_snapshots(&repo, &a.snapshots, &a.filter.filter())?;
    let mode = match a.mode {
        Mode::RestoreSize => StatsMode::RestoreSize,
        Mode::RawData => StatsMode::RawData,
    };
    let s = stats(&repo, &snaps, &StatsOptions { mode })?;
    let ratio = |x: f64| (x * 1000.0).round() / 1000.0;
    match (mode, g.json) {
        (StatsMode::RestoreSize, true) => print_json(&json!({
            "total_size": s.restore_size,
            "total_file_count": s.restore_file_count,
            "snapshots_count": s.snapshots_count,
        }))?,
        (StatsMode::RawData, true) => print_json(&json!({
            "total_size": s.stored_size,
            "total_uncompressed_size": s.raw_size,
            "compression_ratio": ratio(s.compression_ratio()),
            "compression_space_saving": ratio(s.compression_space_saving()),
            "total_blob_count": s.blob_count(),
            "data_blob_count": s.data_blob_count,
            "tree_blob_count": s.tree_blob_count,
            "data_uncompressed_size": s.data_raw_size,
            "restore_size": s.restore_size,
            "restore_file_count": s.restore_file_count,
            "dedup_ratio": ratio(s.dedup_ratio()),
            "snapshots_count": s.snapshots_count,
        }))?,
        (StatsMode::RestoreSize, false) => {
            println!("Stats in restore-size mode:");
            println!("Snapshots processed:   {}", s.snapshots_count);
            println!("   Total File Count:   {}", s.restore_file_count);
            println!("         Total Size:   {}", human(s.restore_size));
        }
        (StatsMode::RawData, false) => {
            println!("Stats in raw-data mode:");
            println!("     Snapshots processed:  {}", s.snapshots_count);
            println!(
                "        Total Blob Count:  {} ({} data, {} tree)",
                s.blob_count(),
                s.data_blob_count,
                s.tree_blob_count
            );
            println!(" Total Uncompressed Size:  {}", human(s.raw_size));
            println!("              Total Size:  {}", human(s.stored_size));
            println!("       Compression Ratio:  {:.2}x", s.compression_ratio());
            println!(
                "Compression Space Saving:  {:.2}%",
                s.compression_space_saving()
            );
            println!("            Restore Size:  {}", human(s.restore_size));
            println!(
                "     Deduplication Ratio:  {:.2}x (restore size / unique data)",
                s.dedup_ratio()
            );
        }
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The first snapshot: id, prefix or latest
    pub first: String,
    /// The second snapshot: id, prefix or latest
    pub second: String,
    /// Also show entries whose metadata alone changed (U)
    #[arg(long)]
    pub metadata: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn stat_json(s: &DiffStat) -> serde_json::Value {
    json!({"files": s.files, "dirs": s.dirs, "others": s.others, "data_blobs": s.data_blobs,
        "tree_blobs": s.tree_blobs, "bytes": s.bytes})
}

pub fn run_diff(g: &Global, a: &DiffArgs) -> Result<i32> {
    let repo = g.open()?;
    let f = a.filter.filter();
    let (id1, s1) = find(&repo, &a.first, &f, None)?;
    let (id2, s2) = find(&repo, &a.second, &f, None)?;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let (json, quiet) = (g.json, g.quiet);
    if !json && !quiet {
        writeln!(
            w,
            "comparing snapshot {} to {}:\n",
            id1.short(),
            id2.short()
        )?;
    }
    let opts = DiffOptions {
        metadata: a.metadata,
    };
    let mut io_err: Option<std::io::Error> = None;
    let mut print = |c: &cairn::snapshot::diff::Change| -> cairn::Result<()> {
        if quiet || io_err.is_some() {
            return Ok(());
        }
        let r = if json {
            let v = json!({"message_type": "change", "path": String::from_utf8_lossy(&c.path),
                "modifier": c.modifier});
            writeln!(w, "{v}")
        } else {
            writeln!(w, "{:<5}{}", c.modifier, escape::bytes(&c.path))
        };
        if let Err(e) = r {
            io_err = Some(e);
        }
        Ok(())
    };
    let out = diff(&repo, &s1.tree, &s2.tree, &opts, &mut print)?;
    if let Some(e) = io_err {
        return Err(e.into());
    }
    if out.missing_blobs > 0 {
        eprintln!(
            "warning: {} blobs are not in the index; their sizes are not counted",
            out.missing_blobs
        );
    }
    if json {
        let v = json!({"message_type": "statistics", "source_snapshot": id1.to_hex(),
            "target_snapshot": id2.to_hex(), "changed_files": out.changed_files,
            "added": stat_json(&out.added), "removed": stat_json(&out.removed)});
        writeln!(w, "{v}")?;
    } else {
        let (ad, rm) = (&out.added, &out.removed);
        writeln!(w)?;
        writeln!(
            w,
            "Files:       {:5} new, {:5} removed, {:5} changed",
            ad.files, rm.files, out.changed_files
        )?;
        writeln!(w, "Dirs:        {:5} new, {:5} removed", ad.dirs, rm.dirs)?;
        writeln!(
            w,
            "Others:      {:5} new, {:5} removed",
            ad.others, rm.others
        )?;
        writeln!(
            w,
            "Data Blobs:  {:5} new, {:5} removed",
            ad.data_blobs, rm.data_blobs
        )?;
        writeln!(
            w,
            "Tree Blobs:  {:5} new, {:5} removed",
            ad.tree_blobs, rm.tree_blobs
        )?;
        writeln!(w, "  Added:   {}", human(ad.bytes))?;
        writeln!(w, "  Removed: {}", human(rm.bytes))?;
    }
    w.flush()?;
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct FindArgs {
    /// Glob patterns (a name, or a path when it holds a /); with --blob, --tree or --pack:
    /// ids or id prefixes
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Search only this snapshot: id, prefix or latest (repeatable; default: all that pass the
    /// filters)
    #[arg(short = 's', long = "snapshot")]
    pub snapshots: Vec<String>,
    /// Match the patterns ignoring case
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Only entries modified at or after this time
    #[arg(short = 'O', long)]
    pub oldest: Option<String>,
    /// Only entries modified at or before this time
    #[arg(short = 'N', long)]
    pub newest: Option<String>,
    /// Show mode, owner, size and time
    #[arg(short = 'l', long)]
    pub long: bool,
    /// The arguments are data blob ids: show the files using them
    #[arg(long, conflicts_with_all = ["tree", "pack"])]
    pub blob: bool,
    /// The arguments are tree ids: show the folders they list
    #[arg(long, conflicts_with = "pack")]
    pub tree: bool,
    /// The arguments are pack ids: show where any of their blobs is used
    #[arg(long)]
    pub pack: bool,
    /// With --blob, --tree or --pack: also show the pack each object found is stored in
    #[arg(long)]
    pub show_pack_id: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn kind_name(k: NodeKind) -> &'static str {
    match k {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::CharDevice => "chardev",
        NodeKind::BlockDevice => "dev",
        NodeKind::Socket => "socket",
    }
}

fn time_json(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339()
}

/// restic's `find --long` line: mode, uid, gid, size, time, path (and a link's target).
fn long_line(path: &[u8], n: &Node) -> String {
    let target = if n.kind == NodeKind::Symlink {
        format!(" -> {}", escape::bytes(&n.link_target))
    } else {
        String::new()
    };
    format!(
        "{} {:5} {:5} {:6} {} {}{target}",
        mode_string(n),
        n.uid,
        n.gid,
        n.size,
        format_time(n.mtime_ns),
        escape::bytes(path)
    )
}

fn node_json(path: &[u8], n: &Node) -> serde_json::Value {
    let mut v = json!({"path": String::from_utf8_lossy(path), "permissions": mode_string(n),
        "type": kind_name(n.kind), "mode": n.mode, "mtime": time_json(n.mtime_ns),
        "ctime": time_json(n.ctime_ns), "uid": n.uid, "gid": n.gid, "user": n.user,
        "group": n.group, "size": n.size, "links": n.nlink});
    if n.kind == NodeKind::Symlink {
        v["linktarget"] = String::from_utf8_lossy(&n.link_target).into();
    }
    v
}

pub fn run_find(g: &Global, a: &FindArgs) -> Result<i32> {
    let by_id = a.blob || a.tree || a.pack;
    let ids = if by_id {
        a.patterns
            .iter()
            .map(|p| IdPrefix::parse(p))
            .collect::<cairn::Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let patterns = if by_id {
        Patterns::default()
    } else if a.ignore_case {
        Patterns::new(&[], &a.patterns)?
    } else {
        Patterns::new(&a.patterns, &[])?
    };
    let oldest_ns = a.oldest.as_deref().map(parse_time).transpose()?;
    let newest_ns = a.newest.as_deref().map(parse_time).transpose()?;
    let repo = g.open()?;
    let query = if a.pack {
        pack_blobs(&repo, &ids)?.1
    } else if a.blob {
        IdQuery {
            blobs: IdSet::new(ids),
            ..Default::default()
        }
    } else {
        IdQuery {
            trees: IdSet::new(ids),
            ..Default::default()
        }
    };
    let snaps = select_snapshots(&repo, &a.snapshots, &a.filter.filter())?;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut first_json = true;
    if g.json {
        write!(w, "[")?;
    }
    let mut printed_snapshots = 0usize;
    // Ids found, in order of first use (for --show-pack-id).
    let mut found_ids: Vec<Id> = Vec::new();
    let mut seen_ids: std::collections::HashSet<Id> = Default::default();
    for (sid, snap) in &snaps {
        if by_id {
            let found = find_ids_in(&repo, sid, snap, &query, g.json, &mut first_json, &mut w)?;
            for id in found {
                if seen_ids.insert(id) {
                    found_ids.push(id);
                }
            }
        } else {
            let matcher = |p: &[u8]| {
                use std::os::unix::ffi::OsStrExt;
                patterns.matches(std::path::Path::new(std::ffi::OsStr::from_bytes(p)))
            };
            let q = PathQuery {
                matches: &matcher,
                oldest_ns,
                newest_ns,
            };
            let mut lines: Vec<serde_json::Value> = Vec::new();
            let mut header_done = false;
            let mut io_err: Option<std::io::Error> = None;
            let json = g.json;
            let long = a.long;
            let w_ref = &mut w;
            let mut printed = printed_snapshots;
            let mut out = |p: &[u8], n: &Node| -> cairn::Result<()> {
                if json {
                    lines.push(node_json(p, n));
                    return Ok(());
                }
                let mut r = Ok(());
                if !header_done {
                    header_done = true;
                    if printed > 0 {
                        r = writeln!(w_ref);
                    }
                    printed += 1;
                    r = r.and_then(|_| {
                        writeln!(
                            w_ref,
                            "Found matching entries in snapshot {} from {}",
                            sid.short(),
                            format_time(snap.time_ns)
                        )
                    });
                }
                let line = if long {
                    long_line(p, n)
                } else {
                    escape::bytes(p)
                };
                r = r.and_then(|_| writeln!(w_ref, "{line}"));
                if let Err(e) = r {
                    io_err.get_or_insert(e);
                }
                Ok(())
            };
            let found = find_paths(&repo, &snap.tree, &q, &mut out)?;
            printed_snapshots = printed;
            if let Some(e) = io_err {
                return Err(e.into());
            }
            if json && found.hits > 0 {
                if !first_json {
                    write!(w, ",")?;
                }
                first_json = false;
                let v = json!({"matches": lines, "hits": found.hits, "snapshot": sid.to_hex()});
                write!(w, "{v}")?;
            }
        }
    }
    if g.json {
        writeln!(w, "]")?;
    }
    if a.show_pack_id && by_id && !g.json {
        for id in &found_ids {
            match repo.index()?.blob(id)? {
                Some(l) => writeln!(
                    w,
                    "Object belongs to pack {}\n ... Pack {}: {} {} offset {} length {} raw length {}",
                    l.pack.to_hex(),
                    l.pack.short(),
                    l.kind.name(),
                    id.short(),
                    l.offset,
                    l.length,
                    l.raw_length
                )?,
                None => writeln!(w, "Object {} not found in the index", id.short())?,
            }
        }
    }
    w.flush()?;
    Ok(0)
}

fn find_ids_in(
    repo: &cairn::repo::Repository,
    sid: &Id,
    snap: &Snapshot,
    query: &IdQuery,
    json: bool,
    first_json: &mut bool,
    w: &mut dyn Write,
) -> Result<Vec<Id>> {
    let mut io_err: Option<std::io::Error> = None;
    let mut found: Vec<Id> = Vec::new();
    let mut out = |h: &IdHit| -> cairn::Result<()> {
        found.push(h.id);
        let r = if json {
            let mut v = json!({"object_type": if h.kind == cairn::format::pack::BlobKind::Data {"blob"} else {"tree"},
                "id": h.id.to_hex(), "path": String::from_utf8_lossy(&h.path),
                "snapshot": sid.to_hex(), "time": time_json(snap.time_ns)});
            if let Some(t) = h.parent_tree {
                v["parent_tree"] = t.to_hex().into();
            }
            let sep = if *first_json { "" } else { "," };
            *first_json = false;
            write!(w, "{sep}{v}")
        } else if h.kind == cairn::format::pack::BlobKind::Data {
            writeln!(
                w,
                "Found blob {}\n ... in file {}\n     (tree {})\n ... in snapshot {} ({})",
                h.id.to_hex(),
                escape::bytes(&h.path),
                h.parent_tree.map(|t| t.to_hex()).unwrap_or_default(),
                sid.short(),
                format_time(snap.time_ns)
            )
        } else {
            writeln!(
                w,
                "Found tree {}\n ... path {}\n ... in snapshot {} ({})",
                h.id.to_hex(),
                escape::bytes(&h.path),
                sid.short(),
                format_time(snap.time_ns)
            )
        };
        if let Err(e) = r {
            io_err.get_or_insert(e);
        }
        Ok(())
    };
    find_ids(repo, &snap.tree, query, &mut out)?;
    if let Some(e) = io_err {
        return Err(e.into());
    }
    Ok(found)
}

#[derive(clap::Args, Debug)]
pub struct TagArgs {
    /// Snapshots: ids, prefixes or latest (default: all that pass the filters)
    pub snapshots: Vec<String>,
    /// Add these tags (repeatable; a,b adds both)
    #[arg(long = "add")]
    pub add: Vec<String>,
    /// Remove these tags (repeatable; a,b removes both)
    #[arg(long = "remove")]
    pub remove: Vec<String>,
    /// Replace all tags with these (repeatable; a,b sets both; --set "" removes all)
    #[arg(long = "set", conflicts_with_all = ["add", "remove"])]
    pub set: Vec<String>,
    /// Without snapshot ids, --set and --remove change every snapshot the filters pass: say so
    #[arg(long, conflicts_with = "snapshots")]
    pub all: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn split_tags(v: &[String]) -> Vec<String> {
    v.iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

pub fn run_tag(g: &Global, a: &TagArgs) -> Result<i32> {
    if a.snapshots.is_empty() && !a.all && (!a.set.is_empty() || !a.remove.is_empty()) {
        // Replacing or removing tags of every snapshot at once is rarely meant.
        use clap::CommandFactory;
        super::Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "tag --set/--remove without snapshot ids would change every snapshot: give ids, or --all",
            )
            .exit();
    }
    let opts = TagOptions {
        add: split_tags(&a.add),
        remove: split_tags(&a.remove),
        set: (!a.set.is_empty()).then(|| split_tags(&a.set)),
    };
    opts.check()?;
    let repo = g.open()?;
    let snaps = select_snapshots(&repo, &a.snapshots, &a.filter.filter())?;
    if snaps.is_empty() {
        bail!("no snapshot matches");
    }
    let out = tag(&repo, snaps, &opts)?;
    for (id, e) in &out.failed {
        eprintln!(
            "warning: cannot change the tags of snapshot {}: {}",
            id.short(),
            escape::text(&e.to_string())
        );
    }
    if g.json {
        print_json(&json!({
            "changed": out.changed.iter().map(|c| json!({"old": c.old.to_hex(), "new": c.new.to_hex(), "tags": c.tags})).collect::<Vec<_>>(),
            "unchanged": out.unchanged.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "failed": out.failed.iter().map(|(i, e)| json!({"id": i.to_hex(), "error": e.to_string()})).collect::<Vec<_>>(),
        }))?;
    } else {
        for c in &out.changed {
            let tags = if c.tags.is_empty() {
                "(none)".to_string()
            } else {
                escape::text(&c.tags.join(","))
            };
            println!(
                "snapshot {} -> {} tags: {tags}",
                c.old.short(),
                c.new.short()
            );
        }
        if out.changed.is_empty() {
            println!("no snapshots were modified");
        } else {
            println!("modified tags on {} snapshots", out.changed.len());
        }
    }
    Ok(if out.failed.is_empty() { 0 } else { 1 })
}
