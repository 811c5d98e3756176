//! The bottom of the stack: the six operations as calls of the provider's
//! `object_store::ObjectStore` (S3, GCS, Azure, a local folder, memory), with the repository's
//! prefix, multipart uploads, and the size checks of whole and ranged reads.

use super::layer::{Fut, OsResult, Put, Store, TooLarge, generic_error};
use super::layout::{self, FileType, Handle};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::ops::Range;
use std::sync::Arc;

/// The provider's store under the repository's folder `prefix`.
pub(crate) struct Provider {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
}

impl Store for Provider {
    fn get<'a>(&'a self, h: Handle<'a>, max: u64) -> Fut<'a, Bytes> {
        Box::pin(async move {
            let r = self.store.get(&h.path(&self.prefix)).await?;
            if r.meta.size > max {
                return Err(generic_error(TooLarge {
                    size: r.meta.size,
                    max,
                }));
            }
            let b = r.bytes().await?;
            if b.len() as u64 > max {
                return Err(generic_error(TooLarge {
                    size: b.len() as u64,
                    max,
                }));
            }
            Ok(b)
        })
    }

    fn get_range<'a>(&'a self, h: Handle<'a>, range: Range<u64>) -> Fut<'a, Bytes> {
        Box::pin(async move {
            let want = range.end.saturating_sub(range.start);
            let b = self.store.get_range(&h.path(&self.prefix), range).await?;
            if b.len() as u64 != want {
                return Err(generic_error(ShortRead {
                    got: b.len() as u64,
                    want,
                }));
            }
            Ok(b)
        })
    }

    fn head<'a>(&'a self, h: Handle<'a>) -> Fut<'a, u64> {
        Box::pin(async move { Ok(self.store.head(&h.path(&self.prefix)).await?.size) })
    }

    fn put<'a>(&'a self, h: Handle<'a>, data: Bytes, how: &'a Put) -> Fut<'a, ()> {
        Box::pin(async move {
            let path = h.path(&self.prefix);
            if how.multipart {
                put_multipart(self.store.as_ref(), &path, data, how.attributes.clone()).await
            } else {
                let opts = PutOptions {
                    mode: if how.overwrite {
                        PutMode::Overwrite
                    } else {
                        PutMode::Create
                    },
                    attributes: how.attributes.clone(),
                    ..Default::default()
                };
                self.store
                    .put_opts(&path, PutPayload::from(data), opts)
                    .await
                    .map(|_| ())
            }
        })
    }

    fn list<'a>(&'a self, t: Option<FileType>) -> Fut<'a, Vec<ObjectMeta>> {
        Box::pin(async move {
            match t {
                Some(t @ (FileType::Pack | FileType::Wal)) => {
                    let dir = layout::dir(&self.prefix, t);
                    self.store.list(Some(&dir)).try_collect().await
                }
                // One level only: junk folders below are never walked.
                Some(t) => {
                    let dir = layout::dir(&self.prefix, t);
                    Ok(self.store.list_with_delimiter(Some(&dir)).await?.objects)
                }
                None => Ok(self
                    .store
                    .list_with_delimiter(Some(&self.prefix))
                    .await?
                    .objects),
            }
        })
    }

    fn delete<'a>(&'a self, h: Handle<'a>) -> Fut<'a, ()> {
        Box::pin(async move { self.store.delete(&h.path(&self.prefix)).await })
    }
}

/// A ranged read answered with fewer bytes than asked for: transient to the retry layer (an
/// `io::Error` underneath), corruption once the retries are spent.
#[derive(Debug)]
pub(crate) struct ShortRead {
    got: u64,
    want: u64,
}

impl std::fmt::Display for ShortRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "short read: {} of {} bytes", self.got, self.want)
    }
}

impl std::error::Error for ShortRead {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*SHORT_READ_IO)
    }
}

/// The cause [`super::retry::is_transient`] recognises a short read by: an I/O error, as a
/// body cut short by the transport is.
static SHORT_READ_IO: std::sync::LazyLock<std::io::Error> = std::sync::LazyLock::new(|| {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "body shorter than the range",
    )
});

/// Upload `data` in [`super::MULTIPART_PART`] parts sent side by side; on failure, or when the
/// attempt is dropped (timed out), the upload is aborted, so no part lingers (and nothing
/// appears at `path`).
async fn put_multipart(
    store: &dyn ObjectStore,
    path: &Path,
    data: Bytes,
    attributes: object_store::Attributes,
) -> OsResult<()> {
    let opts = object_store::PutMultipartOptions {
        attributes,
        ..Default::default()
    };
    let mut guard = AbortOnDrop(Some(store.put_multipart_opts(path, opts).await?));
    let Some(upload) = guard.0.as_mut() else {
        return Err(generic_error(std::io::Error::other(
            "multipart upload gone",
        )));
    };
    let mut parts = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let end = (at + super::MULTIPART_PART).min(data.len());
        parts.push(upload.put_part(PutPayload::from(data.slice(at..end))));
        at = end;
    }
    futures::future::try_join_all(parts).await?;
    upload.complete().await?;
    guard.0 = None;
    Ok(())
}

/// Aborts a multipart upload that did not complete (an error, or its future dropped by a
/// timeout), in the background on the runtime.
struct AbortOnDrop(Option<Box<dyn object_store::MultipartUpload>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(mut upload) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = upload.abort().await;
                });
            }
        }
    }
}
