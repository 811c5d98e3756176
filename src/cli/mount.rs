//! `mount`: serve the repository as a read-only file system in the foreground until SIGINT or
//! SIGTERM (or an unmount from outside).

use super::Global;
use anyhow::{Result, bail};
use cairn::mount::fuse::FuseOptions;
use cairn::mount::{DEFAULT_CACHE_BYTES, Mount, MountOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// Folder to mount on
    pub mountpoint: PathBuf,
    /// Memory for decrypted blobs and decoded trees (default 256M; e.g. 64M, 1G)
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<String>,
    /// How often to look for new snapshots (e.g. 3s, 1m; 0 = never)
    #[arg(long, value_name = "DURATION", default_value = "3s")]
    pub refresh: String,
    /// Let other users use the mount (root, or user_allow_other in /etc/fuse.conf)
    #[arg(long)]
    pub allow_other: bool,
    /// Do not let the kernel check permissions against each file's recorded owner and mode
    #[arg(long)]
    pub no_default_permissions: bool,
}

/// The signal that asked us to stop (0: none yet).
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(sig, Ordering::SeqCst);
}

/// Make SIGINT and SIGTERM set [`STOP`] instead of killing the process (whichever thread gets
/// them), so the mount is always taken down before exiting.
fn catch_signals() -> Result<()> {
    if let Err(e) = cairn::sys::process::on_signals(&[libc::SIGINT, libc::SIGTERM], on_signal) {
        bail!("cannot install a signal handler: {e}");
    }
    Ok(())
}

pub fn run(g: &Global, a: &MountArgs) -> Result<i32> {
    let cache_bytes = match &a.cache_size {
        Some(s) => cairn::prune::plan::parse_size(s)
            .map_err(|e| anyhow::anyhow!("--cache-size: {e}"))?
            .max(1 << 20),
        None => DEFAULT_CACHE_BYTES,
    };
    let refresh = humantime::parse_duration(&a.refresh)
        .or_else(|e| {
            if a.refresh.trim() == "0" {
                Ok(Duration::ZERO)
            } else {
                Err(e)
            }
        })
        .map_err(|e| anyhow::anyhow!("--refresh {:?}: {e}", a.refresh))?;
    match std::fs::metadata(&a.mountpoint) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("{} is not a folder", a.mountpoint.display()),
        Err(e) => bail!("cannot use {} as mount point: {e}", a.mountpoint.display()),
    }
    // Before opening anything: without FUSE, say so at once.
    cairn::mount::fuse::check_available()?;
    let cache_dir = g.cache_dir()?;
    // A secondary (read-only) instance of the cache when it exists: nothing is locked.
    let repo = g
        .read_only()
        .open_with(cairn::repo::CacheMode::SecondaryElseShared)?;
    let opts = MountOptions {
        cache_bytes,
        refresh,
        fuse: FuseOptions {
            allow_other: a.allow_other,
            default_permissions: !a.no_default_permissions,
            threads: g.threads().clamp(2, 8),
        },
    };
    catch_signals()?;
    let mut m = Mount::start(repo, &cache_dir, &a.mountpoint, &opts)?;
    m.repository().set_warning_handler(|w| {
        eprintln!("warning: {}", super::escape::text(&w.to_string()));
    });
    if !g.quiet {
        eprintln!(
            "mounted at {} (read-only); Ctrl-C or SIGTERM unmounts",
            a.mountpoint.display()
        );
    }
    // A failing refresh is reported once per distinct error, and its recovery once.
    let mut last_error: Option<String> = None;
    while STOP.load(Ordering::SeqCst) == 0 && !m.is_finished() {
        match m.poll() {
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_ref() != Some(&msg) {
                    eprintln!(
                        "warning: refresh failed (trying again): {}",
                        super::escape::text(&msg)
                    );
                }
                last_error = Some(msg);
            }
            Ok(Some(_)) if last_error.take().is_some() => {
                eprintln!("refresh works again");
            }
            Ok(_) => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    m.unmount()?;
    Ok(0)
}
