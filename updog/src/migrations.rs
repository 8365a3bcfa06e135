//! Caching the migrations (and `manifest.json`) the chosen update needs, plus the TUF metadata
//! the boot-time migrator verifies them with; removing cached files no longer needed.
//!
//! The list is the path from `min(running, target)` to `max(running, target)`: the same
//! migrations serve the upgrade and a later rollback. Each target is verified by TUF while it
//! is written to a temporary file, then renamed into place as `<sha256>.<name>` (consistent
//! snapshots) or `<name>`; a file already there with the right digest is kept without
//! downloading it again. Everything else in the migrations folder is removed afterwards.
use crate::error::{self, Result};
use crate::repo::{MANIFEST, open_target, read_error, target_info};
use futures::StreamExt;
use semver::Version;
use snafu::ResultExt;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use tough::Repository;
use update_metadata::Manifest;

/// What [`cache`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheReport {
    /// Target names cached (migrations in order, then `manifest.json`).
    pub targets: Vec<String>,
    /// Files downloaded this time.
    pub downloaded: usize,
    /// Stale files removed.
    pub removed: Vec<String>,
}

/// The migrations between `running` and `target`, in either direction, plus the manifest.
pub fn needed(manifest: &Manifest, running: &Version, target: &Version) -> Result<Vec<String>> {
    let (low, high) = if running <= target {
        (running, target)
    } else {
        (target, running)
    };
    let mut list = manifest
        .migration_path(low, high)
        .context(error::MigrationPathSnafu {
            from: low.clone(),
            to: high.clone(),
        })?;
    list.push(MANIFEST.to_owned());
    Ok(list)
}

fn sha256_of_file(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &bytes,
    )))
}

/// Cache what the update to `target` needs (see [`needed`]) into the session's cache folders
/// and return the list of target names cached.
pub async fn cache_for(
    session: &crate::session::Session,
    target: &Version,
) -> Result<(Vec<String>, CacheReport)> {
    let names = needed(&session.manifest, &session.os.version, target)?;
    let paths = &session.settings.paths;
    let report = cache(
        &session.repo,
        &names,
        &paths.migrations_cache,
        &paths.metadata_cache,
    )
    .await?;
    Ok((names, report))
}

/// Cache `names` into `migrations_dir` and the metadata into `metadata_dir`, then prune.
pub async fn cache(
    repo: &Repository,
    names: &[String],
    migrations_dir: &Path,
    metadata_dir: &Path,
) -> Result<CacheReport> {
    for dir in [migrations_dir, metadata_dir] {
        std::fs::create_dir_all(dir).context(error::CreateDirSnafu { path: dir })?;
    }
    let consistent = repo.root().signed.consistent_snapshot;
    let mut keep = BTreeSet::new();
    let mut downloaded = 0;
    for name in names {
        let (_, sha256) = target_info(repo, name)?;
        let file_name = if consistent {
            format!("{sha256}.{name}")
        } else {
            name.clone()
        };
        let path = migrations_dir.join(&file_name);
        keep.insert(file_name);
        if sha256_of_file(&path).as_deref() == Some(sha256.as_str()) {
            tracing::debug!(target = %name, "already cached");
            continue;
        }
        save_target(repo, name, migrations_dir, &path).await?;
        downloaded += 1;
    }
    repo.cache_metadata(metadata_dir, true)
        .await
        .map_err(|source| error::Error::CacheMetadata {
            path: metadata_dir.to_owned(),
            source: Box::new(source),
        })?;
    let mut removed = prune(migrations_dir, |name| keep.contains(name))?;
    let metadata_keep = metadata_files(repo);
    removed.extend(prune(metadata_dir, |name| {
        metadata_keep.contains(name) || !is_metadata_name(name)
    })?);
    Ok(CacheReport {
        targets: names.to_vec(),
        downloaded,
        removed,
    })
}

/// Stream one verified target into a temporary file in `dir`, then rename it to `path`.
async fn save_target(repo: &Repository, name: &str, dir: &Path, path: &Path) -> Result<()> {
    let mut stream = Box::pin(open_target(repo, name).await?);
    let mut file = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .context(error::WriteCacheSnafu { path: dir })?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| read_error(name, source))?;
        file.write_all(&chunk)
            .context(error::WriteCacheSnafu { path })?;
    }
    file.as_file()
        .sync_all()
        .context(error::WriteCacheSnafu { path })?;
    file.persist(path)
        .map_err(|e| e.error)
        .context(error::WriteCacheSnafu { path })?;
    tracing::info!(target = %name, path = %path.display(), "cached");
    Ok(())
}

/// The metadata file names `cache_metadata` writes for this repository.
fn metadata_files(repo: &Repository) -> BTreeSet<String> {
    let consistent = repo.root().signed.consistent_snapshot;
    let mut names = BTreeSet::from(["timestamp.json".to_owned()]);
    if consistent {
        names.insert(format!("{}.snapshot.json", repo.snapshot().signed.version));
        names.insert(format!("{}.targets.json", repo.targets().signed.version));
    } else {
        names.insert("snapshot.json".to_owned());
        names.insert("targets.json".to_owned());
    }
    for version in 1..=repo.root().signed.version.get() {
        names.insert(format!("{version}.root.json"));
    }
    names
}

/// Names of top-level metadata files (candidates for pruning); delegated roles are left alone.
fn is_metadata_name(name: &str) -> bool {
    for role in ["snapshot.json", "targets.json", "root.json"] {
        if name == role {
            return true;
        }
        if let Some(version) = name.strip_suffix(role).and_then(|p| p.strip_suffix('.'))
            && !version.is_empty()
            && version.bytes().all(|b| b.is_ascii_digit())
        {
            return true;
        }
    }
    false
}

/// Remove the regular files in `dir` that `keep` rejects (and leftover temporary files).
fn prune(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let entries = std::fs::read_dir(dir).context(error::PruneCacheSnafu { path: dir })?;
    for entry in entries {
        let entry = entry.context(error::PruneCacheSnafu { path: dir })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !is_file || keep(&name) {
            continue;
        }
        let path: PathBuf = entry.path();
        std::fs::remove_file(&path).context(error::PruneCacheSnafu { path: &path })?;
        tracing::info!(path = %path.display(), "removed stale cache file");
        removed.push(name);
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::is_metadata_name;

    #[test]
    fn metadata_names() {
        for name in [
            "3.root.json",
            "12.snapshot.json",
            "targets.json",
            "snapshot.json",
        ] {
            assert!(is_metadata_name(name), "{name}");
        }
        for name in [
            "timestamp.json",
            "role.json",
            "x.root.json",
            "root.json.bak",
        ] {
            assert!(!is_metadata_name(name), "{name}");
        }
    }
}
