//! `prune`, `check`, `repair`, `unlock`: keeping a repository lean and sound.

use super::{Global, escape, human, print_json};
use anyhow::Result;
use cairn::commands::check::{CheckOptions, Subset};
use cairn::prune::{MaxUnused, PruneOptions};
use cairn::repo::CacheMode;
use cairn::repo::lock::LockTiming;

/// `prune` options.
#[derive(clap::Args, Debug, Clone)]
pub struct PruneArgs {
    #[command(flatten)]
    pub options: PruneOptionArgs,
    /// Only print what would be done
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// What prune does (shared by `prune` and `forget --prune`).
#[derive(clap::Args, Debug, Clone)]
pub struct PruneOptionArgs {
    /// Unused space tolerated in partly used packs: a percentage of the repository (5%), a size
    /// (500M), or `unlimited`
    #[arg(long, default_value = "5%")]
    pub max_unused: String,
    /// Repack at most this many bytes of packs (e.g. 2G)
    #[arg(long)]
    pub max_repack_size: Option<String>,
    /// Also repack small data packs together
    #[arg(long)]
    pub repack_small: bool,
    /// Grace period between marking an unused pack and deleting it (e.g. 24h, 7d, 0s)
    #[arg(long, default_value = "24h")]
    pub delete_after: String,
    /// Delete unused packs at once instead of marking them: only when no backup runs meanwhile
    #[arg(long)]
    pub instant_delete: bool,
}

impl PruneOptionArgs {
    /// The library's options.
    pub fn options(&self) -> Result<PruneOptions> {
        let max_unused: MaxUnused = self.max_unused.parse()?;
        let max_repack_bytes = match &self.max_repack_size {
            Some(s) => Some(
                cairn::prune::plan::parse_size(s)
                    .map_err(|e| anyhow::anyhow!("--max-repack-size: {e}"))?,
            ),
            None => None,
        };
        let delete_after = humantime::parse_duration(&self.delete_after)
            .map_err(|e| anyhow::anyhow!("--delete-after {:?}: {e}", self.delete_after))?;
        Ok(PruneOptions {
            max_unused,
            max_repack_bytes,
            repack_small: self.repack_small,
            delete_after,
            instant_delete: self.instant_delete,
        })
    }
}

fn tally(t: &cairn::prune::plan::Tally) -> String {
    format!("{} ({})", t.packs, human(t.bytes))
}

/// `cairn prune`.
pub fn prune(g: &Global, a: &PruneArgs) -> Result<i32> {
    let opts = a.options.options()?;
    let repo = g.open()?;
    prune_open(g, &repo, &opts, a.dry_run)
}

/// Prune an open repository and say what was done (also `forget --prune`): the session is the
/// library's ([`cairn::prune::Session`]), this only prints.
pub fn prune_open(
    g: &Global,
    repo: &std::sync::Arc<cairn::repo::Repository>,
    opts: &PruneOptions,
    dry_run: bool,
) -> Result<i32> {
    let scratch = g.cache_dir()?;
    let session = cairn::prune::Session::begin(repo, dry_run)?;
    let plan = session.plan(opts, &scratch)?;
    let s = &plan.stats;
    if s.future_marks.packs > 0 {
        eprintln!(
            "warning: {} packs carry a deletion mark dated in the future (marked by a host whose \
             clock was ahead): treated as just marked",
            tally(&s.future_marks)
        );
    }
    if let Some(why) = &s.held_reason {
        eprintln!(
            "warning: {why}; {} packs past their grace period stay",
            tally(&s.held)
        );
    }
    if !g.json {
        println!(
            "{} snapshots reach {} trees and {} data blobs",
            s.snapshots, s.reach.trees, s.reach.data_blobs
        );
        println!(
            "packs: {}; used {}, unused {}",
            tally(&s.total),
            human(s.used_bytes),
            human(s.unused_bytes)
        );
        println!(
            "plan: keep {}, repack {} (copying {}), mark {}, still marked {}, recover {}, delete {}",
            tally(&s.keep),
            tally(&s.repack),
            human(s.repack_copy_bytes),
            tally(&s.mark),
            tally(&s.keep_marked),
            tally(&s.recover),
            tally(&s.delete)
        );
        if s.unindexed_delete.packs + s.unindexed_keep.packs > 0 {
            println!(
                "packs in no index file: delete {} (older than the grace period), leave {} (recent: a backup in progress?)",
                tally(&s.unindexed_delete),
                tally(&s.unindexed_keep)
            );
        }
        if s.wal_delete.packs > 0 {
            println!(
                "archived WAL no kept base backup needs: delete {} files ({})",
                s.wal_delete.packs,
                human(s.wal_delete.bytes)
            );
        }
        println!(
            "unused space left after the prune: {}",
            human(s.unused_after)
        );
    }
    if session.is_dry_run() {
        if g.json {
            print_json(&serde_json::json!({"dry_run": true, "plan": s}))?;
        } else {
            if s.delete.packs + s.unindexed_delete.packs > 0 && !opts.instant_delete {
                println!(
                    "dry run: ages judged by this host's clock alone; the prune also reads the \
                     store's and deletes nothing by age if they disagree"
                );
            }
            println!("dry run: nothing changed");
        }
        return Ok(0);
    }
    let out = session.execute(&plan, g.threads())?;
    if g.json {
        print_json(&serde_json::json!({"dry_run": false, "plan": s, "outcome": out}))?;
    } else if plan.is_empty() {
        println!("nothing to do");
    } else {
        println!(
            "repacked {} blobs ({}) into {} packs; wrote {} index files, deleted {}",
            out.repacked_blobs,
            human(out.repacked_bytes),
            out.new_packs,
            out.index_files_written,
            out.index_files_deleted
        );
        println!(
            "deleted {} packs: {} freed now; marked {} packs ({}): a prune after {} deletes them if still unused",
            out.packs_deleted,
            human(out.bytes_deleted),
            out.packs_marked,
            human(out.bytes_marked),
            humantime::format_duration(opts.delete_after)
        );
        if out.wal_deleted > 0 {
            println!(
                "deleted {} archived WAL files ({})",
                out.wal_deleted,
                human(out.wal_bytes_deleted)
            );
        }
    }
    Ok(0)
}

/// `check` options.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// Also read every pack and verify every blob
    #[arg(long)]
    pub read_data: bool,
    /// Read only part of the packs: n/t (part n of t), a percentage (10%), or a size (2G)
    #[arg(long, conflicts_with = "read_data")]
    pub read_data_subset: Option<String>,
    /// Read the headers of only part of the packs (same forms as --read-data-subset; default:
    /// every pack's header is read and compared with the index)
    #[arg(long)]
    pub read_headers_subset: Option<String>,
    /// Read no pack header (only the listing is compared with the index)
    #[arg(long, conflicts_with = "read_headers_subset")]
    pub no_read_headers: bool,
}

/// `cairn check`: exit 1 with the list of problems, 0 when clean.
pub fn check(g: &Global, a: &CheckArgs) -> Result<i32> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => Some(s.parse::<Subset>()?),
        (None, true) => Some(Subset::All),
        (None, false) => None,
    };
    let repo = g.read_only().open_quiet(CacheMode::Throwaway)?;
    let scratch = g.cache_dir()?;
    let read_headers = match &a.read_headers_subset {
        Some(s) => Some(s.parse::<Subset>().map_err(|e| {
            anyhow::anyhow!(e.to_string().replacen(
                "--read-data-subset",
                "--read-headers-subset",
                1
            ))
        })?),
        None => None,
    };
    let opts = CheckOptions {
        read_data,
        read_headers,
        skip_headers: a.no_read_headers,
    };
    let report = cairn::commands::check::check(&repo, &opts, &scratch)?;
    if g.json {
        print_json(&report)?;
    } else {
        let s = &report.stats;
        println!(
            "{} index files, {} packs, {} snapshots, {} trees, {} data blobs",
            s.index_files, s.packs, s.snapshots, s.trees, s.data_blobs
        );
        if read_data.is_some() {
            println!(
                "read {} packs ({}), verified {} blobs",
                s.packs_read,
                human(s.bytes_read),
                s.blobs_verified
            );
        }
        for n in &report.notes {
            println!("note: {}", escape::text(n));
        }
        for p in &report.problems {
            println!("error: {}", escape::text(&p.message));
        }
        if report.problems.is_empty() {
            println!("no problems found");
        } else {
            println!("{} problems found", report.problems.len());
            for a in &report.advice {
                println!("what to do: {}", escape::text(a));
            }
        }
    }
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}

/// `repair` options.
#[derive(clap::Args, Debug, Clone)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub what: RepairWhat,
}

/// What to repair.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum RepairWhat {
    /// Rebuild the index from the pack headers
    Index,
    /// Rewrite snapshots that lost trees or data: unreadable folders become empty, files keep
    /// the content blobs that are still there (run `repair index` first)
    Snapshots(RepairSnapshotsArgs),
}

/// `repair snapshots` options.
#[derive(clap::Args, Debug, Clone)]
pub struct RepairSnapshotsArgs {
    /// Snapshots: ids, prefixes or latest (default: all that pass the filters)
    pub snapshots: Vec<String>,
    /// Delete each original snapshot once its repaired version is stored
    #[arg(long)]
    pub forget: bool,
    /// Only print what would be done
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: super::inspect::FilterArgs,
}

/// `cairn repair`.
pub fn repair(g: &Global, a: &RepairArgs) -> Result<i32> {
    match &a.what {
        RepairWhat::Snapshots(s) => repair_snapshots(g, s),
        RepairWhat::Index => {
            // Nothing cached is trusted: every listed index file is read afresh (a cache that
            // remembers files as superseded, after a rollback of the repository, would make
            // the repair delete index files it never read).
            let repo = g.open_quiet(CacheMode::Throwaway)?;
            let lock = repo.lock_exclusive("repair index", LockTiming::default())?;
            let out = cairn::repair::repair_index(&repo, &lock)?;
            lock.release()?;
            if g.json {
                print_json(&out)?;
            } else {
                for (id, why) in &out.packs_unreadable {
                    eprintln!(
                        "warning: pack {} left out: {}",
                        id.to_hex(),
                        escape::text(why)
                    );
                }
                for s in &out.packs_salvaged {
                    eprintln!(
                        "warning: pack {}: {}; kept {} blobs of the old index, each read back and verified{}",
                        s.id.to_hex(),
                        escape::text(&s.reason),
                        s.kept,
                        if s.dropped.is_empty() {
                            String::new()
                        } else {
                            format!(", dropped {} that do not", s.dropped.len())
                        }
                    );
                    for (blob, why) in s.dropped.iter().take(10) {
                        eprintln!("  blob {}: {}", blob.short(), escape::text(why));
                    }
                }
                println!(
                    "indexed {} packs ({} blobs, {} not in the old index) of {}; wrote {} index files, deleted {}",
                    out.packs_indexed,
                    out.blobs_indexed,
                    out.packs_added,
                    out.packs,
                    out.index_files_written,
                    out.index_files_deleted
                );
            }
            Ok(if out.incomplete() {
                super::EXIT_PARTIAL
            } else {
                0
            })
        }
    }
}

/// `cairn repair snapshots`.
fn repair_snapshots(g: &Global, a: &RepairSnapshotsArgs) -> Result<i32> {
    use cairn::repair::snapshots::{DamageKind, RepairSnapshotsOptions};
    // Nothing cached is trusted: trees are read from their packs, as `check` reads them.
    let repo = g.open_with(CacheMode::Throwaway)?;
    let lock = if a.dry_run {
        None
    } else {
        Some(repo.lock_exclusive("repair snapshots", LockTiming::default())?)
    };
    let snaps = cairn::snapshot::find::select_snapshots(&repo, &a.snapshots, &a.filter.filter())?;
    if snaps.is_empty() {
        anyhow::bail!("no snapshot matches");
    }
    let opts = RepairSnapshotsOptions {
        dry_run: a.dry_run,
        forget: a.forget,
        threads: g.threads(),
    };
    let out = cairn::repair::repair_snapshots(&repo, snaps, &opts, lock.as_ref())?;
    if let Some(l) = lock {
        l.release()?;
    }
    let describe = |k: &DamageKind| -> (&'static str, String) {
        match k {
            DamageKind::MissingContent {
                blobs_missing,
                blobs_kept,
                old_size,
                new_size,
            } => (
                "file",
                format!(
                    "removed {blobs_missing} missing blobs, kept {blobs_kept} ({old_size} -> {new_size} bytes)"
                ),
            ),
            DamageKind::WrongSize { old_size, new_size } => (
                "file",
                format!("fixed incorrect size ({old_size} -> {new_size} bytes)"),
            ),
            DamageKind::UnreadableDir { tree, reason } => (
                "dir",
                format!(
                    "replaced with an empty folder (tree {}: {})",
                    tree.map(|t| t.short()).unwrap_or_else(|| "none".into()),
                    escape::text(reason)
                ),
            ),
        }
    };
    let (mut files, mut dirs) = (0u64, 0u64);
    for r in &out.repaired {
        for d in &r.damages {
            match d.kind {
                DamageKind::UnreadableDir { .. } => dirs += 1,
                _ => files += 1,
            }
        }
    }
    let more: u64 = out.repaired.iter().map(|r| r.more).sum();
    for (id, e) in &out.failed {
        eprintln!(
            "warning: cannot repair snapshot {}: {}",
            id.short(),
            escape::text(&e.to_string())
        );
    }
    if g.json {
        let repaired: Vec<_> = out
            .repaired
            .iter()
            .map(|r| {
                let damages: Vec<_> = r
                    .damages
                    .iter()
                    .map(|d| {
                        let mut v = match &d.kind {
                            DamageKind::MissingContent {
                                blobs_missing,
                                blobs_kept,
                                old_size,
                                new_size,
                            } => serde_json::json!({"kind": "missing-content",
                                "blobs_missing": blobs_missing, "blobs_kept": blobs_kept,
                                "old_size": old_size, "new_size": new_size}),
                            DamageKind::WrongSize { old_size, new_size } => {
                                serde_json::json!({"kind": "wrong-size", "old_size": old_size, "new_size": new_size})
                            }
                            DamageKind::UnreadableDir { tree, reason } => {
                                serde_json::json!({"kind": "unreadable-dir",
                                    "tree": tree.map(|t| t.to_hex()), "reason": reason})
                            }
                        };
                        v["path"] = escape::bytes(&d.path).into();
                        v
                    })
                    .collect();
                serde_json::json!({
                    "id": r.old.to_hex(),
                    "new": r.new.map(|i| i.to_hex()),
                    "new_tree": r.new_tree.map(|i| i.to_hex()),
                    "root_unreadable": r.root_unreadable,
                    "removed": r.removed,
                    "damages": damages,
                    "more_damages": r.more,
                })
            })
            .collect();
        print_json(&serde_json::json!({
            "dry_run": a.dry_run,
            "repaired": repaired,
            "unchanged": out.unchanged.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "failed": out.failed.iter().map(|(i, e)| serde_json::json!({"id": i.to_hex(), "error": e.to_string()})).collect::<Vec<_>>(),
            "files_repaired": files,
            "dirs_emptied": dirs,
            "more_damages": more,
            "trees_written": out.written.blobs,
        }))?;
    } else {
        for r in &out.repaired {
            println!(
                "snapshot {} of [{}] at {}:",
                r.old.short(),
                escape::text(&r.snapshot.path_strings().join(", ")),
                cairn::time::format_time(r.snapshot.time_ns)
            );
            if let Some(why) = &r.root_unreadable {
                println!("  dir /: not readable ({})", escape::text(why));
                if !a.forget {
                    println!(
                        "  kept snapshot {}: nothing of it can be read (`--forget` removes it)",
                        r.old.short()
                    );
                } else if a.dry_run {
                    println!("  would remove the snapshot: nothing of it can be read");
                } else {
                    println!(
                        "  removed snapshot {}: nothing of it can be read",
                        r.old.short()
                    );
                }
                continue;
            }
            for d in &r.damages {
                let (what, msg) = describe(&d.kind);
                println!("  {what} {}: {msg}", escape::bytes(&d.path));
            }
            if r.more > 0 {
                println!("  … and {} more damaged entries", r.more);
            }
            match r.new {
                Some(n) => println!("  saved new snapshot {}", n.short()),
                None => println!("  would save a new snapshot"),
            }
            if a.dry_run && a.forget {
                println!("  would remove the original snapshot {}", r.old.short());
            } else if r.removed {
                println!("  removed the original snapshot {}", r.old.short());
            }
        }
        if out.repaired.is_empty() {
            println!(
                "no snapshots {}",
                if a.dry_run {
                    "would be modified"
                } else {
                    "were modified"
                }
            );
        } else {
            println!(
                "{} {} snapshots ({} files repaired, {} folders emptied{}), {} unchanged",
                if a.dry_run {
                    "would modify"
                } else {
                    "modified"
                },
                out.repaired.len(),
                files,
                dirs,
                if more > 0 {
                    format!(", {more} more entries")
                } else {
                    String::new()
                },
                out.unchanged.len()
            );
        }
        if a.dry_run {
            println!("dry run: nothing changed");
        }
    }
    let kept_unreadable = out
        .repaired
        .iter()
        .any(|r| r.root_unreadable.is_some() && !r.removed && !a.dry_run);
    Ok(if !out.failed.is_empty() {
        1
    } else if kept_unreadable {
        super::EXIT_PARTIAL
    } else {
        0
    })
}

/// `unlock` options.
#[derive(clap::Args, Debug, Clone)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones (only when no prune is running anywhere)
    #[arg(long)]
    pub remove_all: bool,
}

/// `cairn unlock`.
pub fn unlock(g: &Global, a: &UnlockArgs) -> Result<i32> {
    let repo = g.open()?;
    let removed = repo.unlock(a.remove_all, &LockTiming::default())?;
    if g.json {
        let v: Vec<_> = removed
            .iter()
            .map(|l| serde_json::json!({"id": l.id.to_hex(), "holder": l.describe(), "stale": l.stale}))
            .collect();
        print_json(&v)?;
    } else {
        for l in &removed {
            println!(
                "removed lock {} of {}{}",
                l.id.short(),
                escape::text(&l.describe()),
                l.stale
                    .as_ref()
                    .map(|s| format!(" (stale: {})", escape::text(s)))
                    .unwrap_or_default()
            );
        }
        println!("{} locks removed", removed.len());
    }
    if removed.is_empty() && !a.remove_all {
        // Nothing stale: say what is still held, if anything.
        for l in repo.locks(&LockTiming::default())? {
            println!("still held: {}", escape::text(&l.describe()));
        }
    }
    Ok(0)
}
