//! Real object-store servers on 127.0.0.1 for the store tests: moto's S3 server and Azurite's
//! blob service, each started once per test process and killed with it.
//!
//! The binaries: `$CAIRN_TEST_MOTO` (default `moto_server`) and `$CAIRN_TEST_AZURITE` (default
//! `azurite-blob`); `.ci/run` installs both. A missing server fails the tests that need it,
//! with a message saying how to install it: a store test never passes without its store.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running server: its base URL.
pub struct Server {
    pub endpoint: String,
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Start `cmd` from a thread that lives as long as the process, with PR_SET_PDEATHSIG, so the
/// server dies with the test binary (the signal follows the thread that forked it), then wait
/// until its port accepts connections.
fn start(mut cmd: Command, port: u16, what: &str, install: &str) -> Server {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = format!("{cmd:?}");
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and only sets the parent-death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let r = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let ok = r.is_ok();
        let _ = tx.send(r.map(|_| ()).map_err(|e| e.to_string()));
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    if let Err(e) = rx.recv().expect("server thread") {
        panic!("cannot start {what} ({name}): {e}; install it: {install}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        port,
    }
}

/// moto's S3 server (accepts any credentials).
pub fn s3() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let port = free_port();
        let bin = std::env::var("CAIRN_TEST_MOTO").unwrap_or_else(|_| "moto_server".into());
        let mut c = Command::new(bin);
        c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        start(
            c,
            port,
            "moto_server",
            "python3 -m venv V && V/bin/pip install 'moto[server]', then CAIRN_TEST_MOTO=V/bin/moto_server",
        )
    })
}

/// Azurite's blob service (checks SharedKey signatures: wrong keys are refused).
pub fn azurite() -> &'static Server {
    static S: OnceLock<(Server, tempfile::TempDir)> = OnceLock::new();
    &S.get_or_init(|| {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = std::env::var("CAIRN_TEST_AZURITE").unwrap_or_else(|_| "azurite-blob".into());
        let mut c = Command::new(bin);
        c.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path())
            .args(["--skipApiVersionCheck", "--disableTelemetry", "--silent"]);
        let s = start(c, port, "azurite-blob", "npm install -g azurite");
        (s, dir)
    })
    .0
}

/// A name no other test uses (buckets and containers: lower case, digits, dashes).
pub fn unique(kind: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A new, empty S3 bucket on moto.
pub fn new_bucket() -> String {
    let s = s3();
    let name = unique("bkt");
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).expect("connect to moto");
    write!(
        c,
        "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        s.port
    )
    .expect("send");
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "cannot create bucket {name}: {answer}"
    );
    name
}

/// The environment that points cairn (object_store's `from_env`) at moto.
pub fn s3_vars() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", s3().endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The well-known key of Azurite's `devstoreaccount1`.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A new, empty container on Azurite (a SharedKey-signed `PUT ?restype=container`, signed
/// by python3's hmac: the tests have no HMAC of their own).
pub fn new_container() -> String {
    let s = azurite();
    let name = unique("ctr");
    let script = r#"
import base64, hmac, hashlib, sys, urllib.request, email.utils
port, name, key = sys.argv[1], sys.argv[2], sys.argv[3]
date = email.utils.formatdate(usegmt=True)
version = "2021-08-06"
sts = "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:%s\nx-ms-version:%s\n/devstoreaccount1/devstoreaccount1/%s\nrestype:container" % (date, version, name)
sig = base64.b64encode(hmac.new(base64.b64decode(key), sts.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request("http://127.0.0.1:%s/devstoreaccount1/%s?restype=container" % (port, name), method="PUT")
req.add_header("x-ms-date", date)
req.add_header("x-ms-version", version)
req.add_header("Authorization", "SharedKey devstoreaccount1:" + sig)
print(urllib.request.urlopen(req).status)
"#;
    let out = Command::new("python3")
        .args(["-c", script, &s.port.to_string(), &name, AZURITE_KEY])
        .output()
        .expect("python3 for the container");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "201",
        "cannot create container {name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    name
}

/// The environment that points cairn at Azurite.
pub fn azure_vars() -> Vec<(String, String)> {
    [
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ("AZURITE_BLOB_STORAGE_URL", azurite().endpoint.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
