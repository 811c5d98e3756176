//! Retrying whole store operations: which errors are worth another attempt, how long one
//! attempt may take, and how long to wait between attempts (exponential backoff with jitter).
//!
//! This sits above object_store's own HTTP retries (a few quick attempts per request, see
//! `open::client_retry`): those absorb a dropped connection or a 503 within a second or two;
//! this layer rides out longer outages and the failures object_store does not retry (a
//! connection cut while a request body was being sent, a timeout of a non-idempotent request, a
//! body cut short while it was being read). Only operations that are safe to repeat come here:
//! every object cairn writes is content-named or create-only (format.md §1a), so repeating a
//! put either writes the same bytes again or finds them there.
//!
//! A store that has never answered is not retried: a wrong endpoint, an unknown host or a
//! refused connection at the first request is reported at once, in one line, rather than after
//! minutes of backoff.

use super::layer::{Fut, Layer, OsResult, Put, Store, generic_error};
use super::layout::{FileType, Handle, listing_what};
use super::stats::Counters;
use bytes::Bytes;
use object_store::ObjectMeta;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whether an error may go away if the operation is tried again.
pub(crate) fn is_transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    match e {
        E::NotFound { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. }
        | E::InvalidPath { .. } => false,
        E::JoinError { .. } => true,
        _ => {
            // A Generic error: transient when it comes from the transport (a connection, a
            // timeout, a body cut short) or a server-side status (5xx, 429, 408); a client
            // error status (400, 405, …) will not change with another attempt.
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
            while let Some(c) = cur {
                if c.downcast_ref::<object_store::client::HttpError>()
                    .is_some()
                    || c.downcast_ref::<std::io::Error>().is_some()
                {
                    return true;
                }
                cur = c.source();
            }
            let text = e.to_string();
            match text.find("status code: ") {
                Some(i) => {
                    let code = &text[i + 13..];
                    code.starts_with('5')
                        || code.starts_with("429")
                        || code.starts_with("408")
                        // S3's "your socket connection was not read from or written to within
                        // the timeout" comes as a 400.
                        || text.contains("RequestTimeout")
                }
                // No status and no transport error: a refusal of the store's client (a range
                // past the end of a truncated pack, a bad path): trying again changes nothing.
                None => false,
            }
        }
    }
}

/// The innermost cause of an error, on one line and at most 300 characters: what a user needs
/// ("Connection refused", "NoSuchBucket", "InvalidAccessKeyId"), not the layers above it.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    let mut text = cur.to_string();
    while let Some(s) = cur.source() {
        let t = s.to_string();
        if !t.trim().is_empty() {
            text = t;
        }
        cur = s;
    }
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 300 {
        let cut: String = one.chars().take(300).collect();
        format!("{cut}…")
    } else {
        one
    }
}

/// How long one attempt may take at most, a backstop above the HTTP client's read timeout
/// (which catches a stalled response or listing page after `base`): an upload gets `base` plus
/// its bytes at 16 KiB/s (a 16 MiB pack: about 18 minutes, so even five uploads sharing a slow
/// uplink finish), anything else five times `base` plus its bytes at 16 KiB/s (a listing of many
/// pages, a large index file). Saturating: an absurd `-o timeout` cannot overflow.
pub(crate) fn attempt_timeout(base: Duration, bytes: u64, upload: bool) -> Duration {
    let per_byte = Duration::from_secs(bytes / (16 << 10));
    let floor = if upload { base } else { base.saturating_mul(5) };
    floor.saturating_add(per_byte)
}

/// Whether the error carries an HTTP status: the store answered, even if with a 5xx.
pub(crate) fn has_status(e: &object_store::Error) -> bool {
    e.to_string().contains("status code: ")
}

/// The wait before attempt `n` (1 = the first retry): 0.5 s doubling up to 30 s, each scaled by
/// a random factor in [0.5, 1.5) so that many clients (or many uploads of one client) that
/// failed together do not come back together.
pub(crate) fn backoff(n: u32) -> Duration {
    let base = 0.5f64 * 2f64.powi(n.saturating_sub(1).min(16) as i32);
    let capped = base.min(30.0);
    Duration::from_secs_f64(capped * (0.5 + jitter()))
}

/// A number in [0, 1) from a per-thread xorshift seeded by the clock and the thread.
fn jitter() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            let addr = &t as *const u64 as u64;
            (t ^ addr.rotate_left(32)) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// Where notices of retries go (one line each: what failed, why, when the next attempt is).
pub(crate) type Notice = Arc<Mutex<Option<Arc<dyn Fn(&str) + Send + Sync>>>>;

/// The retry layer: each operation on the runtime, each attempt timed out (unless `bounded`
/// is off), repeated after a transient error with backoff.
pub(crate) struct Retry {
    pub inner: Arc<dyn Store>,
    /// Attempts after the first (`-o retries`).
    pub retries: u32,
    /// `-o timeout`, the base of [`attempt_timeout`].
    pub timeout: Duration,
    /// Whether attempts are timed out: not for a local folder without retries (object_store
    /// runs its calls on blocking threads a timeout would not stop, and a slow NFS listing is
    /// not a failure).
    pub bounded: bool,
    /// Whether the store has answered any request: one that never answered is not retried.
    pub answered: Arc<AtomicBool>,
    pub notice: Notice,
    pub counters: Arc<Counters>,
}

impl Retry {
    fn notify(&self, msg: &str) {
        let f = self.notice.lock().ok().and_then(|g| g.clone());
        if let Some(f) = f {
            f(msg);
        }
    }

    /// Run one operation: `f` makes one attempt; `bytes` and `upload` set its timeout.
    async fn run<'a, T>(
        &'a self,
        what: String,
        bytes: u64,
        upload: bool,
        mut f: impl FnMut() -> Fut<'a, T>,
    ) -> OsResult<T> {
        let limit = attempt_timeout(self.timeout, bytes, upload);
        let mut attempt = 0u32;
        loop {
            let r = if self.bounded {
                match tokio::time::timeout(limit, f()).await {
                    Ok(r) => r,
                    Err(_) => Err(generic_error(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {}s", limit.as_secs()),
                    ))),
                }
            } else {
                f().await
            };
            let e = match r {
                Ok(v) => {
                    self.answered.store(true, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => e,
            };
            if !is_transient(&e) {
                // A definite answer (not found, exists, denied) is an answer.
                self.answered.store(true, Ordering::Relaxed);
                return Err(e);
            }
            if has_status(&e) {
                // A 5xx or 429 is an answer too: the store is there, just busy.
                self.answered.store(true, Ordering::Relaxed);
            }
            if !self.answered.load(Ordering::Relaxed) || attempt >= self.retries {
                return Err(e);
            }
            attempt += 1;
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            let wait = backoff(attempt);
            self.notify(&format!(
                "{what}: {}; retrying in {:.1}s (retry {attempt} of {})",
                root_cause(&e),
                wait.as_secs_f64(),
                self.retries
            ));
            tokio::time::sleep(wait).await;
        }
    }
}

impl Layer for Retry {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn get<'a>(&'a self, h: Handle<'a>, max: u64) -> Fut<'a, Bytes> {
        Box::pin(self.run(h.what(), 0, false, move || self.inner.get(h, max)))
    }

    fn get_range<'a>(&'a self, h: Handle<'a>, range: Range<u64>) -> Fut<'a, Bytes> {
        let want = range.end.saturating_sub(range.start);
        Box::pin(self.run(h.what(), want, false, move || {
            self.inner.get_range(h, range.clone())
        }))
    }

    fn head<'a>(&'a self, h: Handle<'a>) -> Fut<'a, u64> {
        Box::pin(self.run(h.what(), 0, false, move || self.inner.head(h)))
    }

    fn put<'a>(&'a self, h: Handle<'a>, data: Bytes, how: &'a Put) -> Fut<'a, ()> {
        let len = data.len() as u64;
        Box::pin(self.run(h.what(), len, true, move || {
            self.inner.put(h, data.clone(), how)
        }))
    }

    fn list<'a>(&'a self, t: Option<FileType>) -> Fut<'a, Vec<ObjectMeta>> {
        Box::pin(self.run(listing_what(t).into(), 0, false, move || self.inner.list(t)))
    }

    fn delete<'a>(&'a self, h: Handle<'a>) -> Fut<'a, ()> {
        Box::pin(self.run(h.what(), 0, false, move || self.inner.delete(h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(source: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: Box::new(source),
        }
    }

    #[test]
    fn errors_are_classified() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_transient(&generic(io)));
        let perm = object_store::Error::PermissionDenied {
            path: "p".into(),
            source: "denied".into(),
        };
        assert!(!is_transient(&perm));
        let nf = object_store::Error::NotFound {
            path: "p".into(),
            source: "gone".into(),
        };
        assert!(!is_transient(&nf));
        #[derive(Debug)]
        struct Status(&'static str);
        impl std::fmt::Display for Status {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Status {}
        assert!(is_transient(&generic(Status(
            "Server returned non-2xx status code: 503 Service Unavailable: "
        ))));
        assert!(!is_transient(&generic(Status(
            "Server returned non-2xx status code: 400 Bad Request: InvalidStorageClass"
        ))));
        assert!(is_transient(&generic(Status(
            "Server returned non-2xx status code: 400 Bad Request: <Code>RequestTimeout</Code>"
        ))));
        assert!(!is_transient(&generic(Status(
            "Wanted range starting at 900, but object was only 800 bytes long"
        ))));
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for n in 1..40 {
            let d = backoff(n).as_secs_f64();
            let base = (0.5 * 2f64.powi((n - 1).min(16) as i32)).min(30.0);
            assert!(d >= base * 0.5 && d < base * 1.5, "{n}: {d}");
        }
        let a: Vec<Duration> = (0..8).map(|_| backoff(3)).collect();
        assert!(a.iter().any(|d| *d != a[0]), "no jitter: {a:?}");
        assert_eq!(
            attempt_timeout(Duration::from_secs(60), 16 << 20, true),
            Duration::from_secs(60 + 1024)
        );
        assert_eq!(
            attempt_timeout(Duration::from_secs(60), 0, false),
            Duration::from_secs(300)
        );
        assert_eq!(
            attempt_timeout(Duration::MAX, u64::MAX, true),
            Duration::MAX
        );
    }

    #[test]
    fn root_cause_is_one_short_line() {
        let inner = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused\n (os error 111)",
        );
        let e = generic(inner);
        assert_eq!(root_cause(&e), "Connection refused (os error 111)");
        let long = std::io::Error::other("x".repeat(1000));
        assert!(root_cause(&generic(long)).chars().count() <= 301);
    }
}
