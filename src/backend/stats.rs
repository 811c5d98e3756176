//! Request statistics (`--request-stats`): requests by kind, retries, bytes, and the upload
//! phase over which an upload limit holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Requests made and bytes moved by a backend (every attempt counts).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub get: AtomicU64,
    pub head: AtomicU64,
    pub put: AtomicU64,
    pub list: AtomicU64,
    pub delete: AtomicU64,
    pub retries: AtomicU64,
    pub bytes_down: AtomicU64,
    pub bytes_up: AtomicU64,
    /// When the first put started and the last one ended: the upload phase, over which an
    /// upload limit is meant to hold.
    pub first_put: OnceLock<Instant>,
    pub last_put_end: Mutex<Option<Instant>>,
}

/// What a backend did so far: requests by kind, retries, bytes (`--stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackendStats {
    /// Reads of objects or ranges.
    pub get: u64,
    /// Size queries.
    pub head: u64,
    /// Write requests (a multipart upload counts its create, parts and complete).
    pub put: u64,
    /// Listings (one per listing, however many pages).
    pub list: u64,
    /// Deletes.
    pub delete: u64,
    /// Attempts repeated after a transient error.
    pub retries: u64,
    /// Bytes received.
    pub bytes_down: u64,
    /// Bytes sent.
    pub bytes_up: u64,
    /// Milliseconds from the start of the first put to the end of the last: `bytes_up` over
    /// this is the upload rate (what `--limit-upload` holds).
    pub upload_ms: u64,
}

impl Counters {
    /// The counts so far.
    pub(crate) fn snapshot(&self) -> BackendStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BackendStats {
            get: l(&self.get),
            head: l(&self.head),
            put: l(&self.put),
            list: l(&self.list),
            delete: l(&self.delete),
            retries: l(&self.retries),
            bytes_down: l(&self.bytes_down),
            bytes_up: l(&self.bytes_up),
            upload_ms: match (
                self.first_put.get(),
                self.last_put_end.lock().ok().and_then(|g| *g),
            ) {
                (Some(a), Some(b)) => b.saturating_duration_since(*a).as_millis() as u64,
                _ => 0,
            },
        }
    }
}
