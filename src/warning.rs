//! Problems with single entries of a tree being backed up, restored or dumped: the entry is
//! skipped, left incomplete or renamed, the run goes on, and the command's exit code says so (3
//! for a backup or a dump, 1 for a restore). Typed, so a front end can count, filter or print
//! them as JSON; damaged or missing repository objects are [`crate::repo::warnings::Warning`]s
//! instead.

use std::fmt;
use std::path::PathBuf;

/// What went wrong with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryProblem {
    /// A source entry could not be listed, examined or read (backup).
    Unreadable,
    /// A source entry changed between the scan and the read, and was not read (backup).
    Changed,
    /// Content missing or damaged in the repository; restored incomplete (restore).
    Damaged,
    /// An entry could not be created or replaced at the target (restore).
    Create,
    /// Owner, mode, times, attributes or size could not be applied (restore).
    Metadata,
    /// `--verify` found the restored file different from the snapshot (restore).
    Verify,
    /// Left out on purpose (a device node without root, a folder that cannot be read).
    Skipped,
    /// Written under another name: the archive could not hold the name as it is, or it would
    /// have escaped the extraction folder on some systems, or it collided (dump).
    Renamed,
}

/// One entry's problem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EntryWarning {
    /// What kind of problem.
    pub problem: EntryProblem,
    /// The entry (source path for a backup, target path for a restore; untrusted bytes:
    /// escape before printing).
    pub path: PathBuf,
    /// One line naming the path and the cause.
    pub message: String,
}

impl EntryWarning {
    /// A warning about `path`.
    pub fn new(
        problem: EntryProblem,
        path: impl Into<PathBuf>,
        message: impl Into<String>,
    ) -> Self {
        EntryWarning {
            problem,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for EntryWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where the warnings of a run go (called from several threads).
pub type EntrySink<'a> = &'a (dyn Fn(&EntryWarning) + Sync);
