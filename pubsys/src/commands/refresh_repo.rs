//! `pubsys refresh-repo`: re-sign a published repository with new expirations, keeping every
//! target. `--roles all` re-signs targets, snapshot and timestamp; `snapshot-timestamp` and
//! `timestamp` re-sign only those (the online refresh: only those roles' keys are needed).
//! Metadata only is written, to `<outdir>/<variant>/<arch>/`.

use crate::Context;
use crate::config::expiration::Expirations;
use crate::error::{self, Result};
use crate::repo::{self as shared, LocationArgs};
use clap::{Args, ValueEnum};
use serde::Serialize;
use snafu::ResultExt;
use std::fmt;
use std::path::PathBuf;
use tuftool::keys::KeySource;
use tuftool::repo::{Place, PublishOptions, RefreshOptions, UpdateOptions};
use update_metadata::Offset;

/// Which roles to re-sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshRoles {
    /// targets, snapshot and timestamp
    All,
    /// snapshot and timestamp
    SnapshotTimestamp,
    /// timestamp only
    Timestamp,
}

/// Arguments of `pubsys refresh-repo`.
#[derive(Debug, Args)]
pub struct RefreshRepoArgs {
    #[command(flatten)]
    location: LocationArgs,

    /// Roles to re-sign
    #[arg(long, value_enum, default_value = "all")]
    roles: RefreshRoles,

    /// Signing key source, repeatable; overrides the repository's signing_keys
    #[arg(long = "signing-key", value_name = "KEY")]
    signing_keys: Vec<KeySource>,

    /// Key file used when neither --signing-key nor Infra.toml names a key
    #[arg(long, value_name = "PATH")]
    default_key_path: Option<PathBuf>,

    /// Expiration policy TOML
    #[arg(long, value_name = "PATH")]
    repo_expiration_policy_path: PathBuf,

    /// Start of the new validity period: RFC 3339 or an offset from now (default: now)
    #[arg(long, value_name = "TIME")]
    start_time: Option<Offset>,

    /// Load the repository even if its metadata has expired (needed to revive one)
    #[arg(long)]
    unsafe_refresh: bool,

    /// Output folder: metadata goes to OUTDIR/VARIANT/ARCH/
    #[arg(long, value_name = "PATH")]
    outdir: PathBuf,

    /// After signing, publish the new metadata to s3://BUCKET/PREFIX (PREFIX/VARIANT/ARCH/,
    /// timestamp.json last)
    #[arg(long, value_name = "S3_URL")]
    upload: Option<url::Url>,
}

/// What `refresh-repo` did.
#[derive(Debug, Serialize)]
pub struct RefreshReport {
    /// Roles re-signed.
    pub roles: RefreshRoles,
    /// Metadata folder written.
    pub metadata_dir: PathBuf,
    /// Each signed role with its version and expiry.
    pub signed: Vec<tuftool::repo::SignedRoleReport>,
    /// The new expirations.
    pub expirations: Expirations,
    /// The S3 upload, with `--upload`.
    pub upload: Option<crate::s3::UploadReport>,
}

impl fmt::Display for RefreshReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "refreshed into {}", self.metadata_dir.display())?;
        for role in &self.signed {
            writeln!(
                f,
                "  signed {} version {} expiring {}",
                role.role, role.version, role.expires
            )?;
        }
        match &self.upload {
            Some(upload) => write!(f, "  {upload}"),
            None => Ok(()),
        }
    }
}

/// Run `pubsys refresh-repo`.
pub async fn run(args: &RefreshRepoArgs, context: &Context) -> Result<RefreshReport> {
    let location = args.location.location(context, args.unsafe_refresh).await?;
    let metadata_dir = args
        .outdir
        .join(&args.location.select.which.variant)
        .join(args.location.select.which.arch.as_str());
    snafu::ensure!(
        !metadata_dir.exists(),
        error::OutputExistsSnafu {
            path: &metadata_dir
        }
    );
    let repo_config = context.infra.repo(&args.location.select.repo);
    let upload_to = args
        .upload
        .as_ref()
        .map(crate::s3::S3Location::parse)
        .transpose()?;
    let shared::Signing {
        keys, expirations, ..
    } = shared::signing(
        shared::SigningFlags {
            repo: &args.location.select.repo,
            keys: &args.signing_keys,
            default_key_path: args.default_key_path.as_deref(),
            start: args.start_time.as_ref(),
            policy: &args.repo_expiration_policy_path,
        },
        context,
    )
    .await?;
    let schedule = expirations.schedule();

    let staging = shared::staging(&args.outdir, ".pubsys-refresh-")?;
    let out = staging.path().join("out");
    let report = match args.roles {
        RefreshRoles::All => {
            let options = PublishOptions {
                keys,
                add_targets: Vec::new(),
                follow_links: false,
                place: Place::default(),
                schedule,
                outdir: out.clone(),
            };
            let update = UpdateOptions {
                remove_targets: Vec::new(),
                replace_targets: false,
                new_root: None,
                role: None,
            };
            tuftool::repo::update_repo(&location, &options, &update, context.now).await
        }
        roles => {
            let options = RefreshOptions {
                keys,
                snapshot: roles == RefreshRoles::SnapshotTimestamp,
                schedule,
                outdir: out.clone(),
            };
            tuftool::repo::refresh(&location, &options).await
        }
    }
    .context(error::TuftoolSnafu)?;
    shared::move_into_layout(&out, &metadata_dir, &args.outdir.join("targets"))?;
    let upload = shared::upload_if(
        upload_to.as_ref(),
        context,
        &repo_config,
        &args.outdir,
        (
            &args.location.select.which.variant,
            args.location.select.which.arch.as_str(),
        ),
    )
    .await?;
    Ok(RefreshReport {
        upload,
        roles: args.roles,
        metadata_dir,
        signed: report.signed,
        expirations,
    })
}
