//! How bytes are fetched: the [`Transport`] trait and its default implementation on reqwest
//! (`http://`, `https://`) and the file system (`file://`).
use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use snafu::Snafu;
use std::fmt::Debug;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use url::Url;

/// A stream of the bytes of one fetched file.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, TransportError>> + Send>>;

/// A failed fetch. [`TransportError::NotFound`] is "the file does not exist" (it ends the root
/// rotation walk); everything else is a failure.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub))]
#[non_exhaustive]
pub enum TransportError {
    /// The file does not exist (HTTP 403, 404 or 410; no such file).
    #[snafu(display("{url} does not exist ({reason})"))]
    NotFound {
        /// The URL.
        url: String,
        /// Why it is considered missing (status code, OS error).
        reason: String,
    },
    /// The server answered with a status that is neither success nor "not found".
    #[snafu(display("{url}: server answered {status}"))]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The request, or reading the body or the file, failed.
    #[snafu(display("failed to fetch {url}"))]
    Request {
        /// The URL.
        url: String,
        /// The cause.
        source: BoxError,
    },
    /// A `file://` URL that is not a local path.
    #[snafu(display("{url} is not a local file path"))]
    BadFileUrl {
        /// The URL.
        url: String,
    },
    /// The URL's scheme is not supported by this transport.
    #[snafu(display("unsupported URL scheme in {url}"))]
    UnsupportedScheme {
        /// The URL.
        url: String,
    },
}

impl TransportError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TransportError::NotFound { .. })
    }

    fn request(url: &Url, source: impl Into<BoxError>) -> Self {
        TransportError::Request {
            url: url.to_string(),
            source: source.into(),
        }
    }
}

/// A boxed error from a transport implementation.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Fetches files by URL. Implement it to add timeouts, proxies, query parameters or another
/// scheme; [`DefaultTransport`] covers `file://`, `http://` and `https://`.
#[async_trait]
pub trait Transport: Debug + Send + Sync {
    /// Start fetching `url`. A missing file is [`TransportError::NotFound`], either here or
    /// as the stream's first item.
    async fn fetch(&self, url: &Url) -> Result<ByteStream, TransportError>;
}

/// `file://` from disk and `http(s)://` with reqwest. 403, 404 and 410 mean "not found";
/// other non-success statuses are failures.
#[derive(Debug, Clone)]
pub struct DefaultTransport {
    client: reqwest::Client,
}

impl DefaultTransport {
    /// A transport with reqwest's defaults plus a 30 s connect timeout and a 60 s read
    /// timeout.
    pub fn new() -> Result<Self, reqwest::Error> {
        Self::with_timeouts(Duration::from_secs(30), Duration::from_secs(60))
    }

    /// A transport with the given connect and read (idle) timeouts.
    pub fn with_timeouts(connect: Duration, read: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .read_timeout(read)
            .user_agent(concat!("tuf-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }

    /// A transport over an existing reqwest client.
    pub fn from_client(client: reqwest::Client) -> Self {
        Self { client }
    }
}

/// Chunk size for files read from disk.
const FILE_CHUNK: usize = 64 * 1024;

async fn fetch_file(url: &Url) -> Result<ByteStream, TransportError> {
    let path = url
        .to_file_path()
        .map_err(|()| TransportError::BadFileUrl {
            url: url.to_string(),
        })?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TransportError::NotFound {
                url: url.to_string(),
                reason: e.to_string(),
            });
        }
        Err(e) => return Err(TransportError::request(url, e)),
    };
    let url = url.clone();
    let stream = futures::stream::unfold(Some(file), move |state| {
        let url = url.clone();
        async move {
            let mut file = state?;
            let mut buf = vec![0u8; FILE_CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), Some(file)))
                }
                Err(e) => Some((Err(TransportError::request(&url, e)), None)),
            }
        }
    });
    Ok(Box::pin(stream))
}

#[async_trait]
impl Transport for DefaultTransport {
    async fn fetch(&self, url: &Url) -> Result<ByteStream, TransportError> {
        match url.scheme() {
            "file" => fetch_file(url).await,
            "http" | "https" => {
                let response = self
                    .client
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(|e| TransportError::request(url, e))?;
                let status = response.status();
                match status.as_u16() {
                    403 | 404 | 410 => Err(TransportError::NotFound {
                        url: url.to_string(),
                        reason: format!("server answered {status}"),
                    }),
                    _ if !status.is_success() => Err(TransportError::Status {
                        url: url.to_string(),
                        status: status.as_u16(),
                    }),
                    _ => {
                        let url = url.clone();
                        Ok(Box::pin(response.bytes_stream().map(move |chunk| {
                            chunk.map_err(|e| TransportError::request(&url, e))
                        })))
                    }
                }
            }
            _ => Err(TransportError::UnsupportedScheme {
                url: url.to_string(),
            }),
        }
    }
}
