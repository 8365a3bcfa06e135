//! The tags pubsys puts on snapshots and AMIs: what a re-run reads to find and check what an
//! earlier run left (a leaf module: ami and snapshot both use it).

/// Tag on snapshots (and AMIs): the AMI name they belong to.
pub const TAG_NAME: &str = "pubsys:ami-name";
/// Tag on snapshots: `os` or `data`.
pub const TAG_VOLUME: &str = "pubsys:volume";
/// Tag on snapshots: `started`, then `complete`.
pub const TAG_UPLOAD: &str = "pubsys:upload";
/// Tag on snapshots: the LINEAR aggregate SHA-256 of the upload.
pub const TAG_CHECKSUM: &str = "pubsys:checksum";
/// Tag on snapshots: the image's size in bytes.
pub const TAG_IMAGE_SIZE: &str = "pubsys:image-size";

/// The value of tag `key` among `tags`.
pub fn tag_value<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}
