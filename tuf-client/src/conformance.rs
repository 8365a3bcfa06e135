//! The tuf-conformance client CLI protocol (`init`, `refresh`, `download`) over the library.
//! Trusted metadata lives in the metadata folder under unversioned names; targets are written
//! to the target folder as [`target_file_name`](crate::target_file_name) of their name.
use crate::error::{self, Result};
use crate::{Limits, Repository, RepositoryLoader, Transport, store};
use snafu::{OptionExt, ResultExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use url::Url;

/// `init`: trust `trusted_root` (copied, byte for byte, to `METADATA_DIR/root.json`); no
/// network, no checks (they happen at the first refresh).
pub fn init(metadata_dir: &Path, trusted_root: &Path) -> Result<()> {
    let bytes =
        std::fs::read(trusted_root).context(error::ReadTrustedSnafu { path: trusted_root })?;
    let path = metadata_dir.join("root.json");
    store::write_atomic(metadata_dir, &path, &bytes).context(error::WriteMetadataSnafu { path })
}

/// `refresh`: the full top-level update from `metadata_url`.
pub async fn refresh(
    metadata_dir: &Path,
    metadata_url: &Url,
    targets_url: Option<&Url>,
    limits: Limits,
    transport: Option<Arc<dyn Transport>>,
) -> Result<Repository> {
    let mut loader = RepositoryLoader::new(
        metadata_dir,
        metadata_url,
        targets_url.unwrap_or(metadata_url),
    )
    .limits(limits);
    if let Some(t) = transport {
        loader = loader.transport(t);
    }
    loader.load().await
}

/// `download`: refresh, then find, fetch and verify each target in order into `target_dir`,
/// stopping at the first failure. Returns the files written (or found already there).
pub async fn download(
    metadata_dir: &Path,
    metadata_url: &Url,
    target_base_url: &Url,
    names: &[String],
    target_dir: &Path,
    limits: Limits,
) -> Result<Vec<PathBuf>> {
    let repo = refresh(
        metadata_dir,
        metadata_url,
        Some(target_base_url),
        limits,
        None,
    )
    .await?;
    let mut written = Vec::new();
    for name in names {
        let info = repo
            .find_target(name)
            .await?
            .context(error::TargetNotFoundSnafu { name: name.clone() })?;
        written.push(repo.download_target_to_dir(&info, target_dir).await?);
    }
    Ok(written)
}
