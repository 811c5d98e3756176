//! `backup`.

use super::progress::Terminal;
use super::{Global, human, print_json};
use anyhow::{Result, bail};
use cairn::backup::{BackupOptions, BackupOutcome, Sources, backup_sources, stdin};
use cairn::format::snapshot::SnapshotKind;
use cairn::patterns::Patterns;
use cairn::repo::keys::current_host;
use cairn::snapshot::select::parse_time;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Full,
    Incremental,
    Differential,
}

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Files and folders to back up
    pub paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
    /// Record this time instead of now (RFC 3339 or "YYYY-MM-DD HH:MM:SS", UTC)
    #[arg(long)]
    pub time: Option<String>,
    /// Exclude paths matching a glob (repeatable)
    #[arg(long = "exclude", short = 'e')]
    pub excludes: Vec<String>,
    /// Like --exclude, ignoring case
    #[arg(long = "iexclude")]
    pub iexcludes: Vec<String>,
    /// Read exclude globs from a file (repeatable)
    #[arg(long = "exclude-file")]
    pub exclude_files: Vec<PathBuf>,
    /// Skip folders that contain a file of this name (repeatable)
    #[arg(long = "exclude-if-present")]
    pub exclude_if_present: Vec<String>,
    /// Do not cross file system boundaries
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// full: read everything; incremental: parent = latest snapshot of these paths;
    /// differential: parent = latest full one
    #[arg(long = "type", value_enum, default_value = "incremental")]
    pub kind: Kind,
    /// Use this snapshot as parent
    #[arg(long)]
    pub parent: Option<String>,
    /// Do everything but store nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Record access times too (by default they are not; restore then sets atime = mtime)
    #[arg(long, visible_alias = "with-atime")]
    pub atime: bool,
    /// Back up standard input as one file
    #[arg(long)]
    pub stdin: bool,
    /// File name for --stdin / --stdin-from-command
    #[arg(long, default_value = "stdin")]
    pub stdin_name: String,
    /// Back up the standard output of the command after `--` (e.g. pg_dump)
    #[arg(long)]
    pub stdin_from_command: bool,
    /// The command for --stdin-from-command
    #[arg(last = true)]
    pub command: Vec<String>,
}

pub fn run(g: &Global, a: &BackupArgs) -> Result<i32> {
    if a.paths.is_empty() && !a.stdin && !a.stdin_from_command {
        // A bad command line (exit 2, clap's format), found before anything is opened.
        use clap::CommandFactory;
        super::Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "nothing to back up: give at least one path, --stdin or --stdin-from-command",
            )
            .exit();
    }
    if a.stdin && a.stdin_from_command {
        bail!("--stdin and --stdin-from-command exclude each other");
    }
    if !a.stdin_from_command && !a.command.is_empty() {
        bail!("a command after -- needs --stdin-from-command");
    }
    if (a.stdin || a.stdin_from_command) && !a.paths.is_empty() {
        bail!("paths cannot be combined with --stdin or --stdin-from-command");
    }
    let time_ns = a.time.as_deref().map(parse_time).transpose()?;
    let mut ex = a.excludes.clone();
    ex.extend(Patterns::read_files(&a.exclude_files)?);
    let excludes = Patterns::new(&ex, &a.iexcludes)?;
    let mut opts = BackupOptions {
        paths: a.paths.iter().map(PathBuf::from).collect(),
        excludes,
        exclude_if_present: a.exclude_if_present.clone(),
        one_file_system: a.one_file_system,
        kind: match a.kind {
            Kind::Full => SnapshotKind::Full,
            Kind::Incremental => SnapshotKind::Incremental,
            Kind::Differential => SnapshotKind::Differential,
        },
        parent: None,
        host: a.host.clone().unwrap_or_else(current_host),
        tags: a.tags.clone(),
        time_ns,
        dry_run: a.dry_run,
        threads: g.threads(),
        atime: a.atime,
        vanished_ok: false,
    };
    // Start listing the sources now: the walk overlaps the key derivation.
    let sources = if a.stdin || a.stdin_from_command {
        None
    } else {
        Some(Sources::start(&opts)?)
    };
    let observer = Terminal::new(g.progress_style(), g.json);
    // Totals for a percentage and ETA cost a second pass of lstat: only when progress shows.
    let _counter = match &sources {
        Some(s) if observer.shows_progress() => Some(s.count(&opts, observer.counters())),
        _ => None,
    };
    let repo = g.open()?;
    if let Some(p) = &a.parent {
        opts.parent = Some(cairn::snapshot::select::find(&repo, p, &Default::default(), None)?.0);
    }
    let outcome = if a.stdin {
        stdin::backup_stream(
            &repo,
            std::io::stdin().lock(),
            &a.stdin_name,
            &opts,
            &observer,
            &mut || Ok(()),
        )
    } else if a.stdin_from_command {
        stdin::backup_command(&repo, &a.command, &a.stdin_name, &opts, &observer)
    } else if let Some(sources) = sources {
        backup_sources(&repo, &opts, sources, &observer)
    } else {
        bail!("internal error: no sources")
    };
    let o = outcome?;
    print_summary(g, &o, a.dry_run)?;
    Ok(if o.summary.errors > 0 { 3 } else { 0 })
}

fn print_summary(g: &Global, o: &BackupOutcome, dry_run: bool) -> Result<()> {
    let s = &o.summary;
    let secs = (s.finished_ns - s.started_ns) as f64 / 1e9;
    if g.json {
        return print_json(&serde_json::json!({
            "message_type": "summary",
            "snapshot_id": o.snapshot.map(|i| i.to_hex()),
            "parent": o.parent.map(|i| i.to_hex()),
            "tree": o.tree.to_hex(),
            "dry_run": dry_run,
            "files_new": s.files_new, "files_changed": s.files_changed, "files_unmodified": s.files_unmodified,
            "dirs": s.dirs, "others": s.others, "errors": s.errors,
            "bytes_read": s.bytes_read, "bytes_total": s.bytes_total,
            "blobs_added": s.blobs_added, "bytes_added_raw": s.bytes_added_raw, "bytes_added_stored": s.bytes_added_stored,
            "packs_added": o.added.packs,
            "duration_seconds": secs,
        }));
    }
    if g.quiet {
        return Ok(());
    }
    if let Some(p) = o.parent {
        println!("using parent snapshot {}", p.short());
    }
    println!(
        "Files:       {} new, {} changed, {} unmodified",
        s.files_new, s.files_changed, s.files_unmodified
    );
    println!("Dirs:        {}   Others: {}", s.dirs, s.others);
    if s.errors > 0 {
        println!("Errors:      {} entries could not be read", s.errors);
    }
    println!(
        "Read:        {} of {} in the snapshot",
        human(s.bytes_read),
        human(s.bytes_total)
    );
    println!(
        "Added:       {} ({} stored, {} blobs)",
        human(s.bytes_added_raw),
        human(s.bytes_added_stored),
        s.blobs_added
    );
    println!("Duration:    {secs:.2} s");
    match o.snapshot {
        Some(id) => println!("snapshot {} saved", id.short()),
        None => println!("dry run: nothing was stored"),
    }
    Ok(())
}
