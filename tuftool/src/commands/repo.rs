//! `tuftool create`, `update` and `refresh`.
use super::common::{KeyArgs, PlaceArgs, RepoArgs, ScheduleArgs, publish_options};
use crate::Outcome;
use crate::error::Result;
use crate::repo::{self, RefreshOptions, UpdateOptions};
use clap::Args;
use std::path::PathBuf;

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Signed root.json of the new repository
    #[arg(short = 'r', long = "root", value_name = "PATH")]
    pub root: PathBuf,
    /// Arguments of this group.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Input folder; every file below it becomes a target named by its relative path
    /// (repeatable; two inputs with the same name are an error)
    #[arg(
        short = 'a',
        visible_short_alias = 't',
        long = "add-targets",
        value_name = "DIR"
    )]
    pub add_targets: Vec<PathBuf>,
    /// Output folder: metadata/ and targets/ are written below it
    #[arg(short = 'o', long = "outdir", value_name = "DIR")]
    pub outdir: PathBuf,
    /// Arguments of this group.
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Arguments of this group.
    #[command(flatten)]
    pub place: PlaceArgs,
}

/// `update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Arguments of this group.
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Input folder of targets to add (repeatable)
    #[arg(
        short = 'a',
        visible_short_alias = 't',
        long = "add-targets",
        value_name = "DIR"
    )]
    pub add_targets: Vec<PathBuf>,
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

/// `refresh`.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Arguments of this group.
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Re-sign snapshot too (needs the snapshot key); otherwise only timestamp
    #[arg(long)]
    pub snapshot: bool,
}

/// Run `create`.
pub async fn create(a: &CreateArgs, now: jiff::Timestamp) -> Result<Outcome> {
    let options = publish_options(
        &a.keys,
        &a.add_targets,
        &a.place,
        &a.schedule,
        &a.outdir,
        now,
    )?;
    Ok(Outcome::Repo(
        repo::create_repo(&a.root, &options, now).await?,
    ))
}

/// Run `update`.
pub async fn update(a: &UpdateArgs, now: jiff::Timestamp) -> Result<Outcome> {
    let options = a.repo.publish_options(&a.add_targets, &a.place, now)?;
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

/// Run `refresh`.
pub async fn refresh(a: &RefreshArgs, now: jiff::Timestamp) -> Result<Outcome> {
    let options = RefreshOptions {
        keys: a.repo.keys.keys.clone(),
        snapshot: a.snapshot,
        schedule: a.repo.schedule.schedule(now)?,
        outdir: a.repo.outdir.clone(),
    };
    Ok(Outcome::Repo(
        repo::refresh(&a.repo.location(), &options).await?,
    ))
}
