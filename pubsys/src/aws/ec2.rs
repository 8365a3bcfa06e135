//! EC2 helpers shared by the AMI commands: find by name, wait, permissions.

use super::amis::LaunchPermission;
use crate::error::{self, Result, sdk};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, Image, ImageState};
use snafu::{OptionExt, ResultExt};
use std::time::{Duration, Instant};

/// How long to wait and how often to look.
#[derive(Debug, Clone, Copy)]
pub struct WaitSettings {
    /// Give up after this long.
    pub timeout: Duration,
    /// Time between two looks.
    pub interval: Duration,
}

/// The error code of an SDK error (`InvalidAMIID.NotFound`, ...).
pub fn code<E: ProvideErrorMetadata>(error: &E) -> Option<&str> {
    error.code()
}

/// Our own AMIs called `name` in the client's region (any state but deregistered).
pub async fn images_named(client: &Client, region: &str, name: &str) -> Result<Vec<Image>> {
    let output = client
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("name").values(name).build())
        .include_deprecated(true)
        .send()
        .await
        .map_err(sdk)
        .context(error::CallSnafu {
            operation: "DescribeImages",
            region,
        })?;
    Ok(output
        .images()
        .iter()
        .filter(|image| image.name() == Some(name))
        .filter(|image| {
            !matches!(
                image.state(),
                Some(ImageState::Deregistered) | Some(ImageState::Disabled)
            )
        })
        .cloned()
        .collect())
}

/// The one AMI called `name`, if any; more than one is an error.
pub async fn image_named(client: &Client, region: &str, name: &str) -> Result<Option<Image>> {
    let mut images = images_named(client, region, name).await?;
    if images.len() > 1 {
        let ids: Vec<&str> = images.iter().filter_map(|i| i.image_id()).collect();
        return error::DuplicateImagesSnafu {
            name,
            region,
            count: images.len(),
            ids: ids.join(", "),
        }
        .fail();
    }
    Ok(images.pop())
}

/// The AMI `image_id`, or `None` when EC2 does not know it.
pub async fn describe_image(
    client: &Client,
    region: &str,
    image_id: &str,
) -> Result<Option<Image>> {
    match client
        .describe_images()
        .image_ids(image_id)
        .include_deprecated(true)
        .send()
        .await
    {
        Ok(output) => Ok(output.images().first().cloned()),
        Err(e) if code(&e).is_some_and(|c| c.starts_with("InvalidAMIID")) => Ok(None),
        Err(e) => Err(sdk(e)).context(error::CallSnafu {
            operation: "DescribeImages",
            region,
        }),
    }
}

/// Wait until `image_id` is `available`; failed states end the wait at once.
pub async fn wait_for_image(
    client: &Client,
    region: &str,
    image_id: &str,
    wait: WaitSettings,
) -> Result<Image> {
    let start = Instant::now();
    loop {
        if let Some(image) = describe_image(client, region, image_id).await? {
            match image.state() {
                Some(ImageState::Available) => return Ok(image),
                Some(ImageState::Pending) | None => {}
                Some(state) => {
                    return error::ImageStateSnafu {
                        image_id,
                        region,
                        state: state.as_str(),
                    }
                    .fail();
                }
            }
        }
        if start.elapsed() >= wait.timeout {
            return error::WaitTimeoutSnafu {
                what: format!("AMI {image_id} to become available"),
                region,
                seconds: wait.timeout.as_secs(),
            }
            .fail();
        }
        tracing::debug!(image_id, region, "waiting for AMI");
        tokio::time::sleep(wait.interval).await;
    }
}

/// The snapshot IDs an image's block device mappings use.
pub fn snapshot_ids(image: &Image) -> Vec<String> {
    image
        .block_device_mappings()
        .iter()
        .filter_map(|mapping| mapping.ebs().and_then(|ebs| ebs.snapshot_id()))
        .map(str::to_owned)
        .collect()
}

/// The launch permissions of `image_id`.
pub async fn launch_permissions(
    client: &Client,
    region: &str,
    image_id: &str,
) -> Result<Vec<LaunchPermission>> {
    let output = client
        .describe_image_attribute()
        .image_id(image_id)
        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
        .send()
        .await
        .map_err(sdk)
        .context(error::CallSnafu {
            operation: "DescribeImageAttribute",
            region,
        })?;
    Ok(output
        .launch_permissions()
        .iter()
        .filter_map(LaunchPermission::from_ec2)
        .collect())
}

/// The AMI ID of an image description.
pub fn image_id<'a>(image: &'a Image, operation: &'static str, region: &str) -> Result<&'a str> {
    image.image_id().context(error::MissingFieldSnafu {
        operation,
        region,
        field: "ImageId",
    })
}

/// Tag `resources` (AMIs, snapshots) in `region`.
pub async fn create_tags(
    client: &Client,
    region: &str,
    resources: Vec<String>,
    tags: Vec<aws_sdk_ec2::types::Tag>,
) -> Result<()> {
    client
        .create_tags()
        .set_resources(Some(resources))
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(sdk)
        .context(error::CallSnafu {
            operation: "CreateTags",
            region,
        })?;
    Ok(())
}

/// An EC2 tag.
pub fn tag(key: &str, value: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
}

/// Convert a jiff timestamp to the SDK's type.
pub fn to_smithy(time: jiff::Timestamp) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(time.as_second())
}
