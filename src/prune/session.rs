//! One prune run, from the lock to its release: the steps every caller (`prune`, `forget
//! --prune`, the runner) must take in this order, so none of them writes it out by hand.
//!
//! 1. the exclusive lock (not for a dry run, which changes nothing and takes none);
//! 2. the snapshots listed, *then* the index merged: every listed snapshot's index files are
//!    then merged (a backup finishing meanwhile writes its snapshot after them);
//! 3. the clocks: the store's read through the lock object, the local one (a dry run has only
//!    the local clock);
//! 4. [`Session::plan`], then [`Session::execute`], which releases the lock. A session dropped
//!    before that (an error, a dry run) releases it too.

use super::clock::Clocks;
use super::plan::{PruneOptions, PrunePlan, list_snapshots, plan};
use super::run::{PruneOutcome, execute};
use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::index_files::SyncOutcome;
use crate::repo::lock::{LockGuard, LockTiming};
use std::path::Path;
use std::sync::Arc;

/// A prune under way (see the module documentation).
pub struct Session<'r> {
    repo: &'r Arc<Repository>,
    lock: Option<LockGuard>,
    snapshots: Vec<Id>,
    synced: SyncOutcome,
    clocks: Clocks,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("dry_run", &self.lock.is_none())
            .field("snapshots", &self.snapshots.len())
            .finish()
    }
}

impl<'r> Session<'r> {
    /// Steps 1 to 3: lock (unless `dry_run`), list the snapshots, merge the index, read the
    /// clocks.
    pub fn begin(repo: &'r Arc<Repository>, dry_run: bool) -> Result<Session<'r>> {
        let lock = if dry_run {
            None
        } else {
            Some(repo.lock_exclusive("prune", LockTiming::default())?)
        };
        let snapshots = list_snapshots(repo)?;
        let synced = repo.refresh_index()?;
        let clocks = match &lock {
            Some(l) => Clocks::measure(l)?,
            None => Clocks::unmeasured(),
        };
        Ok(Session {
            repo,
            lock,
            snapshots,
            synced,
            clocks,
        })
    }

    /// Whether this is a dry run (no lock; [`Self::execute`] refuses).
    pub fn is_dry_run(&self) -> bool {
        self.lock.is_none()
    }

    /// What the prune would do (`scratch`: a private folder for the on-disk sets).
    pub fn plan(&self, opts: &PruneOptions, scratch: &Path) -> Result<PrunePlan> {
        plan(
            self.repo,
            &self.snapshots,
            &self.synced,
            opts,
            &self.clocks,
            scratch,
        )
    }

    /// Carry `plan` out with `threads` workers, then release the lock.
    pub fn execute(mut self, plan: &PrunePlan, threads: usize) -> Result<PruneOutcome> {
        let Some(lock) = self.lock.take() else {
            return Err(Error::new(
                ErrorKind::Internal,
                "a dry run of prune cannot be carried out",
            ));
        };
        let out = execute(self.repo, plan, &lock, threads)?;
        lock.release()?;
        Ok(out)
    }
}
