//! The AWS commands: `ami`, `publish-ami`, `ssm`, `promote-ssm`, `validate-ami`,
//! `validate-ssm`.
//!
//! Every command builds its clients through one [`aws_context::AwsContext`] (profile, role
//! chain with STS in the base region, `AWS_ENDPOINT_URL`), created from `Infra.toml` and the
//! command's [`AwsArgs`] by [`context`]. Commands return reports; `main` prints them.
//!
//! Differences from the reference pubsys, on purpose (see `pubsys.md`, "Decisions"):
//! re-runs finish a partial publish without duplicates, copies are awaited, partial results
//! are always written, `publish-ami` merges into `amis.json`, validation exits 3 on problems,
//! registration properties are configurable and SSM writes are rate-limited.

pub mod ami;
pub mod amis;
pub mod ec2;
pub mod error;
pub mod params;
pub mod permissions;
pub mod promote_ssm;
pub mod publish_ami;
pub mod snapshot;
pub mod ssm;
pub mod tags;
pub mod template;
pub mod validate;
pub mod validate_ami;
pub mod validate_ssm;

pub use error::{Error, Result};

use crate::Context;
use crate::config::region::Region;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// The AWS subcommands (flattened into `pubsys`'s command list).
#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Upload a disk image as EBS snapshots, register an AMI and copy it to every region;
    /// re-runs finish what is missing
    Ami(ami::AmiArgs),
    /// Grant or revoke launch permissions on the AMIs of an amis.json (and their snapshots)
    PublishAmi(publish_ami::PublishAmiArgs),
    /// Publish SSM parameters rendered from templates for the AMIs of an amis.json
    Ssm(ssm::SsmArgs),
    /// Copy SSM parameters from one version name to another (e.g. to `latest`)
    PromoteSsm(promote_ssm::PromoteSsmArgs),
    /// Check that the AMIs of an amis.json exist with the expected attributes (exit 3 if not)
    ValidateAmi(validate_ami::ValidateAmiArgs),
    /// Check SSM parameters against an ssm-params.json (exit 3 if not)
    ValidateSsm(validate_ssm::ValidateSsmArgs),
}

/// What an AWS command produced.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AwsReport {
    /// `ami`.
    Ami(ami::AmiReport),
    /// `publish-ami`.
    PublishAmi(publish_ami::PublishAmiReport),
    /// `ssm` and `promote-ssm`.
    Ssm(ssm::SsmReport),
    /// `validate-ami`.
    ValidateAmi(validate_ami::ValidateAmiReport),
    /// `validate-ssm`.
    ValidateSsm(validate_ssm::ValidateSsmReport),
}

impl AwsReport {
    /// The exit code: 1 when some region failed, 3 when a validation found problems.
    pub fn exit_code(&self) -> u8 {
        let failed = match self {
            AwsReport::Ami(report) => report.failed(),
            AwsReport::PublishAmi(report) => report.failed(),
            AwsReport::Ssm(report) => report.failed(),
            AwsReport::ValidateAmi(report) => {
                return if report.has_problems() {
                    cli_support::exit::VALIDATION_FAILED
                } else {
                    cli_support::exit::SUCCESS
                };
            }
            AwsReport::ValidateSsm(report) => {
                return if report.has_problems() {
                    cli_support::exit::VALIDATION_FAILED
                } else {
                    cli_support::exit::SUCCESS
                };
            }
        };
        if failed {
            cli_support::exit::FAILURE
        } else {
            cli_support::exit::SUCCESS
        }
    }
}

impl fmt::Display for AwsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AwsReport::Ami(report) => fmt::Display::fmt(report, f),
            AwsReport::PublishAmi(report) => fmt::Display::fmt(report, f),
            AwsReport::Ssm(report) => fmt::Display::fmt(report, f),
            AwsReport::ValidateAmi(report) => fmt::Display::fmt(report, f),
            AwsReport::ValidateSsm(report) => fmt::Display::fmt(report, f),
        }
    }
}

/// Run an AWS subcommand.
pub async fn run(command: &AwsCommand, context: &Context) -> Result<AwsReport> {
    match command {
        AwsCommand::Ami(args) => ami::run(args, context).await.map(AwsReport::Ami),
        AwsCommand::PublishAmi(args) => publish_ami::run(args, context)
            .await
            .map(AwsReport::PublishAmi),
        AwsCommand::Ssm(args) => ssm::run(args, context).await.map(AwsReport::Ssm),
        AwsCommand::PromoteSsm(args) => promote_ssm::run(args, context).await.map(AwsReport::Ssm),
        AwsCommand::ValidateAmi(args) => validate_ami::run(args, context)
            .await
            .map(AwsReport::ValidateAmi),
        AwsCommand::ValidateSsm(args) => validate_ssm::run(args, context)
            .await
            .map(AwsReport::ValidateSsm),
    }
}

/// Flags every AWS command shares.
#[derive(Debug, Clone, Args)]
pub struct AwsArgs {
    /// Regions to work in, comma-separated; the first is the base region (registration and
    /// STS). Default: aws.regions from Infra.toml
    #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
    pub regions: Vec<Region>,

    /// Attempts per AWS call (the SDK retries throttling and 5xx answers with backoff)
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_attempts: u32,

    /// Backoff before the first retry of an AWS call, in milliseconds (doubles per attempt,
    /// jittered)
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub retry_backoff_ms: u64,
}

impl AwsArgs {
    /// The regions to work in: `--regions`, else `aws.regions`; never empty.
    pub fn regions(&self, context: &Context) -> Result<Vec<Region>> {
        let regions = if self.regions.is_empty() {
            context
                .infra
                .aws
                .as_ref()
                .map(|aws| aws.regions.clone())
                .unwrap_or_default()
        } else {
            self.regions.clone()
        };
        snafu::ensure!(!regions.is_empty(), error::NoRegionsSnafu);
        let mut unique: Vec<Region> = Vec::with_capacity(regions.len());
        for region in regions {
            if !unique.contains(&region) {
                unique.push(region);
            }
        }
        Ok(unique)
    }
}

/// Build the client factory for a run whose base region is `base`.
pub async fn context(args: &AwsArgs, context: &Context, base: &Region) -> aws_context::AwsContext {
    factory(
        context,
        base.as_str(),
        aws_context::RetrySettings {
            max_attempts: args.max_attempts.max(1),
            initial_backoff: Duration::from_millis(args.retry_backoff_ms),
        },
    )
    .await
}

/// The one client factory of every pubsys command that talks to AWS (the AWS commands, S3
/// repositories): `Infra.toml`'s profile, global role and per-region roles, STS in `base`.
pub async fn factory(
    context: &Context,
    base: &str,
    retry: aws_context::RetrySettings,
) -> aws_context::AwsContext {
    let aws = context.infra.aws.clone().unwrap_or_default();
    let mut builder = aws_context::AwsContext::builder(base)
        .profile(aws.profile.clone())
        .role(aws.role.clone())
        .retry(retry);
    for (region, config) in &aws.region {
        if let Some(role) = &config.role {
            builder = builder.region_role(region.as_str(), role.clone());
        }
    }
    builder.build().await
}

pub use update_metadata::Arch;

/// A duration flag: `90s`, `30m`, `1h 30m` or plain seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub Duration);

impl std::str::FromStr for DurationArg {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<DurationArg, String> {
        if let Ok(seconds) = text.trim().parse::<u64>() {
            return Ok(DurationArg(Duration::from_secs(seconds)));
        }
        let span: jiff::SignedDuration = text
            .parse()
            .map_err(|e| format!("'{text}' is not a duration such as 90s, 30m or 1h: {e}"))?;
        Duration::try_from(span)
            .map(DurationArg)
            .map_err(|_| format!("'{text}' is negative"))
    }
}

/// Read a whole file.
pub(crate) fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    use snafu::ResultExt;
    std::fs::read(path).context(error::ReadFileSnafu { path })
}

/// Write JSON atomically (temp file, then rename), mode 0644.
pub(crate) fn write_json<T: Serialize>(
    path: &std::path::Path,
    value: &T,
    what: &'static str,
) -> Result<()> {
    use snafu::ResultExt;
    let mut bytes = serde_json::to_vec_pretty(value).context(error::SerializeSnafu { what })?;
    bytes.push(b'\n');
    update_metadata::fs::write_atomic(path, &bytes, 0o644).context(error::WriteFileSnafu { path })
}
