//! `init` and `key list|add|remove|passwd`.

use super::{Global, print_json};
use anyhow::{Context, Result, bail};
use cairn::Id;
use cairn::backend::Backend;
use cairn::crypto::kdf::KdfParams;
use cairn::format::config::ChunkerParams;
use cairn::repo::{InitOptions, Repository, keys};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Average chunk size in bytes (power of two; min = avg/2, max = avg*8); default 1 MiB
    #[arg(long)]
    pub chunk_size: Option<u32>,
    /// Pack size target in MiB
    #[arg(long, default_value_t = 16)]
    pub pack_size: u32,
    /// zstd level (0 = store uncompressed)
    #[arg(long, default_value_t = 3)]
    pub compression: i32,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// argon2id cost of a new key (lower only for tests).
#[derive(clap::Args, Debug, Clone)]
pub struct KdfArgs {
    /// argon2id memory in KiB for the new key
    #[arg(
        long,
        env = "CAIRN_KDF_MEMORY_KIB",
        default_value_t = 65536,
        hide = true
    )]
    pub kdf_memory_kib: u32,
    /// argon2id passes for the new key
    #[arg(long, env = "CAIRN_KDF_ITERATIONS", default_value_t = 3, hide = true)]
    pub kdf_iterations: u32,
}

impl KdfArgs {
    fn params(&self) -> KdfParams {
        KdfParams {
            memory_kib: self.kdf_memory_kib,
            iterations: self.kdf_iterations,
            ..KdfParams::default()
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub cmd: KeyCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum KeyCmd {
    /// List key files
    List,
    /// Add a password
    Add(NewPw),
    /// Remove a key file by id (not the one in use)
    Remove {
        /// Key id or unique prefix
        id: String,
    },
    /// Change the password in use: add a new key, remove the old one
    Passwd(NewPw),
}

#[derive(clap::Args, Debug)]
pub struct NewPw {
    /// Read the new password from this file
    #[arg(long, env = "CAIRN_NEW_PASSWORD_FILE")]
    pub new_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

fn new_password(file: &Option<PathBuf>) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    if let Ok(p) = std::env::var("CAIRN_NEW_PASSWORD") {
        return Ok(p.into_bytes().into());
    }
    if let Some(f) = file {
        let mut s = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        while matches!(s.last(), Some(b'\n' | b'\r')) {
            s.pop();
        }
        return Ok(s.into());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no new password given: set CAIRN_NEW_PASSWORD or --new-password-file");
    }
    let a = rpassword::prompt_password("enter new password: ")?;
    let b = rpassword::prompt_password("enter it again: ")?;
    if a != b {
        bail!("the passwords do not match");
    }
    Ok(a.into_bytes().into())
}

pub fn init(g: &Global, a: &InitArgs) -> Result<i32> {
    let chunker = match a.chunk_size {
        Some(avg) => ChunkerParams::for_average(avg)?,
        None => ChunkerParams::default(),
    };
    let opts = InitOptions {
        chunker,
        pack_size: a.pack_size.clamp(1, 1024) << 20,
        compression_level: a.compression.clamp(0, 22),
        kdf: a.kdf.params(),
    };
    let pw = if std::env::var_os("CAIRN_PASSWORD").is_none()
        && g.password_file.is_none()
        && g.password_command.is_none()
        && std::io::stdin().is_terminal()
    {
        let p = rpassword::prompt_password("enter password for new repository: ")?;
        if rpassword::prompt_password("enter it again: ")? != p {
            bail!("the passwords do not match");
        }
        zeroize::Zeroizing::new(p.into_bytes())
    } else {
        g.password()?
    };
    if pw.is_empty() {
        bail!("empty password refused");
    }
    let backend = Backend::open(&g.repo, true)?;
    let repo = Repository::init(backend, &pw, &opts, &g.cache_dir()?)?;
    if g.json {
        print_json(
            &serde_json::json!({"message_type": "initialized", "id": repo.config().repository_id.to_hex(), "repository": g.repo}),
        )?;
    } else {
        println!(
            "created cairn repository {} at {}",
            repo.config().repository_id.short(),
            g.repo
        );
        println!("Keep the password safe: without it the data cannot be read.");
    }
    Ok(0)
}

fn find_key(repo: &Repository, spec: &str) -> Result<Id> {
    let all = keys::list(repo.backend())?;
    let hits: Vec<Id> = all
        .iter()
        .map(|k| k.id)
        .filter(|id| id.to_hex().starts_with(&spec.to_ascii_lowercase()))
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] => bail!("key {spec} not found"),
        _ => bail!("key prefix {spec} is ambiguous"),
    }
}

pub fn key(g: &Global, a: &KeyArgs) -> Result<i32> {
    let repo = g.open()?;
    match &a.cmd {
        KeyCmd::List => {
            let list = keys::list(repo.backend())?;
            if g.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|k| serde_json::json!({"id": k.id.to_hex(), "current": k.id == repo.key_id(), "host": k.host, "user": k.user,
                        "created": cairn::snapshot::select::format_time(k.created_ns)}))
                    .collect();
                print_json(&v)?;
            } else {
                println!(" {:<10} {:<12} {:<20} created", "id", "user", "host");
                for k in list {
                    let cur = if k.id == repo.key_id() { "*" } else { " " };
                    println!(
                        "{cur}{:<10} {:<12} {:<20} {}",
                        k.id.short(),
                        k.user,
                        k.host,
                        cairn::snapshot::select::format_time(k.created_ns)
                    );
                }
            }
        }
        KeyCmd::Add(n) => {
            let pw = new_password(&n.new_password_file)?;
            let id = repo.add_key(&pw, n.kdf.params())?;
            println!("added key {}", id.short());
        }
        KeyCmd::Remove { id } => {
            let id = find_key(&repo, id)?;
            repo.remove_key(&id)?;
            println!("removed key {}", id.short());
        }
        KeyCmd::Passwd(n) => {
            let pw = new_password(&n.new_password_file)?;
            let id = repo.change_password(&pw, n.kdf.params())?;
            println!(
                "password changed: key {} replaces {}",
                id.short(),
                repo.key_id().short()
            );
        }
    }
    Ok(0)
}
