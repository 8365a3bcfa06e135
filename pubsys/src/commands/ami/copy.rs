//! Every other region: the base AMI copied in (idempotent client token), shared first with
//! the region's account when it publishes from another one, awaited and recorded.

use super::register::{account, describe_record, finish_image};
use super::reuse::{content_tags, record_differs};
use super::{AmiArgs, RegionOutcome, RegionStatus};
use crate::aws::amis::{Image, LaunchPermission, Operation, PendingChange, Recorder};
use crate::aws::ec2::{self, WaitSettings, image_named, tag, wait_for_image};
use crate::aws::permissions::{self, Target};
use crate::aws::snapshot;
use crate::aws::tags::TAG_NAME;
use crate::error::{self, Result, sdk};
use aws_context::AwsContext;
use aws_sdk_ec2::types::{ResourceType, TagSpecification};
use snafu::{OptionExt, ResultExt};

/// What sharing the base AMI with the accounts of other regions needs.
pub(super) struct BaseShare<'a> {
    /// The base region's account.
    pub(super) account: String,
    /// The base AMI and its snapshots.
    pub(super) target: Target<'a>,
    /// One change of the base AMI's permissions (and record) at a time: each records what it
    /// read back, which must include the others' grants.
    pub(super) one_at_a_time: tokio::sync::Mutex<()>,
}

pub(super) struct CopyJob<'a> {
    pub(super) aws: &'a AwsContext,
    pub(super) args: &'a AmiArgs,
    pub(super) base: &'a str,
    pub(super) base_id: &'a str,
    /// Set when regions may publish from other accounts.
    pub(super) base_share: Option<&'a BaseShare<'a>>,
    /// What the base AMI was made from (recorded on every copy too).
    pub(super) content: &'a [(&'static str, snapshot::Identity)],
    pub(super) region: &'a str,
    pub(super) wait: WaitSettings,
    /// What a lookup by name found in `region` before the copies started (`None`: not
    /// looked up, do it now).
    pub(super) prefetched: Option<Option<aws_sdk_ec2::types::Image>>,
}

/// Deterministic idempotency token for the copy of `name` into `region`.
pub(super) fn client_token(name: &str, region: &str) -> String {
    let digest = snapshot::sha256(format!("pubsys-copy\0{name}\0{region}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

pub(super) async fn copy_to(
    job: CopyJob<'_>,
    recorder: &Recorder,
    outcome: &mut RegionOutcome,
) -> Result<()> {
    let CopyJob {
        aws,
        args,
        base,
        base_id,
        base_share,
        content,
        region,
        wait,
        prefetched,
    } = job;
    let ec2 = aws
        .ec2(region)
        .await
        .context(error::ClientSnafu { region })?;

    // A region publishing from another account needs access to the base AMI first.
    if let Some(share) = base_share {
        let target_account = account(aws, region).await?;
        if target_account != share.account {
            grant_account(share, &target_account, recorder).await?;
        }
    }

    let found = match prefetched {
        Some(found) => found,
        None => image_named(&ec2, region, &args.name).await?,
    };
    let id = match found {
        Some(image) => {
            let image_id = ec2::image_id(&image, "DescribeImages", region)?.to_owned();
            // A copy found by name is this publish's only if it records the base's content
            // (every copy carries the record from its CopyImage on): an older copy left under
            // the name (say the base AMI was deregistered and rebuilt) is never reused.
            if let Some(why) = record_differs(&image, content) {
                // An earlier run's record of it must not stand beside this publish's.
                recorder.forget(region, &image_id)?;
                return error::ExistingContentSnafu {
                    image_id,
                    name: &args.name,
                    region,
                    why,
                }
                .fail();
            }
            outcome.existing = true;
            image_id
        }
        None => {
            let mut tags = vec![tag(TAG_NAME, &args.name)];
            tags.extend(content_tags(content));
            tags.extend(args.tags.iter().map(|t| tag(&t.0, &t.1)));
            let copied = ec2
                .copy_image()
                .name(&args.name)
                .description(args.description.as_deref().unwrap_or(&args.name))
                .source_image_id(base_id)
                .source_region(base)
                .client_token(client_token(&args.name, region))
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::Image)
                        .set_tags(Some(tags))
                        .build(),
                )
                .send()
                .await;
            match copied {
                Ok(output) => output
                    .image_id()
                    .context(error::MissingFieldSnafu {
                        operation: "CopyImage",
                        region,
                        field: "ImageId",
                    })?
                    .to_owned(),
                Err(e) if ec2::code(&e) == Some("InvalidAMIName.Duplicate") => {
                    let image = image_named(&ec2, region, &args.name).await?.context(
                        error::ImageNotFoundSnafu {
                            image_id: args.name.clone(),
                            region,
                        },
                    )?;
                    ec2::image_id(&image, "DescribeImages", region)?.to_owned()
                }
                Err(e) => {
                    return Err(sdk(e)).context(error::CallSnafu {
                        operation: "CopyImage",
                        region,
                    });
                }
            }
        }
    };
    tracing::info!(image_id = %id, region, existing = outcome.existing, "copy in region");
    outcome.image_id = Some(id.clone());
    recorder.record(region, Image::new(&id, &args.name))?;
    let image = wait_for_image(&ec2, region, &id, wait).await?;
    let (_, record) = tokio::try_join!(
        finish_image(&ec2, region, &image, args, content),
        describe_record(&ec2, region, &id, &args.name)
    )?;
    recorder.record(region, record)?;
    outcome.status = RegionStatus::Available;
    Ok(())
}

/// Let `account` use the base AMI and its snapshots (so it can copy them), recorded in the
/// base region's entry of amis.json like any other launch permission.
pub(super) async fn grant_account(
    share: &BaseShare<'_>,
    account: &str,
    recorder: &Recorder,
) -> Result<()> {
    let _alone = share.one_at_a_time.lock().await;
    let change = PendingChange {
        operation: Operation::Grant,
        launch_permissions: vec![LaunchPermission::UserId(account.to_owned())],
    };
    permissions::apply(&share.target, &change, recorder).await?;
    tracing::info!(
        account,
        image_id = share.target.image_id,
        "granted the base AMI to another account"
    );
    Ok(())
}
