//! Loading the TUF repository (persistent datastore) and reading verified targets.
use crate::config::Settings;
use crate::error::{self, Result};
use crate::transport::UpdogTransport;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use snafu::{OptionExt, ResultExt};
use std::os::unix::fs::DirBuilderExt;
use tough::{Repository, RepositoryLoader, TargetName};
use update_metadata::Manifest;

/// The manifest's target name.
pub const MANIFEST: &str = "manifest.json";

/// Load and verify the repository's metadata, keeping trusted metadata in the datastore so
/// versions can never roll back between runs.
pub async fn load(settings: &Settings, transport: &UpdogTransport) -> Result<Repository> {
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
    let loaded = RepositoryLoader::new(
        &root,
        settings.metadata_base_url.clone(),
        settings.targets_base_url.clone(),
    )
    .transport(transport.clone())
    .datastore(&paths.datastore)
    .load()
    .await;
    loaded.map_err(|source| {
        if let tough::error::Error::SystemTimeSteppedBackward {
            sys_time,
            latest_known_time,
        } = &source
        {
            return error::ClockSteppedBackSnafu {
                now: *sys_time,
                latest: *latest_known_time,
                datastore: paths.datastore.clone(),
            }
            .build();
        }
        error::Error::LoadMetadata {
            url: settings.metadata_base_url.to_string(),
            source: Box::new(source),
        }
    })
}

/// Parse a target name from a manifest.
pub fn target_name(name: &str) -> Result<TargetName> {
    TargetName::new(name).map_err(|source| error::Error::TargetName {
        name: name.to_owned(),
        source: Box::new(source),
    })
}

/// A verified stream of target `name` (length and SHA-256 are checked at its end).
pub async fn open_target(
    repo: &Repository,
    name: &str,
) -> Result<impl Stream<Item = std::result::Result<Bytes, tough::error::Error>> + Send + Sync + use<>>
{
    let target = target_name(name)?;
    let stream = repo
        .read_target(&target)
        .await
        .map_err(|source| read_error(name, source))?
        .context(error::TargetMissingSnafu { name })?;
    Ok(stream)
}

/// The error for a failed read of target `name`.
pub fn read_error(name: &str, source: tough::error::Error) -> error::Error {
    error::Error::ReadTarget {
        name: name.to_owned(),
        source: Box::new(source),
    }
}

/// Read a whole (small) target, verified.
pub async fn read_small_target(repo: &Repository, name: &str) -> Result<Vec<u8>> {
    let mut stream = Box::pin(open_target(repo, name).await?);
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

/// The signed length and SHA-256 (hex) of a target, if listed.
pub fn target_info(repo: &Repository, name: &str) -> Result<(u64, String)> {
    let target_name = target_name(name)?;
    let target = repo
        .targets()
        .signed
        .find_target(&target_name, false)
        .ok()
        .context(error::TargetMissingSnafu { name })?;
    Ok((target.length, hex::encode(&target.hashes.sha256)))
}
