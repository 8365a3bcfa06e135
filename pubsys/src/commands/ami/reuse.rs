//! Reuse after a crash: the identity (checksum, size) of the images being published, the tags
//! that record it on snapshots and AMIs, and the check an AMI found by name must pass.

use super::AmiArgs;
use crate::aws::ec2::{snapshot_ids, tag};
use crate::aws::snapshot;
use crate::aws::tags::{TAG_CHECKSUM, TAG_IMAGE_SIZE, TAG_VOLUME, tag_value};
use crate::error::{self, Result};
use snafu::ResultExt;

/// Whether a snapshot's tags record exactly `identity` (checksum and size).
pub(super) fn records(tags: &[aws_sdk_ec2::types::Tag], identity: &snapshot::Identity) -> bool {
    tag_value(tags, TAG_CHECKSUM) == Some(identity.checksum.as_str())
        && tag_value(tags, TAG_IMAGE_SIZE) == Some(identity.size.to_string().as_str())
}

/// The AMI's record of the images it was made from: `pubsys:VOLUME-checksum` and
/// `pubsys:VOLUME-size` for each volume.
pub(super) fn content_tags(
    content: &[(&'static str, snapshot::Identity)],
) -> Vec<aws_sdk_ec2::types::Tag> {
    content
        .iter()
        .flat_map(|(volume, identity)| {
            [
                tag(&format!("pubsys:{volume}-checksum"), &identity.checksum),
                tag(&format!("pubsys:{volume}-size"), &identity.size.to_string()),
            ]
        })
        .collect()
}

/// What an AMI is made from: each volume (`os`, `data`) and its image's identity.
pub(super) type Content = Vec<(&'static str, snapshot::Identity)>;

/// The identity of every local image of this publish, by volume (`os`, `data`).
pub(super) async fn local_identities(args: &AmiArgs) -> Result<Content> {
    let mut volumes = vec![("os", args.os_image.clone())];
    if let Some(data) = &args.data_image {
        volumes.push(("data", data.clone()));
    }
    let mut identities = Vec::new();
    for (volume, path) in volumes {
        let identity = tokio::task::spawn_blocking(move || snapshot::identity(&path))
            .await
            .context(error::JoinSnafu)??;
        identities.push((volume, identity));
    }
    Ok(identities)
}

/// Whether the content record an AMI carries (`pubsys:VOLUME-checksum`/`-size`, written at
/// registration and on every copy) names exactly `content`; `Some(why)` when it does not.
pub(super) fn record_differs(
    image: &aws_sdk_ec2::types::Image,
    content: &[(&'static str, snapshot::Identity)],
) -> Option<String> {
    let recorded = |volume: &str, what: &str| {
        tag_value(image.tags(), &format!("pubsys:{volume}-{what}")).map(str::to_owned)
    };
    for volume in ["os", "data"] {
        let mine = content.iter().find(|(v, _)| *v == volume).map(|(_, i)| i);
        let theirs = (recorded(volume, "checksum"), recorded(volume, "size"));
        let same = match (mine, &theirs) {
            (None, (None, None)) => true,
            (Some(identity), (Some(checksum), Some(size))) => {
                *checksum == identity.checksum && *size == identity.size.to_string()
            }
            _ => false,
        };
        if !same {
            return Some(format!(
                "it records {volume} checksum {:?} and size {:?}, this publish {:?}",
                theirs.0,
                theirs.1,
                mine.map(|i| (&i.checksum, i.size))
            ));
        }
    }
    None
}

/// An AMI found by name may be reused only when its snapshots record exactly the images of
/// this publish (a rebuilt image under an old name must not get the old AMI).
pub(super) async fn check_existing_content(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    image: &aws_sdk_ec2::types::Image,
    args: &AmiArgs,
) -> Result<Content> {
    let image_id = image.image_id().unwrap_or_default();
    let differs = |why: String| {
        error::ExistingContentSnafu {
            image_id,
            name: &args.name,
            region,
            why,
        }
        .fail()
    };
    let local = local_identities(args).await?;
    // The AMI's own record (written at registration; moto, unlike EC2, gives a registered
    // AMI copies of the snapshots, so the AMI's tags are what both keep).
    if tag_value(image.tags(), "pubsys:os-checksum").is_some() {
        return match record_differs(image, &local) {
            Some(why) => differs(why),
            None => Ok(local),
        };
    }
    // An AMI without that record: what its snapshots record.
    let ids = snapshot_ids(image);
    let snapshots = if ids.is_empty() {
        Vec::new()
    } else {
        ec2.describe_snapshots()
            .set_snapshot_ids(Some(ids))
            .send()
            .await
            .map_err(crate::error::sdk)
            .context(error::CallSnafu {
                operation: "DescribeSnapshots",
                region,
            })?
            .snapshots()
            .to_vec()
    };
    if snapshots.len() != local.len() {
        return differs(format!(
            "it has {} snapshot(s), this publish {} image(s)",
            snapshots.len(),
            local.len()
        ));
    }
    for (volume, identity) in &local {
        let found = snapshots
            .iter()
            .find(|s| tag_value(s.tags(), TAG_VOLUME) == Some(*volume));
        match found {
            Some(s) if records(s.tags(), identity) => {}
            Some(s) => {
                return differs(format!(
                    "its {volume} snapshot {} records checksum {:?} and size {:?}, the image \
                     has {} and {}",
                    s.snapshot_id().unwrap_or_default(),
                    tag_value(s.tags(), TAG_CHECKSUM),
                    tag_value(s.tags(), TAG_IMAGE_SIZE),
                    identity.checksum,
                    identity.size
                ));
            }
            None => return differs(format!("no snapshot of it records the {volume} image")),
        }
    }
    Ok(local)
}
