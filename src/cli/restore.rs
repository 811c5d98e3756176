//! `restore`.

use super::inspect::FilterArgs;
use super::progress::Terminal;
use super::{Global, human, print_json};
use anyhow::Result;
use cairn::patterns::Patterns;
use cairn::restore::{RestoreOptions, restore};
use cairn::snapshot::find_node;
use cairn::snapshot::select::{find, parse_time};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// SNAPSHOT[:SUBPATH]: an id, a unique prefix, or latest
    pub snapshot: String,
    /// Folder to restore into
    #[arg(short, long)]
    pub target: PathBuf,
    /// With latest: the newest snapshot at or before this time
    #[arg(long)]
    pub at: Option<String>,
    /// Restore only paths matching a glob (repeatable)
    #[arg(short, long = "include")]
    pub includes: Vec<String>,
    /// Skip paths matching a glob (repeatable)
    #[arg(short, long = "exclude")]
    pub excludes: Vec<String>,
    /// Like --include, ignoring case
    #[arg(long = "iinclude")]
    pub iincludes: Vec<String>,
    /// Like --exclude, ignoring case
    #[arg(long = "iexclude")]
    pub iexcludes: Vec<String>,
    /// Show what would be restored, write nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Re-read every restored file and check it against the snapshot
    #[arg(long)]
    pub verify: bool,
    /// In a non-empty target, keep an existing file whose size and mtime match without reading
    /// it (by default its content is compared with the snapshot)
    #[arg(long)]
    pub trust_mtime: bool,
    /// For snapshots from hosts you do not trust: do not restore owners, drop setuid/setgid
    /// bits and security.*/trusted.* attributes, make no device nodes
    #[arg(long)]
    pub no_owner: bool,
    /// Do not create device nodes
    #[arg(long)]
    pub no_devices: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(g: &Global, a: &RestoreArgs) -> Result<i32> {
    let (spec, sub) = match a.snapshot.split_once(':') {
        Some((s, p)) => (s.to_string(), p.to_string()),
        None => (a.snapshot.clone(), String::new()),
    };
    let at = a.at.as_deref().map(parse_time).transpose()?;
    let includes = Patterns::new(&a.includes, &a.iincludes)?;
    let excludes = Patterns::new(&a.excludes, &a.iexcludes)?;
    let repo = g.open()?;
    let (id, snap) = find(&repo, &spec, &a.filter.filter(), at)?;
    let node = find_node(&repo, snap.tree, sub.as_bytes())?;
    let opts = RestoreOptions {
        target: a.target.clone(),
        includes,
        excludes,
        dry_run: a.dry_run,
        verify: a.verify,
        threads: g.threads(),
        trust_mtime: a.trust_mtime,
        no_owner: a.no_owner,
        no_devices: a.no_devices,
        // The whole snapshot, unfiltered: its summary gives the totals up front.
        totals: (sub.is_empty()
            && a.includes.is_empty()
            && a.iincludes.is_empty()
            && a.excludes.is_empty()
            && a.iexcludes.is_empty())
        .then(|| {
            let m = &snap.summary;
            (
                m.files_new + m.files_changed + m.files_unmodified,
                m.bytes_total,
            )
        }),
    };
    let observer = Terminal::new(g.progress_style(), g.json);
    let spath = if sub.is_empty() {
        "/".to_string()
    } else {
        format!("/{}", sub.trim_matches('/'))
    };
    let s = restore(&repo, &node, spath.as_bytes(), &opts, &observer)?;
    if g.json {
        print_json(
            &serde_json::json!({"message_type": "summary", "snapshot_id": id.to_hex(), "dry_run": a.dry_run, "summary": s}),
        )?;
    } else if !g.quiet {
        let verb = if a.dry_run {
            "would restore"
        } else {
            "restored"
        };
        println!(
            "{verb} snapshot {} to {}: {} files ({}), {} dirs, {} others; {} unchanged, {} written",
            id.short(),
            super::escape::bytes(a.target.as_os_str().as_encoded_bytes()),
            s.files,
            human(s.bytes),
            s.dirs,
            s.others,
            s.files_unchanged,
            human(s.bytes_written)
        );
        if a.verify {
            println!("verified {} files", s.files_verified);
        }
        if s.files_damaged > 0 {
            println!(
                "{} files could not be fully restored (see the warnings above)",
                s.files_damaged
            );
        }
    }
    // Content the repository could not give back (damaged or missing blobs): finished but
    // incomplete, 3, as every command that skipped damaged objects. Any other problem (the
    // target refused an entry): 1.
    Ok(if s.errors > s.files_damaged {
        1
    } else if s.files_damaged > 0 {
        super::EXIT_PARTIAL
    } else {
        0
    })
}
