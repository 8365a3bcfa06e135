//! The base region: snapshots (reused when they record this image, else uploaded), the AMI
//! registered from them, and waiting for it to be available.

use super::reuse::{Content, content_tags, records};
use super::{AmiArgs, BootMode, Sriov, VolumeKind};
use crate::aws::amis::{self, Image};
use crate::aws::ec2::{self, WaitSettings, image_named, snapshot_ids, tag};
use crate::aws::snapshot::{self, UploadSettings};
use crate::aws::tags::{TAG_IMAGE_SIZE, TAG_NAME, TAG_UPLOAD, TAG_VOLUME};
use crate::error::{self, Result, sdk};
use aws_context::AwsContext;
use aws_sdk_ec2::types::{
    ArchitectureValues, BlockDeviceMapping, BootModeValues, EbsBlockDevice, ImdsSupportValues,
    ResourceType, SnapshotState, TagSpecification, TpmSupportValues, VolumeType,
};
use snafu::{OptionExt, ResultExt};
use std::path::Path;

pub(super) fn check_arch(
    image: &aws_sdk_ec2::types::Image,
    args: &AmiArgs,
    region: &str,
) -> Result<()> {
    // EC2 always reports the architecture; an empty one (emulators) is not a mismatch.
    match image.architecture() {
        Some(arch) if !arch.as_str().is_empty() && arch.as_str() != args.arch.ec2_name() => {
            error::ImageMismatchSnafu {
                image_id: image.image_id().unwrap_or_default(),
                name: &args.name,
                region,
                expected: args.arch.ec2_name(),
                actual: arch.as_str(),
            }
            .fail()
        }
        _ => Ok(()),
    }
}

/// Upload (or reuse) the snapshots and register the base AMI.
pub(super) async fn create_base(
    args: &AmiArgs,
    aws: &AwsContext,
    region: &str,
    wait: WaitSettings,
) -> Result<(String, Vec<snapshot::Uploaded>, Content)> {
    let ec2 = aws
        .ec2(region)
        .await
        .context(error::ClientSnafu { region })?;
    let ebs = aws
        .ebs(region)
        .await
        .context(error::ClientSnafu { region })?;
    let settings = UploadSettings {
        concurrency: args.upload_concurrency,
        attempts: 12,
        backoff: std::time::Duration::from_millis(args.aws.retry_backoff_ms.min(2000)),
        progress: !args.no_progress,
        wait,
    };
    let mut uploaded = Vec::new();
    let mut created: Vec<String> = Vec::new();
    let mut volumes = vec![("os", args.os_image.clone(), args.os_volume_size)];
    if let Some(data) = &args.data_image {
        volumes.push(("data", data.clone(), args.data_volume_size));
    }
    let mut mappings = Vec::new();
    let mut content = Vec::new();
    for (volume, path, size_hint) in volumes {
        let result = snapshot_for(&ebs, &ec2, region, args, volume, &path, settings).await;
        let (snapshot_id, image_gib, upload, identity) = match result {
            Ok(found) => found,
            Err(e) => {
                delete_snapshots(&ec2, &created).await;
                return Err(e);
            }
        };
        if let Some(upload) = upload {
            created.push(snapshot_id.clone());
            uploaded.push(upload);
        }
        content.push((volume, identity));
        let size = size_hint.map(i64::from).unwrap_or(image_gib).max(image_gib);
        let device = if volume == "os" {
            "/dev/xvda"
        } else {
            "/dev/xvdb"
        };
        mappings.push(
            BlockDeviceMapping::builder()
                .device_name(device)
                .ebs(
                    EbsBlockDevice::builder()
                        .snapshot_id(&snapshot_id)
                        .volume_type(volume_type(args.volume_type))
                        // At most max(MAX_VOLUME_GIB, the image in GiB); an image too large
                        // for EBS is refused by EC2 rather than wrapped here.
                        .volume_size(i32::try_from(size).unwrap_or(i32::MAX))
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        );
    }
    match register(&ec2, region, args, mappings, &content).await {
        Ok(id) => Ok((id, uploaded, content)),
        Err(e) => {
            delete_snapshots(&ec2, &created).await;
            Err(e)
        }
    }
}

pub(super) fn volume_type(kind: VolumeKind) -> VolumeType {
    match kind {
        VolumeKind::Gp2 => VolumeType::Gp2,
        VolumeKind::Gp3 => VolumeType::Gp3,
        VolumeKind::Io1 => VolumeType::Io1,
        VolumeKind::Io2 => VolumeType::Io2,
        VolumeKind::St1 => VolumeType::St1,
        VolumeKind::Sc1 => VolumeType::Sc1,
        VolumeKind::Standard => VolumeType::Standard,
    }
}

pub(super) async fn delete_snapshots(ec2: &aws_sdk_ec2::Client, ids: &[String]) {
    for id in ids {
        tracing::warn!(snapshot_id = %id, "deleting snapshot of the failed publish");
        let _ = ec2.delete_snapshot().snapshot_id(id).send().await;
    }
}

pub(super) fn user_tags(args: &AmiArgs) -> Vec<(String, String)> {
    args.tags
        .iter()
        .map(|t| (t.0.clone(), t.1.clone()))
        .collect()
}

/// A complete snapshot left by an earlier run, or a new upload. Returns the snapshot, the
/// image size in GiB, the upload (when one happened) and the image's identity.
pub(super) async fn snapshot_for(
    ebs: &aws_sdk_ebs::Client,
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    args: &AmiArgs,
    volume: &str,
    path: &Path,
    settings: UploadSettings,
) -> Result<(String, i64, Option<snapshot::Uploaded>, snapshot::Identity)> {
    let size = std::fs::metadata(path)
        .context(error::ReadFileSnafu { path })?
        .len();
    let image_gib = snapshot::volume_size_gib(size) as i64;
    let local = path.to_owned();
    let identity = tokio::task::spawn_blocking(move || snapshot::identity(&local))
        .await
        .context(error::JoinSnafu)??;
    let found = snapshot::snapshots_tagged(
        ec2,
        region,
        &[(TAG_NAME, args.name.as_str()), (TAG_VOLUME, volume)],
    )
    .await?;
    let mut reusable = None;
    for candidate in &found {
        let complete = candidate
            .tags()
            .iter()
            .any(|t| t.key() == Some(TAG_UPLOAD) && t.value() == Some("complete"))
            && candidate.state() == Some(&SnapshotState::Completed);
        let Some(id) = candidate.snapshot_id() else {
            continue;
        };
        if complete && !records(candidate.tags(), &identity) {
            // An earlier build under the same name: left alone (an AMI may use it).
            tracing::warn!(
                snapshot_id = id,
                region,
                "not reusing a snapshot of an earlier run: it records other content"
            );
        } else if complete && reusable.is_none() {
            reusable = Some(id.to_owned());
        } else if !complete {
            tracing::warn!(
                snapshot_id = id,
                region,
                "deleting an incomplete upload of an earlier run"
            );
            let _ = ec2.delete_snapshot().snapshot_id(id).send().await;
        }
    }
    if let Some(id) = reusable {
        tracing::info!(snapshot_id = %id, region, volume, "reusing the snapshot of an earlier run");
        return Ok((id, image_gib, None, identity));
    }
    let mut tags = vec![
        (TAG_NAME.to_owned(), args.name.clone()),
        (TAG_VOLUME.to_owned(), volume.to_owned()),
        (TAG_IMAGE_SIZE.to_owned(), identity.size.to_string()),
    ];
    tags.extend(user_tags(args));
    let uploaded = snapshot::upload(ebs, ec2, region, path, &tags, settings).await?;
    Ok((
        uploaded.snapshot_id.clone(),
        image_gib,
        Some(uploaded),
        identity,
    ))
}

pub(super) async fn register(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    args: &AmiArgs,
    mappings: Vec<BlockDeviceMapping>,
    content: &[(&'static str, snapshot::Identity)],
) -> Result<String> {
    let mut image_tags = vec![tag(TAG_NAME, &args.name)];
    image_tags.extend(args.tags.iter().map(|t| tag(&t.0, &t.1)));
    image_tags.extend(content_tags(content));
    let mut request = ec2
        .register_image()
        .name(&args.name)
        .description(args.description.as_deref().unwrap_or(&args.name))
        .architecture(ArchitectureValues::from(args.arch.ec2_name()))
        .virtualization_type("hvm")
        .root_device_name("/dev/xvda")
        .set_block_device_mappings(Some(mappings))
        .ena_support(args.ena_support)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Image)
                .set_tags(Some(image_tags))
                .build(),
        );
    if args.sriov_net_support == Sriov::Simple {
        request = request.sriov_net_support("simple");
    }
    let mode = args.boot_mode.unwrap_or(BootMode::default_for(args.arch));
    request = request.boot_mode(match mode {
        BootMode::LegacyBios => BootModeValues::LegacyBios,
        BootMode::Uefi => BootModeValues::Uefi,
        BootMode::UefiPreferred => BootModeValues::UefiPreferred,
    });
    if let (Some(path), BootMode::Uefi | BootMode::UefiPreferred) = (&args.uefi_data, mode) {
        let data = std::fs::read_to_string(path).context(error::ReadFileSnafu { path })?;
        request = request.uefi_data(data.trim());
    }
    if args.imdsv2 {
        request = request.imds_support(ImdsSupportValues::V20);
    }
    if args.tpm {
        request = request.tpm_support(TpmSupportValues::V20);
    }
    match request.send().await {
        Ok(output) => {
            let id = output
                .image_id()
                .context(error::MissingFieldSnafu {
                    operation: "RegisterImage",
                    region,
                    field: "ImageId",
                })?
                .to_owned();
            tracing::info!(image_id = %id, region, "registered AMI");
            Ok(id)
        }
        Err(e) if ec2::code(&e) == Some("InvalidAMIName.Duplicate") => {
            // A retried call whose first answer was lost: the AMI may be ours.
            tracing::warn!(region, "RegisterImage says the name exists; looking it up");
            let image =
                image_named(ec2, region, &args.name)
                    .await?
                    .context(error::ImageNotFoundSnafu {
                        image_id: args.name.clone(),
                        region,
                    })?;
            Ok(ec2::image_id(&image, "DescribeImages", region)?.to_owned())
        }
        Err(e) => Err(sdk(e)).context(error::CallSnafu {
            operation: "RegisterImage",
            region,
        }),
    }
}

/// Tags (AMI and its snapshots) and deprecation, applied idempotently on every run.
pub(super) async fn finish_image(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    image: &aws_sdk_ec2::types::Image,
    args: &AmiArgs,
    content: &[(&'static str, snapshot::Identity)],
) -> Result<()> {
    let image_id = ec2::image_id(image, "DescribeImages", region)?;
    let mut tags = vec![tag(TAG_NAME, &args.name)];
    tags.extend(args.tags.iter().map(|t| tag(&t.0, &t.1)));
    tags.extend(content_tags(content));
    let mut resources = vec![image_id.to_owned()];
    resources.extend(snapshot_ids(image));
    ec2::create_tags(ec2, region, resources, tags).await?;
    if let Some(time) = args.deprecation_time {
        ec2.enable_image_deprecation()
            .image_id(image_id)
            .deprecate_at(ec2::to_smithy(time))
            .send()
            .await
            .map_err(sdk)
            .context(error::CallSnafu {
                operation: "EnableImageDeprecation",
                region,
            })?;
    }
    Ok(())
}

/// The amis.json record of an available AMI, with its current permissions.
pub(super) async fn describe_record(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    image_id: &str,
    name: &str,
) -> Result<Image> {
    let permissions = ec2::launch_permissions(ec2, region, image_id).await?;
    let mut image = Image::new(image_id, name);
    image.public = amis::is_public(&permissions);
    image.launch_permissions = permissions;
    Ok(image)
}

/// The account a region's credentials belong to.
pub(super) async fn account(aws: &AwsContext, region: &str) -> Result<String> {
    let sts = aws
        .sts(region)
        .await
        .context(error::ClientSnafu { region })?;
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(sdk)
        .context(error::CallSnafu {
            operation: "GetCallerIdentity",
            region,
        })?;
    identity
        .account()
        .map(str::to_owned)
        .context(error::MissingFieldSnafu {
            operation: "GetCallerIdentity",
            region,
            field: "Account",
        })
}
