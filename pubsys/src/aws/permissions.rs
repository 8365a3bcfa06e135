//! Changing who may use an AMI and its snapshots, so that a run stopped at any point never
//! shares more than `amis.json` records.
//!
//! Two rules hold at every instant:
//! 1. **The snapshots are shared with no principal the AMI is not shared with.** A grant
//!    changes the AMI's launch permissions first and the snapshots' create-volume permissions
//!    second; a revoke does the reverse. So the AMI's launch permissions always account for
//!    everyone who can read the disk, and reading them back is a complete record.
//! 2. **The record is never narrower than the AMI.** Before anything changes, the region's
//!    record is written (atomically) with what the AMI allows now plus, for a grant, what it
//!    is about to allow, and a `pending` entry naming the change; once the change is done it
//!    is written again with what EC2 reports and no `pending` entry. A narrowing is therefore
//!    recorded only after it happened.
//!
//! Every call is idempotent (adding a permission that exists or removing one that does not
//! changes nothing), so re-running the command finishes an interrupted change.

use super::amis::{Image, LaunchPermission, Operation, PendingChange, Recorder};
use super::ec2;
use crate::error::{self, Result, sdk};
use aws_sdk_ec2::types::{OperationType, SnapshotAttributeName};
use snafu::ResultExt;

/// The AMI whose permissions change, and its record.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// A client of the AMI's region.
    pub ec2: &'a aws_sdk_ec2::Client,
    /// The AMI's region (the key of its record).
    pub region: &'a str,
    /// The AMI.
    pub image_id: &'a str,
    /// The AMI's name (for a record that does not exist yet).
    pub name: &'a str,
    /// The AMI's snapshots.
    pub snapshots: &'a [String],
}

/// Apply `change` to the AMI and its snapshots (accounts and groups only: snapshots have no
/// organization or OU sharing), recording it in `recorder` as the module describes. Returns
/// the final record.
pub async fn apply(
    target: &Target<'_>,
    change: &PendingChange,
    recorder: &Recorder,
) -> Result<Image> {
    let Target {
        ec2,
        region,
        image_id,
        name,
        ..
    } = *target;
    let mut intended = ec2::launch_permissions(ec2, region, image_id).await?;
    let mut record = recorder
        .get(region, image_id)
        .unwrap_or_else(|| Image::new(image_id, name));
    if let Some(earlier) = record.pending.as_ref().filter(|earlier| *earlier != change) {
        // What it did is bounded by the AMI's permissions (rule 1), which are recorded below.
        tracing::warn!(
            region,
            image_id,
            operation = earlier.operation.as_str(),
            permissions = ?earlier.launch_permissions,
            "an interrupted permission change is superseded by this one; re-run it to finish it"
        );
    }
    if change.operation == Operation::Grant {
        for permission in &change.launch_permissions {
            if !intended.contains(permission) {
                intended.push(permission.clone());
            }
        }
    }
    record.set_permissions(intended);
    record.pending = Some(change.clone());
    recorder.record(region, record.clone())?;

    match change.operation {
        Operation::Grant => {
            modify_image(target, change).await?;
            modify_snapshots(target, change).await?;
        }
        Operation::Revoke => {
            modify_snapshots(target, change).await?;
            modify_image(target, change).await?;
        }
    }

    record.set_permissions(ec2::launch_permissions(ec2, region, image_id).await?);
    record.pending = None;
    recorder.record(region, record.clone())?;
    tracing::info!(
        region,
        image_id,
        operation = change.operation.as_str(),
        public = record.public,
        "permissions updated"
    );
    Ok(record)
}

/// The principals of `change` that `pick` selects, or `None` when there are none.
fn principals(
    change: &PendingChange,
    pick: fn(&LaunchPermission) -> Option<&String>,
) -> Option<Vec<String>> {
    let values: Vec<String> = change
        .launch_permissions
        .iter()
        .filter_map(pick)
        .cloned()
        .collect();
    (!values.is_empty()).then_some(values)
}

fn user_ids(change: &PendingChange) -> Option<Vec<String>> {
    principals(change, |p| match p {
        LaunchPermission::UserId(id) => Some(id),
        _ => None,
    })
}

fn groups(change: &PendingChange) -> Option<Vec<String>> {
    principals(change, |p| match p {
        LaunchPermission::Group(group) => Some(group),
        _ => None,
    })
}

fn operation_type(change: &PendingChange) -> OperationType {
    match change.operation {
        Operation::Grant => OperationType::Add,
        Operation::Revoke => OperationType::Remove,
    }
}

async fn modify_image(target: &Target<'_>, change: &PendingChange) -> Result<()> {
    target
        .ec2
        .modify_image_attribute()
        .image_id(target.image_id)
        .attribute("launchPermission")
        .operation_type(operation_type(change))
        .set_user_ids(user_ids(change))
        .set_user_groups(groups(change))
        .set_organization_arns(principals(change, |p| match p {
            LaunchPermission::OrganizationArn(arn) => Some(arn),
            _ => None,
        }))
        .set_organizational_unit_arns(principals(change, |p| match p {
            LaunchPermission::OrganizationalUnitArn(arn) => Some(arn),
            _ => None,
        }))
        .send()
        .await
        .map_err(sdk)
        .context(error::ModifyPermissionsSnafu {
            operation: "ModifyImageAttribute",
            resource: target.image_id,
            region: target.region,
        })?;
    Ok(())
}

async fn modify_snapshots(target: &Target<'_>, change: &PendingChange) -> Result<()> {
    let (users, groups) = (user_ids(change), groups(change));
    if users.is_none() && groups.is_none() {
        return Ok(());
    }
    for snapshot_id in target.snapshots {
        target
            .ec2
            .modify_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .operation_type(operation_type(change))
            .set_user_ids(users.clone())
            .set_group_names(groups.clone())
            .send()
            .await
            .map_err(sdk)
            .context(error::ModifyPermissionsSnafu {
                operation: "ModifySnapshotAttribute",
                resource: snapshot_id,
                region: target.region,
            })?;
    }
    Ok(())
}
