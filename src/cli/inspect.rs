//! `snapshots`, `ls`, `cat`, `dump`: reading the repository.

use super::{Global, escape, print_json};
use anyhow::{Result, bail};
use cairn::Id;
use cairn::format::snapshot::Snapshot;
use cairn::format::tree::{Node, NodeKind};
use cairn::repo::Repository;
use cairn::snapshot::find_node;
use cairn::snapshot::group::{GroupBy, GroupKey, group, latest_per_group};
use cairn::snapshot::select::{FUTURE_SKEW_NS, Filter, find, is_future, now_ns};
use cairn::snapshot::walk::{Step, TreeWalk};
use cairn::time::format_time;
use std::io::Write;

/// Snapshot filters shared by several commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeatable)
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Only snapshots with these tags (comma = all of them; repeat = any set)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path (repeatable)
    #[arg(long = "path")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> Filter {
        Filter {
            hosts: self.hosts.clone(),
            tags: self
                .tags
                .iter()
                .map(|t| {
                    t.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .collect(),
            paths: self.paths.clone(),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only the newest N snapshots of each group (by default of each host and path set; see
    /// --group-by)
    #[arg(long)]
    pub latest: Option<usize>,
    /// Group snapshots by host, paths and/or tags, separated by commas ("" = one group); with
    /// --json, prints restic's [{"group_key": {...}, "snapshots": [...]}]
    #[arg(short = 'g', long)]
    pub group_by: Option<String>,
}

pub fn snapshot_json(id: &Id, s: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_hex(), "short_id": id.short(), "time": chrono::DateTime::from_timestamp_nanos(s.time_ns).to_rfc3339(),
        "host": s.host, "user": s.user, "paths": s.path_strings(), "tags": s.tags, "tree": s.tree.to_hex(),
        "parent": s.parent.map(|p| p.to_hex()), "kind": s.kind.name(), "summary": s.summary, "program": s.program,
        "pg": s.pg.as_ref().map(super::pg::base_json),
    })
}

/// A group key as restic writes it in `snapshots --group-by --json`: `hostname` is `""` and
/// `paths`/`tags` are `null` when not grouped by (or, for tags, when there are none).
pub fn group_key_json(k: &GroupKey) -> serde_json::Value {
    serde_json::json!({
        "hostname": k.host.clone().unwrap_or_default(),
        "paths": k.path_strings(),
        "tags": k.tags.clone().filter(|t| !t.is_empty()),
    })
}

/// A group key for a human: `host a, paths /x /y, tags t` (only the grouped parts; escaped).
pub fn group_key_text(k: &GroupKey) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &k.host {
        parts.push(format!("host {}", escape::text(h)));
    }
    if let Some(ps) = &k.paths {
        let ps: Vec<String> = ps.iter().map(|p| escape::bytes(p)).collect();
        parts.push(format!("paths {}", ps.join(" ")));
    }
    match &k.tags {
        Some(ts) if ts.is_empty() => parts.push("no tags".into()),
        Some(ts) => parts.push(format!("tags {}", escape::text(&ts.join(",")))),
        None => {}
    }
    if parts.is_empty() {
        "all snapshots".into()
    } else {
        parts.join(", ")
    }
}

pub fn snapshots(g: &Global, a: &SnapshotsArgs) -> Result<i32> {
    let repo = g.open()?;
    let f = a.filter.filter();
    let list: Vec<(Id, Snapshot)> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| f.matches(s))
        .collect();
    let now = now_ns();
    let by = match &a.group_by {
        Some(s) => GroupBy::parse(s)?,
        None => GroupBy::HOST_PATHS,
    };
    let mut groups = match a.latest {
        Some(n) => latest_per_group(list, by, n),
        None => group(list, by),
    };
    // Listings show each group oldest first.
    for (_, v) in &mut groups {
        v.reverse();
    }
    if a.group_by.is_none() {
        // One flat list, oldest first.
        let mut flat: Vec<(Id, Snapshot)> = groups.into_iter().flat_map(|(_, v)| v).collect();
        flat.sort_by(|x, y| x.1.time_ns.cmp(&y.1.time_ns).then(x.0.cmp(&y.0)));
        if g.json {
            let v: Vec<_> = flat.iter().map(|(id, s)| listed_json(id, s, now)).collect();
            return print_json(&v).map(|_| 0);
        }
        print_snapshot_table(&flat, now);
        return Ok(0);
    }
    if g.json {
        let v: Vec<_> = groups
            .iter()
            .map(|(k, v)| {
                serde_json::json!({
                    "group_key": group_key_json(k),
                    "snapshots": v.iter().map(|(id, s)| listed_json(id, s, now)).collect::<Vec<_>>(),
                })
            })
            .collect();
        return print_json(&v).map(|_| 0);
    }
    for (i, (k, v)) in groups.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("snapshots for {}:", group_key_text(k));
        print_snapshot_table(v, now);
    }
    Ok(0)
}

/// A snapshot in `snapshots --json`: [`snapshot_json`] and `dated_in_future` (more than
/// [`FUTURE_SKEW_NS`] after `now`: never `latest` or a parent, not counted by `forget`).
fn listed_json(id: &Id, s: &Snapshot, now: i64) -> serde_json::Value {
    let mut v = snapshot_json(id, s);
    v["dated_in_future"] = is_future(s.time_ns, now).into();
    v
}

/// The snapshot table of `snapshots`, with a count line; a `!` after the time marks a
/// snapshot dated in the future, explained below the table.
fn print_snapshot_table(list: &[(Id, Snapshot)], now: i64) {
    println!(
        "{:<9} {:<19} {:<14} {:<12} {:<9} {:<16} paths",
        "id", "time", "host", "type", "parent", "tags"
    );
    println!("{}", "-".repeat(100));
    // Host, tags and paths come from the repository: escaped, never raw to the terminal.
    let mut future = 0;
    for (id, s) in list {
        let mark = if is_future(s.time_ns, now) {
            future += 1;
            "!"
        } else {
            " "
        };
        println!(
            "{:<9} {:<19}{mark}{:<14} {:<12} {:<9} {:<16} {}",
            id.short(),
            format_time(s.time_ns),
            escape::text(&s.host),
            s.kind.name(),
            s.parent.map(|p| p.short()).unwrap_or_else(|| "-".into()),
            escape::text(&s.tags.join(",")),
            escaped_paths(s)
        );
    }
    println!("{} snapshots", list.len());
    if future > 0 {
        println!(
            "! {future} dated more than {} min after this host's clock: never `latest` or a \
             parent, not counted by forget --keep-* (check the clock of the host that made it)",
            FUTURE_SKEW_NS / 60_000_000_000
        );
    }
}

/// A snapshot's paths for a human, escaped and separated by spaces.
pub fn escaped_paths(s: &Snapshot) -> String {
    s.paths
        .iter()
        .map(|p| escape::bytes(p))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Snapshot id, prefix, or latest
    pub snapshot: String,
    /// Only below this path
    pub path: Option<String>,
    /// Show mode, owner, size and time
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub(super) fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    };
    let mut s = String::from(t);
    for i in (0..9).rev() {
        let bit = n.mode & (1 << i) != 0;
        s.push(if bit { ['x', 'w', 'r'][i % 3] } else { '-' });
    }
    s
}

/// Every node below tree `tree`, depth first in name order, with its snapshot path.
fn ls_walk(
    repo: &Repository,
    tree: &Id,
    prefix: &[u8],
    out: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
) -> Result<()> {
    let mut walk = TreeWalk::new(repo, tree, prefix)?;
    while let Some(step) = walk.next_step() {
        if let Step::Node(n) = step {
            out(&walk.child_path(&n.name), &n)?;
            if n.kind == NodeKind::Dir {
                walk.enter(&n)?;
            }
        }
    }
    Ok(())
}

pub fn ls(g: &Global, a: &LsArgs) -> Result<i32> {
    let repo = g.open()?;
    let (id, snap) = find(&repo, &a.snapshot, &a.filter.filter(), None)?;
    let path = a.path.clone().unwrap_or_default();
    let start = find_node(&repo, snap.tree, path.as_bytes())?;
    let base = path.trim_end_matches('/').as_bytes().to_vec();
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    if !g.json {
        writeln!(
            w,
            "snapshot {} of {} at {}:",
            id.short(),
            escaped_paths(&snap),
            format_time(snap.time_ns)
        )?;
    }
    let json = g.json;
    let long = a.long;
    // Names, link targets, users and groups come from the repository: the human forms are
    // escaped (crate::cli::escape), JSON keeps its own escaping.
    let mut print = |p: &[u8], n: &Node| -> Result<()> {
        if json {
            let ps = String::from_utf8_lossy(p);
            writeln!(
                w,
                "{}",
                serde_json::json!({"path": ps, "type": format!("{:?}", n.kind).to_lowercase(), "mode": n.mode, "uid": n.uid, "gid": n.gid,
                    "user": n.user, "group": n.group, "size": n.size, "mtime_ns": n.mtime_ns, "link_target": String::from_utf8_lossy(&n.link_target)})
            )?;
        } else if long {
            let ps = escape::bytes(p);
            let link = if n.kind == NodeKind::Symlink {
                format!(" -> {}", escape::bytes(&n.link_target))
            } else {
                String::new()
            };
            let owner = if n.user.is_empty() {
                n.uid.to_string()
            } else {
                escape::text(&n.user)
            };
            let group = if n.group.is_empty() {
                n.gid.to_string()
            } else {
                escape::text(&n.group)
            };
            writeln!(
                w,
                "{} {:>8} {:>8} {:>12} {} {ps}{link}",
                mode_string(n),
                owner,
                group,
                n.size,
                format_time(n.mtime_ns)
            )?;
        } else {
            writeln!(w, "{}", escape::bytes(p))?;
        }
        Ok(())
    };
    match (start.kind, start.subtree) {
        (NodeKind::Dir, Some(t)) => ls_walk(&repo, &t, &base, &mut print)?,
        _ => print(&base, &start)?,
    }
    w.flush()?;
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct CatArgs {
    /// config, key, snapshot, index, tree, blob or pack
    pub kind: String,
    /// The object's id (snapshots also take a prefix or latest)
    pub id: Option<String>,
}

fn need_id(a: &CatArgs) -> Result<Id> {
    match &a.id {
        Some(s) => Ok(Id::from_hex(s)?),
        None => bail!("cat {} needs an id", a.kind),
    }
}

pub fn cat(g: &Global, a: &CatArgs) -> Result<i32> {
    let repo = g.open()?;
    match a.kind.as_str() {
        "config" => print_json(repo.config())?,
        "key" => {
            let id = need_id(a)?;
            let k = repo.read_key_file(&id)?;
            print_json(&k)?;
        }
        "snapshot" => {
            let spec = a.id.clone().unwrap_or_default();
            let (id, s) = find(&repo, &spec, &Filter::default(), None)?;
            print_json(&snapshot_json(&id, &s))?;
        }
        "index" => print_json(&repo.load_index_file(&need_id(a)?)?)?,
        "tree" => {
            let t = repo.load_tree(&need_id(a)?)?;
            let nodes: Vec<_> = t
                .nodes
                .iter()
                .map(|n| {
                    let mut v = serde_json::to_value(n).unwrap_or_default();
                    v["name"] =
                        serde_json::Value::String(String::from_utf8_lossy(&n.name).into_owned());
                    v["link_target"] = serde_json::Value::String(
                        String::from_utf8_lossy(&n.link_target).into_owned(),
                    );
                    v
                })
                .collect();
            print_json(&serde_json::json!({"version": t.version, "nodes": nodes}))?;
        }
        "blob" => {
            let raw = repo.read_blob(&need_id(a)?)?;
            std::io::stdout().write_all(&raw)?;
        }
        "pack" => print_json(&repo.read_pack_header(&need_id(a)?)?)?,
        other => bail!(
            "unknown object type {other:?}: use config, key, snapshot, index, tree, blob or pack"
        ),
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct DumpArgs {
    /// Snapshot id, prefix, or latest
    pub snapshot: String,
    /// Path of a file or folder in the snapshot
    pub path: String,
    /// Write a folder (or a file) as this kind of archive; a file alone is written as its bytes
    #[arg(long, value_enum)]
    pub archive: Option<Archive>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Archive formats of `dump`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archive {
    /// POSIX pax tar (names, owners, ns times, links, devices, xattrs)
    Tar,
    /// zip (deflate; modes, mtimes, symlinks; hard links as copies)
    Zip,
}

pub fn dump(g: &Global, a: &DumpArgs) -> Result<i32> {
    let repo = g.open()?;
    let (_, snap) = find(&repo, &a.snapshot, &a.filter.filter(), None)?;
    let node = find_node(&repo, snap.tree, a.path.as_bytes())?;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let archive = match (a.archive, node.kind) {
        (Some(x), _) => Some(x),
        (None, NodeKind::Dir) => Some(Archive::Tar),
        (None, NodeKind::File) => None,
        (None, _) => bail!(
            "{} is neither a file nor a folder in the snapshot (use --archive tar)",
            a.path
        ),
    };
    let spath = format!("/{}", a.path.trim_matches('/'));
    let spath = spath.trim_end_matches('/').as_bytes();
    // Renamed entries and files whose content does not match their size: `warning: …` on
    // stderr (stdout is the archive, also with `--json`), and exit code 3.
    let warned = std::sync::atomic::AtomicUsize::new(0);
    let warn = |w: &cairn::warning::EntryWarning| {
        warned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        eprintln!("warning: {}", super::escape::text(&w.message));
    };
    match archive {
        None => cairn::commands::dump::file(&repo, &node, spath, &mut w, &warn)?,
        Some(Archive::Tar) => cairn::commands::dump::tar(&repo, &node, spath, &mut w, &warn)?,
        Some(Archive::Zip) => cairn::commands::dump::zip(&repo, &node, spath, &mut w, &warn)?,
    };
    w.flush()?;
    Ok(if warned.into_inner() > 0 {
        super::EXIT_PARTIAL
    } else {
        0
    })
}
