//! Loading: repository locations (URL or folder), the verified load through tough, and
//! fetches that tell "not found" from any other failure.

use crate::error::{self, Result};
use snafu::{OptionExt, ResultExt};
use std::path::PathBuf;
use tough::{IntoVec, Repository, RepositoryLoader, Transport};
use url::Url;

/// Parse a metadata or targets location: a URL (`file://`, `http://`, `https://`) or a local
/// folder path. The result ends with `/`, so file names join below it.
pub fn parse_location(text: &str) -> Result<Url> {
    let mut url = if text.contains("://") {
        Url::parse(text)
            .ok()
            .context(error::LocationSnafu { text })?
    } else {
        let path = std::path::absolute(text).context(error::ReadFileSnafu { path: text })?;
        Url::from_directory_path(&path)
            .ok()
            .context(error::LocationSnafu { text })?
    };
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Where to load an existing repository from.
#[derive(Debug, Clone)]
pub struct RepoLocation {
    /// A trusted root (any version in the chain; the chain is walked up from it).
    pub root: PathBuf,
    /// Metadata base URL.
    pub metadata_url: Url,
    /// Targets base URL (defaults to `../targets/` beside the metadata).
    pub targets_url: Option<Url>,
    /// Load even if metadata has expired (for repair; never for download).
    pub allow_expired: bool,
    /// How to fetch metadata and targets; `None` is tough's default (file, http, https).
    /// Callers plug in other schemes here, e.g. pubsys's `s3://` transport.
    pub transport: Option<AnyTransport>,
}

/// Any [`Transport`], boxed so that a [`RepoLocation`] can carry it.
#[derive(Debug, Clone)]
pub struct AnyTransport(pub Box<dyn Transport>);

#[async_trait::async_trait]
impl Transport for AnyTransport {
    async fn fetch(
        &self,
        url: Url,
    ) -> std::result::Result<tough::TransportStream, tough::TransportError> {
        self.0.fetch(url).await
    }
}

impl RepoLocation {
    /// A location fetched with tough's default transport.
    pub fn new(
        root: PathBuf,
        metadata_url: Url,
        targets_url: Option<Url>,
        allow_expired: bool,
    ) -> Self {
        RepoLocation {
            root,
            metadata_url,
            targets_url,
            allow_expired,
            transport: None,
        }
    }

    /// Fetch one file of this repository's origin (metadata or targets side) without TUF
    /// verification: `Ok(None)` when it does not exist.
    pub async fn fetch_unverified(&self, url: &Url) -> Result<Option<Vec<u8>>> {
        fetch_with(self.transport.as_ref(), url).await
    }

    /// Like [`RepoLocation::fetch_unverified`], but only a real "not found" (HTTP 404 or 410,
    /// a missing file or S3 object) means `None`. tough's HTTP transport also reports 403
    /// Forbidden as "not found" (some stores answer 403 for a missing object); when the
    /// question is whether a repository is published, a denied read is an error: taking it
    /// for absence would start a new repository over the published one.
    pub async fn probe(&self, url: &Url) -> Result<Option<Vec<u8>>> {
        fetch_policy(self.transport.as_ref(), url, false).await
    }
}

impl RepoLocation {
    fn targets_url(&self) -> Result<Url> {
        match &self.targets_url {
            Some(u) => Ok(u.clone()),
            None => self
                .metadata_url
                .join("../targets/")
                .ok()
                .context(error::LocationSnafu {
                    text: self.metadata_url.to_string(),
                }),
        }
    }
}

/// Load and verify a repository with tough (root chain, expiry, signatures, hashes, every
/// delegated role).
pub async fn load_repo(location: &RepoLocation) -> Result<Repository> {
    let root = std::fs::read(&location.root).context(error::ReadFileSnafu {
        path: &location.root,
    })?;
    let enforcement = if location.allow_expired {
        tough::ExpirationEnforcement::Unsafe
    } else {
        tough::ExpirationEnforcement::Safe
    };
    let mut loader = RepositoryLoader::new(
        &root,
        location.metadata_url.clone(),
        location.targets_url()?,
    )
    .expiration_enforcement(enforcement);
    if let Some(transport) = &location.transport {
        loader = loader.transport(transport.clone());
    }
    loader
        .load()
        .await
        .map_err(Box::new)
        .context(error::LoadRepoSnafu {
            url: location.metadata_url.to_string(),
        })
}

/// Fetch one file through tough's transport (file, http, https).
pub(crate) async fn fetch_bytes(url: &Url) -> Result<Option<Vec<u8>>> {
    fetch_with(None, url).await
}

/// Fetch one file through `transport` (tough's default when `None`): `Ok(None)` when the
/// transport says the file does not exist.
pub(crate) async fn fetch_with(
    transport: Option<&AnyTransport>,
    url: &Url,
) -> Result<Option<Vec<u8>>> {
    fetch_policy(transport, url, true).await
}

/// [`fetch_with`], with a choice for HTTP 403, which tough's HTTP transport reports as "not
/// found". tough's HTTP transport sends the request when the stream is first read, so "not
/// found" can come from the stream as well as from `fetch`.
async fn fetch_policy(
    transport: Option<&AnyTransport>,
    url: &Url,
    forbidden_is_absent: bool,
) -> Result<Option<Vec<u8>>> {
    let fetched = match transport {
        Some(transport) => transport.fetch(url.clone()).await,
        None => tough::DefaultTransport::new().fetch(url.clone()).await,
    };
    let read = match fetched {
        Ok(stream) => stream.into_vec().await,
        Err(e) => Err(e),
    };
    match read {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e)
            if e.kind() == tough::TransportErrorKind::FileNotFound
                && (forbidden_is_absent || http_status(&e) != Some(403)) =>
        {
            Ok(None)
        }
        Err(e) => Err(error::Error::Fetch {
            url: url.to_string(),
            source: Box::new(e),
        }),
    }
}

/// The HTTP status behind a transport error, if it came from an HTTP response.
fn http_status(error: &tough::TransportError) -> Option<u16> {
    let mut source = std::error::Error::source(error);
    while let Some(err) = source {
        if let Some(http) = err.downcast_ref::<reqwest::Error>() {
            return http.status().map(|s| s.as_u16());
        }
        source = err.source();
    }
    None
}
