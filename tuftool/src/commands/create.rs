//! `tuftool create`: a new repository from a signed root, targets and keys.
use super::common::{AddTargetsArgs, KeyArgs, PlaceArgs, ScheduleArgs, publish_options};
use crate::Outcome;
use crate::error::Result;
use crate::repo::{self};
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
    /// Arguments of this group.
    #[command(flatten)]
    pub targets: AddTargetsArgs,
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

/// Run `create`.
pub async fn run(a: &CreateArgs, now: jiff::Timestamp) -> Result<Outcome> {
    let options = publish_options(
        &a.keys,
        &a.targets.add_targets,
        &a.place,
        &a.schedule,
        &a.outdir,
        now,
    )?;
    Ok(Outcome::Repo(
        repo::create_repo(&a.root, &options, now).await?,
    ))
}
