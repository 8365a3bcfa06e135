//! `pubsys publish-ami`: grant or revoke launch permissions on the AMIs of an `amis.json`,
//! and create-volume permissions on their snapshots.
//!
//! Snapshots take account IDs and groups; AWS has no organization or OU sharing for
//! snapshots, so those principals apply to the AMI only (launching through the AMI does not
//! need snapshot access). Each region's record in `amis.json` is rewritten (atomically) before
//! and after its change, in the order [`crate::aws::permissions`] describes, so a run stopped at
//! any point never shares more than the file records and a re-run finishes the change; other
//! regions are kept as they are.
use crate::Context;
use crate::aws::amis::{self, LaunchPermission, Operation, PendingChange, Recorder};
use crate::aws::ec2::{WaitSettings, snapshot_ids, wait_for_image};
use crate::aws::permissions::{self, Target};
use crate::aws::{AwsArgs, DurationArg};
use crate::error::{self, Result};
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
    let amis = amis::load_for(&args.ami_input, &requested)?;
    let regions: Vec<String> = if requested.is_empty() {
        amis.keys().cloned().collect()
    } else {
        requested
    };
    let base = regions[0].parse().map_err(|_| error::Error::NoRegions)?;
    let aws = crate::aws::context(&args.aws, context, &base).await;
    let change = requested_change(args);
    let wait = WaitSettings {
        timeout: args.wait_timeout.0,
        interval: args.poll_interval.0,
    };
    let recorder = Recorder::new(Some(&args.ami_input), amis.clone());
    let mut outcomes: Vec<PublishOutcome> = stream::iter(regions.iter())
        .map(|region| {
            let image = &amis[region];
            let (aws, change, recorder) = (&aws, &change, &recorder);
            async move {
                let result = publish_region(aws, region, image, change, recorder, wait).await;
                let image_id = image.id.clone();
                match result {
                    Ok(record) => PublishOutcome {
                        region: region.clone(),
                        image_id,
                        public: Some(record.public),
                        launch_permissions: record.launch_permissions,
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
    Ok(PublishAmiReport {
        operation: change.operation.as_str().to_owned(),
        regions: outcomes,
    })
}

/// The change the flags ask for.
fn requested_change(args: &PublishAmiArgs) -> PendingChange {
    let each = |values: &[String], kind: fn(String) -> LaunchPermission| {
        values.iter().cloned().map(kind).collect::<Vec<_>>()
    };
    let launch_permissions = [
        each(&args.user_ids, LaunchPermission::UserId),
        each(&args.group_names, LaunchPermission::Group),
        each(&args.organization_arns, LaunchPermission::OrganizationArn),
        each(
            &args.organizational_unit_arns,
            LaunchPermission::OrganizationalUnitArn,
        ),
    ]
    .concat();
    PendingChange {
        operation: if args.grant {
            Operation::Grant
        } else {
            Operation::Revoke
        },
        launch_permissions,
    }
}

/// Wait for the region's AMI, then change its permissions and record them.
async fn publish_region(
    aws: &aws_context::AwsContext,
    region: &str,
    image: &amis::Image,
    change: &PendingChange,
    recorder: &Recorder,
    wait: WaitSettings,
) -> Result<amis::Image> {
    let ec2 = aws
        .ec2(region)
        .await
        .context(error::ClientSnafu { region })?;
    let found = wait_for_image(&ec2, region, &image.id, wait).await?;
    let snapshots = snapshot_ids(&found);
    let target = Target {
        ec2: &ec2,
        region,
        image_id: &image.id,
        name: &image.name,
        snapshots: &snapshots,
    };
    permissions::apply(&target, change, recorder).await
}
