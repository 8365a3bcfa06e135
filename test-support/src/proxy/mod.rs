//! A loopback HTTP proxy in front of moto: adds headers, records requests, injects faults.
//!
//! Each request is classified by **service** (from the SigV4 credential scope in
//! `Authorization`, e.g. `…/us-west-2/ssm/aws4_request`) and **operation** (from
//! `X-Amz-Target` for JSON protocols, `Action=` in the form body for query protocols, or a
//! name derived from method and path for the EBS REST API). Fault rules match on those and
//! answer with an error body in the service's own protocol, so the SDK sees the same thing
//! it would see from AWS. With no rules the proxy is transparent (binary bodies included).
//!
//! The proxy runs on its own thread and tokio runtime, so it serves both `#[tokio::test]`
//! tests and synchronous tests that run the CLI as a child process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

mod http;

pub use http::form_params;
use http::{Request, header, read_body, read_head, reason};

/// Bodies above this size are recorded truncated (snapshot blocks).
const RECORD_LIMIT: usize = 64 * 1024;

/// What a fault rule does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer with the service's throttling error (not forwarded).
    Throttle,
    /// Answer with a 5xx "service unavailable" (not forwarded).
    ServerError,
    /// Forward after a delay.
    Delay(Duration),
    /// Close the connection without an answer (not forwarded).
    Reset,
    /// Forward, then close the connection without passing the answer on: the server acted
    /// but the client never learns it (a lost response; the SDK retries).
    DropResponse,
    /// Answer with this status and XML body instead of forwarding: stands in for an API the
    /// server does not implement, so a test can still check what the client sent.
    Answer(u16, &'static str),
    /// Record the request at once, then neither forward nor answer it: the client waits until
    /// it gives up or is killed (a process stopped just before a call took effect). The
    /// connection is dropped when the client closes it.
    Hang,
}

/// A fault rule. Every criterion left `None` matches everything.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Service signing name (`ec2`, `ebs`, `ssm`, `sts`, `s3`).
    pub service: Option<String>,
    /// Operation name (`RegisterImage`, `PutParameter`, `PutSnapshotBlock`, ...).
    pub operation: Option<String>,
    /// Signing region.
    pub region: Option<String>,
    /// Share of matching requests hit, 0.0–1.0 (deterministic pseudo-random sequence).
    pub probability: f64,
    /// At most this many faults from this rule (`None`: unbounded).
    pub limit: Option<u64>,
    /// Let this many matching requests through before the rule starts.
    pub after: u64,
    /// What to do.
    pub action: Action,
}

impl Rule {
    /// A rule hitting every request with `action`.
    pub fn always(action: Action) -> Rule {
        Rule {
            service: None,
            operation: None,
            region: None,
            probability: 1.0,
            limit: None,
            after: 0,
            action,
        }
    }

    /// A rule hitting a `probability` share of every request with `action`.
    pub fn sometimes(probability: f64, action: Action) -> Rule {
        Rule {
            probability,
            ..Rule::always(action)
        }
    }

    /// Restrict to one service.
    pub fn service(mut self, service: &str) -> Rule {
        self.service = Some(service.to_owned());
        self
    }

    /// Restrict to one operation.
    pub fn operation(mut self, operation: &str) -> Rule {
        self.operation = Some(operation.to_owned());
        self
    }

    /// Restrict to requests signed for one region.
    pub fn region(mut self, region: &str) -> Rule {
        self.region = Some(region.to_owned());
        self
    }

    /// At most `limit` faults.
    pub fn limit(mut self, limit: u64) -> Rule {
        self.limit = Some(limit);
        self
    }

    /// Start after `count` matching requests went through.
    pub fn after(mut self, count: u64) -> Rule {
        self.after = count;
        self
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Signing service name.
    pub service: String,
    /// Signing region.
    pub region: String,
    /// Operation name.
    pub operation: String,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Request body (truncated to 64 KiB).
    pub body: Vec<u8>,
    /// The fault injected, if any.
    pub fault: Option<Action>,
    /// Status returned to the client (0 for a reset).
    pub status: u16,
}

impl Recorded {
    /// Form parameters of a query-protocol body (EC2, STS), URL-decoded, in order.
    pub fn form_params(&self) -> Vec<(String, String)> {
        form_params(&self.body)
    }

    /// The first form parameter called `name`.
    pub fn param(&self, name: &str) -> Option<String> {
        self.form_params()
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// A request header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as text (JSON protocols).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug)]
struct RuleState {
    rule: Rule,
    hits: u64,
    seen: u64,
}

#[derive(Debug)]
struct State {
    upstream: SocketAddr,
    headers: Vec<(String, String)>,
    rules: Mutex<Vec<RuleState>>,
    rng: Mutex<u64>,
    log: Mutex<Vec<Recorded>>,
}

/// A running proxy; stopped on drop.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Builder for [`Proxy`].
#[derive(Debug)]
pub struct ProxyBuilder {
    upstream: SocketAddr,
    headers: Vec<(String, String)>,
    rules: Vec<Rule>,
    seed: u64,
}

impl ProxyBuilder {
    /// Add a header to every forwarded request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Add `x-moto-account-id: <account>` to every forwarded request.
    pub fn account(self, account: &str) -> Self {
        self.header("x-moto-account-id", account)
    }

    /// Add a fault rule (first matching rule wins).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Seed of the pseudo-random fault sequence.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed.max(1);
        self
    }

    /// Bind `127.0.0.1:0` and serve on a background thread.
    pub fn start(self) -> Proxy {
        let state = Arc::new(State {
            upstream: self.upstream,
            headers: self.headers,
            rules: Mutex::new(
                self.rules
                    .into_iter()
                    .map(|rule| RuleState {
                        rule,
                        hits: 0,
                        seen: 0,
                    })
                    .collect(),
            ),
            rng: Mutex::new(self.seed),
            log: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy address");
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("proxy listener");
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let state = Arc::clone(&served);
                        tokio::spawn(async move {
                            let _ = serve_connection(stream, state).await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop => {}
                }
            });
            runtime.shutdown_background();
        });
        Proxy {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl Proxy {
    /// A proxy forwarding to `upstream`.
    pub fn builder(upstream: SocketAddr) -> ProxyBuilder {
        ProxyBuilder {
            upstream,
            headers: Vec::new(),
            rules: Vec::new(),
            seed: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL to give the SDK (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replace the fault rules (an empty list makes the proxy transparent).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        let mut current = self.state.rules.lock().unwrap_or_else(|e| e.into_inner());
        *current = rules
            .into_iter()
            .map(|rule| RuleState {
                rule,
                hits: 0,
                seen: 0,
            })
            .collect();
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Requests for `operation` that reached the server (not faulted).
    pub fn forwarded(&self, operation: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.operation == operation && r.fault.is_none())
            .collect()
    }

    /// How many faults were injected.
    pub fn faults(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| matches!(r.fault, Some(a) if !matches!(a, Action::Delay(_) | Action::Answer(..))))
            .count()
    }

    /// Forget the recorded requests.
    pub fn clear_log(&self) {
        self.state
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let Some((first, headers)) = read_head(&mut reader).await? else {
            return Ok(());
        };
        let mut parts = first.split_whitespace();
        let method = parts.next().unwrap_or("GET").to_owned();
        let target = parts.next().unwrap_or("/").to_owned();
        if header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = read_body(&mut reader, &headers, false).await?;
        let close = header(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let request = Request {
            method,
            target,
            headers,
            body,
            close,
        };
        let (service, region) = scope(&request);
        let operation = operation(&request, &service);
        let fault = decide(&state, &service, &operation, &region);
        let mut record = Recorded {
            service: service.clone(),
            region,
            operation,
            method: request.method.clone(),
            path: request.target.clone(),
            headers: request.headers.clone(),
            body: request.body[..request.body.len().min(RECORD_LIMIT)].to_vec(),
            fault,
            status: 0,
        };
        let response = match fault {
            Some(Action::Reset) => {
                push(&state, record);
                return Ok(());
            }
            Some(Action::Throttle) => Some(error_response(&service, true)),
            Some(Action::ServerError) => Some(error_response(&service, false)),
            Some(Action::Answer(status, body)) => Some((
                status,
                vec![("content-type".to_owned(), "text/xml".to_owned())],
                body.as_bytes().to_vec(),
            )),
            Some(Action::Hang) => {
                push(&state, record);
                let mut rest = [0u8; 1024];
                while matches!(reader.read(&mut rest).await, Ok(n) if n > 0) {}
                return Ok(());
            }
            Some(Action::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                None
            }
            Some(Action::DropResponse) => {
                let _ = forward(&state, &request).await;
                push(&state, record);
                return Ok(());
            }
            None => None,
        };
        let (status, response_headers, response_body) = match response {
            Some(response) => response,
            None => match forward(&state, &request).await {
                Ok(response) => response,
                Err(_) => {
                    push(&state, record);
                    return Ok(());
                }
            },
        };
        record.status = status;
        push(&state, record);
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        // A HEAD answer has no body but announces the object's length: pass that on.
        let head_length = (request.method == "HEAD")
            .then(|| header(&response_headers, "content-length"))
            .flatten()
            .map(str::to_owned);
        for (name, value) in &response_headers {
            let lower = name.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "connection" | "transfer-encoding" | "content-length" | "keep-alive"
            ) {
                continue;
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let length = head_length.unwrap_or_else(|| response_body.len().to_string());
        head.push_str(&format!("content-length: {length}\r\n"));
        if request.close {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        write.write_all(head.as_bytes()).await?;
        if request.method != "HEAD" {
            write.write_all(&response_body).await?;
        }
        write.flush().await?;
        if request.close {
            return Ok(());
        }
    }
}

fn push(state: &State, record: Recorded) {
    state
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(record);
}

type Response = (u16, Vec<(String, String)>, Vec<u8>);

async fn forward(state: &State, request: &Request) -> std::io::Result<Response> {
    let upstream = TcpStream::connect(state.upstream).await?;
    let (read, mut write) = upstream.into_split();
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for (name, value) in &request.headers {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "connection" | "transfer-encoding" | "content-length" | "expect" | "keep-alive"
        ) {
            continue;
        }
        if state
            .headers
            .iter()
            .any(|(added, _)| added.eq_ignore_ascii_case(name))
        {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    for (name, value) in &state.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n", request.body.len()));
    head.push_str("connection: close\r\n\r\n");
    write.write_all(head.as_bytes()).await?;
    write.write_all(&request.body).await?;
    write.flush().await?;
    let mut reader = BufReader::new(read);
    let (status_line, headers) = read_head(&mut reader)
        .await?
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(502);
    let body = if request.method == "HEAD" || status == 204 || status == 304 {
        Vec::new()
    } else {
        read_body(&mut reader, &headers, true).await?
    };
    Ok((status, headers, body))
}

/// Service and region from the SigV4 credential scope.
fn scope(request: &Request) -> (String, String) {
    let Some(auth) = request.header("authorization") else {
        return (String::new(), String::new());
    };
    let Some(credential) = auth
        .split([',', ' '])
        .find_map(|part| part.trim().strip_prefix("Credential="))
    else {
        return (String::new(), String::new());
    };
    // <key>/<date>/<region>/<service>/aws4_request
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() >= 5 {
        (parts[3].to_owned(), parts[2].to_owned())
    } else {
        (String::new(), String::new())
    }
}

fn operation(request: &Request, service: &str) -> String {
    if let Some(target) = request.header("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    if let Some((_, action)) = form_params(&request.body)
        .into_iter()
        .find(|(key, _)| key == "Action")
    {
        return action;
    }
    let path = request.target.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if service == "ebs" {
        return match (request.method.as_str(), segments.as_slice()) {
            ("POST", ["snapshots"]) => "StartSnapshot",
            ("PUT", ["snapshots", _, "blocks", _]) => "PutSnapshotBlock",
            ("GET", ["snapshots", _, "blocks", _]) => "GetSnapshotBlock",
            ("GET", ["snapshots", _, "blocks"]) => "ListSnapshotBlocks",
            ("GET", ["snapshots", _, "changedblocks"]) => "ListChangedBlocks",
            ("POST", ["snapshots", "completion", _]) => "CompleteSnapshot",
            _ => "Unknown",
        }
        .to_owned();
    }
    format!("{} {}", request.method, path)
}

fn decide(state: &State, service: &str, operation: &str, region: &str) -> Option<Action> {
    let mut rules = state.rules.lock().unwrap_or_else(|e| e.into_inner());
    for rule in rules.iter_mut() {
        if rule.rule.service.as_deref().is_some_and(|s| s != service)
            || rule.rule.region.as_deref().is_some_and(|r| r != region)
            || rule
                .rule
                .operation
                .as_deref()
                .is_some_and(|o| o != operation)
            || rule.rule.limit.is_some_and(|limit| rule.hits >= limit)
        {
            continue;
        }
        rule.seen += 1;
        if rule.seen <= rule.rule.after {
            return None;
        }
        let draw = {
            let mut rng = state.rng.lock().unwrap_or_else(|e| e.into_inner());
            // xorshift64*
            *rng ^= *rng >> 12;
            *rng ^= *rng << 25;
            *rng ^= *rng >> 27;
            (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        };
        if draw < rule.rule.probability {
            rule.hits += 1;
            return Some(rule.rule.action);
        }
        return None;
    }
    None
}

fn error_response(service: &str, throttle: bool) -> Response {
    let xml = |code: &str, message: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
        )
    };
    let json = |status: u16, kind: &str| -> Response {
        (
            status,
            vec![
                (
                    "content-type".to_owned(),
                    "application/x-amz-json-1.1".to_owned(),
                ),
                ("x-amzn-ErrorType".to_owned(), kind.to_owned()),
                ("x-amzn-RequestId".to_owned(), "fault-proxy".to_owned()),
            ],
            format!("{{\"__type\":\"{kind}\",\"message\":\"injected by the fault proxy\"}}")
                .into_bytes(),
        )
    };
    match (service, throttle) {
        ("ec2", true) => (
            503,
            vec![("content-type".to_owned(), "text/xml".to_owned())],
            xml("RequestLimitExceeded", "Request limit exceeded.").into_bytes(),
        ),
        ("ec2", false) => (
            503,
            vec![("content-type".to_owned(), "text/xml".to_owned())],
            xml("Unavailable", "The server is overloaded.").into_bytes(),
        ),
        ("sts", _) => {
            let (status, code) = if throttle {
                (400, "Throttling")
            } else {
                (503, "ServiceUnavailable")
            };
            (
                status,
                vec![("content-type".to_owned(), "text/xml".to_owned())],
                format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>").into_bytes(),
            )
        }
        ("s3", _) => (
            503,
            vec![("content-type".to_owned(), "application/xml".to_owned())],
            b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                .to_vec(),
        ),
        ("ebs", true) => json(429, "ThrottlingException"),
        (_, true) => json(400, "ThrottlingException"),
        (_, false) => json(503, "ServiceUnavailable"),
    }
}

/// Counts of recorded operations, for assertions and debugging.
pub fn operation_counts(requests: &[Recorded]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in requests {
        *counts.entry(request.operation.clone()).or_insert(0) += 1;
    }
    counts
}
