//! Warnings: damaged or missing repository objects that were skipped so the rest of the
//! repository stays usable (format.md §16, "Damaged objects").
//!
//! The library never prints. A [`Repository`](super::Repository) collects each warning once per
//! object; a front end either installs a handler ([`Repository::set_warning_handler`], which
//! also receives the warnings collected before it was installed, such as those of the index
//! merge during `open`) or drains them ([`Repository::take_warnings`]).
//!
//! [`Repository::set_warning_handler`]: super::Repository::set_warning_handler
//! [`Repository::take_warnings`]: super::Repository::take_warnings

use crate::backend::FileType;
use crate::error::{Error, ErrorKind};
use crate::id::Id;
use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;

/// One skipped object: which, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The kind of object (index file, snapshot, ...).
    pub file_type: FileType,
    /// Its name.
    pub id: Id,
    /// What was wrong with it: `Corrupt` (failed a check, too large) or `NotFound` (listed,
    /// then gone).
    pub kind: ErrorKind,
    /// The error, one line; it names the object.
    pub message: String,
}

impl Warning {
    /// A warning for object `id` of type `file_type`, skipped because of `error`.
    pub fn skipped(file_type: FileType, id: Id, error: &Error) -> Warning {
        Warning {
            file_type,
            id,
            kind: error.kind(),
            message: error.to_string().replace('\n', " "),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; skipped", self.message)
    }
}

/// A function that receives each warning as it happens.
pub type Handler = Box<dyn Fn(&Warning) + Send + Sync>;

/// The warnings of one repository session.
#[derive(Default)]
pub struct Warnings {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    pending: Vec<Warning>,
    seen: HashSet<(FileType, Id)>,
    handler: Option<Handler>,
}

impl fmt::Debug for Warnings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Warnings({})", self.count())
    }
}

impl Warnings {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a warning; a second one about the same object is dropped.
    pub fn push(&self, w: Warning) {
        let mut g = self.lock();
        if !g.seen.insert((w.file_type, w.id)) {
            return;
        }
        match &g.handler {
            Some(h) => h(&w),
            None => g.pending.push(w),
        }
    }

    /// Send every future warning to `handler`, starting with those collected so far. The
    /// handler runs under this sink's lock: it must not report warnings itself.
    pub fn set_handler(&self, handler: Handler) {
        let mut g = self.lock();
        for w in std::mem::take(&mut g.pending) {
            handler(&w);
        }
        g.handler = Some(handler);
    }

    /// The warnings collected and not yet handed out (none once a handler is set).
    pub fn take(&self) -> Vec<Warning> {
        std::mem::take(&mut self.lock().pending)
    }

    /// How many objects were warned about in this session.
    pub fn count(&self) -> usize {
        self.lock().seen.len()
    }
}

/// Whether an error reading one object should skip that object with a warning (it is damaged
/// or gone) rather than stop the command (the store itself failed: retrying may work, and
/// silently skipping could, say, make an older snapshot `latest`).
pub fn skippable(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound)
}
