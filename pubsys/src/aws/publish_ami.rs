//! `pubsys publish-ami`: grant or revoke launch permissions on the AMIs of an `amis.json`,
//! and create-volume permissions on their snapshots.
//!
//! Snapshots take account IDs and groups; AWS has no organization or OU sharing for
//! snapshots, so those principals apply to the AMI only (launching through the AMI does not
//! need snapshot access). The processed regions are **merged** into `amis.json` (other
//! regions are kept), atomically, even when some regions fail.

use super::amis::{self, LaunchPermission};
use super::ec2::{self, WaitSettings, snapshot_ids, wait_for_image};
use super::error::{self, Result, sdk};
use super::{AwsArgs, DurationArg};
use crate::Context;
use aws_sdk_ec2::types::{OperationType, SnapshotAttributeName};
use clap::Args;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use snafu::ResultExt;
use std::fmt;
use std::path::PathBuf;

/// `pubsys publish-ami` flags.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["grant", "revoke"])))]
pub struct PublishAmiArgs {
    /// amis.json to read and update
    #[arg(long, value_name = "PATH")]
    pub ami_input: PathBuf,

    /// Add the permissions
    #[arg(long)]
    pub grant: bool,

    /// Remove the permissions
    #[arg(long)]
    pub revoke: bool,

    /// Account IDs, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub user_ids: Vec<String>,

    /// Groups, comma-separated (only `all` exists: public)
    #[arg(long, value_delimiter = ',', value_name = "GROUP,...")]
    pub group_names: Vec<String>,

    /// Organization ARNs, comma-separated (AMIs only)
    #[arg(long, value_delimiter = ',', value_name = "ARN,...")]
    pub organization_arns: Vec<String>,

    /// Organizational unit ARNs, comma-separated (AMIs only)
    #[arg(long, value_delimiter = ',', value_name = "ARN,...")]
    pub organizational_unit_arns: Vec<String>,

    /// Regions processed at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,

    /// How long to wait for each AMI to become available
    #[arg(long, default_value = "60m", value_name = "DURATION")]
    pub wait_timeout: DurationArg,

    /// Time between two state checks while waiting
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub poll_interval: DurationArg,

    /// Shared AWS flags (--regions defaults to every region of the file).
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// One region's result.
#[derive(Debug, Clone, Serialize)]
pub struct PublishOutcome {
    /// Region.
    pub region: String,
    /// The AMI.
    pub image_id: String,
    /// Whether it is public now (unknown after a failure).
    pub public: Option<bool>,
    /// Launch permissions now.
    pub launch_permissions: Vec<LaunchPermission>,
    /// What went wrong.
    pub error: Option<String>,
}

/// What `publish-ami` did.
#[derive(Debug, Clone, Serialize)]
pub struct PublishAmiReport {
    /// `grant` or `revoke`.
    pub operation: String,
    /// Per region.
    pub regions: Vec<PublishOutcome>,
}

impl PublishAmiReport {
    /// Whether some region failed.
    pub fn failed(&self) -> bool {
        self.regions.iter().any(|r| r.error.is_some())
    }
}

impl fmt::Display for PublishAmiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ok = self.regions.iter().filter(|r| r.error.is_none()).count();
        writeln!(
            f,
            "Permissions for {ok} of {} AMIs were updated ({})",
            self.regions.len(),
            self.operation
        )?;
        for outcome in &self.regions {
            match &outcome.error {
                Some(error) => writeln!(
                    f,
                    "  {:<16} {:<24} FAILED: {error}",
                    outcome.region, outcome.image_id
                )?,
                None => writeln!(
                    f,
                    "  {:<16} {:<24} public={} permissions={}",
                    outcome.region,
                    outcome.image_id,
                    outcome.public.unwrap_or(false),
                    outcome.launch_permissions.len()
                )?,
            }
        }
        Ok(())
    }
}

/// Run `pubsys publish-ami`.
pub async fn run(args: &PublishAmiArgs, context: &Context) -> Result<PublishAmiReport> {
    snafu::ensure!(
        !(args.user_ids.is_empty()
            && args.group_names.is_empty()
            && args.organization_arns.is_empty()
            && args.organizational_unit_arns.is_empty()),
        error::NoPrincipalsSnafu
    );
    let requested: Vec<String> = args.aws.regions.iter().map(|r| r.to_string()).collect();
    let mut amis = amis::load_for(&args.ami_input, &requested)?;
    let regions: Vec<String> = if requested.is_empty() {
        amis.keys().cloned().collect()
    } else {
        requested
    };
    let base = regions[0].parse().map_err(|_| error::Error::NoRegions)?;
    let aws = super::context(&args.aws, context, &base).await;
    let operation = if args.grant {
        OperationType::Add
    } else {
        OperationType::Remove
    };
    let wait = WaitSettings {
        timeout: args.wait_timeout.0,
        interval: args.poll_interval.0,
    };
    let mut outcomes: Vec<PublishOutcome> = stream::iter(regions.iter())
        .map(|region| {
            let image_id = amis[region].id.clone();
            let aws = &aws;
            let operation = operation.clone();
            async move {
                let result = publish_region(aws, args, region, &image_id, operation, wait).await;
                match result {
                    Ok(permissions) => PublishOutcome {
                        region: region.clone(),
                        image_id,
                        public: Some(amis::is_public(&permissions)),
                        launch_permissions: permissions,
                        error: None,
                    },
                    Err(e) => {
                        tracing::error!(region, "{}", snafu::Report::from_error(&e));
                        PublishOutcome {
                            region: region.clone(),
                            image_id,
                            public: None,
                            launch_permissions: Vec::new(),
                            error: Some(snafu::Report::from_error(&e).to_string()),
                        }
                    }
                }
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    outcomes.sort_by_key(|o| regions.iter().position(|r| *r == o.region));

    // Merge: only regions that succeeded change; every other region is kept as it was.
    for outcome in &outcomes {
        if outcome.error.is_none()
            && let Some(image) = amis.get_mut(&outcome.region)
        {
            image.public = outcome.public.unwrap_or(false);
            image.launch_permissions = outcome.launch_permissions.clone();
        }
    }
    amis::save(&args.ami_input, &amis)?;
    Ok(PublishAmiReport {
        operation: if args.grant { "grant" } else { "revoke" }.to_owned(),
        regions: outcomes,
    })
}

async fn publish_region(
    aws: &aws_context::AwsContext,
    args: &PublishAmiArgs,
    region: &str,
    image_id: &str,
    operation: OperationType,
    wait: WaitSettings,
) -> Result<Vec<LaunchPermission>> {
    let ec2 = aws
        .ec2(region)
        .await
        .context(error::ClientSnafu { region })?;
    let image = wait_for_image(&ec2, region, image_id, wait).await?;
    // Snapshots first, so a public AMI never points at private snapshots (public copies
    // need both).
    if !(args.user_ids.is_empty() && args.group_names.is_empty()) {
        for snapshot_id in snapshot_ids(&image) {
            ec2.modify_snapshot_attribute()
                .snapshot_id(&snapshot_id)
                .attribute(SnapshotAttributeName::CreateVolumePermission)
                .operation_type(operation.clone())
                .set_user_ids(non_empty(&args.user_ids))
                .set_group_names(non_empty(&args.group_names))
                .send()
                .await
                .map_err(sdk)
                .context(error::CallSnafu {
                    operation: "ModifySnapshotAttribute",
                    region,
                })?;
        }
    }
    ec2.modify_image_attribute()
        .image_id(image_id)
        .attribute("launchPermission")
        .operation_type(operation)
        .set_user_ids(non_empty(&args.user_ids))
        .set_user_groups(non_empty(&args.group_names))
        .set_organization_arns(non_empty(&args.organization_arns))
        .set_organizational_unit_arns(non_empty(&args.organizational_unit_arns))
        .send()
        .await
        .map_err(sdk)
        .context(error::CallSnafu {
            operation: "ModifyImageAttribute",
            region,
        })?;
    let permissions = ec2::launch_permissions(&ec2, region, image_id).await?;
    tracing::info!(
        region,
        image_id,
        public = amis::is_public(&permissions),
        "permissions updated"
    );
    Ok(permissions)
}

fn non_empty(values: &[String]) -> Option<Vec<String>> {
    if values.is_empty() {
        None
    } else {
        Some(values.to_vec())
    }
}
