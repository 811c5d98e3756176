//! Command-line parsing and the commands; each command parses, calls the library, prints.

mod backup;
mod copy;
pub(crate) mod escape;
mod explore;
mod forget;
mod generate;
mod inspect;
mod keys;
mod maintain;
mod mount;
mod pg;
mod progress;
mod restore;

use anyhow::{Context, Result, bail};
use cairn::backend::Backend;
use cairn::repo::Repository;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// cairn: deduplicating, encrypted backups to any object store.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, long_version = LONG_VERSION, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Repository: a path, file://, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or
    /// az://CONTAINER/PREFIX (credentials from the providers' usual environment variables)
    #[arg(
        short = 'r',
        long = "repo",
        env = "CAIRN_REPOSITORY",
        global = true,
        default_value = ""
    )]
    pub repo: String,
    /// Read the password from this file (wins over CAIRN_PASSWORD; the environment's
    /// CAIRN_PASSWORD_FILE comes after CAIRN_PASSWORD)
    #[arg(long, global = true, conflicts_with = "password_command")]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the password (wins over CAIRN_PASSWORD;
    /// the environment's CAIRN_PASSWORD_COMMAND comes after CAIRN_PASSWORD)
    #[arg(long, global = true)]
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
    /// Store option KEY=VALUE, repeatable: connections=N (uploads in flight), retries=N,
    /// timeout=DURATION, storage_class=CLASS (packs), or any configuration key of the store
    /// (endpoint=URL, allow_http=true, region=R, virtual_hosted_style_request=false, …)
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Limit uploads to this many KiB/s
    #[arg(long, global = true, env = "CAIRN_LIMIT_UPLOAD", value_name = "KiB/s")]
    pub limit_upload: Option<u64>,
    /// Limit downloads to this many KiB/s
    #[arg(
        long,
        global = true,
        env = "CAIRN_LIMIT_DOWNLOAD",
        value_name = "KiB/s"
    )]
    pub limit_download: Option<u64>,
    /// At the end, print on stderr the store requests made (by kind), retries and bytes moved
    #[arg(long, global = true)]
    pub request_stats: bool,
    /// Open the store read-only (not an option: set by [`Global::read_only`]).
    #[arg(skip)]
    pub read_only: bool,
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
    /// Remove snapshots by id, or those a retention policy (--keep-*) does not keep
    Forget(forget::ForgetArgs),
    /// List files in a snapshot
    Ls(inspect::LsArgs),
    /// Print a repository object, decoded, as JSON
    Cat(inspect::CatArgs),
    /// Write one file of a snapshot to stdout
    Dump(inspect::DumpArgs),
    /// Restore a snapshot (or part of it) into a folder
    Restore(restore::RestoreArgs),
    /// Copy snapshots from another repository (--from-repo) into this one
    Copy(copy::CopyArgs),
    /// Browse the snapshots through a read-only FUSE file system (foreground)
    Mount(mount::MountArgs),
    /// Reclaim space: delete what no snapshot needs (two-phase: mark, delete after a grace period)
    Prune(maintain::PruneArgs),
    /// Verify the repository: snapshots, trees, index and packs (with --read-data, every blob)
    Check(maintain::CheckArgs),
    /// Rebuild the index from pack headers, or rewrite snapshots that lost blobs
    Repair(maintain::RepairArgs),
    /// Remove stale locks (all locks with --remove-all)
    Unlock(maintain::UnlockArgs),
    /// Count files and sizes of snapshots, or the unique data they reference
    Stats(explore::StatsArgs),
    /// Show what changed between two snapshots
    Diff(explore::DiffArgs),
    /// Find files and folders by pattern, or where blobs, trees or packs are used
    Find(explore::FindArgs),
    /// Add, remove or replace the tags of snapshots
    Tag(explore::TagArgs),
    /// PostgreSQL point-in-time recovery: base backups, WAL archive, restore to a time, xid,
    /// restore point or LSN
    Pg(pg::PgArgs),
    /// Show the version, the repository format it reads and writes, and what it was built with
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion(generate::CompletionArgs),
    /// Write man pages (cairn.1 and one per command) into a folder
    GenerateMan(generate::ManArgs),
}

/// `cairn --version` and `cairn version`: the program, the versions of the repository
/// structures it reads and writes (docs/format.md §15), and what this build can do.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nrepository format: config 2, key files 2, packs, index files, trees and snapshots 1",
    "\nstores: local folders (path or file://), S3 (s3://), GCS (gs://), Azure (az://)",
    "\nbuilt with: FastCDC (keyed gear table), keyed BLAKE3, zstd, AES-256-GCM-SIV, argon2id, RocksDB cache",
);

fn version(g: &Global) -> Result<i32> {
    if g.json {
        print_json(&serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "formats": {
                "config": cairn::format::config::CONFIG_VERSION,
                "key_file": cairn::format::keyfile::KEY_FILE_VERSION,
                "objects": cairn::format::VERSION,
            },
            "stores": ["local", "s3", "gcs", "azure"],
        }))?;
    } else {
        println!("cairn {LONG_VERSION}");
    }
    Ok(0)
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
    let code = run_command(&cli);
    if cli.global.request_stats {
        print_request_stats(&cli.global);
    }
    let code = code?;
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
        Command::Forget(a) => forget::run(g, a),
        Command::Ls(a) => inspect::ls(g, a),
        Command::Cat(a) => inspect::cat(g, a),
        Command::Dump(a) => inspect::dump(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Copy(a) => copy::run(g, a),
        Command::Mount(a) => mount::run(g, a),
        Command::Prune(a) => maintain::prune(g, a),
        Command::Check(a) => maintain::check(g, a),
        Command::Repair(a) => maintain::repair(g, a),
        Command::Unlock(a) => maintain::unlock(g, a),
        Command::Stats(a) => explore::run_stats(g, a),
        Command::Diff(a) => explore::run_diff(g, a),
        Command::Find(a) => explore::run_find(g, a),
        Command::Tag(a) => explore::run_tag(g, a),
        Command::Pg(a) => pg::run(g, a),
        Command::Version => version(g),
        Command::Completion(a) => generate::completion(a),
        Command::GenerateMan(a) => generate::man(a),
    }
}

/// Backends opened by this command, for `--request-stats`.
static BACKENDS: std::sync::Mutex<Vec<Backend>> = std::sync::Mutex::new(Vec::new());

/// One line per backend opened: `requests: LOCATION: N GET, …` (or one JSON object each).
fn print_request_stats(g: &Global) {
    let all = BACKENDS.lock().map(|b| b.clone()).unwrap_or_default();
    for b in all {
        let s = b.stats();
        if g.json {
            eprintln!(
                "{}",
                serde_json::json!({"message_type": "requests", "repository": b.location(), "stats": s})
            );
        } else {
            eprintln!(
                "requests: {}: {} GET, {} HEAD, {} PUT, {} LIST, {} DELETE, {} retries; {} B down, {} B up in {:.2} s of uploads",
                escape::text(b.location()),
                s.get,
                s.head,
                s.put,
                s.list,
                s.delete,
                s.retries,
                s.bytes_down,
                s.bytes_up,
                s.upload_ms as f64 / 1000.0
            );
        }
    }
}

impl Global {
    /// Open the store at `location` with the `-o` options and limits (`create`: make a local
    /// folder if missing). Retries are reported on stderr unless `--quiet`.
    pub fn backend_at(&self, location: &str, create: bool) -> Result<Backend> {
        let mut opts = cairn::backend::BackendOptions {
            limit_upload: self.limit_upload.map(|k| k.max(1).saturating_mul(1024)),
            limit_download: self.limit_download.map(|k| k.max(1).saturating_mul(1024)),
            ..Default::default()
        };
        for o in &self.options {
            opts.options
                .push(cairn::backend::BackendOptions::parse_option(o)?);
        }
        let mut b = Backend::open_with(location, &opts, create)?;
        if self.read_only {
            b = b.read_only();
        }
        if !self.quiet {
            b.set_notice_handler(|m| eprintln!("note: {}", escape::text(m)));
        }
        if let Ok(mut all) = BACKENDS.lock() {
            all.push(b.clone());
        }
        Ok(b)
    }

    /// These options for a command that only reads (`check`, `mount`): its stores refuse any
    /// write or delete as a bug (the backend's read-only layer), a safety net that changes
    /// nothing for a command that reads only.
    pub fn read_only(&self) -> Global {
        Global {
            read_only: true,
            ..self.clone()
        }
    }

    /// [`Self::backend_at`] for `-r`.
    pub fn backend(&self, create: bool) -> Result<Backend> {
        self.backend_at(&self.repo, create)
    }

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
    pub fn progress_style(&self) -> progress::Style {
        use progress::Style;
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

    /// Where the password comes from: the first that is set of `--password-file` or
    /// `--password-command` on the command line, `CAIRN_PASSWORD`, `CAIRN_PASSWORD_FILE`,
    /// `CAIRN_PASSWORD_COMMAND` (the last two when not empty), else a prompt. An explicit
    /// option is a decision made for this one command, so it beats the environment, which may
    /// have been set for a whole session.
    pub fn password_source(&self) -> PasswordSource {
        PasswordSource::choose(
            self.password_file.as_ref(),
            self.password_command.as_ref(),
            [
                "CAIRN_PASSWORD",
                "CAIRN_PASSWORD_FILE",
                "CAIRN_PASSWORD_COMMAND",
            ],
        )
    }

    /// The password, from [`password_source`](Self::password_source).
    pub fn password(&self) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        self.password_source().obtain(
            "password",
            "enter password for repository: ",
            "no password given: set CAIRN_PASSWORD, --password-file or --password-command",
        )
    }

    /// Open the repository. Warnings about damaged objects it skips (now and later) go to
    /// stderr as `warning: …` lines, also with `--json` (stdout stays the command's JSON), and
    /// make a successful command exit with [`EXIT_PARTIAL`].
    pub fn open(&self) -> Result<Arc<Repository>> {
        self.open_with(cairn::repo::CacheMode::Shared)
    }

    /// [`Self::open`] with a choice of cache (`check` uses a throwaway one).
    pub fn open_with(&self, mode: cairn::repo::CacheMode) -> Result<Arc<Repository>> {
        let repo = self.open_quiet(mode)?;
        repo.set_warning_handler(|w| {
            REPO_WARNINGS.fetch_add(1, Ordering::Relaxed);
            eprintln!("warning: {}", escape::text(&w.to_string()));
        });
        Ok(repo)
    }

    /// Open the repository without a warning handler: the command collects the warnings
    /// itself (`check` reports them as problems).
    pub fn open_quiet(&self, mode: cairn::repo::CacheMode) -> Result<Arc<Repository>> {
        let cache = self.cache_dir()?;
        let backend = self.backend(false)?;
        let pw = self.password()?;
        Ok(Repository::open_with(backend, &pw, &cache, mode)?)
    }
}

/// A source of a password (or of a new password: [`password_from_env`] with the
/// `CAIRN_NEW_PASSWORD*` names). Deliberately not `Debug`: it may hold the password itself.
pub enum PasswordSource {
    /// Read this file; trailing `\n`/`\r` are stripped.
    File(PathBuf),
    /// Run this through `sh -c`; its output without trailing `\n`/`\r`.
    Command(OsString),
    /// The bytes of an environment variable, as they are (not necessarily UTF-8).
    Env(zeroize::Zeroizing<Vec<u8>>),
    /// Nothing given: ask on the terminal.
    Prompt,
}

impl PasswordSource {
    /// The first that is given of `file` and `command` (options on the command line), then
    /// [`password_from_env`] with `vars` (the value, file and command variables).
    pub fn choose(
        file: Option<&PathBuf>,
        command: Option<&String>,
        vars: [&str; 3],
    ) -> PasswordSource {
        if let Some(f) = file {
            return PasswordSource::File(f.clone());
        }
        if let Some(c) = command {
            return PasswordSource::Command(c.into());
        }
        password_from_env(vars[0], vars[1], vars[2])
    }

    /// Read the password: [`Self::read`], or for `Prompt` ask `prompt` on a terminal and fail
    /// with `missing` elsewhere.
    pub fn obtain(
        self,
        what: &str,
        prompt: &str,
        missing: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        match self {
            PasswordSource::Prompt if std::io::stdin().is_terminal() => {
                let p = rpassword::prompt_password(prompt)
                    .with_context(|| format!("cannot read the {what}"))?;
                Ok(p.into_bytes().into())
            }
            PasswordSource::Prompt => bail!("{missing}"),
            source => source.read(what),
        }
    }

    /// Read the password from a file, a command or the environment (`Prompt` is the caller's:
    /// it differs between a password and a new one). `what` names it in errors. A failing
    /// command is not quoted in the error: the command line may hold the secret itself.
    pub fn read(self, what: &str) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        match self {
            PasswordSource::File(f) => {
                let mut s = zeroize::Zeroizing::new(std::fs::read(&f).with_context(|| {
                    use std::os::unix::ffi::OsStrExt;
                    let name = escape::bytes(f.as_os_str().as_bytes());
                    format!("cannot read {what} file {name}")
                })?);
                trim_newline(&mut s);
                Ok(s)
            }
            PasswordSource::Command(cmd) => {
                let mut c = std::process::Command::new("sh");
                // The command gets no password of ours from the environment either.
                for v in cairn::backup::stdin::secret_vars(std::env::vars_os().map(|(k, _)| k)) {
                    c.env_remove(v);
                }
                let out = c
                    .arg("-c")
                    .arg(&cmd)
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .map_err(|e| anyhow::anyhow!("cannot run the {what} command: {e}"))?;
                let mut s = zeroize::Zeroizing::new(out.stdout);
                if !out.status.success() {
                    bail!("the {what} command failed ({})", out.status);
                }
                trim_newline(&mut s);
                Ok(s)
            }
            PasswordSource::Env(b) => Ok(b),
            PasswordSource::Prompt => bail!("no {what} given"),
        }
    }
}

/// The source named by the environment: `var` (its bytes, even empty or not UTF-8), then the
/// file named by `file_var`, then the command in `command_var` (those two when not empty),
/// else [`PasswordSource::Prompt`].
pub fn password_from_env(var: &str, file_var: &str, command_var: &str) -> PasswordSource {
    use std::os::unix::ffi::OsStringExt;
    if let Some(v) = std::env::var_os(var) {
        return PasswordSource::Env(v.into_vec().into());
    }
    if let Some(f) = std::env::var_os(file_var).filter(|f| !f.is_empty()) {
        return PasswordSource::File(f.into());
    }
    if let Some(c) = std::env::var_os(command_var).filter(|c| !c.is_empty()) {
        return PasswordSource::Command(c);
    }
    PasswordSource::Prompt
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

#[cfg(test)]
mod tests {
    #[test]
    fn long_version_names_the_format_versions_in_use() {
        let v = super::LONG_VERSION;
        assert!(v.contains(&format!("config {}", cairn::format::config::CONFIG_VERSION)));
        assert!(v.contains(&format!(
            "key files {}",
            cairn::format::keyfile::KEY_FILE_VERSION
        )));
        assert!(v.contains(&format!("snapshots {}", cairn::format::VERSION)));
    }
}
