//! The transport tuf-client fetches through (metadata and targets): `file://` from disk, `http(s)://` with reqwest,
//! resuming and retrying as long as bytes keep arriving.
//!
//! * **Idle timeout, not a whole-request timeout.** A request that receives no byte (headers or
//!   body) for [`NetworkSettings::idle_timeout`] is abandoned and retried. A slow but steady
//!   transfer of any size completes.
//! * **Retries while progressing.** A failed attempt (connection error, reset mid-body, idle
//!   timeout, 5xx, 408, 429, a body shorter than announced) is retried with a `Range:
//!   bytes=N-` request from the first missing byte. The failure counter is reset by every
//!   received byte, so the limit ([`NetworkSettings::max_retries`]) is on consecutive attempts
//!   without progress. A server that ignores `Range` (answers 200) is read again from the start
//!   and the bytes already delivered are skipped.
//! * **Minimum throughput** ([`Throughput`], TUF's slow-retrieval protection). The idle
//!   timeout alone lets a mirror that sends one byte every few seconds hold updog (and its run
//!   lock) for ever. So a transfer that has received N bytes may have spent at most
//!   `grace + N / min_bytes_per_sec` waiting for the server (retries and back-off included;
//!   time spent by the reader, e.g. writing to disk, does not count); past that it fails at
//!   once, without retrying.
//! * 403, 404 and 410 mean "not found" ([`TransportError::NotFound`], which ends the
//!   root-chain walk); other 4xx fail at once ([`TransportError::Status`]); every other failure
//!   is [`TransportError::Request`] with its message.
//! * **Query parameters** (`migrations`, `seed`, `target`, `version`, sorted by key, as the
//!   reference) are appended to every HTTP request so the operator can count versions.
//! * **Proxy:** `https_proxy` from the configuration is used for every request, except hosts
//!   in `no_proxy`; without it reqwest honours `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` from the
//!   environment.
use crate::config::{NetworkSettings, Throughput};
use crate::error::{self, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use snafu::ResultExt;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tuf_client::{ByteStream, DefaultTransport, Transport, TransportError};
use url::Url;

/// Chunks buffered between the network task and the reader: bounds memory.
const CHANNEL_CHUNKS: usize = 32;
/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// updog's transport (see the module documentation).
#[derive(Debug, Clone)]
pub struct UpdogTransport {
    client: reqwest::Client,
    settings: NetworkSettings,
    params: Arc<Mutex<BTreeMap<String, String>>>,
}

impl UpdogTransport {
    /// A transport with `settings`.
    pub fn new(settings: &NetworkSettings) -> Result<UpdogTransport> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.idle_timeout)
            .user_agent(concat!("updog/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = &settings.https_proxy {
            let no_proxy = reqwest::NoProxy::from_string(&settings.no_proxy.join(","));
            let proxy = reqwest::Proxy::all(proxy.as_str())
                .context(error::ProxySnafu { proxy })?
                .no_proxy(no_proxy);
            builder = builder.proxy(proxy);
        }
        let client = builder.build().context(error::HttpClientSnafu)?;
        Ok(UpdogTransport {
            client,
            settings: settings.clone(),
            params: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    /// Add (or replace) a query parameter sent with every HTTP request from now on.
    pub fn set_param(&self, key: &str, value: &str) {
        // A poisoned lock only means another thread panicked while inserting; the map is
        // still usable.
        let mut params = self
            .params
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        params.insert(key.to_owned(), value.to_owned());
    }

    fn with_params(&self, url: &Url) -> Url {
        let params = self
            .params
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if params.is_empty() {
            return url.clone();
        }
        let mut url = url.clone();
        {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in params.iter() {
                pairs.append_pair(key, value);
            }
        }
        url
    }
}

impl UpdogTransport {
    fn download(&self, url: &Url, offset: u64, end: Option<u64>) -> Download {
        Download {
            client: self.client.clone(),
            url: self.with_params(url),
            idle: self.settings.idle_timeout,
            max_retries: self.settings.max_retries,
            throughput: self.settings.throughput,
            waited: Duration::ZERO,
            offset,
            start: offset,
            end,
            discard: 0,
            total: None,
            response: None,
            failures: 0,
        }
    }

    /// Bytes `offset..offset + len` of `url`, with one `Range` request (retried and resumed
    /// like every transfer; the minimum throughput counts this range's bytes), delivered as
    /// they arrive by [`RangeBody::next`]. A server that ignores `Range` (answers 200) is an
    /// error unless the range starts at 0: reading a file piecewise from it would fetch it
    /// again and again. The caller verifies the bytes.
    pub fn fetch_range(&self, url: &Url, offset: u64, len: u64) -> RangeBody {
        if url.scheme() == "file" {
            return RangeBody(Body::File {
                url: url.clone(),
                offset,
                len,
                done: false,
            });
        }
        RangeBody(Body::Http(Box::new(self.download(
            url,
            offset,
            Some(offset + len),
        ))))
    }
}

/// The body of a [`UpdogTransport::fetch_range`] request.
#[derive(Debug)]
pub struct RangeBody(Body);

#[derive(Debug)]
enum Body {
    /// From a `file://` URL: read at once.
    File {
        url: Url,
        offset: u64,
        len: u64,
        done: bool,
    },
    /// Over HTTP(S), as the chunks arrive.
    Http(Box<Download>),
}

impl RangeBody {
    /// The next bytes of the range, `None` at its end.
    pub async fn next(&mut self) -> std::result::Result<Option<Bytes>, TransportError> {
        match &mut self.0 {
            Body::Http(download) => download.next_chunk().await,
            Body::File { done: true, .. } => Ok(None),
            Body::File {
                url,
                offset,
                len,
                done,
            } => {
                *done = true;
                let path = url
                    .to_file_path()
                    .map_err(|()| TransportError::BadFileUrl {
                        url: url.to_string(),
                    })?;
                let (offset, len) = (*offset, *len);
                let read = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let file = std::fs::File::open(&path)?;
                    let mut buf = vec![0_u8; usize::try_from(len).unwrap_or(usize::MAX)];
                    file.read_exact_at(&mut buf, offset)?;
                    Ok::<_, std::io::Error>(buf)
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|read| read);
                read.map(|bytes| Some(Bytes::from(bytes)))
                    .map_err(|e| TransportError::Request {
                        url: url.to_string(),
                        source: Box::new(e),
                    })
            }
        }
    }
}

#[async_trait]
impl Transport for UpdogTransport {
    async fn fetch(&self, url: &Url) -> std::result::Result<ByteStream, TransportError> {
        match url.scheme() {
            // tuf-client's own file reader: a missing file is "not found".
            "file" => {
                DefaultTransport::from_client(self.client.clone())
                    .fetch(url)
                    .await
            }
            "http" | "https" => {
                let mut download = self.download(url, 0, None);
                // Open eagerly so that "not found" is reported by fetch itself.
                download.open().await?;
                let (sender, receiver) = tokio::sync::mpsc::channel(CHANNEL_CHUNKS);
                tokio::spawn(download.pump(sender));
                Ok(Box::pin(ChannelStream { receiver }))
            }
            _ => Err(TransportError::UnsupportedScheme {
                url: url.to_string(),
            }),
        }
    }
}

/// The receiving end, as tuf-client wants it.
struct ChannelStream {
    receiver: tokio::sync::mpsc::Receiver<std::result::Result<Bytes, TransportError>>,
}

impl Stream for ChannelStream {
    type Item = std::result::Result<Bytes, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

/// One resumable transfer.
#[derive(Debug)]
struct Download {
    client: reqwest::Client,
    url: Url,
    idle: Duration,
    max_retries: u32,
    throughput: Throughput,
    /// Time spent waiting for the server (requests, body chunks, back-off) so far.
    waited: Duration,
    /// Bytes delivered so far.
    offset: u64,
    /// Where this transfer started (a byte range's first byte; 0 for a whole file).
    start: u64,
    /// Where to stop (exclusive), for a range request.
    end: Option<u64>,
    /// Bytes of the current response to skip (a server that ignored `Range`).
    discard: u64,
    /// Full length, when the server said.
    total: Option<u64>,
    response: Option<reqwest::Response>,
    /// Consecutive failed attempts without progress.
    failures: u32,
}

fn backoff(failures: u32) -> Duration {
    let factor = 1_u32 << failures.saturating_sub(1).min(6);
    (FIRST_BACKOFF * factor).min(MAX_BACKOFF)
}

impl Download {
    /// A failure other than "not found" or a refusing status, with its message.
    fn error(&self, message: String) -> TransportError {
        TransportError::Request {
            url: self.url.to_string(),
            source: message.into(),
        }
    }

    /// How long the next wait for the server may last, and whether that limit is the
    /// throughput budget (rather than the idle timeout).
    fn next_wait(&self) -> (Duration, bool) {
        match self.throughput.budget(self.offset - self.start) {
            Some(budget) => {
                let left = budget.saturating_sub(self.waited);
                if left < self.idle {
                    (left, true)
                } else {
                    (self.idle, false)
                }
            }
            None => (self.idle, false),
        }
    }

    /// The error for a transfer slower than the minimum throughput.
    fn too_slow(&self) -> TransportError {
        self.error(format!(
            "too slow: {} bytes in {:.1} s of waiting for the server, below the minimum \
                 throughput of {} bytes/s after a {} s grace period \
                 (min_throughput_bytes_per_sec, throughput_grace_secs)",
            self.offset - self.start,
            self.waited.as_secs_f64(),
            self.throughput.min_bytes_per_sec,
            self.throughput.grace.as_secs_f64()
        ))
    }

    /// Count a failed attempt; give up once too many failed in a row.
    async fn failed(&mut self, why: String) -> std::result::Result<(), TransportError> {
        self.response = None;
        self.failures += 1;
        if self.failures > self.max_retries {
            return Err(self.error(format!(
                "giving up after {} attempts without progress at byte {}: {why}",
                self.failures, self.offset
            )));
        }
        let delay = backoff(self.failures);
        tracing::warn!(
            url = %self.url,
            offset = self.offset,
            attempt = self.failures,
            retry_in_ms = delay.as_millis() as u64,
            "transfer failed, retrying: {why}"
        );
        tokio::time::sleep(delay).await;
        self.waited += delay;
        Ok(())
    }

    /// Send a request for the bytes from `offset` on, retrying until a usable response.
    async fn open(&mut self) -> std::result::Result<(), TransportError> {
        loop {
            let mut request = self.client.get(self.url.clone());
            if let Some(end) = self.end {
                let last = end.saturating_sub(1);
                request = request.header(
                    reqwest::header::RANGE,
                    format!("bytes={}-{last}", self.offset),
                );
            } else if self.offset > 0 {
                request = request.header(reqwest::header::RANGE, format!("bytes={}-", self.offset));
            }
            let (limit, budget) = self.next_wait();
            let response = match timed(limit, budget, request.send(), &mut self.waited).await {
                Err(true) => return Err(self.too_slow()),
                Err(false) => {
                    let why = format!(
                        "no response for {} s (idle timeout)",
                        self.idle.as_secs_f64()
                    );
                    self.failed(why).await?;
                    continue;
                }
                Ok(Err(e)) => {
                    self.failed(crate::error::chain(&e)).await?;
                    continue;
                }
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            match status.as_u16() {
                403 | 404 | 410 => {
                    return Err(TransportError::NotFound {
                        url: self.url.to_string(),
                        reason: format!("server answered {status}"),
                    });
                }
                206 if self.offset > 0 || self.end.is_some() => {
                    let start = content_range(&response);
                    if start.map(|(s, _)| s) != Some(self.offset) {
                        self.failed(format!(
                            "server answered a range request for byte {} with range {start:?}",
                            self.offset
                        ))
                        .await?;
                        continue;
                    }
                    self.total = start.and_then(|(_, total)| total).or(self.total);
                    self.discard = 0;
                    self.response = Some(response);
                    return Ok(());
                }
                200 if self.end.is_some() && self.offset > 0 => {
                    // A byte-range read (the delta store) from a server that ignores Range:
                    // every piece would cost the whole file up to it. Fail, so the caller
                    // downloads the full images instead.
                    return Err(TransportError::Request {
                        url: self.url.to_string(),
                        source: Box::new(std::io::Error::other(
                            "the server ignores Range requests (answered 200 to a byte range)",
                        )),
                    });
                }
                200 => {
                    // Either a first request or a server that ignores Range.
                    if let Some(length) = response.content_length() {
                        self.total = Some(length);
                    }
                    self.discard = self.offset;
                    if self.offset > 0 {
                        tracing::info!(url = %self.url, offset = self.offset, "server ignored the range request; skipping the bytes already received");
                    }
                    self.response = Some(response);
                    return Ok(());
                }
                408 | 429 | 500..=599 => {
                    self.failed(format!("server answered {status}")).await?;
                }
                _ => {
                    return Err(TransportError::Status {
                        url: self.url.to_string(),
                        status: status.as_u16(),
                    });
                }
            }
        }
    }

    /// The next chunk of the file, reconnecting as needed; `None` at the end.
    async fn next_chunk(&mut self) -> std::result::Result<Option<Bytes>, TransportError> {
        loop {
            if self.end.is_some_and(|end| self.offset >= end) {
                return Ok(None);
            }
            let (limit, budget) = self.next_wait();
            let Some(response) = self.response.as_mut() else {
                self.open().await?;
                continue;
            };
            match timed(limit, budget, response.chunk(), &mut self.waited).await {
                Err(true) => return Err(self.too_slow()),
                Err(false) => {
                    let why = format!("no data for {} s (idle timeout)", self.idle.as_secs_f64());
                    self.failed(why).await?;
                }
                Ok(Err(e)) => self.failed(crate::error::chain(&e)).await?,
                Ok(Ok(None)) => match self.end.or(self.total) {
                    Some(total) if self.offset < total => {
                        let why =
                            format!("connection closed after {} of {total} bytes", self.offset);
                        self.failed(why).await?;
                    }
                    _ => return Ok(None),
                },
                Ok(Ok(Some(mut bytes))) => {
                    if self.discard > 0 {
                        let skip = self.discard.min(bytes.len() as u64);
                        // skip <= bytes.len(), so the conversion and the slice are in range.
                        bytes = bytes.slice(usize::try_from(skip).unwrap_or(bytes.len())..);
                        self.discard -= skip;
                    }
                    if let Some(end) = self.end {
                        // A server that sent more than asked for: keep what was asked.
                        let room = usize::try_from(end - self.offset).unwrap_or(usize::MAX);
                        bytes.truncate(room);
                    }
                    if !bytes.is_empty() {
                        self.offset += bytes.len() as u64;
                        self.failures = 0;
                        return Ok(Some(bytes));
                    }
                }
            }
        }
    }

    /// Send every chunk to `sender` until the end, an error, or the reader going away.
    async fn pump(
        mut self,
        sender: tokio::sync::mpsc::Sender<std::result::Result<Bytes, TransportError>>,
    ) {
        loop {
            // Stop as soon as the reader goes away (e.g. after reading only a header), even
            // while waiting for a slow or stalled server.
            let item = tokio::select! {
                item = self.next_chunk() => item,
                () = sender.closed() => return,
            };
            let last = !matches!(item, Ok(Some(_)));
            let message = match item {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            if sender.send(message).await.is_err() || last {
                return;
            }
        }
    }
}

/// Wait for `future` at most `limit`, adding the time waited to `waited`. On timeout the
/// error is `budget`: whether the limit was the throughput budget (else the idle timeout).
async fn timed<F: std::future::Future>(
    limit: Duration,
    budget: bool,
    future: F,
    waited: &mut Duration,
) -> std::result::Result<F::Output, bool> {
    let started = Instant::now();
    let result = tokio::time::timeout(limit, future).await;
    *waited += started.elapsed();
    result.map_err(|_| budget)
}

/// `Content-Range: bytes START-END/TOTAL` → (START, TOTAL).
fn content_range(response: &reqwest::Response) -> Option<(u64, Option<u64>)> {
    let value = response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let rest = value.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{UpdogTransport, backoff};
    use crate::config::{NetworkSettings, Throughput};
    use std::io::{BufRead, BufReader, Write};
    use std::time::Duration;
    use tuf_client::{Transport, TransportError};
    use url::Url;

    /// A server answering `GET /CODE` with status CODE and an empty body.
    fn status_server() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                let code = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.trim_start_matches('/').get(..3))
                    .unwrap_or("500")
                    .to_owned();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        port
    }

    /// What tuf-client is told for each outcome: "not found" ends the root walk, so only
    /// 403/404/410 and a missing file may say so.
    #[test]
    fn failures_map_to_tuf_client_transport_errors() {
        let transport = UpdogTransport::new(&NetworkSettings {
            idle_timeout: Duration::from_secs(5),
            max_retries: 0,
            throughput: Throughput {
                min_bytes_per_sec: 0,
                grace: Duration::ZERO,
            },
            https_proxy: None,
            no_proxy: Vec::new(),
        })
        .unwrap();
        let port = status_server();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let fetch = |url: String| {
            runtime
                .block_on(transport.fetch(&Url::parse(&url).unwrap()))
                .err()
        };
        for code in [403, 404, 410] {
            let error = fetch(format!("http://127.0.0.1:{port}/{code}")).unwrap();
            assert!(error.is_not_found(), "{code}: {error:?}");
        }
        let error = fetch(format!("http://127.0.0.1:{port}/400")).unwrap();
        assert!(
            matches!(error, TransportError::Status { status: 400, .. }),
            "{error:?}"
        );
        // 503 is retried; with no retry allowed it fails as a request error with its reason.
        let error = fetch(format!("http://127.0.0.1:{port}/503")).unwrap();
        assert!(!error.is_not_found(), "{error:?}");
        let chain = snafu::Report::from_error(&error).to_string();
        assert!(chain.contains("server answered 503"), "{chain}");
        assert!(fetch(format!("http://127.0.0.1:{port}/200")).is_none());
        // A byte range answered with the whole file (200): an error, not a silent re-read.
        let url = Url::parse(&format!("http://127.0.0.1:{port}/200")).unwrap();
        let error = runtime
            .block_on(transport.fetch_range(&url, 5, 10).next())
            .unwrap_err();
        let chain = snafu::Report::from_error(&error).to_string();
        assert!(chain.contains("ignores Range"), "{chain}");
        let error = fetch("file:///nonexistent/updog/file".to_owned()).unwrap();
        assert!(error.is_not_found(), "{error:?}");
        let error = fetch("ftp://127.0.0.1/x".to_owned()).unwrap();
        assert!(
            matches!(error, TransportError::UnsupportedScheme { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(30), Duration::from_secs(5));
    }
}
