//! The read-only layer (kopia's `readonly`): a safety net for commands that only read (`check`,
//! `mount`). Reads pass; a write or delete is refused before it reaches anything below, as an
//! internal error naming the object: a command that should only read tried to write, which is
//! a bug, not a user's mistake.

use super::layer::{Fut, Layer, Put, Store, generic_error};
use super::layout::Handle;
use bytes::Bytes;
use std::sync::Arc;

/// The layer; see the module docs.
pub(crate) struct ReadOnly {
    pub inner: Arc<dyn Store>,
}

/// A write or delete refused by [`ReadOnly`] (mapped to `ErrorKind::Internal` at the top).
#[derive(Debug)]
pub(crate) struct WriteRefused(pub String);

impl std::fmt::Display for WriteRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WriteRefused {}

fn refuse(verb: &str, h: Handle<'_>) -> object_store::Error {
    generic_error(WriteRefused(format!(
        "{verb} {} refused: this command opened the repository read-only (a bug in cairn)",
        h.what()
    )))
}

impl Layer for ReadOnly {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    fn put<'a>(&'a self, h: Handle<'a>, _data: Bytes, _how: &'a Put) -> Fut<'a, ()> {
        Box::pin(async move { Err(refuse("writing", h)) })
    }

    fn delete<'a>(&'a self, h: Handle<'a>) -> Fut<'a, ()> {
        Box::pin(async move { Err(refuse("deleting", h)) })
    }
}
