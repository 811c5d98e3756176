//! Commands of one file each, on the same floor as the pipelines (`backup/`, `restore/`,
//! `prune/`, `repair/`, `mount/`), so that `src/`'s root holds only building blocks:
//!
//! - [`check`]: `check [--read-data]`, a list of problems, never trusting the user's cache;
//! - [`copy`]: snapshots from another repository;
//! - [`dump`]: a file or folder of a snapshot as a stream, tar or zip.

pub mod check;
pub mod copy;
pub mod dump;
