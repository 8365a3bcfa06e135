//! Reading repositories: `download` (verified targets), `clone` (metadata with the whole root
//! chain, optionally targets) and `transfer-metadata` (re-sign a repository's targets under
//! another root).
//!
//! Every target byte is checked (length and SHA-256 from verified metadata) before the output
//! folder appears: work happens in a staging folder beside the output, renamed into place at the
//! end, so a failure leaves nothing.
use crate::error::{self, Result};
use crate::fsutil;
use crate::keys::KeySource;
use crate::repo::{
    self, ImportedRole, RepoLocation, RepoReport, Schedule, SigningKeys, Staged, Tree,
};
use crate::root::load_root;
use crate::targets::{local_relative, placements};
use aws_lc_rs::digest::{Context, SHA256};
use futures::StreamExt;
use serde::Serialize;
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use tough::schema::{Signed, Target, Timestamp};
use tough::{Repository, TargetName, Transport};
use url::Url;

/// Which targets to fetch.
fn select_targets(repo: &Repository, names: &[String]) -> Result<Vec<(TargetName, Target)>> {
    if names.is_empty() {
        let mut all: Vec<_> = repo
            .all_targets()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        all.sort_by(|a, b| a.0.resolved().cmp(b.0.resolved()));
        return Ok(all);
    }
    names
        .iter()
        .map(|name| {
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
            Ok((target_name, target))
        })
        .collect()
}

/// The URL of a path relative to `base`, each segment percent-encoded.
fn join_segments(base: &Url, relative: &str) -> Result<Url> {
    let mut url = base.clone();
    {
        let mut segments = url.path_segments_mut().ok().context(error::LocationSnafu {
            text: base.to_string(),
        })?;
        segments.pop_if_empty();
        segments.extend(relative.split('/'));
    }
    Ok(url)
}

/// Fetch a target into `dest`, checking length and SHA-256 as the bytes arrive; the file is
/// created only if everything matches. Tries the spec's consistent-snapshot placement first,
/// then tough's.
pub(crate) async fn fetch_target(
    targets_url: &Url,
    name: &TargetName,
    target: &Target,
    consistent: bool,
    dest: &Path,
) -> Result<()> {
    let base = Path::new("");
    let candidates = placements(base, name, &target.hashes.sha256, consistent, true)?;
    let transport = tough::DefaultTransport::new();
    let mut last_url = String::new();
    for candidate in candidates {
        let rel = candidate.to_string_lossy().replace('\\', "/");
        let url = join_segments(targets_url, &rel)?;
        last_url = url.to_string();
        let mut stream = match transport.fetch(url.clone()).await {
            Ok(s) => s,
            Err(e) if e.kind() == tough::TransportErrorKind::FileNotFound => continue,
            Err(e) => {
                return Err(error::Error::Fetch {
                    url: url.to_string(),
                    source: Box::new(e),
                });
            }
        };
        let dir = dest.parent().context(error::NoParentSnafu { path: dest })?;
        std::fs::create_dir_all(dir).context(error::CreateDirSnafu { path: dir })?;
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).context(error::WriteFileSnafu { path: dest })?;
        let mut ctx = Context::new(&SHA256);
        let mut length = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context(error::FetchSnafu {
                url: url.to_string(),
            })?;
            length += chunk.len() as u64;
            ensure!(
                length <= target.length,
                error::TargetMismatchSnafu {
                    name: name.raw(),
                    url: url.to_string()
                }
            );
            ctx.update(&chunk);
            tmp.write_all(&chunk)
                .context(error::WriteFileSnafu { path: dest })?;
        }
        ensure!(
            length == target.length && ctx.finish().as_ref() == target.hashes.sha256.as_ref(),
            error::TargetMismatchSnafu {
                name: name.raw(),
                url: url.to_string()
            }
        );
        tmp.persist(dest)
            .map_err(|e| e.error)
            .context(error::WriteFileSnafu { path: dest })?;
        return Ok(());
    }
    error::TargetNotFoundSnafu {
        name: name.raw(),
        url: last_url,
    }
    .fail()
}

/// What `download` fetched.
#[derive(Debug, Serialize)]
pub struct DownloadReport {
    /// Output folder.
    pub outdir: PathBuf,
    /// Targets written (names; files are at `outdir/<name>`).
    pub targets: Vec<String>,
}

/// Verify a repository and download `names` (all targets, delegated ones included, when empty)
/// into `outdir`, which must not exist. Each target lands at `outdir/<name>`.
pub async fn download(
    location: &RepoLocation,
    names: &[String],
    outdir: &Path,
) -> Result<DownloadReport> {
    fsutil::ensure_absent(outdir)?;
    let repo = repo::load_repo(location).await?;
    let targets_url = location.targets_url.clone().context(error::LocationSnafu {
        text: "targets URL",
    })?;
    // Every name becomes a path (or is refused) before anything is written.
    let selected = select_targets(&repo, names)?
        .into_iter()
        .map(|(name, target)| Ok((local_relative(&name)?, name, target)))
        .collect::<Result<Vec<_>>>()?;
    let staging = fsutil::staging_dir_for(outdir)?;
    let consistent = repo.root().signed.consistent_snapshot;
    let mut fetched = Vec::new();
    for (relative, name, target) in &selected {
        let dest = staging.path().join(relative);
        fetch_target(&targets_url, name, target, consistent, &dest).await?;
        fetched.push(name.raw().to_owned());
    }
    fsutil::commit_staging(staging, outdir)?;
    Ok(DownloadReport {
        outdir: outdir.to_path_buf(),
        targets: fetched,
    })
}

/// What `clone` wrote.
#[derive(Debug, Serialize)]
pub struct CloneReport {
    /// Metadata folder.
    pub metadata_dir: PathBuf,
    /// Metadata files written.
    pub metadata_files: Vec<String>,
    /// Targets folder (if targets were cloned).
    pub targets_dir: Option<PathBuf>,
    /// Targets cloned.
    pub targets: Vec<String>,
}

/// Verify a repository and copy it: metadata under repository names (`1..N.root.json`,
/// versioned roles, `timestamp.json`), each checked against verified metadata; and, with
/// `targets_dir`, the targets `names` (all when empty) under their repository names.
pub async fn clone_repo(
    location: &RepoLocation,
    metadata_dir: &Path,
    targets_dir: Option<&Path>,
    names: &[String],
    tough_placement: bool,
) -> Result<CloneReport> {
    fsutil::ensure_absent(metadata_dir)?;
    if let Some(t) = targets_dir {
        fsutil::ensure_absent(t)?;
    }
    let repo = repo::load_repo(location).await?;
    // The targets to clone, every name checked before anything is fetched or written.
    let selected = match targets_dir {
        Some(_) => {
            let selected = select_targets(&repo, names)?;
            for (name, _) in &selected {
                local_relative(name)?;
            }
            selected
        }
        None => Vec::new(),
    };
    let tree = Tree::from_repo(&repo, location);
    let consistent = tree.consistent();
    let mut files =
        repo::missing_files(&tree, &Staged::default(), Path::new("/nonexistent-tuftool")).await?;
    // Snapshot, checked against the timestamp; timestamp, checked against what was verified.
    let ts_url =
        location
            .metadata_url
            .join("timestamp.json")
            .ok()
            .context(error::LocationSnafu {
                text: "timestamp.json",
            })?;
    let ts_bytes = repo::fetch_bytes(&ts_url)
        .await?
        .context(error::MissingMetadataSnafu {
            url: ts_url.to_string(),
        })?;
    let ts: Signed<Timestamp> =
        serde_json::from_slice(&ts_bytes).context(error::ParseMetadataSnafu {
            url: ts_url.to_string(),
        })?;
    ensure!(
        &ts == repo.timestamp(),
        error::MetadataMismatchSnafu {
            url: ts_url.to_string()
        }
    );
    let snap_meta = ts
        .signed
        .meta
        .get("snapshot.json")
        .context(error::MissingMetadataSnafu {
            url: "snapshot.json",
        })?;
    let snap_name = if consistent {
        format!("{}.snapshot.json", snap_meta.version)
    } else {
        "snapshot.json".to_owned()
    };
    let snap_url = location
        .metadata_url
        .join(&snap_name)
        .ok()
        .context(error::LocationSnafu {
            text: snap_name.clone(),
        })?;
    let snap_bytes = repo::fetch_bytes(&snap_url)
        .await?
        .context(error::MissingMetadataSnafu {
            url: snap_url.to_string(),
        })?;
    repo::verify_meta(&snap_bytes, snap_meta, &snap_url)?;
    files.push((snap_name, snap_bytes));
    files.push(("timestamp.json".to_owned(), ts_bytes));

    let staging = fsutil::staging_dir_for(metadata_dir)?;
    let mut written = Vec::new();
    for (name, bytes) in &files {
        fsutil::write_atomic(&staging.path().join(name), bytes)?;
        written.push(name.clone());
    }
    let mut cloned = Vec::new();
    let targets_staging = match targets_dir {
        Some(dir) => {
            let targets_url = location.targets_url.clone().context(error::LocationSnafu {
                text: "targets URL",
            })?;
            let staging_t = fsutil::staging_dir_for(dir)?;
            for (name, target) in selected {
                let spots = placements(
                    staging_t.path(),
                    &name,
                    &target.hashes.sha256,
                    consistent,
                    tough_placement,
                )?;
                fetch_target(&targets_url, &name, &target, consistent, &spots[0]).await?;
                for extra in &spots[1..] {
                    fsutil::publish_file(&spots[0], extra, fsutil::LinkMode::Hardlink).or_else(
                        |_| fsutil::publish_file(&spots[0], extra, fsutil::LinkMode::Copy),
                    )?;
                }
                cloned.push(name.raw().to_owned());
            }
            Some((staging_t, dir))
        }
        None => None,
    };
    fsutil::commit_staging(staging, metadata_dir)?;
    if let Some((staging_t, dir)) = targets_staging {
        fsutil::commit_staging(staging_t, dir)?;
    }
    Ok(CloneReport {
        metadata_dir: metadata_dir.to_path_buf(),
        metadata_files: written,
        targets_dir: targets_dir.map(Path::to_path_buf),
        targets: cloned,
    })
}

/// Options of [`transfer_metadata`].
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// The root of the new repository (signed).
    pub new_root: PathBuf,
    /// Keys for the new repository's targets, snapshot and timestamp.
    pub keys: Vec<KeySource>,
    /// Versions and expiries.
    pub schedule: Schedule,
    /// Output folder (must not hold a repository).
    pub outdir: PathBuf,
}

/// Re-sign a repository's targets (top-level targets and delegations, with the delegated role
/// files copied byte for byte) under another root, into a new repository. Target files are not
/// copied.
pub async fn transfer_metadata(
    location: &RepoLocation,
    options: &TransferOptions,
    now: jiff::Timestamp,
) -> Result<RepoReport> {
    let repo = repo::load_repo(location).await?;
    let root_file = std::fs::read(&options.new_root).context(error::ReadFileSnafu {
        path: &options.new_root,
    })?;
    let root = load_root(&options.new_root)?;
    repo::check_root(&root, &options.new_root, now)?;
    let existing = options.outdir.join("metadata").join("timestamp.json");
    ensure!(
        !existing.exists(),
        error::RepoExistsSnafu { path: existing }
    );
    let mut imported = Vec::new();
    let consistent = repo.root().signed.consistent_snapshot;
    for (key, meta) in &repo.snapshot().signed.meta {
        let role = key.strip_suffix(".json").unwrap_or(key);
        if role == "targets" {
            continue;
        }
        let name = repo::targets_filename(role, meta.version, consistent);
        let url = location
            .metadata_url
            .join(&name)
            .ok()
            .context(error::LocationSnafu { text: name.clone() })?;
        let bytes = repo::fetch_bytes(&url)
            .await?
            .context(error::MissingMetadataSnafu {
                url: url.to_string(),
            })?;
        repo::verify_meta(&bytes, meta, &url)?;
        imported.push(ImportedRole {
            name: role.to_owned(),
            version: meta.version,
            bytes,
        });
    }
    let mut tree = Tree {
        root,
        root_file: Some(root_file),
        targets: repo.targets().clone(),
        snapshot: None,
        timestamp: None,
        source: None,
        source_transport: None,
        imported,
    };
    let keys = SigningKeys::load(&options.keys).await?;
    let staged = repo::sign_tree(
        &mut tree,
        &BTreeSet::from(["targets".to_owned()]),
        true,
        &keys,
        &options.schedule,
    )
    .await?;
    repo::commit(&tree, staged, &options.outdir, &[], repo::Place::default()).await
}
