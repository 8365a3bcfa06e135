//! HTTPS on loopback with a test certificate authority, and a real forward proxy.
//!
//! * [`TestCa`]: a CA and a server certificate for `localhost` and `127.0.0.1`, made with the
//!   `openssl` command (P-256 keys, valid for two days). Clients are told to trust the CA the
//!   way a user would: `SSL_CERT_FILE=<ca.pem>` (read by rustls-native-certs, which reqwest's
//!   platform verifier uses on Linux), see [`TestCa::trust_env`].
//! * [`HttpsServer`]: Python's `http.server` behind TLS (the `ssl` module), serving a folder
//!   (404 for missing files); every request path is appended to a log file.
//! * [`ForwardProxy`]: tinyproxy (Debian's package, installed by `scripts/setup`) on a free
//!   loopback port, logging each `CONNECT`, for `HTTPS_PROXY`/`NO_PROXY` tests.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A certificate authority and one server certificate it signed.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate (PEM): what clients trust.
    pub ca_cert: PathBuf,
    /// The server certificate (PEM), for `localhost` and `127.0.0.1`.
    pub server_cert: PathBuf,
    /// The server's private key (PEM).
    pub server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl is not installed (run scripts/setup): {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TestCa {
    /// Make a CA and a server certificate in `dir` (created).
    pub fn new(dir: &Path) -> TestCa {
        std::fs::create_dir_all(dir).expect("create the CA folder");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=Test CA"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &ca);
        let mut csr = vec!["req", "-subj", "/CN=localhost"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
        openssl(dir, &csr);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        TestCa {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }

    /// The environment that makes our tools trust this CA, as a user would set it.
    pub fn trust_env(&self) -> [(&'static str, PathBuf); 1] {
        [("SSL_CERT_FILE", self.ca_cert.clone())]
    }
}

/// Python's static file server over TLS; stopped on drop.
#[derive(Debug)]
pub struct HttpsServer {
    /// The port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
    child: Child,
}

const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys, functools
root, cert, key, log = sys.argv[1:5]
class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def send_head(self):
        with open(log, "a") as f:
            f.write(self.path + "\n")
        return super().send_head()
class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that hang up early (a reader that only wanted a header) are normal
server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=root))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

impl HttpsServer {
    /// Serve `root` over HTTPS with `ca`'s server certificate.
    pub fn start(root: &Path, ca: &TestCa) -> HttpsServer {
        let log = ca
            .server_cert
            .with_file_name(format!("https-{}.log", crate::unique_account_id()));
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(HTTPS_SERVER)
            .arg(root)
            .arg(&ca.server_cert)
            .arg(&ca.server_key)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is not installed: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read the server's port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the HTTPS server did not start: {line:?}"));
        HttpsServer { port, log, child }
    }

    /// `https://127.0.0.1:<port>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/{path}", self.port)
    }

    /// The request paths served so far.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tinyproxy on a free loopback port; stopped on drop.
#[derive(Debug)]
pub struct ForwardProxy {
    /// The port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
    child: Child,
}

impl ForwardProxy {
    /// Start tinyproxy with its configuration and log in `dir` (created).
    pub fn start(dir: &Path) -> ForwardProxy {
        std::fs::create_dir_all(dir).expect("create the proxy folder");
        let port = crate::free_port();
        let log = dir.join("tinyproxy.log");
        let config = dir.join("tinyproxy.conf");
        // No ConnectPort line: CONNECT is allowed to every port.
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nMaxClients 50\n\
                 LogLevel Connect\nLogFile \"{}\"\n",
                log.display()
            ),
        )
        .expect("write tinyproxy.conf");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("tinyproxy is not installed (run scripts/setup): {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ForwardProxy { port, log, child }
    }

    /// `http://127.0.0.1:<port>`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `CONNECT host:port` requests tinyproxy logged so far.
    pub fn connects(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split("Request (file descriptor").nth(1))
            .filter_map(|rest| rest.split("): ").nth(1))
            .filter(|request| request.starts_with("CONNECT "))
            .map(|request| request.trim().to_owned())
            .collect()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
