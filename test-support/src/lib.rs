//! Test helpers shared by the workspace's integration tests (a dev-dependency only).
//!
//! * [`MotoServer`]: starts the moto server installed by `scripts/setup` in `.venv` on
//!   `127.0.0.1` with a free port and `MOTO_EC2_LOAD_DEFAULT_AMIS=false`, waits until it
//!   answers, and stops it when dropped. [`MotoServer::shared`] gives one server per test
//!   binary; tests isolate themselves with a unique account ([`unique_account_id`]) sent in
//!   the `x-moto-account-id` header.
//! * [`proxy::Proxy`]: a loopback proxy in front of moto that adds headers (the account),
//!   records every request (service, operation, body) so tests can assert on what was
//!   *sent* where moto only echoes, and injects faults (throttling, 5xx, delays, resets).
//! * [`tls`]: a test CA ([`tls::TestCa`]), an HTTPS static server ([`tls::HttpsServer`]) and
//!   tinyproxy as a real forward proxy ([`tls::ForwardProxy`]) for HTTPS and `HTTPS_PROXY`
//!   tests.
//! * `tuf_repo` (feature `tuf-repo`): signed TUF repositories made with the tuftool library
//!   and local keys, for tests that must not link the AWS SDK.
//! * [`aws_env`]: the environment a CLI under test needs to reach a loopback endpoint with
//!   static test credentials and no developer profile.
#![deny(missing_docs)]
#![allow(clippy::print_stderr)]
// A test harness: when the loopback set-up itself fails (no port, no runtime), panicking is the
// test failure the caller wants.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod proxy;
pub mod tls;
#[cfg(feature = "tuf-repo")]
pub mod tuf_repo;

/// Run `future` to completion on a new current-thread runtime (for synchronous tests and
/// fixtures that call async library code).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The workspace root (the folder holding `.venv` and `scripts/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Path of the `moto_server` executable that `scripts/setup` installs.
pub fn moto_server_path() -> PathBuf {
    workspace_root().join(".venv/bin/moto_server")
}

/// A running moto server on `127.0.0.1`; stopped on drop.
#[derive(Debug)]
pub struct MotoServer {
    addr: SocketAddr,
    child: Child,
}

impl MotoServer {
    /// Start a new server. Panics (failing the test) with instructions when moto is not
    /// installed: tests never skip silently.
    pub fn start() -> MotoServer {
        let path = moto_server_path();
        assert!(
            path.exists(),
            "{} is missing: run scripts/setup to install the test tools (moto server)",
            path.display()
        );
        let port = free_port();
        // A small shell wrapper stops moto when the test process goes away, even when the
        // server is a process-wide static whose destructor never runs.
        let script = r#"
            "$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 &
            child=$!
            trap 'kill $child 2>/dev/null; exit 0' TERM INT
            while kill -0 "$2" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done
            kill $child 2>/dev/null
        "#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .arg(port.to_string())
            .arg(std::process::id().to_string())
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", path.display()));
        let server = MotoServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        };
        server.wait_ready();
        server
    }

    /// One server for the whole test binary, started on first use.
    pub fn shared() -> &'static MotoServer {
        static SERVER: OnceLock<MotoServer> = OnceLock::new();
        SERVER.get_or_init(MotoServer::start)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if http_get(self.addr, "/moto-api/data.json").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto server on {} did not become ready in 60 s", self.addr);
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // SIGTERM to the wrapper, whose trap stops moto; then reap it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP GET on loopback; the body when the status is 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..head_end]);
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    Some(response[head_end + 4..].to_vec())
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A 12-digit account ID no other test in any concurrently running test binary uses.
pub fn unique_account_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed) % 1000;
    let pid = u64::from(std::process::id()) % 100_000;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0)
        % 1000;
    format!("9{pid:05}{nanos:03}{count:03}")
}

/// Environment for a CLI under test: endpoint, static credentials, and empty config files so
/// no developer profile leaks in.
pub fn aws_env(endpoint: &str, region: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", region),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The workspace's virtualenv Python (`.venv`, made by `scripts/setup` with python-tuf, moto
/// and boto3). Panics with instructions when it is missing: tests never skip silently.
pub fn venv_python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup (it installs python-tuf, moto and boto3 from \
         scripts/python-requirements.txt)",
        python.display()
    );
    python
}

/// Create an RSA-3072 signing key in the KMS of `moto`, in `region`, under `alias` (with
/// boto3, as an operator would with the AWS CLI).
pub fn moto_kms_signing_key(moto: &MotoServer, region: &str, alias: &str) {
    let script = r#"
import boto3, sys
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name=sys.argv[2])
key = kms.create_key(KeySpec="RSA_3072", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName=sys.argv[3], TargetKeyId=key)
"#;
    let output = Command::new(venv_python())
        .args(["-c", script, &moto.url(), region, alias])
        .envs(aws_env(&moto.url(), region))
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "creating the KMS key failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// python-tuf's ngclient refreshes the repository in `repo` (holding `metadata/` and
/// `targets/`) from `root`, keeping its state in `client`, and downloads each of `names`,
/// which must equal the file of that name in `expected` (`tuftool/tests/python/
/// ngclient_check.py`). Panics with python-tuf's error otherwise.
pub fn python_tuf_accepts(
    repo: &std::path::Path,
    client: &std::path::Path,
    root: &std::path::Path,
    expected: &std::path::Path,
    names: &[&str],
) {
    let output = Command::new(venv_python())
        .arg(workspace_root().join("tuftool/tests/python/ngclient_check.py"))
        .args([repo, client, root, expected])
        .args(names)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "python-tuf refused the repository:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
