//! Caching the migrations (and `manifest.json`) the chosen update needs, plus the TUF metadata
//! the boot-time migrator verifies them with; removing cached files no longer needed.
//!
//! The list is the path from `min(running, target)` to `max(running, target)`: the same
//! migrations serve the upgrade and a later rollback. Each target is verified by TUF while it
//! is written to a temporary file, then renamed into place as `<sha256>.<name>` (consistent
//! snapshots) or `<name>`; a file already there with the right digest is kept without
//! downloading it again. Everything else in the migrations folder is removed afterwards,
//! except what a staged update still needs: once an update is written (flipped or only
//! staged), its migration files are recorded in `.staged-update.json`; until the host runs that
//! version, a later run (`prepare`, or an `update` to another version that stops before it
//! rewrites the set) keeps them, so the staged set never boots without its migrations.
//!
//! The metadata is written from the bytes updog verified while loading the repository (its
//! datastore), never fetched again: `timestamp.json`, `[N.]snapshot.json`, `[N.]targets.json`,
//! the delegated roles loaded and the root chain `K.root.json ..= N.root.json` (every root
//! verified since the first-use root K), each atomically and synced, the folder synced.
use crate::error::{self, Result};
use crate::repo::{MANIFEST, fetch_target, read_error, target_info};
use futures::StreamExt;
use semver::Version;
use snafu::{OptionExt, ResultExt};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use tuf_client::{Repository, TargetInfo};
use update_metadata::Manifest;

/// The record of the staged update's files, in the migrations folder.
pub const STAGED_RECORD: &str = ".staged-update.json";

/// What an update written to the inactive set needs from the migrations folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StagedRecord {
    /// The version written.
    pub version: Version,
    /// Its files in the migrations folder.
    pub files: Vec<String>,
}

/// Record, atomically and durably, that the inactive set now holds `version`, which needs
/// `files` of the migrations folder `dir`.
pub fn record_staged(dir: &Path, version: &Version, files: &[String]) -> Result<()> {
    let record = StagedRecord {
        version: version.clone(),
        files: files.to_vec(),
    };
    let bytes = serde_json::to_vec_pretty(&record).context(error::EncodeRecordSnafu)?;
    write_file(dir, STAGED_RECORD, &bytes)?;
    sync_dir(dir)
}

/// The files a staged update still needs: those of the record in `dir`, unless the host
/// already runs that version (or there is no readable record).
pub fn staged_files(dir: &Path, running: &Version) -> BTreeSet<String> {
    let Ok(bytes) = std::fs::read(dir.join(STAGED_RECORD)) else {
        return BTreeSet::new();
    };
    match serde_json::from_slice::<StagedRecord>(&bytes) {
        Ok(record) if record.version != *running => record.files.into_iter().collect(),
        Ok(_) => BTreeSet::new(),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring an unreadable {STAGED_RECORD}");
            BTreeSet::new()
        }
    }
}

/// What [`cache`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheReport {
    /// Target names cached (migrations in order, then `manifest.json`).
    pub targets: Vec<String>,
    /// Their files in the migrations folder.
    pub files: Vec<String>,
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
    let staged = staged_files(&paths.migrations_cache, &session.os.version);
    let report = cache(
        &session.repo,
        &names,
        &paths.migrations_cache,
        &paths.metadata_cache,
        &staged,
    )
    .await?;
    Ok((names, report))
}

/// Cache `names` into `migrations_dir` and the metadata into `metadata_dir`, then prune
/// (keeping `protected`, the files of a staged update, and the staged record).
/// Every file is written through a temporary file, fsync and rename, and both folders are
/// synced at the end, so the cache is durable before any partition is touched.
pub async fn cache(
    repo: &Repository,
    names: &[String],
    migrations_dir: &Path,
    metadata_dir: &Path,
    protected: &BTreeSet<String>,
) -> Result<CacheReport> {
    for dir in [migrations_dir, metadata_dir] {
        std::fs::create_dir_all(dir).context(error::CreateDirSnafu { path: dir })?;
    }
    let consistent = repo.consistent_snapshot();
    let mut keep = BTreeSet::new();
    let mut downloaded = 0;
    for name in names {
        let info = target_info(repo, name).await?;
        let sha256 = info
            .hash("sha256")
            .context(error::TargetSha256Snafu { name })?
            .to_owned();
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
        save_target(repo, &info, migrations_dir, &path).await?;
        downloaded += 1;
    }
    let files: Vec<String> = keep.iter().cloned().collect();
    keep.extend(protected.iter().cloned());
    keep.insert(STAGED_RECORD.to_owned());
    let metadata = metadata_files(repo);
    let metadata_keep: BTreeSet<String> = metadata.iter().map(|(n, _)| n.clone()).collect();
    let dirs = (migrations_dir.to_owned(), metadata_dir.to_owned());
    let removed = tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
        let (migrations_dir, metadata_dir) = dirs;
        for (name, bytes) in &metadata {
            write_file(&metadata_dir, name, bytes)?;
        }
        let mut removed = prune(&migrations_dir, |name| keep.contains(name))?;
        removed.extend(prune(&metadata_dir, |name| {
            metadata_keep.contains(name) || !is_metadata_name(name)
        })?);
        sync_dir(&migrations_dir)?;
        sync_dir(&metadata_dir)?;
        Ok(removed)
    })
    .await
    .context(error::JoinSnafu)??;
    tracing::info!(path = %metadata_dir.display(), "cached the verified TUF metadata");
    Ok(CacheReport {
        targets: names.to_vec(),
        files,
        downloaded,
        removed,
    })
}

/// A temporary file in `dir`, to be renamed over `path` by [`persist_synced`].
fn temp_file(dir: &Path, path: &Path) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .context(error::WriteCacheSnafu { path })
}

/// fsync `file`, then rename it to `path`.
fn persist_synced(file: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    file.as_file()
        .sync_all()
        .context(error::WriteCacheSnafu { path })?;
    file.persist(path)
        .map_err(|e| e.error)
        .context(error::WriteCacheSnafu { path })?;
    Ok(())
}

/// Write `bytes` as `dir/name`, atomically (temporary file, fsync, rename).
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let mut file = temp_file(dir, &path)?;
    file.write_all(bytes)
        .context(error::WriteCacheSnafu { path: &path })?;
    persist_synced(file, &path)
}

/// Make the renames and removals in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .context(error::WriteCacheSnafu { path: dir })
}

/// Stream one verified target into a temporary file in `dir`, then rename it to `path` (only
/// once the stream ended with its length and hashes verified).
async fn save_target(repo: &Repository, info: &TargetInfo, dir: &Path, path: &Path) -> Result<()> {
    let name = info.name.as_str();
    let mut stream = fetch_target(repo, info).await?;
    let mut file = temp_file(dir, path)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| read_error(name, source))?;
        file.write_all(&chunk)
            .context(error::WriteCacheSnafu { path })?;
    }
    persist_synced(file, path)?;
    tracing::info!(target = %name, path = %path.display(), "cached");
    Ok(())
}

/// The metadata files the boot-time migrator loads, in the names the reference's cache uses,
/// each with the exact bytes updog verified (from its datastore): the root chain
/// `K.root.json ..= N.root.json` (from the first-use root on), the delegated roles loaded,
/// `[N.]targets.json`, `[N.]snapshot.json`, then `timestamp.json`, the order they are written
/// in (the file the migrator starts from last).
fn metadata_files(repo: &Repository) -> Vec<(String, Vec<u8>)> {
    let consistent = repo.consistent_snapshot();
    let versioned = |role: &str, version: u64| {
        let file = tuf_client::store::encode_name(role);
        if consistent {
            format!("{version}.{file}.json")
        } else {
            format!("{file}.json")
        }
    };
    let mut files: Vec<(String, Vec<u8>)> = repo
        .root_chain()
        .iter()
        .map(|(version, bytes)| (format!("{version}.root.json"), bytes.clone()))
        .collect();
    for role in repo.delegated_roles() {
        files.push((versioned(&role.role, role.version), role.bytes));
    }
    for role in [repo.targets(), repo.snapshot()] {
        files.push((versioned(&role.role, role.version), role.bytes));
    }
    files.push(("timestamp.json".to_owned(), repo.timestamp().bytes));
    files
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
