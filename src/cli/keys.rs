//! `init` and `key list|add|remove|passwd`.

use super::{Global, PasswordSource, escape, password_from_env, print_json};
use anyhow::{Result, bail};
use cairn::Id;
use cairn::crypto::kdf::KdfParams;
use cairn::format::config::ChunkerParams;
use cairn::repo::{InitOptions, Repository};
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
    /// Share the chunker parameters and blob ids of --from-repo, so that `copy` from it moves
    /// sealed content as is and its copies deduplicate against this repository's own backups
    #[arg(long, requires = "from_repo")]
    pub copy_chunker_params: bool,
    #[command(flatten)]
    pub from: super::copy::FromRepoArgs,
    /// Create the repository in a local folder that already holds other files
    #[arg(long)]
    pub force: bool,
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
    /// The parameters, refused (before anything is read or written) when a reader would not
    /// accept them or they are below the floor for new keys.
    fn params(&self) -> Result<KdfParams> {
        let p = KdfParams {
            memory_kib: self.kdf_memory_kib,
            iterations: self.kdf_iterations,
            ..KdfParams::default()
        };
        p.validate_new()?;
        Ok(p)
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
    /// Read the new password from this file (wins over CAIRN_NEW_PASSWORD; the environment's
    /// CAIRN_NEW_PASSWORD_FILE comes after CAIRN_NEW_PASSWORD)
    #[arg(long)]
    pub new_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// The new password for `key add` and `key passwd`, in the same order as the password:
/// `--new-password-file`, `CAIRN_NEW_PASSWORD`, `CAIRN_NEW_PASSWORD_FILE`,
/// `CAIRN_NEW_PASSWORD_COMMAND`, a prompt. Empty is refused, as by `init`.
fn new_password(file: &Option<PathBuf>) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let source = match file {
        Some(f) => PasswordSource::File(f.clone()),
        None => password_from_env(
            "CAIRN_NEW_PASSWORD",
            "CAIRN_NEW_PASSWORD_FILE",
            "CAIRN_NEW_PASSWORD_COMMAND",
        ),
    };
    let pw = match source {
        PasswordSource::Prompt => {
            if !std::io::stdin().is_terminal() {
                bail!("no new password given: set CAIRN_NEW_PASSWORD or --new-password-file");
            }
            let a = zeroize::Zeroizing::new(rpassword::prompt_password("enter new password: ")?);
            let b = zeroize::Zeroizing::new(rpassword::prompt_password("enter it again: ")?);
            if a != b {
                bail!("the passwords do not match");
            }
            zeroize::Zeroizing::new(a.as_bytes().to_vec())
        }
        source => source.read("new password")?,
    };
    if pw.is_empty() {
        bail!("empty password refused");
    }
    Ok(pw)
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
        kdf: a.kdf.params()?,
    };
    let pw = match g.password_source() {
        PasswordSource::Prompt if std::io::stdin().is_terminal() => {
            let p = zeroize::Zeroizing::new(rpassword::prompt_password(
                "enter password for new repository: ",
            )?);
            let again = zeroize::Zeroizing::new(rpassword::prompt_password("enter it again: ")?);
            if again != p {
                bail!("the passwords do not match");
            }
            zeroize::Zeroizing::new(p.as_bytes().to_vec())
        }
        _ => g.password()?,
    };
    if pw.is_empty() {
        bail!("empty password refused");
    }
    let other = if a.copy_chunker_params {
        if a.chunk_size.is_some() {
            bail!("--chunk-size and --copy-chunker-params exclude each other");
        }
        Some(a.from.open(g)?)
    } else {
        None
    };
    // A local folder that holds something else is most likely a mistyped -r: refuse it.
    if !g.repo.contains("://") && !a.force {
        let dir = std::path::Path::new(&g.repo);
        let taken = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
        if taken && !dir.join("config").exists() {
            bail!(
                "{} is not empty: create the repository in an empty or new folder, or give --force",
                dir.display()
            );
        }
    }
    let backend = g.backend(true)?;
    let repo = match &other {
        Some(o) => Repository::init_sharing_ids(backend, &pw, &opts, &g.cache_dir()?, o)?,
        None => Repository::init(backend, &pw, &opts, &g.cache_dir()?)?,
    };
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
    let all = repo.keys()?;
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
    // Refuse unusable parameters for a new key before anything is read or asked for.
    let kdf = match &a.cmd {
        KeyCmd::Add(n) | KeyCmd::Passwd(n) => Some(n.kdf.params()?),
        _ => None,
    };
    let repo = g.open()?;
    match &a.cmd {
        KeyCmd::List => {
            let list = repo.keys()?;
            if g.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|k| match &k.problem {
                        None => serde_json::json!({"id": k.id.to_hex(), "current": k.id == repo.key_id(), "host": k.host, "user": k.user,
                            "created": cairn::time::format_time(k.created_ns)}),
                        Some(p) => serde_json::json!({"id": k.id.to_hex(), "current": false, "problem": p}),
                    })
                    .collect();
                print_json(&v)?;
            } else {
                // Host, user and time are not authenticated (anyone who can write to the store
                // can change them): printed escaped, as untrusted text.
                println!(" {:<10} {:<12} {:<20} created", "id", "user", "host");
                for k in list {
                    let cur = if k.id == repo.key_id() { "*" } else { " " };
                    match &k.problem {
                        None => println!(
                            "{cur}{:<10} {:<12} {:<20} {}",
                            k.id.short(),
                            escape::text(&k.user),
                            escape::text(&k.host),
                            cairn::time::format_time(k.created_ns)
                        ),
                        Some(p) => {
                            println!(" {:<10} (unusable: {})", k.id.short(), escape::text(p))
                        }
                    }
                }
            }
        }
        KeyCmd::Add(n) => {
            let pw = new_password(&n.new_password_file)?;
            let id = repo.add_key(&pw, kdf.unwrap_or_default())?;
            println!("added key {}", id.short());
        }
        KeyCmd::Remove { id } => {
            let id = find_key(&repo, id)?;
            repo.remove_key(&id)?;
            println!("removed key {}", id.short());
        }
        KeyCmd::Passwd(n) => {
            let pw = new_password(&n.new_password_file)?;
            let id = repo.change_password(&pw, kdf.unwrap_or_default())?;
            println!(
                "password changed: key {} replaces {}",
                id.short(),
                repo.key_id().short()
            );
        }
    }
    Ok(0)
}
