//! A fault-injecting object store for tests: wraps any store and makes chosen operations fail,
//! stall, run slowly, lose their reply or get cut off mid-transfer, so that retries and the
//! "no snapshot names anything missing" rule can be tested against real servers.
//!
//! Compiled only with the `test-hooks` feature. Rules come from the `CAIRN_TEST_FAULTS`
//! environment variable (read when a backend is opened, see [`super::hooks`], so a test can
//! inject faults into the `cairn` binary) or `Backend::with_faults`, comma-separated, each
//! `OP:TYPE:ACTION:WHICH`:
//! - `OP`: `put`, `get` (also heads and ranged reads), `list`, `delete` or `any`;
//! - `TYPE`: `data`, `index`, `snapshots`, `keys`, `locks`, `config` or `any`;
//! - `ACTION`: `error` (a transient error, nothing done), `lost` (done, then a transient error:
//!   the reply was lost), `cut` (a put stores nothing; a get's body stops half way), `hang`
//!   (never answers), `slow=MS` (answers after MS milliseconds), `denied` (a permanent
//!   permission error), `missing` (a get answers "not found" although the object is there: an
//!   eventually consistent store) or `short` (a get's body ends half way without an error);
//! - `WHICH`: which of the matching operations, counted from 1: `N`, `N-M`, `N+` or `*`.
//!
//! Unset, no wrapper is installed and nothing is paid.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
    List,
    Delete,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Error,
    Lost,
    Cut,
    Hang,
    Slow(u64),
    Denied,
    Missing,
    Short,
}

#[derive(Debug)]
struct Rule {
    op: Op,
    kind: Option<String>,
    action: Action,
    from: u64,
    to: u64,
    seen: AtomicU64,
}

/// The store wrapper; see the module docs.
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    rules: Arc<Vec<Rule>>,
}

impl std::fmt::Display for FaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

fn bad(spec: &str) -> crate::Error {
    crate::Error::usage(format!(
        "CAIRN_TEST_FAULTS: {spec:?} is not OP:TYPE:ACTION:WHICH (see backend/fault.rs)"
    ))
}

impl FaultStore {
    /// Wrap `inner` with the rules in `spec` (the module docs' syntax).
    pub fn new(inner: Arc<dyn ObjectStore>, spec: &str) -> crate::Result<FaultStore> {
        let mut rules = Vec::new();
        for r in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let f: Vec<&str> = r.split(':').collect();
            let [op, kind, action, which] = f.as_slice() else {
                return Err(bad(r));
            };
            let op = match *op {
                "put" => Op::Put,
                "get" => Op::Get,
                "list" => Op::List,
                "delete" => Op::Delete,
                "any" => Op::Any,
                _ => return Err(bad(r)),
            };
            let kind = match *kind {
                "any" => None,
                k @ ("data" | "index" | "snapshots" | "keys" | "locks" | "config") => {
                    Some(k.to_string())
                }
                _ => return Err(bad(r)),
            };
            let action = match *action {
                "error" => Action::Error,
                "lost" => Action::Lost,
                "cut" => Action::Cut,
                "hang" => Action::Hang,
                "denied" => Action::Denied,
                "missing" => Action::Missing,
                "short" => Action::Short,
                a => match a.strip_prefix("slow=").and_then(|ms| ms.parse().ok()) {
                    Some(ms) => Action::Slow(ms),
                    None => return Err(bad(r)),
                },
            };
            let num = |s: &str| s.parse::<u64>().ok().filter(|n| *n >= 1);
            let (from, to) = if *which == "*" {
                (1, u64::MAX)
            } else if let Some(n) = which.strip_suffix('+') {
                (num(n).ok_or_else(|| bad(r))?, u64::MAX)
            } else if let Some((a, b)) = which.split_once('-') {
                (num(a).ok_or_else(|| bad(r))?, num(b).ok_or_else(|| bad(r))?)
            } else {
                let n = num(which).ok_or_else(|| bad(r))?;
                (n, n)
            };
            rules.push(Rule {
                op,
                kind,
                action,
                from,
                to,
                seen: AtomicU64::new(0),
            });
        }
        Ok(FaultStore {
            inner,
            rules: Arc::new(rules),
        })
    }

    fn pick(&self, op: Op, path: &Path) -> Option<Action> {
        pick(&self.rules, op, path)
    }
}

/// The action for this operation on `path`, if a rule picks it (every matching rule counts the
/// operation; the first that picks it wins).
fn pick(rules: &[Rule], op: Op, path: &Path) -> Option<Action> {
    let kind = kind_of(path);
    let mut chosen = None;
    for r in rules {
        if (r.op == op || r.op == Op::Any) && r.kind.as_deref().is_none_or(|k| k == kind) {
            let n = r.seen.fetch_add(1, Ordering::SeqCst) + 1;
            if chosen.is_none() && (r.from..=r.to).contains(&n) {
                chosen = Some(r.action);
            }
        }
    }
    chosen
}

/// The repository object type of a path (its folder), or `""`.
fn kind_of(path: &Path) -> &'static str {
    let parts: Vec<String> = path.parts().map(|p| p.as_ref().to_string()).collect();
    let n = parts.len();
    if parts.last().is_some_and(|l| l == "config") {
        return "config";
    }
    if n >= 3 && parts[n - 3] == "data" {
        return "data";
    }
    for k in ["index", "snapshots", "keys", "locks", "data"] {
        // A listing's prefix is the folder itself.
        if parts.last().is_some_and(|l| l == k) || (n >= 2 && parts[n - 2] == k) {
            return k;
        }
    }
    ""
}

fn transient(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultStore",
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            format!("injected fault: {what}"),
        )),
    }
}

/// Before the operation: fail, stall or delay it. `Ok(true)` means "do it, then fail" (lost).
async fn before(action: Option<Action>, path: &Path) -> Result<bool> {
    match action {
        None | Some(Action::Cut | Action::Short) => Ok(false),
        Some(Action::Missing) => Err(object_store::Error::NotFound {
            path: path.to_string(),
            source: "injected fault: missing".into(),
        }),
        Some(Action::Error) => Err(transient("error")),
        Some(Action::Lost) => Ok(true),
        Some(Action::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Err(transient("hang"))
        }
        Some(Action::Slow(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(false)
        }
        Some(Action::Denied) => Err(object_store::Error::PermissionDenied {
            path: path.to_string(),
            source: "injected fault: denied".into(),
        }),
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let action = self.pick(Op::Put, location);
        if action == Some(Action::Cut) {
            // The connection dropped while the body was being sent: nothing was stored.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(transient("connection cut mid-upload"));
        }
        let lost = before(action, location).await?;
        let r = self.inner.put_opts(location, payload, opts).await?;
        if lost {
            return Err(transient("reply lost"));
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let action = self.pick(Op::Put, location);
        if action == Some(Action::Cut) {
            return Err(transient("connection cut mid-upload"));
        }
        before(action, location).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let action = self.pick(Op::Get, location);
        let head = options.head;
        let lost = before(action, location).await?;
        let r = self.inner.get_opts(location, options).await?;
        if lost {
            return Err(transient("reply lost"));
        }
        if !matches!(action, Some(Action::Cut | Action::Short)) || head {
            return Ok(r);
        }
        // Half the body, then the connection drops (cut) or the body just ends (short).
        let meta = r.meta.clone();
        let range = r.range.clone();
        let attributes = r.attributes.clone();
        let body = r.bytes().await?;
        let half = body.slice(..body.len() / 2);
        let parts = if action == Some(Action::Short) {
            vec![Ok(half)]
        } else {
            vec![Ok(half), Err(transient("body cut"))]
        };
        let stream = futures::stream::iter(parts).boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range,
            attributes,
            extensions: Default::default(),
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let action = self.pick(Op::Get, location);
        if action == Some(Action::Cut) {
            return Err(transient("body cut"));
        }
        let lost = before(action, location).await?;
        let r = self.inner.get_ranges(location, ranges).await?;
        if lost {
            return Err(transient("reply lost"));
        }
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Decided per path before it reaches the store: a failed delete deletes nothing, a
        // lost one deletes and then fails.
        let rules = Arc::clone(&self.rules);
        let inner = Arc::clone(&self.inner);
        locations
            .then(move |p| {
                let rules = Arc::clone(&rules);
                let inner = Arc::clone(&inner);
                async move {
                    let p = p?;
                    let action = pick(&rules, Op::Delete, &p);
                    if action == Some(Action::Cut) {
                        return Err(transient("delete"));
                    }
                    let lost = before(action, &p).await?;
                    inner.delete(&p).await?;
                    if lost {
                        return Err(transient("reply lost"));
                    }
                    Ok(p)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let action = self.pick(Op::List, prefix.unwrap_or(&Path::default()));
        match action {
            Some(Action::Error | Action::Cut | Action::Lost) => {
                futures::stream::iter(vec![Err(transient("list"))]).boxed()
            }
            Some(Action::Denied) => {
                futures::stream::iter(vec![Err(object_store::Error::PermissionDenied {
                    path: String::new(),
                    source: "injected fault: denied".into(),
                })])
                .boxed()
            }
            Some(Action::Hang | Action::Slow(_)) => {
                let inner = self.inner.list(prefix);
                let wait = match action {
                    Some(Action::Slow(ms)) => Duration::from_millis(ms),
                    _ => Duration::from_secs(3600),
                };
                futures::stream::once(async move {
                    tokio::time::sleep(wait).await;
                    inner
                })
                .flatten()
                .boxed()
            }
            // Only gets are answered "missing" or short.
            None | Some(Action::Missing | Action::Short) => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let action = self.pick(Op::List, prefix.unwrap_or(&Path::default()));
        if action == Some(Action::Cut) {
            return Err(transient("list"));
        }
        let lost = before(action, prefix.unwrap_or(&Path::default())).await?;
        let r = self.inner.list_with_delimiter(prefix).await?;
        if lost {
            return Err(transient("reply lost"));
        }
        Ok(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
