//! The one small trait the backend's layers share, and the pass-through that lets a layer
//! implement only the operations it changes.
//!
//! Why a trait of our own rather than wrappers of `object_store::ObjectStore` (as
//! [`super::fault`] is): the layers above the provider work on whole repository operations, not
//! on HTTP requests. A retry repeats a whole multipart upload (create, parts, complete) or a
//! whole read with its size check, a limit counts a put's bytes once, the local folder modes
//! need the object's type and name, and a refusal must name the object. `ObjectStore` has a
//! dozen methods, streams and multipart handles that each wrapper would have to pass through;
//! [`Store`] has the six operations cairn makes, on [`Handle`]s (type and name), and a layer
//! that changes two of them writes two.
//!
//! The order of the stack is built in one place, [`super::open::stack`].

use super::layout::{FileType, Handle};
use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::{Attributes, ObjectMeta};
use std::ops::Range;

/// A store operation's result, with object_store's error (mapped to the library's only at
/// the top, where the object, the location and the retries are known).
pub(crate) type OsResult<T> = std::result::Result<T, object_store::Error>;

/// A store operation under way.
pub(crate) type Fut<'a, T> = BoxFuture<'a, OsResult<T>>;

/// How an object is put: the put policy of [`super::Backend::create`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Put {
    /// Overwrite (content-named objects on a remote store) or create only if absent.
    pub overwrite: bool,
    /// Upload in parts ([`super::MULTIPART_PART`]) sent side by side.
    pub multipart: bool,
    /// Attributes of the object (a pack's storage class).
    pub attributes: Attributes,
}

impl Put {
    /// The requests a put of `len` bytes makes: one, or a multipart upload's create, parts
    /// and complete.
    pub fn requests(&self, len: usize) -> u64 {
        if self.multipart {
            len.div_ceil(super::MULTIPART_PART) as u64 + 2
        } else {
            1
        }
    }
}

/// The six operations of a repository's store: every layer and the provider at the bottom.
pub(crate) trait Store: Send + Sync {
    /// A whole object of at most `max` bytes; a larger one fails with [`TooLarge`] before its
    /// content is read.
    fn get<'a>(&'a self, h: Handle<'a>, max: u64) -> Fut<'a, Bytes>;
    /// A byte range of an object, exactly as long as asked.
    fn get_range<'a>(&'a self, h: Handle<'a>, range: Range<u64>) -> Fut<'a, Bytes>;
    /// An object's size.
    fn head<'a>(&'a self, h: Handle<'a>) -> Fut<'a, u64>;
    /// Store an object whole.
    fn put<'a>(&'a self, h: Handle<'a>, data: Bytes, how: &'a Put) -> Fut<'a, ()>;
    /// The objects in `t`'s folder (packs: all below `data/`; others: one level), or with
    /// `None` one level of the repository's folder.
    fn list<'a>(&'a self, t: Option<FileType>) -> Fut<'a, Vec<ObjectMeta>>;
    /// Delete an object.
    fn delete<'a>(&'a self, h: Handle<'a>) -> Fut<'a, ()>;
}

/// A layer over another [`Store`]: each operation it does not define passes down unchanged.
pub(crate) trait Layer: Send + Sync {
    /// The store below.
    fn inner(&self) -> &dyn Store;
    /// See [`Store::get`].
    fn get<'a>(&'a self, h: Handle<'a>, max: u64) -> Fut<'a, Bytes> {
        self.inner().get(h, max)
    }
    /// See [`Store::get_range`].
    fn get_range<'a>(&'a self, h: Handle<'a>, range: Range<u64>) -> Fut<'a, Bytes> {
        self.inner().get_range(h, range)
    }
    /// See [`Store::head`].
    fn head<'a>(&'a self, h: Handle<'a>) -> Fut<'a, u64> {
        self.inner().head(h)
    }
    /// See [`Store::put`].
    fn put<'a>(&'a self, h: Handle<'a>, data: Bytes, how: &'a Put) -> Fut<'a, ()> {
        self.inner().put(h, data, how)
    }
    /// See [`Store::list`].
    fn list<'a>(&'a self, t: Option<FileType>) -> Fut<'a, Vec<ObjectMeta>> {
        self.inner().list(t)
    }
    /// See [`Store::delete`].
    fn delete<'a>(&'a self, h: Handle<'a>) -> Fut<'a, ()> {
        self.inner().delete(h)
    }
}

impl<L: Layer> Store for L {
    fn get<'a>(&'a self, h: Handle<'a>, max: u64) -> Fut<'a, Bytes> {
        Layer::get(self, h, max)
    }
    fn get_range<'a>(&'a self, h: Handle<'a>, range: Range<u64>) -> Fut<'a, Bytes> {
        Layer::get_range(self, h, range)
    }
    fn head<'a>(&'a self, h: Handle<'a>) -> Fut<'a, u64> {
        Layer::head(self, h)
    }
    fn put<'a>(&'a self, h: Handle<'a>, data: Bytes, how: &'a Put) -> Fut<'a, ()> {
        Layer::put(self, h, data, how)
    }
    fn list<'a>(&'a self, t: Option<FileType>) -> Fut<'a, Vec<ObjectMeta>> {
        Layer::list(self, t)
    }
    fn delete<'a>(&'a self, h: Handle<'a>) -> Fut<'a, ()> {
        Layer::delete(self, h)
    }
}

/// An error of cairn's own in object_store's clothes, so it travels up the stack like the
/// store's (`find_cause` finds it again at the top).
pub(crate) fn generic_error(
    e: impl std::error::Error + Send + Sync + 'static,
) -> object_store::Error {
    object_store::Error::Generic {
        store: "cairn",
        source: Box::new(e),
    }
}

/// The error of cairn's own that `e` carries, if it is a `T` (as [`generic_error`] made it),
/// taken out whole; else `e` unchanged.
pub(crate) fn take_error<T: std::error::Error + 'static>(
    e: object_store::Error,
) -> std::result::Result<T, object_store::Error> {
    match e {
        object_store::Error::Generic { store, source } => match source.downcast::<T>() {
            Ok(t) => Ok(*t),
            Err(source) => Err(object_store::Error::Generic { store, source }),
        },
        e => Err(e),
    }
}

/// The first cause of type `T` in `e`'s chain.
pub(crate) fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cur = c.source();
    }
    None
}

/// A whole read of an object larger than asked for: refused before its content is read, not
/// retried (a definite answer), reported as corruption.
#[derive(Debug)]
pub(crate) struct TooLarge {
    /// The object's size.
    pub size: u64,
    /// The most that was asked for.
    pub max: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes, over the limit of {}", self.size, self.max)
    }
}

impl std::error::Error for TooLarge {}
