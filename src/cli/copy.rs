//! `copy` and the source repository options it shares with `init --copy-chunker-params`.

use super::inspect::FilterArgs;
use super::{Global, PasswordSource, print_json};
use anyhow::{Result, bail};
use cairn::repo::Repository;
use cairn::snapshot::find::select_snapshots;
use std::path::PathBuf;
use std::sync::Arc;

/// The other repository of `copy` (the source) and of `init --copy-chunker-params`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FromRepoArgs {
    /// The other repository (a path or URL, as for -r)
    #[arg(long, env = "CAIRN_FROM_REPOSITORY")]
    pub from_repo: Option<String>,
    /// Read the other repository's password from this file (wins over CAIRN_FROM_PASSWORD;
    /// CAIRN_FROM_PASSWORD_FILE comes after it)
    #[arg(long, conflicts_with = "from_password_command")]
    pub from_password_file: Option<PathBuf>,
    /// Run this shell command for the other repository's password (wins over
    /// CAIRN_FROM_PASSWORD; CAIRN_FROM_PASSWORD_COMMAND comes after it)
    #[arg(long)]
    pub from_password_command: Option<String>,
    /// Store option KEY=VALUE for the other repository (repeatable; -o applies to -r only)
    #[arg(long = "from-option", value_name = "KEY=VALUE")]
    pub from_options: Vec<String>,
}

impl FromRepoArgs {
    /// Open the other repository (its own cache, keyed by its id, in the same cache folder).
    pub fn open(&self, g: &Global) -> Result<Arc<Repository>> {
        let Some(location) = self.from_repo.as_deref().filter(|l| !l.is_empty()) else {
            bail!("no source repository given: use --from-repo or CAIRN_FROM_REPOSITORY");
        };
        let pw = PasswordSource::choose(
            self.from_password_file.as_ref(),
            self.from_password_command.as_ref(),
            [
                "CAIRN_FROM_PASSWORD",
                "CAIRN_FROM_PASSWORD_FILE",
                "CAIRN_FROM_PASSWORD_COMMAND",
            ],
        )
        .obtain(
            "source password",
            &format!("enter password for repository {location}: "),
            &format!(
                "no password for {location}: set CAIRN_FROM_PASSWORD, --from-password-file or \
                 --from-password-command"
            ),
        )?;
        let mut other = g.clone();
        other.options = self.from_options.clone();
        let backend = other.backend_at(location, false)?;
        let repo = Repository::open(backend, &pw, &g.cache_dir()?)?;
        repo.set_warning_handler(|w| {
            eprintln!("warning: {}", super::escape::text(&w.to_string()));
        });
        Ok(repo)
    }
}

#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// Snapshots to copy: ids, prefixes or latest (default: all that pass the filters)
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub from: FromRepoArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(g: &Global, a: &CopyArgs) -> Result<i32> {
    let src = a.from.open(g)?;
    let dst = g.open()?;
    if src.config().repository_id == dst.config().repository_id {
        bail!("source and destination are the same repository");
    }
    let snaps = select_snapshots(&src, &a.snapshots, &a.filter.filter())?;
    let rehash = !src.shares_ids_with(&dst);
    if rehash && !g.quiet {
        eprintln!(
            "note: the repositories do not share blob ids, so every copied blob is read, \
             decompressed and hashed again and every tree rewritten, and copies will not \
             deduplicate against this repository's own backups (make the destination with \
             `cairn init --copy-chunker-params --from-repo SOURCE` to copy sealed content as is)"
        );
    }
    struct Say(bool);
    impl cairn::commands::copy::CopyObserver for Say {
        fn snapshot(&self, src: &cairn::Id, n: usize, total: usize) {
            if self.0 {
                eprintln!("copying snapshot {} ({n} of {total})", src.short());
            }
        }
    }
    let report =
        cairn::commands::copy::copy(&src, &dst, snaps, g.threads(), &Say(!g.quiet && !g.json))?;
    if g.json {
        let pairs = |v: &[(cairn::Id, cairn::Id)]| -> Vec<serde_json::Value> {
            v.iter()
                .map(|(s, d)| serde_json::json!({"source": s.to_hex(), "copy": d.to_hex()}))
                .collect()
        };
        print_json(&serde_json::json!({
            "message_type": "summary",
            "rehashed": report.rehashed,
            "copied": pairs(&report.copied),
            "skipped": pairs(&report.skipped),
            "blobs_added": report.blobs,
            "bytes_added_stored": report.bytes_stored,
            "packs_added": report.packs,
        }))?;
    } else {
        for (s, d) in &report.skipped {
            println!("snapshot {} is already there as {}", s.short(), d.short());
        }
        for (s, d) in &report.copied {
            println!("snapshot {} copied as {}", s.short(), d.short());
        }
        println!(
            "{} copied, {} already there; {} blobs added ({} stored) in {} packs",
            report.copied.len(),
            report.skipped.len(),
            report.blobs,
            super::human(report.bytes_stored),
            report.packs
        );
    }
    Ok(0)
}
