//! `tuftool update`: add, replace or remove targets of a repository, rotate its root, and sign
//! what changed.
use super::common::{AddTargetsArgs, PlaceArgs, RepoArgs};
use crate::Outcome;
use crate::error::Result;
use crate::repo::{self, UpdateOptions};
use clap::Args;
use std::path::PathBuf;

/// `update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Arguments of this group.
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Arguments of this group.
    #[command(flatten)]
    pub targets: AddTargetsArgs,
    /// Target name to remove (repeatable)
    #[arg(long = "remove-target", value_name = "NAME")]
    pub remove_targets: Vec<String>,
    /// Let an input replace an existing target of the same name with different content
    #[arg(long)]
    pub replace_targets: bool,
    /// Targets-type role to edit: targets (default) or a delegated role (whose keys are then
    /// needed instead of the targets key)
    #[arg(long = "role", value_name = "ROLE")]
    pub role: Option<String>,
    /// Rotate to this root (version = current + 1, signed by the current and its own root
    /// thresholds); published as N.root.json
    #[arg(long = "new-root", value_name = "PATH")]
    pub new_root: Option<PathBuf>,
    /// Arguments of this group.
    #[command(flatten)]
    pub place: PlaceArgs,
}

/// Run `update`.
pub async fn run(a: &UpdateArgs, now: jiff::Timestamp) -> Result<Outcome> {
    let options = a
        .repo
        .publish_options(&a.targets.add_targets, &a.place, now)?;
    let update = UpdateOptions {
        remove_targets: a.remove_targets.clone(),
        replace_targets: a.replace_targets,
        new_root: a.new_root.clone(),
        role: a.role.clone(),
    };
    Ok(Outcome::Repo(
        repo::update_repo(&a.repo.location(), &options, &update, now).await?,
    ))
}
