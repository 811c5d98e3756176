//! Test hooks, compiled only with the `test-hooks` cargo feature (the integration tests build
//! the binary with it: `cargo test --release --features test-hooks`). A build without the
//! feature has none of this code and reads none of these variables.
//!
//! - `CAIRN_TEST_FAULTS`: the fault injector ([`super::fault`]) under the whole stack, on the
//!   provider's store, with the rules the variable gives.
//! - `CAIRN_TEST_KILL_AFTER_WRITES=N`: the process kills itself with SIGKILL just before its
//!   N+1-th object write or delete, so a test can stop a backup, prune or repair at every step
//!   it takes and then check what is left. A layer at the top of the stack (below a read-only
//!   or dry-run guard), so the count is of writes and deletes asked for, not of attempts.

use super::layer::{Fut, Layer, Put, Store};
use super::layout::Handle;
use crate::error::Result;
use bytes::Bytes;
use object_store::ObjectStore;
use std::sync::Arc;

/// `store` with the faults of `CAIRN_TEST_FAULTS`, when it is set and not empty.
pub(crate) fn faults_from_env(store: Arc<dyn ObjectStore>) -> Result<Arc<dyn ObjectStore>> {
    Ok(match std::env::var("CAIRN_TEST_FAULTS") {
        Ok(spec) if !spec.is_empty() => Arc::new(super::fault::FaultStore::new(store, &spec)?),
        _ => store,
    })
}

/// The crash hook; see the module docs.
pub(crate) struct KillAfterWrites {
    pub inner: Arc<dyn Store>,
}

/// Count one write or delete, and die before it when the limit is reached. The count is the
/// process's (a copy's two repositories share it). Unset, this costs one atomic load.
fn fault_point() {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let limit = LIMIT.get_or_init(|| {
        std::env::var("CAIRN_TEST_KILL_AFTER_WRITES")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(n) = *limit {
        if COUNT.fetch_add(1, Ordering::SeqCst) >= n {
            crate::sys::process::kill_self();
        }
    }
}

impl Layer for KillAfterWrites {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn put<'a>(&'a self, h: Handle<'a>, data: Bytes, how: &'a Put) -> Fut<'a, ()> {
        fault_point();
        self.inner.put(h, data, how)
    }

    fn delete<'a>(&'a self, h: Handle<'a>) -> Fut<'a, ()> {
        fault_point();
        self.inner.delete(h)
    }
}
