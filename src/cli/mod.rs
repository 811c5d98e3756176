//! Command-line parsing and the commands; each command parses, calls the library, prints.

mod backup;
pub(crate) mod escape;
mod inspect;
mod keys;
mod restore;

use anyhow::{Context, Result, bail};
use cairn::backend::Backend;
use cairn::repo::Repository;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// cairn: deduplicating, encrypted backups to any object store.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Repository: a path or file:// URL
    #[arg(
        short = 'r',
        long = "repo",
        env = "CAIRN_REPOSITORY",
        global = true,
        default_value = ""
    )]
    pub repo: String,
    /// Read the password from this file
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the password
    #[arg(long, env = "CAIRN_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Folder of the local cache (default: $XDG_CACHE_HOME/cairn)
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Print results as JSON (progress as JSON lines)
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress, only errors and results
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Worker threads (default: the number of cores)
    #[arg(long, global = true, env = "CAIRN_THREADS")]
    pub threads: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository
    Init(keys::InitArgs),
    /// Manage passwords (key files)
    Key(keys::KeyArgs),
    /// Back up files, a stream from stdin, or a command's output
    Backup(backup::BackupArgs),
    /// List snapshots
    Snapshots(inspect::SnapshotsArgs),
    /// List files in a snapshot
    Ls(inspect::LsArgs),
    /// Print a repository object, decoded, as JSON
    Cat(inspect::CatArgs),
    /// Write one file of a snapshot to stdout
    Dump(inspect::DumpArgs),
    /// Restore a snapshot (or part of it) into a folder
    Restore(restore::RestoreArgs),
}

/// Exit code of a command that did its work but skipped damaged repository objects (the same
/// code as a backup that skipped unreadable files: done, but not everything was there).
pub const EXIT_PARTIAL: i32 = 3;

/// Objects the repository skipped with a warning in this process (see [`Global::open`]).
static REPO_WARNINGS: AtomicUsize = AtomicUsize::new(0);

/// Parse the command line and run the command; returns the exit code. A command that succeeded
/// but skipped damaged or missing repository objects (each warned about on stderr) exits with
/// [`EXIT_PARTIAL`].
pub fn run() -> Result<i32> {
    let cli = Cli::parse();
    let code = run_command(&cli)?;
    Ok(if code == 0 && REPO_WARNINGS.load(Ordering::Relaxed) > 0 {
        EXIT_PARTIAL
    } else {
        code
    })
}

fn run_command(cli: &Cli) -> Result<i32> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => keys::init(g, a),
        Command::Key(a) => keys::key(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots(a) => inspect::snapshots(g, a),
        Command::Ls(a) => inspect::ls(g, a),
        Command::Cat(a) => inspect::cat(g, a),
        Command::Dump(a) => inspect::dump(g, a),
        Command::Restore(a) => restore::run(g, a),
    }
}

impl Global {
    /// Worker threads to use.
    pub fn threads(&self) -> usize {
        self.threads.filter(|&t| t > 0).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
    }

    /// The cache folder, created private or checked to be (refused otherwise), before any
    /// repository object is written.
    pub fn cache_dir(&self) -> Result<PathBuf> {
        let dir = match &self.cache_dir {
            Some(d) => d.clone(),
            None => cairn::cache::default_dir()?,
        };
        cairn::cache::ensure_private_dir(&dir)?;
        Ok(dir)
    }

    /// How progress is shown.
    pub fn progress_style(&self) -> cairn::progress::Style {
        use cairn::progress::Style;
        if self.quiet {
            Style::Quiet
        } else if self.json {
            Style::Json
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Quiet
        }
    }

    /// The password, from the first source that is set.
    pub fn password(&self) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        if let Ok(p) = std::env::var("CAIRN_PASSWORD") {
            return Ok(p.into_bytes().into());
        }
        if let Some(f) = &self.password_file {
            let mut s = std::fs::read(f)
                .with_context(|| format!("cannot read password file {}", f.display()))?;
            trim_newline(&mut s);
            return Ok(s.into());
        }
        if let Some(cmd) = &self.password_command {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("cannot run password command {cmd:?}"))?;
            if !out.status.success() {
                bail!("password command {cmd:?} failed ({})", out.status);
            }
            let mut s = out.stdout;
            trim_newline(&mut s);
            return Ok(s.into());
        }
        if std::io::stdin().is_terminal() {
            let p = rpassword::prompt_password("enter password for repository: ")
                .context("cannot read the password")?;
            return Ok(p.into_bytes().into());
        }
        bail!("no password given: set CAIRN_PASSWORD, --password-file or --password-command")
    }

    /// Open the repository. Warnings about damaged objects it skips (now and later) go to
    /// stderr as `warning: …` lines, also with `--json` (stdout stays the command's JSON), and
    /// make a successful command exit with [`EXIT_PARTIAL`].
    pub fn open(&self) -> Result<Arc<Repository>> {
        let cache = self.cache_dir()?;
        let backend = Backend::open(&self.repo, false)?;
        let pw = self.password()?;
        let repo = Repository::open(backend, &pw, &cache)?;
        repo.set_warning_handler(|w| {
            REPO_WARNINGS.fetch_add(1, Ordering::Relaxed);
            eprintln!("warning: {}", escape::text(&w.to_string()));
        });
        Ok(repo)
    }
}

fn trim_newline(s: &mut Vec<u8>) {
    while matches!(s.last(), Some(b'\n' | b'\r')) {
        s.pop();
    }
}

/// Print a value as one line of JSON on stdout (after any JSON progress lines).
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

/// Bytes as a human size.
pub fn human(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}
