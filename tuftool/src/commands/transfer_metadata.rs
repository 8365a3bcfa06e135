//! `tuftool transfer-metadata`: the targets metadata of a repository re-signed under a new
//! root.
use super::common::{RepoArgs, parse_url};
use crate::Outcome;
use crate::error::Result;
use crate::fetch::{self, TransferOptions};
use clap::Args;
use std::path::PathBuf;
use url::Url;

/// `transfer-metadata`.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Arguments of this group.
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Signed root of the new repository
    #[arg(short = 'n', long = "new-root", value_name = "PATH")]
    pub new_root: PathBuf,
    /// Targets base (accepted for the reference tuftool's scripts; no target is read)
    #[arg(short = 't', long = "targets-url", value_name = "URL", value_parser = parse_url)]
    pub targets_url: Option<Url>,
}

/// Run `transfer-metadata`.
pub async fn run(a: &TransferArgs, now: jiff::Timestamp) -> Result<Outcome> {
    let options = TransferOptions {
        new_root: a.new_root.clone(),
        keys: a.repo.keys.keys.clone(),
        schedule: a.repo.schedule.schedule(now)?,
        outdir: a.repo.outdir.clone(),
    };
    Ok(Outcome::Repo(
        fetch::transfer_metadata(&a.repo.location(), &options, now).await?,
    ))
}
