//! `tuftool download`, `clone` and `transfer-metadata`.
use super::common::{LoadArgs, RepoArgs, parse_url};
use crate::Outcome;
use crate::error::Result;
use crate::fetch::{self, TransferOptions};
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

/// The reference tuftool's root download (trust on first use). Accepted so its scripts run;
/// when the `-r` file exists (the usual case) nothing changes. Without it the command fails:
/// a root fetched from the repository it is meant to verify proves nothing.
#[derive(Debug, Clone, Args)]
pub struct RootDownloadArgs {
    /// Reference flag: download the root when the -r file is missing (refused: see above)
    #[arg(long)]
    pub allow_root_download: bool,
    /// Reference flag: the root version to download
    #[arg(long, value_name = "N", requires = "allow_root_download")]
    pub root_version: Option<std::num::NonZeroU64>,
}

impl RootDownloadArgs {
    /// Refuse a root download the reference would have made.
    fn check(&self, load: &LoadArgs) -> Result<()> {
        snafu::ensure!(
            !self.allow_root_download || load.root.exists(),
            crate::error::RootDownloadSnafu { path: &load.root }
        );
        Ok(())
    }
}

/// Run `download`.
pub async fn download(a: &DownloadArgs) -> Result<Outcome> {
    a.root_download.check(&a.load)?;
    let location = a.load.location(Some(a.targets_url.clone()), false);
    Ok(Outcome::Download(
        fetch::download(&location, &a.target_names, &a.outdir).await?,
    ))
}

/// Run `clone`.
pub async fn clone(a: &CloneArgs) -> Result<Outcome> {
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

/// Run `transfer-metadata`.
pub async fn transfer(a: &TransferArgs, now: jiff::Timestamp) -> Result<Outcome> {
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
