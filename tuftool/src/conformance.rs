//! A TUF client for the tuf-conformance suite, on the same library path updog uses (tough's
//! `RepositoryLoader` with a persistent datastore), plus the bookkeeping the suite checks:
//! trusted metadata stored under unversioned names (`root.json`, `timestamp.json`,
//! `snapshot.json`, `targets.json`, `<role>.json`), byte for byte as served, and no other
//! `.json` file in the metadata folder (tough's datastore lives in the `tough/` sub-folder).
//!
//! tough does not expose the bytes it verified, so a recording transport keeps every file it
//! fetched; after a load (successful or not) each role tough's datastore trusts is written from
//! the recorded bytes of that same version.
use crate::error::{self, Result};
use crate::fetch::fetch_target;
use crate::fsutil;
use crate::repo::encode_role_filename;
use futures::StreamExt;
use snafu::{OptionExt, ResultExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tough::{RepositoryLoader, TargetName, Transport, TransportError, TransportStream};
use url::Url;

/// Bytes received for one fetched file, filled as the stream is read.
type Recorded = Arc<Mutex<Vec<u8>>>;

/// A transport that records the bytes of every file it serves (by URL file name).
#[derive(Debug, Clone, Default)]
struct RecordingTransport {
    inner: tough::DefaultTransport,
    seen: Arc<Mutex<Vec<(String, Recorded)>>>,
}

#[tough::async_trait]
impl Transport for RecordingTransport {
    async fn fetch(&self, url: Url) -> std::result::Result<TransportStream, TransportError> {
        let stream = self.inner.fetch(url.clone()).await?;
        let name = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or("")
            .to_owned();
        let buffer = Arc::new(Mutex::new(Vec::new()));
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((name, Arc::clone(&buffer)));
        }
        Ok(Box::pin(stream.inspect(move |chunk| {
            if let (Ok(bytes), Ok(mut buf)) = (chunk, buffer.lock()) {
                buf.extend_from_slice(bytes);
            }
        })))
    }
}

fn datastore_dir(metadata_dir: &Path) -> PathBuf {
    metadata_dir.join("tough")
}

/// `init`: trust `trusted_root` (copied to `METADATA_DIR/root.json`); no network.
pub fn init(metadata_dir: &Path, trusted_root: &Path) -> Result<()> {
    let bytes = std::fs::read(trusted_root).context(error::ReadFileSnafu { path: trusted_root })?;
    crate::root::load_root(trusted_root)?;
    fsutil::write_atomic(&metadata_dir.join("root.json"), &bytes)
}

fn version_of(bytes: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("signed")?.get("version")?.as_u64()
}

/// Role name of a fetched metadata file name (`3.snapshot.json` → `snapshot`), if it is one.
fn role_of(file: &str, consistent: bool) -> Option<String> {
    let stem = file.strip_suffix(".json")?;
    if stem == "timestamp" {
        return Some(stem.to_owned());
    }
    match stem.split_once('.') {
        Some((n, rest)) if n.parse::<u64>().is_ok() && (consistent || rest == "root") => {
            Some(rest.to_owned())
        }
        _ if !consistent => Some(stem.to_owned()),
        _ => None,
    }
}

/// Write, from the recorded bytes, every role whose version tough's datastore now trusts.
fn persist_trusted(metadata_dir: &Path, recorder: &RecordingTransport) -> Result<()> {
    let store = datastore_dir(metadata_dir);
    let root_bytes = std::fs::read(store.join("root.json")).ok();
    let consistent = root_bytes
        .as_deref()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| v["signed"]["consistent_snapshot"].as_bool())
        .unwrap_or(false);
    let seen = recorder.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut latest: HashMap<String, Vec<u8>> = HashMap::new();
    for (file, buffer) in seen {
        let Some(role) = role_of(&file, consistent) else {
            continue;
        };
        let bytes = buffer.lock().map(|b| b.clone()).unwrap_or_default();
        // tough keeps top-level roles as `<role>.json` and delegated roles under the name
        // they were fetched with (versioned with consistent snapshots).
        let Some(trusted) = std::fs::read(store.join(format!("{role}.json")))
            .or_else(|_| std::fs::read(store.join(&file)))
            .ok()
        else {
            continue;
        };
        if version_of(&trusted).is_some() && version_of(&trusted) == version_of(&bytes) {
            latest.insert(role, bytes);
        }
    }
    for (role, bytes) in latest {
        fsutil::write_atomic(&metadata_dir.join(format!("{role}.json")), &bytes)?;
    }
    Ok(())
}

/// `refresh`: a full top-level update from `metadata_url`.
pub async fn refresh(
    metadata_dir: &Path,
    metadata_url: &Url,
    targets_url: Option<&Url>,
    max_root_rotations: u64,
) -> Result<tough::Repository> {
    let root_path = metadata_dir.join("root.json");
    let root = std::fs::read(&root_path).context(error::ReadFileSnafu { path: &root_path })?;
    let store = datastore_dir(metadata_dir);
    std::fs::create_dir_all(&store).context(error::CreateDirSnafu { path: &store })?;
    let recorder = RecordingTransport::default();
    let limits = tough::Limits {
        max_root_updates: max_root_rotations,
        ..tough::Limits::default()
    };
    let loaded = RepositoryLoader::new(
        &root,
        metadata_url.clone(),
        targets_url.unwrap_or(metadata_url).clone(),
    )
    .transport(recorder.clone())
    .datastore(&store)
    .limits(limits)
    .load()
    .await;
    persist_trusted(metadata_dir, &recorder)?;
    loaded.map_err(Box::new).context(error::LoadRepoSnafu {
        url: metadata_url.to_string(),
    })
}

/// `download`: refresh, then fetch and verify each target in order into `target_dir` (file
/// name: the percent-encoded target name), stopping at the first failure.
pub async fn download(
    metadata_dir: &Path,
    metadata_url: &Url,
    target_base_url: &Url,
    names: &[String],
    target_dir: &Path,
    max_root_rotations: u64,
) -> Result<Vec<PathBuf>> {
    let repo = refresh(
        metadata_dir,
        metadata_url,
        Some(target_base_url),
        max_root_rotations,
    )
    .await?;
    let consistent = repo.root().signed.consistent_snapshot;
    let mut written = Vec::new();
    for name in names {
        let target_name = TargetName::new(name.clone())
            .ok()
            .context(error::TargetNameSnafu { path: name })?;
        let target = repo
            .targets()
            .signed
            .find_target(&target_name, false)
            .ok()
            .context(error::UnknownTargetSnafu { name: name.clone() })?
            .clone();
        let dest = target_dir.join(encode_role_filename(name));
        fetch_target(target_base_url, &target_name, &target, consistent, &dest).await?;
        written.push(dest);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::role_of;

    #[test]
    fn role_names_from_file_names() {
        assert_eq!(
            role_of("timestamp.json", true).as_deref(),
            Some("timestamp")
        );
        assert_eq!(
            role_of("3.snapshot.json", true).as_deref(),
            Some("snapshot")
        );
        assert_eq!(role_of("2.root.json", false).as_deref(), Some("root"));
        assert_eq!(role_of("snapshot.json", false).as_deref(), Some("snapshot"));
        assert_eq!(role_of("4.a%2Fb.json", true).as_deref(), Some("a%2Fb"));
        assert_eq!(role_of("snapshot.json", true), None);
    }
}
