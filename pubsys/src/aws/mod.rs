//! The AWS service layer under the AWS commands (`ami`, `publish-ami`, `ssm`, `promote-ssm`,
//! `validate-ami`, `validate-ssm`, in [`crate::commands`]): EC2/EBS/SSM calls, snapshot
//! upload, the AMI and SSM parameter records, permissions, templates and validation results.
//!
//! Every command builds its clients through one [`aws_context::AwsContext`] (profile, role
//! chain with STS in the base region, `AWS_ENDPOINT_URL`), created from `Infra.toml` and the
//! command's [`AwsArgs`] by [`context`]. Commands return reports; `main` prints them.
//!
//! Differences from the reference pubsys, on purpose (see `pubsys.md`, "Decisions"):
//! re-runs finish a partial publish without duplicates, copies are awaited, partial results
//! are always written, `publish-ami` merges into `amis.json`, validation exits 3 on problems,
//! registration properties are configurable and SSM writes are rate-limited.

pub mod amis;
pub mod ec2;
pub mod params;
pub mod permissions;
pub mod snapshot;
pub mod ssm;
pub mod tags;
pub mod template;
pub mod validate;

use crate::error::{self, Result};

use crate::Context;
use crate::config::region::Region;
use clap::Args;
use serde::Serialize;
use std::time::Duration;

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
pub async fn context(
    args: &AwsArgs,
    context: &Context,
    base: &Region,
) -> std::sync::Arc<aws_context::AwsContext> {
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
///
/// Built once per process and held by the [`Context`]: the first caller's base region and
/// retry settings are the ones used (a command runs once per process; `repo --upload` with
/// AWS keys shares one factory between its keys and its S3 client).
pub async fn factory(
    context: &Context,
    base: &str,
    retry: aws_context::RetrySettings,
) -> std::sync::Arc<aws_context::AwsContext> {
    let made = context
        .aws
        .get_or_init(|| async { std::sync::Arc::new(build_factory(context, base, retry).await) })
        .await;
    std::sync::Arc::clone(made)
}

async fn build_factory(
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
