//! `tuftool refresh`: re-sign timestamp (and snapshot) with new expiries.
use super::common::RepoArgs;
use crate::Outcome;
use crate::error::Result;
use crate::repo::{self, RefreshOptions};
use clap::Args;

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

/// Run `refresh`.
pub async fn run(a: &RefreshArgs, now: jiff::Timestamp) -> Result<Outcome> {
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
