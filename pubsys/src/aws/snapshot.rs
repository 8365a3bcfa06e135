//! Upload a raw disk image as an EBS snapshot with the EBS direct APIs (as coldsnap does).
//!
//! The file is split into 512 KiB blocks; all-zero blocks are never sent (the snapshot reads
//! them as zeros); each sent block carries its SHA-256 (base64), and `CompleteSnapshot`
//! carries the LINEAR aggregate: SHA-256 over the binary block digests in index order.
//! Blocks are read and hashed on the blocking pool and sent with bounded concurrency; each is
//! retried with linear backoff on top of the SDK's own retries. Any failure deletes the
//! snapshot (best effort), so a failed upload leaves nothing behind.

use super::ec2::{WaitSettings, create_tags, tag};
use crate::error::{self, Result, sdk};
use aws_lc_rs::digest;
use aws_sdk_ebs::primitives::ByteStream;
use aws_sdk_ebs::types::{ChecksumAggregationMethod, ChecksumAlgorithm, Status};
use aws_sdk_ec2::types::{Filter, SnapshotState};
use futures::stream::{self, StreamExt, TryStreamExt};
use snafu::{OptionExt, ResultExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The EBS direct API block size (AWS always uses 512 KiB).
pub const BLOCK_SIZE: u64 = 512 * 1024;
const GIB: u64 = 1024 * 1024 * 1024;

/// How to upload.
#[derive(Debug, Clone, Copy)]
pub struct UploadSettings {
    /// Blocks in flight at once.
    pub concurrency: usize,
    /// Attempts per block (on top of the SDK's retries).
    pub attempts: u32,
    /// Linear backoff step between block attempts.
    pub backoff: Duration,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// Waiting for the snapshot to complete.
    pub wait: WaitSettings,
}

/// A finished upload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Uploaded {
    /// The snapshot.
    pub snapshot_id: String,
    /// Volume size, GiB.
    pub volume_size_gib: i64,
    /// Non-zero blocks sent.
    pub blocks_sent: u64,
    /// Blocks in the file.
    pub blocks_total: u64,
    /// LINEAR aggregate SHA-256, base64.
    pub checksum: String,
}

/// Volume size in GiB for an image of `bytes` (rounded up, at least 1).
pub fn volume_size_gib(bytes: u64) -> u64 {
    bytes.div_ceil(GIB).max(1)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// The LINEAR aggregate checksum of block digests in index order.
pub fn aggregate(digests: &[[u8; 32]]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    for block in digests {
        context.update(block);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// Base64 (standard alphabet, padded), as the EBS APIs expect.
pub fn base64(bytes: &[u8]) -> String {
    aws_smithy_types::base64::encode(bytes)
}

/// Read block `index` of `file` (zero-padded to a whole block); `None` when it is all zeros.
fn read_block(file: &std::fs::File, index: u64, size: u64) -> std::io::Result<Option<Vec<u8>>> {
    let offset = index * BLOCK_SIZE;
    let length = (size - offset).min(BLOCK_SIZE) as usize;
    let mut data = vec![0u8; BLOCK_SIZE as usize];
    file.read_exact_at(&mut data[..length], offset)?;
    if data.iter().all(|&b| b == 0) {
        Ok(None)
    } else {
        Ok(Some(data))
    }
}

/// What an image holds, as a snapshot of it records it: its exact size and the LINEAR
/// aggregate checksum of its non-zero blocks (the `pubsys:checksum` tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Size in bytes.
    pub size: u64,
    /// LINEAR aggregate SHA-256, base64.
    pub checksum: String,
}

/// Read `path` once and compute its [`Identity`]. Blocking.
pub fn identity(path: &Path) -> Result<Identity> {
    let file = std::fs::File::open(path).context(error::ReadFileSnafu { path })?;
    let size = file
        .metadata()
        .context(error::ReadFileSnafu { path })?
        .len();
    let mut digests = Vec::new();
    for index in 0..size.div_ceil(BLOCK_SIZE) {
        if let Some(data) = read_block(&file, index, size).context(error::ReadFileSnafu { path })? {
            digests.push(sha256(&data));
        }
    }
    Ok(Identity {
        size,
        checksum: base64(&aggregate(&digests)),
    })
}

/// Upload `path` as a new snapshot in `region` tagged with `tags`.
pub async fn upload(
    ebs: &aws_sdk_ebs::Client,
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    path: &Path,
    tags: &[(String, String)],
    settings: UploadSettings,
) -> Result<Uploaded> {
    let size = std::fs::metadata(path)
        .context(error::ReadFileSnafu { path })?
        .len();
    snafu::ensure!(
        size > 0,
        error::ImageSizeSnafu {
            path,
            reason: "it is empty"
        }
    );
    let volume_size = volume_size_gib(size);
    snafu::ensure!(
        volume_size <= 64 * 1024,
        error::ImageSizeSnafu {
            path,
            reason: "EBS volumes hold at most 64 TiB"
        }
    );
    let description = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = ebs
        .start_snapshot()
        .volume_size(volume_size as i64)
        .description(&description)
        .timeout(60)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| aws_sdk_ebs::types::Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .send()
        .await
        .map_err(sdk)
        .context(error::CallSnafu {
            operation: "StartSnapshot",
            region,
        })?;
    let snapshot_id = started
        .snapshot_id()
        .context(error::MissingFieldSnafu {
            operation: "StartSnapshot",
            region,
            field: "SnapshotId",
        })?
        .to_owned();
    tracing::info!(%snapshot_id, region, image = %path.display(), "started snapshot");
    match fill(ebs, ec2, region, path, size, &snapshot_id, tags, settings).await {
        Ok(mut uploaded) => {
            uploaded.volume_size_gib = volume_size as i64;
            Ok(uploaded)
        }
        Err(e) => {
            tracing::warn!(%snapshot_id, region, "upload failed; deleting the snapshot");
            let _ = ec2.delete_snapshot().snapshot_id(&snapshot_id).send().await;
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn fill(
    ebs: &aws_sdk_ebs::Client,
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    path: &Path,
    size: u64,
    snapshot_id: &str,
    tags: &[(String, String)],
    settings: UploadSettings,
) -> Result<Uploaded> {
    // Tag through EC2 as well, so a re-run finds the snapshot whatever the EBS API kept.
    let mut ec2_tags: Vec<_> = tags.iter().map(|(k, v)| tag(k, v)).collect();
    ec2_tags.push(tag(super::tags::TAG_UPLOAD, "started"));
    create_tags(ec2, region, vec![snapshot_id.to_owned()], ec2_tags).await?;

    let file = Arc::new(std::fs::File::open(path).context(error::ReadFileSnafu { path })?);
    let blocks_total = size.div_ceil(BLOCK_SIZE);
    let bar = progress_bar(settings.progress, blocks_total, path);
    let path_buf: PathBuf = path.to_owned();
    let results: Vec<(u64, Option<[u8; 32]>)> = stream::iter(0..blocks_total)
        .map(|index| {
            let file = Arc::clone(&file);
            let path = path_buf.clone();
            let bar = bar.clone();
            async move {
                let block = tokio::task::spawn_blocking(move || {
                    read_block(&file, index, size).map(|data| {
                        data.map(|data| {
                            let hash = sha256(&data);
                            (data, hash)
                        })
                    })
                })
                .await
                .context(error::JoinSnafu)?
                .context(error::ReadFileSnafu { path })?;
                let digest = match block {
                    None => None,
                    Some((data, hash)) => {
                        put_block(ebs, region, snapshot_id, index, data, &hash, settings).await?;
                        Some(hash)
                    }
                };
                bar.inc(1);
                Ok::<_, error::Error>((index, digest))
            }
        })
        .buffer_unordered(settings.concurrency.max(1))
        .try_collect()
        .await?;
    bar.finish_and_clear();

    let mut digests: Vec<(u64, [u8; 32])> = results
        .into_iter()
        .filter_map(|(index, digest)| digest.map(|d| (index, d)))
        .collect();
    digests.sort_by_key(|(index, _)| *index);
    let ordered: Vec<[u8; 32]> = digests.iter().map(|(_, d)| *d).collect();
    let checksum = base64(&aggregate(&ordered));
    let blocks_sent = ordered.len() as u64;

    let completed = ebs
        .complete_snapshot()
        .snapshot_id(snapshot_id)
        .changed_blocks_count(blocks_sent as i32)
        .checksum(&checksum)
        .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
        .checksum_aggregation_method(ChecksumAggregationMethod::ChecksumAggregationLinear)
        .send()
        .await
        .map_err(sdk)
        .context(error::CallSnafu {
            operation: "CompleteSnapshot",
            region,
        })?;
    if completed.status() == Some(&Status::Error) {
        return error::SnapshotStateSnafu {
            snapshot_id,
            region,
            state: "error",
        }
        .fail();
    }
    wait_for_snapshot(ec2, region, snapshot_id, settings.wait).await?;
    create_tags(
        ec2,
        region,
        vec![snapshot_id.to_owned()],
        vec![
            tag(super::tags::TAG_UPLOAD, "complete"),
            tag(super::tags::TAG_CHECKSUM, &checksum),
        ],
    )
    .await?;
    tracing::info!(
        snapshot_id,
        region,
        blocks_sent,
        blocks_total,
        "snapshot complete"
    );
    Ok(Uploaded {
        snapshot_id: snapshot_id.to_owned(),
        volume_size_gib: 0,
        blocks_sent,
        blocks_total,
        checksum,
    })
}

async fn put_block(
    ebs: &aws_sdk_ebs::Client,
    region: &str,
    snapshot_id: &str,
    index: u64,
    data: Vec<u8>,
    hash: &[u8; 32],
    settings: UploadSettings,
) -> Result<()> {
    let checksum = base64(hash);
    let mut attempt = 1;
    loop {
        let result = ebs
            .put_snapshot_block()
            .snapshot_id(snapshot_id)
            .block_index(index as i32)
            .block_data(ByteStream::from(data.clone()))
            .data_length(BLOCK_SIZE as i32)
            .checksum(&checksum)
            .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
            .send()
            .await;
        match result {
            Ok(_) => return Ok(()),
            Err(e) if attempt < settings.attempts.max(1) => {
                tracing::debug!(snapshot_id, index, attempt, error = %aws_sdk_ebs::error::DisplayErrorContext(&e), "retrying block");
                tokio::time::sleep(settings.backoff * attempt).await;
                attempt += 1;
            }
            Err(e) => {
                return Err(sdk(e)).context(error::PutBlockSnafu {
                    snapshot_id,
                    index,
                    region,
                });
            }
        }
    }
}

fn progress_bar(enabled: bool, blocks: u64, path: &Path) -> indicatif::ProgressBar {
    let bar = crate::progress::bar(
        enabled,
        blocks,
        "{msg} [{bar:40}] {pos}/{len} blocks ({per_sec}, {eta})",
    );
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar
}

/// Wait until a snapshot is `completed`; `error` fails at once.
pub async fn wait_for_snapshot(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    snapshot_id: &str,
    wait: WaitSettings,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let found =
            describe_snapshots(ec2.describe_snapshots().snapshot_ids(snapshot_id), region).await?;
        match found.first().and_then(|s| s.state()) {
            Some(SnapshotState::Completed) => return Ok(()),
            Some(SnapshotState::Error) => {
                return error::SnapshotStateSnafu {
                    snapshot_id,
                    region,
                    state: "error",
                }
                .fail();
            }
            _ => {}
        }
        if start.elapsed() >= wait.timeout {
            return error::WaitTimeoutSnafu {
                what: format!("snapshot {snapshot_id} to complete"),
                region,
                seconds: wait.timeout.as_secs(),
            }
            .fail();
        }
        tokio::time::sleep(wait.interval).await;
    }
}

/// Our snapshots in the region tagged `key=value`, with their tags.
pub async fn snapshots_tagged(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    filters: &[(&str, &str)],
) -> Result<Vec<aws_sdk_ec2::types::Snapshot>> {
    let mut request = ec2.describe_snapshots().owner_ids("self");
    for (key, value) in filters {
        request = request.filters(
            Filter::builder()
                .name(format!("tag:{key}"))
                .values(*value)
                .build(),
        );
    }
    describe_snapshots(request, region).await
}

/// Send one `DescribeSnapshots` request in `region`.
async fn describe_snapshots(
    request: aws_sdk_ec2::operation::describe_snapshots::builders::DescribeSnapshotsFluentBuilder,
    region: &str,
) -> Result<Vec<aws_sdk_ec2::types::Snapshot>> {
    let output = request
        .send()
        .await
        .map_err(sdk)
        .context(error::CallSnafu {
            operation: "DescribeSnapshots",
            region,
        })?;
    Ok(output.snapshots().to_vec())
}

#[cfg(test)]
mod tests {
    use super::{BLOCK_SIZE, aggregate, base64, read_block, sha256, volume_size_gib};
    use std::io::Write;

    #[test]
    fn volume_sizes_round_up_to_gib() {
        assert_eq!(volume_size_gib(1), 1);
        assert_eq!(volume_size_gib(1 << 30), 1);
        assert_eq!(volume_size_gib((1 << 30) + 1), 2);
        assert_eq!(volume_size_gib(0), 1);
    }

    #[test]
    fn checksums_match_known_values() {
        // SHA-256 of 512 KiB of 0x01, and the aggregate of it alone and twice.
        let block = vec![1u8; BLOCK_SIZE as usize];
        let digest = sha256(&block);
        assert_eq!(base64(&digest).len(), 44);
        assert_eq!(aggregate(&[digest]), sha256(&digest));
        let mut both = digest.to_vec();
        both.extend_from_slice(&digest);
        assert_eq!(aggregate(&[digest, digest]), sha256(&both));
        assert_eq!(
            base64(&sha256(b"abc")),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn zero_blocks_are_skipped_and_the_tail_is_padded() {
        let mut file = tempfile::tempfile().unwrap();
        let size = BLOCK_SIZE * 2 + 10;
        file.set_len(size).unwrap();
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(BLOCK_SIZE * 2)).unwrap();
        file.write_all(b"tail").unwrap();
        assert!(read_block(&file, 0, size).unwrap().is_none());
        assert!(read_block(&file, 1, size).unwrap().is_none());
        let tail = read_block(&file, 2, size).unwrap().unwrap();
        assert_eq!(tail.len(), BLOCK_SIZE as usize);
        assert_eq!(&tail[..4], b"tail");
        assert!(tail[4..].iter().all(|&b| b == 0));
    }
}
