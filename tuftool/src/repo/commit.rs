//! Committing: which target files are missing, checking what is already there, and writing
//! target files then metadata (timestamp last), each atomically.

use super::{Place, RepoReport, Staged, Tree, fetch_with, targets_filename};
use crate::error::{self, Result};
use crate::fsutil::{self};
use crate::targets::{self, InputTarget};
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::BTreeSet;
use std::path::Path;
use tough::schema::{Metafile, Root, Signed, Targets};
use url::Url;

/// Files a new output folder needs besides the ones just signed: the root chain and unchanged
/// delegated/targets metadata, fetched from the source and checked against snapshot hashes.
pub(crate) async fn missing_files(
    tree: &Tree,
    staged: &Staged,
    metadata_dir: &Path,
) -> Result<Vec<(String, Vec<u8>)>> {
    let Some(source) = &tree.source else {
        return Ok(Vec::new());
    };
    let written: BTreeSet<&str> = staged.files.iter().map(|(n, _)| n.as_str()).collect();
    let mut out = Vec::new();
    let consistent = tree.consistent();
    // Root chain: every file fetched is checked, from the trusted root down: the trusted
    // version must be the root tough verified, and each earlier one must be the root the next
    // was signed under (its version, signed by its own root threshold, and its root keys meet
    // their threshold on the next).
    let newest = tree.root.signed.version.get();
    let mut later: Signed<Root> = tree.root.clone();
    let mut chain = Vec::new();
    for v in (1..=newest).rev() {
        let name = format!("{v}.root.json");
        let url = source
            .join(&name)
            .ok()
            .context(error::LocationSnafu { text: name.clone() })?;
        let Some(bytes) = fetch_with(tree.source_transport.as_ref(), &url).await? else {
            if v == newest {
                // The trusted root itself: write what we verified.
                chain.push((name, crate::root::root_bytes(&tree.root)?));
            } else {
                tracing::warn!(file = %name, "earlier root not found at the source; not copied");
            }
            break;
        };
        let parsed: Signed<Root> =
            serde_json::from_slice(&bytes).context(error::ParseMetadataSnafu {
                url: url.to_string(),
            })?;
        let fits = if v == newest {
            same_json(&parsed, &tree.root)
        } else {
            parsed.signed.version.get() == v
                && parsed.signed.verify_role(&parsed).is_ok()
                && parsed.signed.verify_role(&later).is_ok()
        };
        ensure!(
            fits,
            error::MetadataMismatchSnafu {
                url: url.to_string()
            }
        );
        chain.push((name, bytes));
        later = parsed;
    }
    for (name, bytes) in chain.into_iter().rev() {
        if !written.contains(name.as_str()) && !metadata_dir.join(&name).exists() {
            out.push((name, bytes));
        }
    }
    // Targets-type metadata listed in the snapshot.
    if let Some(snapshot) = &tree.snapshot {
        for (key, meta) in &snapshot.signed.meta {
            let role = key.strip_suffix(".json").unwrap_or(key);
            let name = targets_filename(role, meta.version, consistent);
            if written.contains(name.as_str()) || metadata_dir.join(&name).exists() {
                continue;
            }
            let url = source
                .join(&name)
                .ok()
                .context(error::LocationSnafu { text: name.clone() })?;
            let bytes = fetch_with(tree.source_transport.as_ref(), &url)
                .await?
                .context(error::MissingMetadataSnafu {
                    url: url.to_string(),
                })?;
            verify_meta(&bytes, meta, &url)?;
            // Snapshot may list a version only: the file must also be the role as verified.
            let parsed: Signed<Targets> =
                serde_json::from_slice(&bytes).context(error::ParseMetadataSnafu {
                    url: url.to_string(),
                })?;
            ensure!(
                tree.role(role)
                    .is_ok_and(|verified| same_json(&parsed, verified)),
                error::MetadataMismatchSnafu {
                    url: url.to_string()
                }
            );
            out.push((name, bytes));
        }
    }
    Ok(out)
}

/// Whether two pieces of metadata say the same (signed part and signatures), whatever their
/// formatting: what a file holds against what was verified.
fn same_json<T: serde::Serialize>(a: &T, b: &T) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Check bytes against a snapshot/timestamp entry's length and sha256.
pub(crate) fn verify_meta(bytes: &[u8], meta: &Metafile, url: &Url) -> Result<()> {
    if let Some(len) = meta.length {
        ensure!(
            bytes.len() as u64 == len,
            error::MetadataMismatchSnafu {
                url: url.to_string()
            }
        );
    }
    if let Some(h) = &meta.hashes {
        let got = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        ensure!(
            got.as_ref() == h.sha256.as_ref(),
            error::MetadataMismatchSnafu {
                url: url.to_string()
            }
        );
    }
    Ok(())
}

/// Publish targets, then write staged metadata (plus any missing chain files) into
/// `outdir/metadata`.
pub(crate) async fn commit(
    tree: &Tree,
    mut staged: Staged,
    outdir: &Path,
    inputs: &[InputTarget],
    place: Place,
) -> Result<RepoReport> {
    let metadata_dir = outdir.join("metadata");
    let targets_dir = outdir.join("targets");
    let missing = missing_files(tree, &staged, &metadata_dir).await?;
    targets::publish_inputs(inputs, &targets_dir, tree.consistent(), place).await?;
    let mut files = missing;
    files.append(&mut staged.files);
    let dir = metadata_dir.clone();
    let names = tokio::task::spawn_blocking(move || {
        let mut names = Vec::new();
        for (name, bytes) in files {
            fsutil::write_atomic(&dir.join(&name), &bytes)?;
            names.push(name);
        }
        Ok::<_, crate::Error>(names)
    })
    .await
    .context(error::JoinSnafu)??;
    staged.report.files_written = names;
    staged.report.metadata_dir = metadata_dir;
    Ok(staged.report)
}
