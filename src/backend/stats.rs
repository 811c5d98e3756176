//! Request statistics (`--request-stats`): requests by kind, retries, bytes, and the upload
//! phase over which an upload limit holds. Two layers share one set of [`Counters`]:
//! [`Requests`] at the bottom of the stack counts what reaches the store, attempt by attempt;
//! [`Uploads`] above the limits counts what a put achieved and when (the retry layer counts
//! the retries).

use super::layer::{Fut, Layer, OsResult, Put, Store};
use super::layout::{FileType, Handle};
use bytes::Bytes;
use object_store::ObjectMeta;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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

/// Counts every request as it goes to the provider (below the retries: each attempt counts,
/// and a multipart upload counts its create, parts and complete), and the bytes each
/// successful read received.
pub(crate) struct Requests {
    pub inner: Arc<dyn Store>,
    pub counters: Arc<Counters>,
}

impl Requests {
    fn count(&self, n: &AtomicU64, by: u64) {
        n.fetch_add(by, Ordering::Relaxed);
    }

    fn received(&self, r: OsResult<Bytes>) -> OsResult<Bytes> {
        if let Ok(b) = &r {
            self.count(&self.counters.bytes_down, b.len() as u64);
        }
        r
    }
}

impl Layer for Requests {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn get<'a>(&'a self, h: Handle<'a>, max: u64) -> Fut<'a, Bytes> {
        self.count(&self.counters.get, 1);
        Box::pin(async move { self.received(self.inner.get(h, max).await) })
    }

    fn get_range<'a>(&'a self, h: Handle<'a>, range: Range<u64>) -> Fut<'a, Bytes> {
        self.count(&self.counters.get, 1);
        Box::pin(async move { self.received(self.inner.get_range(h, range).await) })
    }

    fn head<'a>(&'a self, h: Handle<'a>) -> Fut<'a, u64> {
        self.count(&self.counters.head, 1);
        self.inner.head(h)
    }

    fn put<'a>(&'a self, h: Handle<'a>, data: Bytes, how: &'a Put) -> Fut<'a, ()> {
        self.count(&self.counters.put, how.requests(data.len()));
        self.inner.put(h, data, how)
    }

    fn list<'a>(&'a self, t: Option<FileType>) -> Fut<'a, Vec<ObjectMeta>> {
        self.count(&self.counters.list, 1);
        self.inner.list(t)
    }

    fn delete<'a>(&'a self, h: Handle<'a>) -> Fut<'a, ()> {
        self.count(&self.counters.delete, 1);
        self.inner.delete(h)
    }
}

/// Counts the bytes of each put that succeeded and times the upload phase: above the limits,
/// so the phase starts before the first put waits for its tokens, and above the create-only
/// check, so a put that found its own bytes counts as done.
pub(crate) struct Uploads {
    pub inner: Arc<dyn Store>,
    pub counters: Arc<Counters>,
}

impl Layer for Uploads {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn put<'a>(&'a self, h: Handle<'a>, data: Bytes, how: &'a Put) -> Fut<'a, ()> {
        Box::pin(async move {
            let c = &self.counters;
            c.first_put.get_or_init(Instant::now);
            let len = data.len() as u64;
            self.inner.put(h, data, how).await?;
            c.bytes_up.fetch_add(len, Ordering::Relaxed);
            if let Ok(mut g) = c.last_put_end.lock() {
                *g = Some(Instant::now());
            }
            Ok(())
        })
    }
}
