//! From a repository location and `-o key=value` options to an object store: a path or
//! `file://` URL (local folder), `s3://bucket/prefix`, `gs://bucket/prefix` or
//! `az://container/prefix`.
//!
//! Remote stores are built the way each provider's own tools configure themselves: the
//! builder's `from_env` reads the usual variables (`AWS_ACCESS_KEY_ID`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`,
//! …), then every `-o` option that is not one of cairn's own is handed to the builder as a
//! configuration key (`endpoint`, `allow_http`, `virtual_hosted_style_request`, `region`, …), so
//! an unknown key is refused in one line before any request is made.
//!
//! Then the store becomes a backend: [`stack`] is the one place that orders its layers.

use super::create_only::CreateOnly;
use super::dryrun::DryRun;
use super::layer::Store;
use super::limit::{Limit, Limits};
use super::local::LocalDirs;
use super::readonly::ReadOnly;
use super::retry::{Notice, Retry};
use super::stats::{self, Counters};
use super::store::Provider;
use crate::error::{Error, Result};
use object_store::ObjectStore;
use object_store::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Options for opening a backend: cairn's own (`connections`, `retries`, `timeout`,
/// `storage_class`) and the provider's configuration keys, plus bandwidth limits.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// `-o key=value` pairs, in the order given.
    pub options: Vec<(String, String)>,
    /// Upload limit in bytes per second.
    pub limit_upload: Option<u64>,
    /// Download limit in bytes per second.
    pub limit_download: Option<u64>,
}

impl BackendOptions {
    /// Options from `(key, value)` pairs, no limits.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> BackendOptions {
        BackendOptions {
            options: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    /// Parse one `key=value` option (`-o`).
    pub fn parse_option(s: &str) -> Result<(String, String)> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(Error::usage(format!(
                "option {s:?} is not key=value (e.g. -o endpoint=http://127.0.0.1:9000)"
            ))),
        }
    }
}

/// What kind of store a location names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A local folder.
    Local,
    /// Amazon S3 or an S3-compatible store (MinIO, Ceph, …).
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

impl StoreKind {
    /// The name users know the store by, for messages.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Local => "local folder",
            StoreKind::S3 => "S3",
            StoreKind::Gcs => "GCS",
            StoreKind::Azure => "Azure",
        }
    }
}

/// The tuning that applies to any store, from `-o` (cairn's own keys).
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Uploads (pack puts) in flight at once.
    pub connections: usize,
    /// Attempts of one operation after the first, on transient errors.
    pub retries: u32,
    /// How long a read may make no progress (the HTTP client's read timeout), and the base of
    /// the whole-attempt backstop (`retry::attempt_timeout`).
    pub timeout: Duration,
    /// Storage class for packs (S3 `x-amz-storage-class`, GCS `x-goog-storage-class`).
    pub storage_class: Option<String>,
}

/// cairn's own `-o` keys; every other key goes to the provider's builder.
const OWN_KEYS: &[&str] = &["connections", "retries", "timeout", "storage_class"];

impl Tuning {
    pub(crate) fn defaults(kind: StoreKind) -> Tuning {
        Tuning {
            connections: if kind == StoreKind::Local { 2 } else { 5 },
            // A local file system's errors (disk full, permissions) do not go away by waiting.
            retries: if kind == StoreKind::Local { 0 } else { 6 },
            timeout: Duration::from_secs(60),
            storage_class: None,
        }
    }

    pub(crate) fn apply(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |what: &str| Error::usage(format!("option {key}={value}: {what}"));
        match key {
            "connections" => {
                self.connections = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| bad("want a number of uploads from 1 to 64"))?;
            }
            "retries" => {
                self.retries = value
                    .parse()
                    .ok()
                    .filter(|n| *n <= 100)
                    .ok_or_else(|| bad("want a number of retries from 0 to 100"))?;
            }
            "timeout" => {
                self.timeout = humantime::parse_duration(value)
                    .ok()
                    .filter(|d| !d.is_zero() && *d <= Duration::from_secs(86400))
                    .ok_or_else(|| bad("want a duration from 1s to 1d, such as 30s or 2m"))?;
            }
            "storage_class" => self.storage_class = Some(value.to_string()),
            _ => return Err(bad("unknown option")),
        }
        Ok(())
    }
}

/// A parsed location, ready to build.
pub(crate) struct Opened {
    pub kind: StoreKind,
    /// The local folder, for [`StoreKind::Local`].
    pub local: Option<std::path::PathBuf>,
    /// The remote store; `None` for a local folder (built by the caller, which also creates it).
    pub store: Option<Arc<dyn ObjectStore>>,
    /// The repository's folder inside the store.
    pub prefix: Path,
    pub tuning: Tuning,
}

/// How object_store's own HTTP layer retries one request: a few quick attempts with jittered
/// backoff for connection failures, 5xx and 429 answers. Longer outages are cairn's retry
/// layer's job (it retries whole operations and knows which are safe to repeat).
fn client_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
    }
}

/// HTTP client settings, as configuration keys (so the environment's and `-o`'s client keys,
/// such as `allow_http`, still apply): connect quickly or fail; no timeout for a whole request
/// (an upload at a limited rate or on a slow link may take many minutes); a read that makes no
/// progress for `-o timeout` (default 60 s) fails, and is retried (`read_timeout`, set in
/// [`open`]).
const CLIENT_SETTINGS: &[(object_store::ClientConfigKey, &str)] = &[
    (object_store::ClientConfigKey::ConnectTimeout, "10s"),
    (object_store::ClientConfigKey::Timeout, "86400s"),
];

/// Parse `location` and build its store (remote) or find its folder (local).
pub(crate) fn open(location: &str, opts: &BackendOptions) -> Result<Opened> {
    if location.is_empty() {
        return Err(Error::new(
            crate::ErrorKind::NoRepository,
            "no repository given: use -r/--repo or CAIRN_REPOSITORY",
        ));
    }
    let (kind, url) = if let Some(rest) = location.strip_prefix("file://") {
        let path: std::path::PathBuf = url::Url::parse(location)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .unwrap_or_else(|| rest.into());
        return local(path, opts);
    } else if location.contains("://") {
        let url = url::Url::parse(location)
            .map_err(|e| Error::usage(format!("repository {location} is not a valid URL: {e}")))?;
        let kind = match url.scheme() {
            "s3" => StoreKind::S3,
            "gs" => StoreKind::Gcs,
            "az" | "azure" => StoreKind::Azure,
            s => {
                return Err(Error::usage(format!(
                    "repository scheme {s}:// is not supported (use a path, file://, s3://, gs:// or az://)"
                )));
            }
        };
        if url.host_str().unwrap_or_default().is_empty() {
            return Err(Error::usage(format!(
                "repository {location} names no {}",
                if kind == StoreKind::Azure {
                    "container (az://CONTAINER/PREFIX)"
                } else {
                    "bucket (s3://BUCKET/PREFIX)"
                }
            )));
        }
        (kind, url)
    } else {
        return local(location.into(), opts);
    };
    let mut tuning = Tuning::defaults(kind);
    let prefix = Path::from_url_path(url.path())
        .map_err(|e| Error::usage(format!("repository {location}: bad prefix: {e}")))?;
    let provider: Vec<&(String, String)> = opts
        .options
        .iter()
        .filter(|(k, _)| !OWN_KEYS.contains(&k.as_str()))
        .collect();
    for (k, v) in &opts.options {
        if OWN_KEYS.contains(&k.as_str()) {
            tuning.apply(k, v)?;
        }
    }
    let unknown = |k: &str| {
        Error::usage(format!(
            "option {k} is not known to the {} store (cairn's own: {}; see docs/design.md §19 \
             for the provider keys)",
            kind.name(),
            OWN_KEYS.join(", ")
        ))
    };
    // The three providers' builders have the same methods but no common trait: one macro
    // configures each the same way (environment, client settings, -o keys, HTTP retries).
    macro_rules! build {
        ($builder:ty, $key:ty, $url:expr) => {{
            let mut b = <$builder>::from_env().with_url($url);
            for (k, v) in CLIENT_SETTINGS {
                b = b.with_config(<$key>::Client(*k), *v);
            }
            b = b.with_config(
                <$key>::Client(object_store::ClientConfigKey::ReadTimeout),
                format!("{}s", tuning.timeout.as_secs().max(1)),
            );
            for (k, v) in provider {
                let key = <$key>::from_str(&k.to_ascii_lowercase()).map_err(|_| unknown(k))?;
                b = b.with_config(key, v);
            }
            b.with_retry(client_retry())
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }};
    }
    let built: std::result::Result<Arc<dyn ObjectStore>, object_store::Error> = match kind {
        StoreKind::S3 => build!(
            object_store::aws::AmazonS3Builder,
            object_store::aws::AmazonS3ConfigKey,
            url.as_str()
        ),
        StoreKind::Gcs => build!(
            object_store::gcp::GoogleCloudStorageBuilder,
            object_store::gcp::GoogleConfigKey,
            url.as_str()
        ),
        StoreKind::Azure => {
            // object_store names Azure URLs az://CONTAINER/…; `azure://` is accepted as well.
            let mut u = url.clone();
            let _ = u.set_scheme("az");
            build!(
                object_store::azure::MicrosoftAzureBuilder,
                object_store::azure::AzureConfigKey,
                u.as_str()
            )
        }
        StoreKind::Local => {
            return Err(Error::new(
                crate::ErrorKind::Internal,
                "a local folder reached the remote store builder",
            ));
        }
    };
    let store = built.map_err(|e| {
        Error::usage(format!(
            "cannot configure the {} store for {location}: {}",
            kind.name(),
            super::retry::root_cause(&e)
        ))
    })?;
    Ok(Opened {
        kind,
        local: None,
        store: Some(store),
        prefix,
        tuning,
    })
}

fn local(path: std::path::PathBuf, opts: &BackendOptions) -> Result<Opened> {
    let mut tuning = Tuning::defaults(StoreKind::Local);
    for (k, v) in &opts.options {
        if !OWN_KEYS.contains(&k.as_str()) || k == "storage_class" {
            return Err(Error::usage(format!(
                "option {k} does not apply to a local folder"
            )));
        }
        tuning.apply(k, v)?;
    }
    Ok(Opened {
        kind: StoreKind::Local,
        local: Some(path),
        store: None,
        prefix: Path::default(),
        tuning,
    })
}

/// A guard at the top of the stack.
#[derive(Clone, Default)]
pub(crate) enum Guard {
    /// Reads and writes pass.
    #[default]
    None,
    /// Writes and deletes are refused ([`super::readonly`]).
    ReadOnly,
    /// Writes and deletes are counted and dropped ([`super::dryrun`]).
    DryRun(Arc<super::dryrun::Dropped>),
}

/// What a backend's stack is built from; the state its layers share (statistics, whether the
/// store answered, where notices go) is shared by the clones of a backend too.
#[derive(Clone)]
pub(crate) struct Parts {
    /// The provider's store (with injected faults in tests).
    pub store: Arc<dyn ObjectStore>,
    /// The repository's folder inside it.
    pub prefix: Path,
    /// The location as given, for messages.
    pub location: String,
    pub kind: StoreKind,
    pub tuning: Arc<Tuning>,
    /// A local folder's modes; `None` for a remote store.
    pub local: Option<Arc<LocalDirs>>,
    pub up: Option<Arc<Limit>>,
    pub down: Option<Arc<Limit>>,
    pub stats: Arc<Counters>,
    /// Whether the store has answered any request (see [`super::retry`]: a store that never
    /// answered is not retried).
    pub answered: Arc<AtomicBool>,
    pub notice: Notice,
    pub guard: Guard,
}

impl Parts {
    /// A location with `-o` options and limits; a local folder is created with `create`.
    pub(crate) fn open(location: &str, opts: &BackendOptions, create: bool) -> Result<Parts> {
        let o = open(location, opts)?;
        let (store, local) = match o.local {
            Some(path) => {
                let (store, dirs) = super::local::open(path, location, create)?;
                (store, Some(dirs))
            }
            None => match o.store {
                Some(s) => (s, None),
                None => return Err(Error::new(crate::ErrorKind::Internal, "no store built")),
            },
        };
        #[cfg(feature = "test-hooks")]
        let store = super::hooks::faults_from_env(store)?;
        let mut p = Parts::remote(store, o.prefix, location.to_string());
        p.kind = o.kind;
        p.tuning = Arc::new(o.tuning);
        p.local = local;
        p.up = opts.limit_upload.map(|r| Arc::new(Limit::new(r)));
        p.down = opts.limit_download.map(|r| Arc::new(Limit::new(r)));
        Ok(p)
    }

    /// Any store, treated as a remote one, with default tuning and no limits.
    pub(crate) fn remote(store: Arc<dyn ObjectStore>, prefix: Path, location: String) -> Parts {
        Parts {
            store,
            prefix,
            location,
            kind: StoreKind::S3,
            tuning: Arc::new(Tuning::defaults(StoreKind::S3)),
            local: None,
            up: None,
            down: None,
            stats: Arc::default(),
            answered: Arc::default(),
            notice: Notice::default(),
            guard: Guard::None,
        }
    }
}

/// The stack every operation goes down, in one place. Built bottom up; top first it is:
/// guard (read-only or dry run, when asked for) → crash hook (`test-hooks` only) → local
/// folder modes → upload statistics → create-only check → limits → retries → request
/// statistics → the provider's store (under it, in tests, the fault injector).
pub(crate) fn stack(p: &Parts) -> Arc<dyn Store> {
    let mut s: Arc<dyn Store> = Arc::new(Provider {
        store: Arc::clone(&p.store),
        prefix: p.prefix.clone(),
    });
    s = Arc::new(stats::Requests {
        inner: s,
        counters: Arc::clone(&p.stats),
    });
    s = Arc::new(Retry {
        inner: s,
        retries: p.tuning.retries,
        timeout: p.tuning.timeout,
        // A local folder's calls are not timed out unless retries are asked for.
        bounded: p.local.is_none() || p.tuning.retries > 0,
        answered: Arc::clone(&p.answered),
        notice: Arc::clone(&p.notice),
        counters: Arc::clone(&p.stats),
    });
    if p.up.is_some() || p.down.is_some() {
        s = Arc::new(Limits {
            inner: s,
            up: p.up.clone(),
            down: p.down.clone(),
        });
    }
    s = Arc::new(CreateOnly { inner: s });
    s = Arc::new(stats::Uploads {
        inner: s,
        counters: Arc::clone(&p.stats),
    });
    if let Some(dirs) = &p.local {
        s = Arc::new(super::local::Modes {
            inner: s,
            dirs: Arc::clone(dirs),
            prefix: p.prefix.clone(),
        });
    }
    #[cfg(feature = "test-hooks")]
    {
        s = Arc::new(super::hooks::KillAfterWrites { inner: s });
    }
    match &p.guard {
        Guard::None => s,
        Guard::ReadOnly => Arc::new(ReadOnly { inner: s }),
        Guard::DryRun(d) => Arc::new(DryRun {
            inner: s,
            dropped: Arc::clone(d),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[(&str, &str)]) -> BackendOptions {
        BackendOptions::from_pairs(o)
    }

    #[test]
    fn locations_parse_into_kind_and_prefix() {
        let o = opts(&[
            ("endpoint", "http://127.0.0.1:1"),
            ("allow_http", "true"),
            ("region", "us-east-1"),
            ("access_key_id", "a"),
            ("secret_access_key", "b"),
        ]);
        let s3 = open("s3://bucket/some/prefix", &o).unwrap();
        assert_eq!(s3.kind, StoreKind::S3);
        assert_eq!(s3.prefix.as_ref(), "some/prefix");
        assert_eq!(s3.tuning.connections, 5);
        let root = open("s3://bucket", &o).unwrap();
        assert_eq!(root.prefix.as_ref(), "");

        // GCS is configured (and its keys checked) without contacting anything.
        let gs = open(
            "gs://bkt/p",
            &opts(&[("google_service_account_key", "{}"), ("connections", "9")]),
        );
        match gs {
            Ok(g) => {
                assert_eq!(g.kind, StoreKind::Gcs);
                assert_eq!(g.prefix.as_ref(), "p");
                assert_eq!(g.tuning.connections, 9);
            }
            // An unusable key is refused at build time, in one line naming the store.
            Err(e) => assert!(e.to_string().contains("GCS"), "{e}"),
        }
        let gs = open("gs://bkt/p/q", &opts(&[("bucket", "bkt")])).unwrap();
        assert_eq!((gs.kind, gs.prefix.as_ref()), (StoreKind::Gcs, "p/q"));

        let az = open(
            "az://container/x",
            &opts(&[
                ("account_name", "devstoreaccount1"),
                ("use_emulator", "true"),
            ]),
        )
        .unwrap();
        assert_eq!((az.kind, az.prefix.as_ref()), (StoreKind::Azure, "x"));

        let l = open("/tmp/r", &BackendOptions::default()).unwrap();
        assert_eq!(l.kind, StoreKind::Local);
        let f = open("file:///tmp/a%20b", &BackendOptions::default()).unwrap();
        assert_eq!(f.local.unwrap(), std::path::PathBuf::from("/tmp/a b"));
    }

    #[test]
    fn bad_locations_and_options_are_one_line_usage_errors() {
        let e = |loc: &str, o: &[(&str, &str)]| -> String {
            match open(loc, &opts(o)) {
                Ok(_) => panic!("{loc} {o:?} accepted"),
                Err(e) => {
                    assert_eq!(e.kind(), crate::ErrorKind::Usage, "{e}");
                    assert!(!e.to_string().contains('\n'), "{e}");
                    e.to_string()
                }
            }
        };
        assert!(e("ftp://x/y", &[]).contains("ftp://"));
        assert!(e("s3:///nobucket", &[]).contains("bucket"));
        assert!(e("s3://b/p", &[("no_such_key", "1")]).contains("no_such_key"));
        assert!(e("s3://b/p", &[("connections", "0")]).contains("connections"));
        assert!(e("s3://b/p", &[("timeout", "soon")]).contains("timeout"));
        assert!(e("/tmp/x", &[("endpoint", "http://h")]).contains("local folder"));
        // None given is "no repository" (exit 10), not a usage error.
        let none = open("", &opts(&[]))
            .err()
            .expect("an empty location is refused");
        assert_eq!(none.kind(), crate::ErrorKind::NoRepository, "{none}");
        assert!(none.to_string().contains("no repository given"), "{none}");
        assert!(BackendOptions::parse_option("novalue").is_err());
        assert_eq!(
            BackendOptions::parse_option("endpoint=http://h:1/?a=b").unwrap(),
            ("endpoint".into(), "http://h:1/?a=b".into())
        );
    }
}
