//! Create-only puts (`config`, keys, locks; every object in a local folder) that find the
//! object there already: ours if it holds our bytes. An attempt whose reply was lost, here or
//! in object_store's own HTTP retries, may have stored it; key files and the config carry
//! random salts and nonces, and the other objects are named by their content, so equal bytes
//! can only be ours. Anything else stays `AlreadyExists`.
//!
//! Above the retries and the limits: the read-back is an operation of its own, retried and
//! counted like any other.

use super::layer::{Fut, Layer, Put, Store};
use super::layout::Handle;
use bytes::Bytes;
use std::sync::Arc;

/// The layer; see the module docs.
pub(crate) struct CreateOnly {
    pub inner: Arc<dyn Store>,
}

impl Layer for CreateOnly {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn put<'a>(&'a self, h: Handle<'a>, data: Bytes, how: &'a Put) -> Fut<'a, ()> {
        Box::pin(async move {
            match self.inner.put(h, data.clone(), how).await {
                Err(
                    e @ (object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }),
                ) if !how.overwrite => match self.inner.get(h, data.len() as u64).await {
                    Ok(b) if b == data => Ok(()),
                    _ => Err(e),
                },
                r => r,
            }
        })
    }
}
