//! How far running work has got, and the seam through which a front end hears of it.
//!
//! The library never prints. Workers update [`Progress`] counters (relaxed atomics, cheap in the
//! hot path); a long-running command (backup, restore, dump) reports through an [`Observer`]
//! that the front end implements: it shows the counters while the work runs and hears of the
//! entries the work had to skip, as rustic_core's `ProgressBars`/`Progress` traits. The CLI's
//! implementations (an indicatif bar on a terminal, JSON lines with `--json`, nothing with
//! `-q`) live in `src/cli/progress.rs`; [`Silent`] shows nothing.
//!
//! The other messages the library hands to a front end use the same pattern, a handler the
//! front end installs: damaged repository objects
//! ([`Repository::set_warning_handler`](crate::repo::Repository::set_warning_handler)), store
//! notices such as retries ([`Backend::set_notice_handler`](crate::backend::Backend::set_notice_handler))
//! and copy's per-snapshot step ([`CopyObserver`](crate::commands::copy::CopyObserver)).

use crate::warning::EntryWarning;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters updated by workers (relaxed atomics: cheap, approximate while running).
#[derive(Debug, Default)]
pub struct Progress {
    files: AtomicU64,
    bytes: AtomicU64,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
}

impl Progress {
    /// Fresh counters.
    pub fn new() -> Progress {
        Progress::default()
    }
    /// One more file done.
    pub fn add_file(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }
    /// More bytes processed.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
    /// Known totals (restore knows them up front), enabling percentages and ETA.
    pub fn set_totals(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
    }
    /// (files, bytes, total files, total bytes).
    pub fn read(&self) -> (u64, u64, u64, u64) {
        (
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.total_files.load(Ordering::Relaxed),
            self.total_bytes.load(Ordering::Relaxed),
        )
    }
}

/// What a long-running command tells its front end while it works. Called from the work's
/// threads; the front end draws and prints, the library never does.
pub trait Observer: Sync {
    /// The counters the workers update (the front end reads them to draw).
    fn counters(&self) -> &Progress;
    /// Work named `verb` ("backup", "restore") starts: show [`Self::counters`] until the
    /// returned value is dropped.
    fn show(&self, verb: &'static str) -> Shown;
    /// An entry was skipped, left incomplete or renamed; the command's summary counts it too.
    fn entry_warning(&self, warning: &EntryWarning);
}

/// A front end's display of running work; dropping it ends the display.
pub struct Shown(Option<Box<dyn Send>>);

impl Shown {
    /// Nothing shown.
    pub fn nothing() -> Shown {
        Shown(None)
    }
    /// A display that ends when `guard` is dropped.
    pub fn until_dropped(guard: impl Send + 'static) -> Shown {
        Shown(Some(Box::new(guard)))
    }
}

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Shown"
        } else {
            "Shown(nothing)"
        })
    }
}

/// An [`Observer`] that shows nothing and drops the warnings (benchmarks, tests, callers that
/// only want the result).
#[derive(Debug, Default)]
pub struct Silent(Progress);

impl Observer for Silent {
    fn counters(&self) -> &Progress {
        &self.0
    }
    fn show(&self, _verb: &'static str) -> Shown {
        Shown::nothing()
    }
    fn entry_warning(&self, _warning: &EntryWarning) {}
}
