//! Targets: what metadata says about one ([`TargetInfo`]), fetching it as a verified stream,
//! and downloading it into a folder with a cache check.
use super::Repository;
use crate::crypto::{HashSetError, Hashers, SUPPORTED_HASHES};
use crate::error::{self, Result};
use crate::store::encode_name;
use crate::transport::{ByteStream, TransportError};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use url::Url;

/// A target as the trusted targets metadata lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetInfo {
    /// The target path (name).
    pub name: String,
    /// Its length in bytes.
    pub length: u64,
    /// Every hash listed: algorithm name → lowercase hex digest (unsupported algorithms too).
    pub hashes: BTreeMap<String, String>,
    /// The `custom` object, if any.
    pub custom: Option<serde_json::Value>,
    /// The targets role that listed it.
    pub role: String,
}

impl TargetInfo {
    /// The listed hash (hex) for `algorithm`.
    pub fn hash(&self, algorithm: &str) -> Option<&str> {
        self.hashes.get(algorithm).map(String::as_str)
    }

    fn hashers(&self) -> Result<Hashers> {
        Hashers::new(&self.hashes).map_err(|e| match e {
            HashSetError::NoneSupported => error::Error::NoSupportedHash {
                name: self.name.clone(),
            },
            HashSetError::BadHex(algorithm) => error::Error::InvalidHash {
                name: self.name.clone(),
                algorithm,
            },
        })
    }
}

/// Percent-encode the bytes that cannot appear literally in a URL path segment.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        let literal = b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'#' | b'%' | b'<' | b'>' | b'?' | b'`' | b'{' | b'}' | b'\\' | b'^' | b'|'
            );
        if literal {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL of target `info` below `base`: with consistent snapshots the file name is
/// prefixed by a listed hash (`dir/HASH.name`).
pub(crate) fn target_url(base: &Url, info: &TargetInfo, consistent: bool) -> Result<Url> {
    let name = &info.name;
    let segments: Vec<&str> = name.split('/').collect();
    ensure!(
        !name.is_empty()
            && !segments
                .iter()
                .any(|s| s.is_empty() || *s == "." || *s == ".."),
        error::InvalidTargetNameSnafu { name: name.clone() }
    );
    let mut encoded: Vec<String> = segments.iter().map(|s| encode_segment(s)).collect();
    if consistent {
        let hash = SUPPORTED_HASHES
            .iter()
            .find_map(|a| info.hash(a))
            .context(error::NoSupportedHashSnafu { name: name.clone() })?;
        if let Some(last) = encoded.last_mut() {
            *last = format!("{}.{last}", encode_segment(hash));
        }
    }
    let path = encoded.join("/");
    base.join(&path).context(error::JoinUrlSnafu {
        base: base.as_str(),
        path,
    })
}

/// The bytes of a target, verified: the stream fails as soon as more bytes than the listed
/// length arrive, and at its end unless the length and every supported listed hash match.
/// Consumers must not use the data before the stream has ended without error.
pub struct TargetStream {
    inner: ByteStream,
    hashers: Option<Hashers>,
    name: String,
    url: String,
    expected: u64,
    received: u64,
    done: bool,
}

impl std::fmt::Debug for TargetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetStream")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("expected", &self.expected)
            .field("received", &self.received)
            .finish()
    }
}

impl TargetStream {
    fn fail(&mut self, e: error::Error) -> Poll<Option<Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(e)))
    }

    fn transport_error(&self, source: TransportError) -> error::Error {
        if source.is_not_found() {
            error::Error::TargetFileNotFound {
                url: self.url.clone(),
                source,
            }
        } else {
            error::Error::FetchTarget {
                url: self.url.clone(),
                source,
            }
        }
    }
}

impl Stream for TargetStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => {
                let e = self.transport_error(e);
                self.fail(e)
            }
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                if self.received > self.expected {
                    let e = error::Error::LengthMismatch {
                        name: self.name.clone(),
                        expected: self.expected,
                        found: self.received,
                    };
                    return self.fail(e);
                }
                if let Some(h) = self.hashers.as_mut() {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.received != self.expected {
                    return Poll::Ready(Some(Err(error::Error::LengthMismatch {
                        name: self.name.clone(),
                        expected: self.expected,
                        found: self.received,
                    })));
                }
                if let Some(algorithm) = self.hashers.take().and_then(Hashers::mismatch) {
                    return Poll::Ready(Some(Err(error::Error::HashMismatch {
                        name: self.name.clone(),
                        algorithm,
                    })));
                }
                Poll::Ready(None)
            }
        }
    }
}

/// What [`Repository::download_target`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downloaded {
    /// The file was fetched and verified.
    Fetched,
    /// The file was already there with the right length and hashes; nothing was fetched.
    Cached,
}

/// Whether the file at `path` has `info`'s length and every supported listed hash.
fn file_matches(path: &Path, info: &TargetInfo) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(info.length) {
        return false;
    }
    let Ok(mut hashers) = info.hashers() else {
        return false;
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hashers.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    hashers.mismatch().is_none()
}

impl Repository {
    /// Start fetching target `info` (from [`find_target`](Self::find_target)) as a verified
    /// stream. A target listing only unsupported hash algorithms is refused before any
    /// request.
    pub async fn fetch_target(&self, info: &TargetInfo) -> Result<TargetStream> {
        let hashers = info.hashers()?;
        let url = target_url(&self.targets_base_url, info, self.consistent_snapshot())?;
        tracing::debug!(%url, target = %info.name, "fetching target");
        let mut stream = TargetStream {
            inner: Box::pin(futures::stream::empty()),
            hashers: Some(hashers),
            name: info.name.clone(),
            url: url.to_string(),
            expected: info.length,
            received: 0,
            done: false,
        };
        stream.inner = self
            .transport
            .fetch(&url)
            .await
            .map_err(|e| stream.transport_error(e))?;
        Ok(stream)
    }

    /// The URL target `info` is served at (for byte-range reads of a target whose pieces are
    /// verified by other signed data, e.g. a delta store).
    pub fn target_url(&self, info: &TargetInfo) -> Result<Url> {
        target_url(&self.targets_base_url, info, self.consistent_snapshot())
    }

    /// Find target `name` and start fetching it, verified. Not listed: [`error::Error::TargetNotFound`].
    pub async fn fetch_target_by_name(&self, name: &str) -> Result<TargetStream> {
        let info = self
            .find_target(name)
            .await?
            .context(error::TargetNotFoundSnafu { name })?;
        self.fetch_target(&info).await
    }

    /// Download target `info` to `path`: skipped when `path` already has the listed length and
    /// hashes; otherwise fetched and verified into a temporary file beside `path`, then
    /// renamed over it (nothing is left behind on failure).
    pub async fn download_target(&self, info: &TargetInfo, path: &Path) -> Result<Downloaded> {
        info.hashers()?;
        let check_path = path.to_path_buf();
        let check_info = info.clone();
        let cached = tokio::task::spawn_blocking(move || file_matches(&check_path, &check_info))
            .await
            .context(error::JoinSnafu)?;
        if cached {
            tracing::debug!(target = %info.name, path = %path.display(), "already downloaded");
            return Ok(Downloaded::Cached);
        }
        let mut stream = self.fetch_target(info).await?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let write_error = |source| error::Error::WriteTarget {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(write_error)?;
        let mut file = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(write_error)?;
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?).map_err(write_error)?;
        }
        let target: PathBuf = path.to_path_buf();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            file.as_file().sync_all()?;
            file.persist(&target).map_err(|e| e.error)?;
            Ok(())
        })
        .await
        .context(error::JoinSnafu)?
        .map_err(write_error)?;
        tracing::info!(target = %info.name, path = %path.display(), "downloaded");
        Ok(Downloaded::Fetched)
    }

    /// Download target `info` into `dir`, named by [`target_file_name`].
    pub async fn download_target_to_dir(&self, info: &TargetInfo, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(target_file_name(&info.name));
        self.download_target(info, &path).await?;
        Ok(path)
    }
}

/// The file name a target is stored under in a flat folder: its name percent-encoded into one
/// segment (`a/b.txt` → `a%2Fb.txt`).
pub fn target_file_name(name: &str) -> String {
    encode_name(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{TargetInfo, target_url};
    use std::collections::BTreeMap;
    use url::Url;

    fn info(name: &str, hashes: &[(&str, &str)]) -> TargetInfo {
        TargetInfo {
            name: name.into(),
            length: 1,
            hashes: hashes
                .iter()
                .map(|(a, h)| ((*a).to_owned(), (*h).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            custom: None,
            role: "targets".into(),
        }
    }

    #[test]
    fn target_urls() {
        let base = Url::parse("http://h/repo/targets/").unwrap();
        let i = info("dir/sub/a b.txt", &[("sha512", "bb"), ("sha256", "aa")]);
        assert_eq!(
            target_url(&base, &i, false).unwrap().as_str(),
            "http://h/repo/targets/dir/sub/a%20b.txt"
        );
        assert_eq!(
            target_url(&base, &i, true).unwrap().as_str(),
            "http://h/repo/targets/dir/sub/aa.a%20b.txt"
        );
        let only512 = info("x", &[("sha512", "bb")]);
        assert_eq!(
            target_url(&base, &only512, true).unwrap().as_str(),
            "http://h/repo/targets/bb.x"
        );
        assert!(target_url(&base, &info("x", &[("md5", "cc")]), true).is_err());
        for bad in ["", "../x", "a/./b", "/abs", "a//b", "a/.."] {
            assert!(
                target_url(&base, &info(bad, &[("sha256", "aa")]), false).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            target_url(&base, &info("q?#%", &[("sha256", "aa")]), false)
                .unwrap()
                .as_str(),
            "http://h/repo/targets/q%3F%23%25"
        );
    }
}
