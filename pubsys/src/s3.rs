//! TUF repositories in S3: reading them through an `s3://` transport for tough, and publishing
//! an output folder in an order that keeps the published repository valid at every moment.
//!
//! # Reading
//! [`S3Transport`] fetches `s3://bucket/key` with `GetObject` (streamed, a few chunks in
//! flight) and hands every other scheme to tough's default transport (file, http, https). A
//! missing key is tough's "file not found", so the root-chain walk and "is anything published
//! here?" work as over HTTP.
//!
//! # Publishing
//! [`upload`] mirrors an output folder of `pubsys repo` (`targets/` and `<variant>/<arch>/`) to
//! `s3://bucket/prefix/` in this order: every target, then the root chain (`1.root.json` …
//! `N.root.json`), delegated roles, `targets.json`, `snapshot.json`, and `timestamp.json`
//! last. Until the new timestamp is written, hosts keep seeing the old timestamp, which
//! points only at metadata that is already complete; a failure part-way therefore leaves the
//! published repository valid, and running the upload again finishes it.
//!
//! Targets in sub-folders (names with folders, placed at the spec's `dir/<sha256>.file`) go
//! up under the same relative key. Every local file is hashed before it is sent, and a target
//! whose bytes no longer match its content-addressed name is refused (the folder changed after
//! signing). An object that is already present with the same size and SHA-256 (our `sha256`
//! object metadata; without it, the object is read back and hashed: a name is a claim, not a
//! proof) is skipped. A versioned or
//! content-addressed object (`N.*.json`, `<sha256>.<name>`) that is present with *different*
//! content is never overwritten: that would change metadata hosts may already trust, so it is
//! an error that names the key.

use crate::error::{self, Result};
use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use serde::Serialize;
use snafu::{OptionExt, ResultExt, ensure};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

/// The metadata key that carries an object's SHA-256 (hex).
const SHA256_METADATA: &str = "sha256";

/// Largest object a single `PutObject` may carry.
const MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Targets uploaded at once.
const TARGET_CONCURRENCY: usize = 4;

/// A bucket and a key prefix (empty, or ending with `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix: empty, or ending with `/`.
    pub prefix: String,
}

impl S3Location {
    /// Parse `s3://bucket[/prefix]`.
    pub fn parse(url: &Url) -> Result<S3Location> {
        let bad = || error::BadUrlSnafu {
            url: url.to_string(),
        };
        ensure!(url.scheme() == "s3", bad());
        let bucket = url.host_str().filter(|h| !h.is_empty()).context(bad())?;
        let path = url.path().trim_start_matches('/');
        let prefix = if path.is_empty() || path.ends_with('/') {
            path.to_owned()
        } else {
            format!("{path}/")
        };
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// The key of `name` below the prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The location of a sub-folder.
    pub fn join(&self, folder: &str) -> S3Location {
        S3Location {
            bucket: self.bucket.clone(),
            prefix: self.key(&format!("{}/", folder.trim_matches('/'))),
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Whether a URL is served by S3.
pub fn is_s3(url: &Url) -> bool {
    url.scheme() == "s3"
}

/// A tough transport for `s3://` URLs; every other scheme goes to tough's default transport.
#[derive(Clone)]
pub struct S3Transport {
    client: aws_sdk_s3::Client,
}

impl fmt::Debug for S3Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Transport").finish_non_exhaustive()
    }
}

impl S3Transport {
    /// A transport over this client.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Transport { client }
    }
}

#[async_trait::async_trait]
impl Transport for S3Transport {
    async fn fetch(&self, url: Url) -> std::result::Result<TransportStream, TransportError> {
        if !is_s3(&url) {
            return tough::DefaultTransport::new().fetch(url).await;
        }
        let location = S3Location::parse(&url).map_err(|e| {
            TransportError::new_with_cause(TransportErrorKind::Other, url.as_str(), e)
        })?;
        // The parsed prefix ends with '/'; the object key is the path itself.
        let key = location.prefix.trim_end_matches('/').to_owned();
        let output = self
            .client
            .get_object()
            .bucket(&location.bucket)
            .key(&key)
            .send()
            .await;
        let output = match output {
            Ok(output) => output,
            Err(e) => {
                let missing = e.raw_response().map(|r| r.status().as_u16()) == Some(404)
                    || e.as_service_error().is_some_and(|s| s.is_no_such_key());
                let kind = if missing {
                    TransportErrorKind::FileNotFound
                } else {
                    TransportErrorKind::Other
                };
                return Err(TransportError::new_with_cause(
                    kind,
                    url.as_str(),
                    aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                ));
            }
        };
        // Stream the body through a small channel: bounded memory, and a stream that is
        // `Send + Sync` as tough requires.
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let mut body = output.body;
        let origin = url.to_string();
        tokio::spawn(async move {
            loop {
                let item = match body.try_next().await {
                    Ok(Some(bytes)) => Ok(bytes),
                    Ok(None) => break,
                    Err(e) => Err(TransportError::new_with_cause(
                        TransportErrorKind::Other,
                        &origin,
                        e,
                    )),
                };
                let failed = item.is_err();
                if sender.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        Ok(Box::pin(stream))
    }
}

/// What kind of file an upload item is: decides its place in the order and whether a
/// different object under the same key may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A target file.
    Target,
    /// `N.root.json`.
    Root,
    /// A delegated role's metadata.
    Delegated,
    /// `targets.json` / `N.targets.json`.
    Targets,
    /// `snapshot.json` / `N.snapshot.json`.
    Snapshot,
    /// `timestamp.json`, always last.
    Timestamp,
}

/// One file to publish.
#[derive(Debug, Clone, Serialize)]
pub struct UploadItem {
    /// Local file (symlinks followed).
    pub path: PathBuf,
    /// Object key.
    pub key: String,
    /// Its kind.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
}

impl UploadItem {
    /// Whether the key names one exact content (versioned metadata, content-addressed
    /// target), so a different object there must not be replaced.
    fn immutable(&self) -> bool {
        let name = self.key.rsplit('/').next().unwrap_or(&self.key);
        match self.kind {
            FileKind::Timestamp => false,
            FileKind::Target => sha256_prefix(name).is_some(),
            _ => name
                .split('.')
                .next()
                .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())),
        }
    }
}

/// The hex SHA-256 that prefixes a consistent-snapshot target name, if any.
fn sha256_prefix(name: &str) -> Option<&str> {
    let (hash, _) = name.split_once('.')?;
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hash)
}

fn metadata_kind(name: &str) -> FileKind {
    let unversioned = match name.split_once('.') {
        Some((v, rest)) if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() => rest,
        _ => name,
    };
    match unversioned {
        "root.json" => FileKind::Root,
        "targets.json" => FileKind::Targets,
        "snapshot.json" => FileKind::Snapshot,
        "timestamp.json" => FileKind::Timestamp,
        _ => FileKind::Delegated,
    }
}

/// The version prefix of a metadata file name (`12.root.json` → 12), for ordering the root
/// chain.
fn version_of(name: &str) -> u64 {
    name.split_once('.')
        .and_then(|(v, _)| v.parse().ok())
        .unwrap_or(0)
}

/// The regular files directly in `dir` (symlinks followed: targets may link into the build
/// folder), as (name, path, size); with `recursive`, also those in its sub-folders, named by
/// their `/`-separated path below `dir` (targets whose names have a folder live there, at
/// the spec's `dir/<sha256>.file`).
fn files_in(dir: &Path, recursive: bool) -> Result<Vec<(String, PathBuf, u64)>> {
    let mut files = Vec::new();
    if !dir.exists() {
        return Ok(files);
    }
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((folder, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&folder).context(error::ReadConfigSnafu { path: &folder })? {
            let entry = entry.context(error::ReadConfigSnafu { path: &folder })?;
            let path = entry.path();
            let meta = std::fs::metadata(&path).context(error::ReadConfigSnafu { path: &path })?;
            let Some(name) = entry.file_name().to_str().map(|n| format!("{prefix}{n}")) else {
                tracing::warn!(path = %path.display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            if meta.is_dir() && recursive {
                pending.push((path, format!("{name}/")));
            } else if meta.is_file() {
                files.push((name, path, meta.len()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The ordered list of files that publish `<outdir>/targets/` and `<outdir>/<variant>/<arch>/`
/// to `destination`.
pub fn plan(
    outdir: &Path,
    variant: &str,
    arch: &str,
    destination: &S3Location,
) -> Result<Vec<UploadItem>> {
    let metadata_dir = outdir.join(variant).join(arch);
    ensure!(
        metadata_dir.join("timestamp.json").is_file(),
        error::NothingToUploadSnafu {
            path: &metadata_dir
        }
    );
    let targets = destination.join("targets");
    let metadata = destination.join(&format!("{variant}/{arch}"));
    let mut items: Vec<UploadItem> = files_in(&outdir.join("targets"), true)?
        .into_iter()
        .map(|(name, path, size)| UploadItem {
            key: targets.key(&name),
            path,
            kind: FileKind::Target,
            size,
        })
        .collect();
    items.extend(
        files_in(&metadata_dir, false)?
            .into_iter()
            .filter(|(name, _, _)| name.ends_with(".json"))
            .map(|(name, path, size)| UploadItem {
                key: metadata.key(&name),
                path,
                kind: metadata_kind(&name),
                size,
            }),
    );
    items.sort_by(|a, b| {
        let name = |i: &UploadItem| i.key.rsplit('/').next().unwrap_or_default().to_owned();
        (a.kind, version_of(&name(a)), &a.key).cmp(&(b.kind, version_of(&name(b)), &b.key))
    });
    if let Some(big) = items.iter().find(|i| i.size > MAX_PUT_BYTES) {
        return error::TooBigToUploadSnafu {
            path: &big.path,
            size: big.size,
        }
        .fail();
    }
    Ok(items)
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Uploaded.
    Uploaded,
    /// Already there with the same content.
    Present,
}

/// One line of the upload report.
#[derive(Debug, Clone, Serialize)]
pub struct UploadedFile {
    /// Object URL.
    pub url: String,
    /// Its kind.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Uploaded or already present.
    pub outcome: Outcome,
}

/// What an upload did, in upload order.
#[derive(Debug, Clone, Serialize)]
pub struct UploadReport {
    /// Destination.
    pub destination: String,
    /// Every file, in the order it was published.
    pub files: Vec<UploadedFile>,
    /// Bytes sent.
    pub uploaded_bytes: u64,
}

impl fmt::Display for UploadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sent = self
            .files
            .iter()
            .filter(|f| f.outcome == Outcome::Uploaded)
            .count();
        writeln!(
            f,
            "uploaded to {}: {sent} files sent ({} bytes), {} already present",
            self.destination,
            self.uploaded_bytes,
            self.files.len() - sent
        )
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).context(error::ReadConfigSnafu { path })?;
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .context(error::ReadConfigSnafu { path })?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Ok(hex::encode(context.finish().as_ref()))
}

fn s3_error<E>(action: &'static str, bucket: &str, key: &str, e: E) -> error::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    error::Error::S3 {
        action,
        url: format!("s3://{bucket}/{key}"),
        message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}

/// Whether the object at `key` already holds exactly `item`'s content. `Err` when it holds
/// something else under a key that must not change.
async fn already_present(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    item: &UploadItem,
    sha256: &str,
) -> Result<bool> {
    let head = client
        .head_object()
        .bucket(bucket)
        .key(&item.key)
        .send()
        .await;
    let head = match head {
        Ok(head) => head,
        Err(e)
            if e.raw_response().map(|r| r.status().as_u16()) == Some(404)
                || e.as_service_error().is_some_and(|s| s.is_not_found()) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(s3_error("HeadObject", bucket, &item.key, e)),
    };
    let size_matches = head.content_length() == i64::try_from(item.size).ok();
    let recorded = head
        .metadata()
        .and_then(|m| m.get(SHA256_METADATA))
        .map(|s| s.to_ascii_lowercase());
    tracing::debug!(
        key = %item.key,
        remote_size = ?head.content_length(),
        remote_sha256 = ?recorded,
        local_size = item.size,
        local_sha256 = sha256,
        "object exists"
    );
    let same = match recorded {
        Some(recorded) => size_matches && recorded == sha256,
        // Uploaded by another tool: the object is read back and compared (a content-addressed
        // name is a claim, not a proof), targets by SHA-256, small metadata byte for byte.
        None if size_matches && item.kind == FileKind::Target => {
            remote_sha256(client, bucket, &item.key).await? == sha256
        }
        None if size_matches => {
            let object = client
                .get_object()
                .bucket(bucket)
                .key(&item.key)
                .send()
                .await
                .map_err(|e| s3_error("GetObject", bucket, &item.key, e))?;
            let bytes = object
                .body
                .collect()
                .await
                .map_err(|e| s3_error("GetObject", bucket, &item.key, e))?
                .into_bytes();
            let local =
                std::fs::read(&item.path).context(error::ReadConfigSnafu { path: &item.path })?;
            bytes.as_ref() == local.as_slice()
        }
        None => false,
    };
    ensure!(
        same || !item.immutable(),
        error::S3ConflictSnafu {
            url: format!("s3://{bucket}/{}", item.key),
        }
    );
    Ok(same)
}

/// The SHA-256 (hex) of the object at `key`, read back in a stream.
async fn remote_sha256(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<String> {
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| s3_error("GetObject", bucket, key, e))?;
    let mut body = object.body;
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| s3_error("GetObject", bucket, key, e))?
    {
        context.update(&chunk);
    }
    Ok(hex::encode(context.finish().as_ref()))
}

async fn put(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    item: &UploadItem,
    sha256: &str,
) -> Result<()> {
    let body = ByteStream::from_path(&item.path)
        .await
        .map_err(|e| s3_error("PutObject", bucket, &item.key, e))?;
    let content_type = if item.kind == FileKind::Target {
        "application/octet-stream"
    } else {
        "application/json"
    };
    client
        .put_object()
        .bucket(bucket)
        .key(&item.key)
        .body(body)
        .content_length(i64::try_from(item.size).unwrap_or(i64::MAX))
        .content_type(content_type)
        .metadata(SHA256_METADATA, sha256)
        .send()
        .await
        .map_err(|e| s3_error("PutObject", bucket, &item.key, e))?;
    Ok(())
}

/// Publish one file unless it is already there.
async fn publish_one(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    item: &UploadItem,
    bar: &indicatif::ProgressBar,
) -> Result<UploadedFile> {
    let name = item.key.rsplit('/').next().unwrap_or(&item.key);
    // Every file is hashed as it is now: the output folder may have changed since it was
    // signed, and a content-addressed name is checked against the bytes, not believed.
    let path = item.path.clone();
    let sha256 = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .context(error::JoinSnafu)??;
    if item.kind == FileKind::Target
        && let Some(named) = sha256_prefix(name)
    {
        ensure!(
            named.eq_ignore_ascii_case(&sha256),
            error::TargetChangedSnafu {
                path: &item.path,
                named,
                actual: &sha256,
            }
        );
    }
    let outcome = if already_present(client, bucket, item, &sha256).await? {
        tracing::debug!(key = %item.key, "already present");
        Outcome::Present
    } else {
        tracing::info!(key = %item.key, bytes = item.size, "uploading");
        put(client, bucket, item, &sha256).await?;
        Outcome::Uploaded
    };
    bar.inc(item.size);
    Ok(UploadedFile {
        url: format!("s3://{bucket}/{}", item.key),
        kind: item.kind,
        size: item.size,
        outcome,
    })
}

/// Publish the output folder's repository for `variant`/`arch` to `destination`: targets
/// (a few at a time), then metadata one file at a time in the safe order, `timestamp.json`
/// last.
pub async fn upload(
    client: &aws_sdk_s3::Client,
    outdir: &Path,
    variant: &str,
    arch: &str,
    destination: &S3Location,
) -> Result<UploadReport> {
    let items = plan(outdir, variant, arch, destination)?;
    let bar = crate::progress::bar(
        true,
        items.iter().map(|i| i.size).sum(),
        "upload [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    );
    let bucket = destination.bucket.as_str();
    let (targets, metadata): (Vec<&UploadItem>, Vec<&UploadItem>) =
        items.iter().partition(|i| i.kind == FileKind::Target);
    let mut files = Vec::with_capacity(items.len());
    let mut uploads = futures::stream::iter(
        targets
            .into_iter()
            .map(|item| publish_one(client, bucket, item, &bar)),
    )
    .buffered(TARGET_CONCURRENCY);
    while let Some(file) = uploads.next().await {
        files.push(file?);
    }
    drop(uploads);
    for item in metadata {
        files.push(publish_one(client, bucket, item, &bar).await?);
    }
    bar.finish_and_clear();
    let uploaded_bytes = files
        .iter()
        .filter(|f| f.outcome == Outcome::Uploaded)
        .map(|f| f.size)
        .sum();
    Ok(UploadReport {
        destination: destination.to_string(),
        files,
        uploaded_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::{FileKind, S3Location, UploadItem, metadata_kind, plan};

    #[test]
    fn s3_urls_parse_into_bucket_and_prefix() {
        let at = |s: &str| S3Location::parse(&s.parse().unwrap()).unwrap();
        assert_eq!(at("s3://b").prefix, "");
        assert_eq!(at("s3://b/").prefix, "");
        assert_eq!(at("s3://b/a/c").prefix, "a/c/");
        assert_eq!(at("s3://b/a/c/").key("x.json"), "a/c/x.json");
        assert_eq!(
            at("s3://b/p").join("aws-dev/x86_64").key("t.json"),
            "p/aws-dev/x86_64/t.json"
        );
        assert!(S3Location::parse(&"https://b/p".parse().unwrap()).is_err());
    }

    #[test]
    fn metadata_names_sort_into_the_safe_order() {
        assert_eq!(metadata_kind("3.root.json"), FileKind::Root);
        assert_eq!(metadata_kind("7.targets.json"), FileKind::Targets);
        assert_eq!(metadata_kind("snapshot.json"), FileKind::Snapshot);
        assert_eq!(metadata_kind("timestamp.json"), FileKind::Timestamp);
        assert_eq!(metadata_kind("2.team%2Fa.json"), FileKind::Delegated);
    }

    #[test]
    fn plan_orders_targets_roots_delegated_targets_snapshot_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("v/x86_64");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::create_dir_all(dir.path().join("targets")).unwrap();
        for name in [
            "timestamp.json",
            "10.root.json",
            "2.root.json",
            "3.snapshot.json",
            "4.targets.json",
            "1.role.json",
        ] {
            std::fs::write(meta.join(name), "{}").unwrap();
        }
        let hashed = format!("{}.root.ext4.lz4", "ab".repeat(32));
        std::fs::write(dir.path().join("targets").join(&hashed), "x").unwrap();
        // A target whose name has folders sits in sub-folders (the spec's dir/<sha256>.file).
        let nested = format!("extra/deep/{}.tool", "cd".repeat(32));
        std::fs::create_dir_all(dir.path().join("targets/extra/deep")).unwrap();
        std::fs::write(dir.path().join("targets").join(&nested), "y").unwrap();
        let dest = S3Location::parse(&"s3://bucket/repo".parse().unwrap()).unwrap();
        let items = plan(dir.path(), "v", "x86_64", &dest).unwrap();
        let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                format!("repo/targets/{hashed}").as_str(),
                format!("repo/targets/{nested}").as_str(),
                "repo/v/x86_64/2.root.json",
                "repo/v/x86_64/10.root.json",
                "repo/v/x86_64/1.role.json",
                "repo/v/x86_64/4.targets.json",
                "repo/v/x86_64/3.snapshot.json",
                "repo/v/x86_64/timestamp.json",
            ]
        );
        let immutable: Vec<bool> = items.iter().map(UploadItem::immutable).collect();
        assert_eq!(immutable, [true, true, true, true, true, true, true, false]);
        // Nothing signed yet: a clear error, not an empty upload.
        assert!(plan(dir.path(), "other", "x86_64", &dest).is_err());
    }
}
