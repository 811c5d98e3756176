//! Bandwidth limits (`--limit-upload`, `--limit-download`): one token bucket per direction for
//! the whole process, in KiB, from the `governor` crate (GCRA). An upload takes its tokens
//! before it is sent; a download takes them as its bytes arrive. Over a backup of many packs the
//! rate holds at the limit; a single pack is sent at the link's speed once its tokens are there.

use super::layer::{Fut, Layer, OsResult, Put, Store};
use super::layout::Handle;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::Arc;

/// A byte-rate limit.
#[derive(Debug)]
pub(crate) struct Limit {
    bucket: DefaultDirectRateLimiter,
    /// The most KiB one wait may ask for (the bucket's burst).
    burst: u32,
}

impl Limit {
    /// A limit of `bytes_per_sec` (at least 1 KiB/s). The burst is a tenth of a second's worth,
    /// at least 64 KiB: the rate is even at the scale of a second.
    pub(crate) fn new(bytes_per_sec: u64) -> Limit {
        let kib = (bytes_per_sec / 1024).clamp(1, u64::from(u32::MAX)) as u32;
        let burst = (kib / 10).max(64);
        let one = NonZeroU32::MIN;
        let quota = Quota::per_second(NonZeroU32::new(kib).unwrap_or(one))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(one));
        Limit {
            bucket: RateLimiter::direct(quota),
            burst,
        }
    }

    /// Wait until `bytes` may pass.
    pub(crate) async fn take(&self, bytes: u64) {
        let mut kib = bytes.div_ceil(1024);
        while kib > 0 {
            let n = kib.min(u64::from(self.burst)) as u32;
            kib -= u64::from(n);
            if let Some(n) = NonZeroU32::new(n) {
                // n ≤ burst: the bucket always has the capacity.
                let _ = self.bucket.until_n_ready(n).await;
            }
        }
    }
}

/// The limits as a layer, above the retries (a retried upload waits for its tokens once):
/// an upload takes its tokens before it is sent, a read once its bytes have arrived.
pub(crate) struct Limits {
    pub inner: Arc<dyn Store>,
    pub up: Option<Arc<Limit>>,
    pub down: Option<Arc<Limit>>,
}

impl Limits {
    async fn received(&self, r: OsResult<Bytes>) -> OsResult<Bytes> {
        if let (Ok(b), Some(down)) = (&r, &self.down) {
            down.take(b.len() as u64).await;
        }
        r
    }
}

impl Layer for Limits {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn get<'a>(&'a self, h: Handle<'a>, max: u64) -> Fut<'a, Bytes> {
        Box::pin(async move { self.received(self.inner.get(h, max).await).await })
    }

    fn get_range<'a>(&'a self, h: Handle<'a>, range: Range<u64>) -> Fut<'a, Bytes> {
        Box::pin(async move { self.received(self.inner.get_range(h, range).await).await })
    }

    fn put<'a>(&'a self, h: Handle<'a>, data: Bytes, how: &'a Put) -> Fut<'a, ()> {
        Box::pin(async move {
            if let Some(up) = &self.up {
                up.take(data.len() as u64).await;
            }
            self.inner.put(h, data, how).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_holds() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let limit = Limit::new(4 << 20);
        let t = std::time::Instant::now();
        rt.block_on(async {
            // The first burst passes at once; the rest at 4 MiB/s.
            for _ in 0..16 {
                limit.take(256 << 10).await;
            }
        });
        let s = t.elapsed().as_secs_f64();
        // 4 MiB less the initial burst (0.4 MiB) at 4 MiB/s: at least 0.9 s. (Only the lower
        // bound is the limiter's; the upper one only catches a limiter that never lets go.)
        assert!((0.85..10.0).contains(&s), "{s}");
    }
}
