//! `tuftool clone`: a verified copy of a repository's metadata (and targets).
use super::common::{LoadArgs, RootDownloadArgs, parse_url};
use crate::Outcome;
use crate::error::Result;
use crate::fetch::{self};
use clap::Args;
use std::path::PathBuf;
use url::Url;

/// `clone`.
#[derive(Debug, Args)]
pub struct CloneArgs {
    /// Arguments of this group.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Where to write the metadata (must not exist)
    #[arg(long = "metadata-dir", value_name = "DIR")]
    pub metadata_dir: PathBuf,
    /// Where to write targets (must not exist); without it, metadata only
    #[arg(long = "targets-dir", value_name = "DIR", requires = "targets_url")]
    pub targets_dir: Option<PathBuf>,
    /// Targets base: a folder, file:// or http(s):// URL
    #[arg(short = 't', long = "targets-url", value_name = "URL", value_parser = parse_url)]
    pub targets_url: Option<Url>,
    /// Target to clone (repeatable); default: every target
    #[arg(
        short = 'n',
        long = "target-name",
        visible_alias = "target-names",
        value_name = "NAME"
    )]
    pub target_names: Vec<String>,
    /// Metadata only (the default without --targets-dir; the reference tuftool's flag)
    #[arg(long, conflicts_with = "targets_dir")]
    pub metadata_only: bool,
    /// Arguments of this group.
    #[command(flatten)]
    pub root_download: RootDownloadArgs,
    /// Also place targets whose names have a folder at tough's `<sha256>.dir/file`, for
    /// tough-based clients (the spec's `dir/<sha256>.file` is always written)
    #[arg(long, requires = "targets_dir")]
    pub tough_placement: bool,
}

/// Run `clone`.
pub async fn run(a: &CloneArgs) -> Result<Outcome> {
    a.root_download.check(&a.load)?;
    let location = a.load.location(a.targets_url.clone(), false);
    Ok(Outcome::Clone(
        fetch::clone_repo(
            &location,
            &a.metadata_dir,
            a.targets_dir.as_deref(),
            &a.target_names,
            a.tough_placement,
        )
        .await?,
    ))
}
