//! Repository operations: create, update, refresh, and the signing core they share.
//!
//! Every operation first builds and signs everything in memory, then publishes target files,
//! then writes metadata files, each atomically, in dependency order (root, delegated roles,
//! targets, snapshot, and `timestamp.json` last). An error before the writes leaves the
//! repository untouched.

mod commit;
mod load;
mod paths;
mod sign;

pub use crate::targets::Place;
pub(crate) use commit::{commit, missing_files, verify_meta};
pub use load::{AnyTransport, RepoLocation, load_repo, parse_location};
pub(crate) use load::{fetch_bytes, fetch_with};
pub(crate) use paths::ValidatePaths;
pub use paths::{encode_role_filename, spec_path_match, targets_filename};
pub(crate) use sign::{ImportedRole, Tree, sign_tree};
pub use sign::{RoleSchedule, Schedule, SigningKeys};

use crate::error::{self, Result};
use crate::keys::KeySource;
use crate::root::{SPEC_VERSION, load_root};
use crate::targets::{self};
use serde::Serialize;
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::TargetName;
use tough::schema::{Root, Signed, Targets};

/// Signed metadata ready to be written, in write order.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// (file name, bytes), timestamp last.
    pub files: Vec<(String, Vec<u8>)>,
    pub report: RepoReport,
}

/// What a repository command signed and wrote.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RepoReport {
    /// Metadata folder written.
    pub metadata_dir: PathBuf,
    /// Root version in force.
    pub root_version: u64,
    /// Versions signed now, by role name.
    pub signed: Vec<SignedRoleReport>,
    /// Target names added or replaced.
    pub targets_added: Vec<String>,
    /// Target names removed.
    pub targets_removed: Vec<String>,
    /// Metadata files written.
    pub files_written: Vec<String>,
}

/// One role signed by a command.
#[derive(Debug, Clone, Serialize)]
pub struct SignedRoleReport {
    /// Role name.
    pub role: String,
    /// New version.
    pub version: u64,
    /// New expiry.
    pub expires: String,
}

// ---------------------------------------------------------------------------------------------
// create / update / refresh

impl PublishOptions {
    /// The signing keys (each loaded once) and the input targets found below `add_targets`.
    async fn keys_and_inputs(&self) -> Result<(SigningKeys, Vec<targets::InputTarget>)> {
        let keys = SigningKeys::load(&self.keys).await?;
        let inputs =
            targets::scan_inputs(&self.add_targets, self.follow_links, self.place.jobs).await?;
        Ok((keys, inputs))
    }
}

/// Options shared by `create` and `update`.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Signing keys.
    pub keys: Vec<KeySource>,
    /// Input folders; each file is a target named by its path relative to its folder.
    pub add_targets: Vec<PathBuf>,
    /// Follow symlinks in input folders.
    pub follow_links: bool,
    /// How target files are placed (and how many are hashed and placed at once).
    pub place: Place,
    /// Versions and expiries.
    pub schedule: Schedule,
    /// Output folder (`metadata/` and `targets/` below it).
    pub outdir: PathBuf,
}

/// Check that a root is signed by its own threshold and not expired.
pub fn check_root(root: &Signed<Root>, path: &Path, now: jiff::Timestamp) -> Result<()> {
    root.signed
        .verify_role(root)
        .context(error::BadRootSnafu { path })?;
    ensure!(
        root.signed.expires > now,
        error::RootExpiredSnafu {
            path,
            expires: root.signed.expires.to_string()
        }
    );
    Ok(())
}

/// Create a new repository from a signed root and input folders.
pub async fn create_repo(
    root_path: &Path,
    options: &PublishOptions,
    now: jiff::Timestamp,
) -> Result<RepoReport> {
    let root_file = std::fs::read(root_path).context(error::ReadFileSnafu { path: root_path })?;
    let root = load_root(root_path)?;
    check_root(&root, root_path, now)?;
    let existing = options.outdir.join("metadata").join("timestamp.json");
    ensure!(
        !existing.exists(),
        error::RepoExistsSnafu { path: existing }
    );
    let (keys, inputs) = options.keys_and_inputs().await?;
    let mut targets = Targets::new(
        SPEC_VERSION.to_owned(),
        options.schedule.targets.version.unwrap_or(NonZeroU64::MIN),
        now,
    );
    for t in &inputs {
        targets.add_target(t.name.clone(), t.target.clone());
    }
    let mut tree = Tree {
        root,
        root_file: Some(root_file),
        targets: Signed {
            signed: targets,
            signatures: Vec::new(),
        },
        snapshot: None,
        timestamp: None,
        source: None,
        source_transport: None,
        imported: Vec::new(),
    };
    let changed = BTreeSet::from(["targets".to_owned()]);
    let mut schedule = options.schedule;
    // A fresh repository starts at the given version (or 1): no "current" version to exceed.
    schedule.targets.version = Some(options.schedule.targets.version.unwrap_or(NonZeroU64::MIN));
    let mut staged = sign_tree(&mut tree, &changed, true, &keys, &schedule).await?;
    staged.report.targets_added = inputs.iter().map(|t| t.name.raw().to_owned()).collect();
    commit(&tree, staged, &options.outdir, &inputs, options.place).await
}

/// Options of [`update_repo`] beyond [`PublishOptions`].
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    /// Target names to remove.
    pub remove_targets: Vec<String>,
    /// Allow an input to replace an existing target of the same name with different content.
    pub replace_targets: bool,
    /// A new root (cross-signed) to rotate to; published as `<version>.root.json`.
    pub new_root: Option<PathBuf>,
    /// The targets-type role to add targets to (`targets` by default, or a delegated role).
    pub role: Option<String>,
}

/// Load a repository, add/remove targets, re-sign targets, snapshot and timestamp.
pub async fn update_repo(
    location: &RepoLocation,
    options: &PublishOptions,
    update: &UpdateOptions,
    now: jiff::Timestamp,
) -> Result<RepoReport> {
    let repo = load_repo(location).await?;
    let mut tree = Tree::from_repo(&repo, location);
    if let Some(path) = &update.new_root {
        rotate_root(&mut tree, path, now)?;
    }
    let (keys, inputs) = options.keys_and_inputs().await?;
    let role_name = update.role.clone().unwrap_or_else(|| "targets".to_owned());
    let role = tree.role_mut(&role_name)?;
    let mut removed = Vec::new();
    for name in &update.remove_targets {
        let target_name = TargetName::new(name.clone())
            .ok()
            .context(error::TargetNameSnafu { path: name })?;
        ensure!(
            role.signed.remove_target(&target_name).is_some(),
            error::NoSuchTargetSnafu {
                name: name.clone(),
                role: role_name.clone()
            }
        );
        removed.push(name.clone());
    }
    for t in &inputs {
        if let Some(existing) = role.signed.targets.get(&t.name) {
            ensure!(
                existing.hashes.sha256 == t.target.hashes.sha256 || update.replace_targets,
                error::TargetExistsSnafu {
                    name: t.name.raw().to_owned(),
                    path: t.path.clone()
                }
            );
        }
        role.signed.add_target(t.name.clone(), t.target.clone());
    }
    tree.targets.signed.validate_paths()?;
    let changed = BTreeSet::from([role_name]);
    let mut staged = sign_tree(&mut tree, &changed, true, &keys, &options.schedule).await?;
    staged.report.targets_added = inputs.iter().map(|t| t.name.raw().to_owned()).collect();
    staged.report.targets_removed = removed;
    commit(&tree, staged, &options.outdir, &inputs, options.place).await
}

/// Replace the tree's root by the (cross-signed) root at `path`.
fn rotate_root(tree: &mut Tree, path: &Path, now: jiff::Timestamp) -> Result<()> {
    let bytes = std::fs::read(path).context(error::ReadFileSnafu { path })?;
    let new_root = load_root(path)?;
    let current = tree.root.signed.version;
    ensure!(
        current.checked_add(1) == Some(new_root.signed.version),
        error::RootVersionSnafu {
            path,
            current: current.get(),
            given: new_root.signed.version.get()
        }
    );
    check_root(&new_root, path, now)?;
    tree.root
        .signed
        .verify_role(&new_root)
        .context(error::BadRootSnafu { path })?;
    tree.root = new_root;
    tree.root_file = Some(bytes);
    Ok(())
}

/// Options of [`refresh`].
#[derive(Debug, Clone)]
pub struct RefreshOptions {
    /// Keys (only the snapshot and/or timestamp keys are needed).
    pub keys: Vec<KeySource>,
    /// Re-sign snapshot as well as timestamp.
    pub snapshot: bool,
    /// Versions and expiries (only snapshot and timestamp are used).
    pub schedule: Schedule,
    /// Output folder (usually the repository itself).
    pub outdir: PathBuf,
}

/// Re-sign timestamp (and optionally snapshot) with only those roles' keys; targets metadata
/// bytes are not touched.
pub async fn refresh(location: &RepoLocation, options: &RefreshOptions) -> Result<RepoReport> {
    let repo = load_repo(location).await?;
    let mut tree = Tree::from_repo(&repo, location);
    let keys = SigningKeys::load(&options.keys).await?;
    let staged = sign_tree(
        &mut tree,
        &BTreeSet::new(),
        options.snapshot,
        &keys,
        &options.schedule,
    )
    .await?;
    commit(&tree, staged, &options.outdir, &[], Place::default()).await
}

#[cfg(test)]
mod tests {
    use super::{encode_role_filename, spec_path_match};

    #[test]
    fn path_patterns_follow_the_spec() {
        assert!(spec_path_match("delegated/*", "delegated/d.txt"));
        assert!(!spec_path_match("delegated/*", "delegated/deep/d.txt"));
        assert!(spec_path_match("delegated/*/*", "delegated/deep/d.txt"));
        assert!(spec_path_match("*.tar.?z", "x.tar.gz"));
        assert!(!spec_path_match("*.txt", "dir/a.txt"));
        assert!(spec_path_match("*", "a"));
    }

    #[test]
    fn role_file_names_are_percent_encoded() {
        assert_eq!(encode_role_filename("../../x"), "..%2F..%2Fx");
        assert_eq!(encode_role_filename("a b~c_d-e.f"), "a%20b~c_d-e.f");
    }
}
