//! `completion SHELL` and `generate-man DIR`: shell completion scripts (clap_complete) and one
//! man page per command (clap_mangen), both generated from the same clap definitions as the
//! parser, so they never drift from it.

use super::Cli;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Folder to write cairn.1 and cairn-COMMAND.1 into (created if missing)
    pub dir: PathBuf,
}

/// Print the completion script for a shell on stdout.
pub fn completion(a: &CompletionArgs) -> Result<i32> {
    let mut cmd = Cli::command();
    // Into memory first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "cairn", &mut script);
    std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
    Ok(0)
}

/// Write `cairn.1` and one page per command and sub-command (`cairn-restore.1`,
/// `cairn-key-add.1`, …).
pub fn man(a: &ManArgs) -> Result<i32> {
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    clap_mangen::generate_to(Cli::command(), &a.dir)
        .with_context(|| format!("cannot write man pages into {}", a.dir.display()))?;
    let n = std::fs::read_dir(&a.dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".1"))
                .count()
        })
        .unwrap_or(0);
    println!("wrote {n} man pages to {}", a.dir.display());
    Ok(0)
}
