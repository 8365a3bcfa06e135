//! `tuftool download`: verified targets (and metadata) of a repository into a folder.
use super::common::{LoadArgs, RootDownloadArgs, parse_url};
use crate::Outcome;
use crate::error::Result;
use crate::fetch::{self};
use clap::Args;
use std::path::PathBuf;
use url::Url;

/// `download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Output folder (must not exist); each target is written at OUTDIR/NAME
    pub outdir: PathBuf,
    /// Arguments of this group.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Targets base: a folder, file:// or http(s):// URL
    #[arg(short = 't', long = "targets-url", value_name = "URL", value_parser = parse_url)]
    pub targets_url: Url,
    /// Target to download (repeatable); default: every target, delegated ones included
    #[arg(short = 'n', long = "target-name", value_name = "NAME")]
    pub target_names: Vec<String>,
    /// Arguments of this group.
    #[command(flatten)]
    pub root_download: RootDownloadArgs,
}

/// Run `download`.
pub async fn run(a: &DownloadArgs) -> Result<Outcome> {
    a.root_download.check(&a.load)?;
    let location = a.load.location(Some(a.targets_url.clone()), false);
    Ok(Outcome::Download(
        fetch::download(&location, &a.target_names, &a.outdir).await?,
    ))
}
