//! The dry-run layer (restic's `dryrun`, rustic's `dry_run`): reads pass; writes and deletes
//! are counted and dropped, reported as done. Reads see the store as it was: an object
//! "written" here is not there to read back.

use super::layer::{Fut, Layer, Put, Store};
use super::layout::Handle;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a dry run dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DroppedWrites {
    /// Objects not written.
    pub puts: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects not deleted.
    pub deletes: u64,
}

/// The counts of a dry run, shared by the clones of its backend.
#[derive(Debug, Default)]
pub(crate) struct Dropped {
    puts: AtomicU64,
    bytes: AtomicU64,
    deletes: AtomicU64,
}

impl Dropped {
    /// The counts so far.
    pub(crate) fn snapshot(&self) -> DroppedWrites {
        DroppedWrites {
            puts: self.puts.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
        }
    }
}

/// The layer; see the module docs.
pub(crate) struct DryRun {
    pub inner: Arc<dyn Store>,
    pub dropped: Arc<Dropped>,
}

impl Layer for DryRun {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn put<'a>(&'a self, _h: Handle<'a>, data: Bytes, _how: &'a Put) -> Fut<'a, ()> {
        self.dropped.puts.fetch_add(1, Ordering::Relaxed);
        self.dropped
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, _h: Handle<'a>) -> Fut<'a, ()> {
        self.dropped.deletes.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}
