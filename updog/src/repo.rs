//! Loading the TUF repository (persistent datastore) with tuf-client and reading verified
//! targets.
use crate::config::Settings;
use crate::error::{self, Result};
use crate::transport::UpdogTransport;
use futures::StreamExt;
use snafu::{OptionExt, ResultExt, ensure};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use tuf_client::{FixedClock, Limits, Repository, RepositoryLoader, TargetInfo, TargetStream};
use update_metadata::Manifest;

/// The manifest's target name.
pub const MANIFEST: &str = "manifest.json";

/// The file tough's clock guard kept in its datastore; its presence marks a datastore written
/// by a tough-based updog.
const TOUGH_CLOCK_FILE: &str = "latest_known_time.json";

/// Largest targets metadata accepted when snapshot lists no length: tough's limit, which
/// updog used before (a release repository's targets.json grows with every release).
const MAX_TARGETS_SIZE: u64 = 10 << 20;

/// Load and verify the repository's metadata at `now` (the update's fixed start time, against
/// which expiry is checked), keeping trusted metadata in the datastore so versions can never
/// roll back between runs. The trusted root file is used on first use only.
pub async fn load(
    settings: &Settings,
    transport: &UpdogTransport,
    now: jiff::Timestamp,
) -> Result<Repository> {
    let paths = &settings.paths;
    let root = tokio::fs::read(&paths.trusted_root)
        .await
        .context(error::ReadTrustedRootSnafu {
            path: &paths.trusted_root,
        })?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&paths.datastore)
        .context(error::CreateDirSnafu {
            path: &paths.datastore,
        })?;
    forget_tough_datastore(&paths.datastore)?;
    let clock_file = paths.datastore.join(CLOCK_FILE);
    let latest = read_latest_time(&clock_file);
    if let Some(latest) = latest {
        ensure!(
            now >= latest,
            error::ClockSteppedBackSnafu {
                now,
                latest,
                file: &clock_file,
            }
        );
    }
    let repo = RepositoryLoader::new(
        &paths.datastore,
        &settings.metadata_base_url,
        &settings.targets_base_url,
    )
    .trusted_root(root)
    .transport(Arc::new(transport.clone()))
    .clock(Arc::new(FixedClock(now)))
    .limits(Limits {
        max_targets_size: MAX_TARGETS_SIZE,
        ..Limits::default()
    })
    .load()
    .await
    .map_err(|source| error::Error::LoadMetadata {
        url: settings.metadata_base_url.to_string(),
        source: Box::new(source),
    })?;
    if latest.is_none_or(|latest| now > latest) {
        update_metadata::fs::write_atomic(&clock_file, now.to_string().as_bytes(), 0o600)
            .context(error::WriteClockSnafu { path: &clock_file })?;
    }
    Ok(repo)
}

/// The clock guard's file in the datastore: the latest time a load succeeded at.
pub const CLOCK_FILE: &str = "latest-known-time";

/// The time recorded in `path`, if there is a readable one.
fn read_latest_time(path: &std::path::Path) -> Option<jiff::Timestamp> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.trim().parse() {
        Ok(time) => Some(time),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable clock file");
            None
        }
    }
}

/// A datastore written by a tough-based updog (marked by tough's clock file) holds metadata
/// re-serialised by tough, not the bytes that were signed: tuf-client would take its
/// `root.json` as the trusted root (and fail for good if it no longer verifies), and its
/// snapshot and targets would not match the hashes the migrator checks. So its `*.json` files
/// are removed and the load starts afresh from the trusted root file; the clock file goes
/// last, so an interrupted clean-up is done again.
fn forget_tough_datastore(dir: &Path) -> Result<()> {
    let marker = dir.join(TOUGH_CLOCK_FILE);
    if !marker.exists() {
        return Ok(());
    }
    tracing::info!(datastore = %dir.display(), "removing the TUF datastore of an earlier, tough-based updog; starting from the trusted root");
    let entries = std::fs::read_dir(dir).context(error::ClearOldDatastoreSnafu { path: dir })?;
    for entry in entries {
        let entry = entry.context(error::ClearOldDatastoreSnafu { path: dir })?;
        let path = entry.path();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        let json = path.extension().is_some_and(|e| e == "json");
        if is_file && json && path != marker {
            std::fs::remove_file(&path).context(error::ClearOldDatastoreSnafu { path: &path })?;
        }
    }
    std::fs::remove_file(&marker).context(error::ClearOldDatastoreSnafu { path: &marker })
}

/// The error for a failed lookup or read of target `name`.
pub fn read_error(name: &str, source: tuf_client::Error) -> error::Error {
    error::Error::ReadTarget {
        name: name.to_owned(),
        source: Box::new(source),
    }
}

/// What the trusted targets metadata says about target `name` (length, hashes); an error if
/// no role lists it.
pub async fn target_info(repo: &Repository, name: &str) -> Result<TargetInfo> {
    repo.find_target(name)
        .await
        .map_err(|source| read_error(name, source))?
        .context(error::TargetMissingSnafu { name })
}

/// A verified stream of target `info`: the length is enforced while streaming, the hashes are
/// checked at its end (its last item is the error when they do not match).
pub async fn fetch_target(repo: &Repository, info: &TargetInfo) -> Result<TargetStream> {
    repo.fetch_target(info)
        .await
        .map_err(|source| read_error(&info.name, source))
}

/// A verified stream of target `name`.
pub async fn open_target(repo: &Repository, name: &str) -> Result<TargetStream> {
    let info = target_info(repo, name).await?;
    fetch_target(repo, &info).await
}

/// Read a whole (small) target, verified.
pub async fn read_small_target(repo: &Repository, name: &str) -> Result<Vec<u8>> {
    let mut stream = open_target(repo, name).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.map_err(|source| read_error(name, source))?);
    }
    Ok(bytes)
}

/// Read and parse `manifest.json` (verified by TUF).
pub async fn manifest(repo: &Repository) -> Result<Manifest> {
    let bytes = read_small_target(repo, MANIFEST).await?;
    tokio::task::spawn_blocking(move || Manifest::from_slice(&bytes, MANIFEST).map_err(Box::new))
        .await
        .context(error::JoinSnafu)?
        .map_err(|source| error::Error::ParseManifest { source })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::forget_tough_datastore;

    #[test]
    fn a_tough_datastore_is_cleared_and_ours_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["root.json", "timestamp.json", "role%2Fx.json"] {
            std::fs::write(d.join(name), b"{}").unwrap();
        }
        std::fs::create_dir(d.join("root-history")).unwrap();
        // Without tough's clock file: ours, untouched.
        forget_tough_datastore(d).unwrap();
        assert!(d.join("root.json").exists());
        std::fs::write(
            d.join("latest_known_time.json"),
            b"\"2024-01-01T00:00:00Z\"",
        )
        .unwrap();
        std::fs::write(d.join("notes.txt"), b"kept").unwrap();
        forget_tough_datastore(d).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "root-history"]);
    }
}
