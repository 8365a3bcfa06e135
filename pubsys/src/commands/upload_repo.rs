//! `pubsys upload-repo`: publish an output folder of `pubsys repo` or `refresh-repo` to S3 in
//! the safe order (targets, root chain, delegated roles, targets, snapshot, timestamp last).
//! `pubsys repo --upload` does the same right after signing; this command finishes an upload
//! that failed part-way, or publishes a folder signed elsewhere. Re-running it is cheap:
//! objects already present with the same content are skipped.

use crate::Context;
use crate::error::Result;
use crate::repo::{self as shared, RepoSelectArgs};
use crate::s3::{S3Location, UploadReport};
use clap::Args;
use std::path::PathBuf;
use url::Url;

/// Arguments of `pubsys upload-repo`.
#[derive(Debug, Args)]
pub struct UploadRepoArgs {
    /// Repository (for the AWS profile, role and region), variant and arch.
    #[command(flatten)]
    pub select: RepoSelectArgs,

    /// Output folder of `pubsys repo`: OUTDIR/VARIANT/ARCH/ (metadata) and OUTDIR/targets/
    #[arg(long, value_name = "PATH")]
    pub outdir: PathBuf,

    /// Destination s3://BUCKET/PREFIX: targets go to PREFIX/targets/, metadata to
    /// PREFIX/VARIANT/ARCH/
    #[arg(long, value_name = "S3_URL")]
    pub to: Url,
}

/// Run `pubsys upload-repo`.
pub async fn run(args: &UploadRepoArgs, context: &Context) -> Result<UploadReport> {
    let destination = S3Location::parse(&args.to)?;
    let select = &args.select;
    shared::upload(
        &destination,
        context,
        &context.infra.repo(&select.repo),
        &args.outdir,
        &select.which.variant,
        select.which.arch.as_str(),
    )
    .await
}
