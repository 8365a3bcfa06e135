//! `pubsys ami`: snapshots → registered AMI in the base region → copies in every other
//! region, each awaited, with `amis.json` written as results arrive.
//!
//! Resumable: every step first looks for what a previous run left.
//! * AMIs are found **by name** in each region (more than one is an error, never guessed).
//! * Snapshots are tagged `pubsys:ami-name` / `pubsys:volume` / `pubsys:image-size` when
//!   started and `pubsys:upload=complete` + `pubsys:checksum` once complete; a re-run reuses a
//!   complete one only when its checksum and size are the image's (a rebuilt image under the
//!   same name is uploaded anew), and deletes incomplete leftovers.
//! * An AMI found by name is reused only when its snapshots record exactly this publish's
//!   images; otherwise the run stops with an error naming it (choose a new name or
//!   deregister it).
//! * `RegisterImage`/`CopyImage` answering `InvalidAMIName.Duplicate` (a retried call whose
//!   first answer was lost) is treated as "maybe done": the AMI is looked up by name.
//! * `CopyImage` carries a client token derived from the name and region (idempotent on AWS).
//!
//! `amis.json` is rewritten (atomically) after each region gets an AMI ID and again when it
//! becomes available, so a crash never loses the record of an AMI that exists. Sharing the
//! base AMI with the account of a region that publishes from another account goes through
//! [`super::permissions`], so the base region's record lists that grant too.

use super::amis::{self, AmisFile, Image, LaunchPermission, Operation, PendingChange, Recorder};
use super::ec2::{self, WaitSettings, image_named, snapshot_ids, tag, wait_for_image};
use super::error::{self, Result, sdk};
use super::permissions::{self, Target};
use super::snapshot::{self, UploadSettings};
use super::{Arch, AwsArgs, DurationArg};
use crate::Context;
use crate::config::infra::Region;
use aws_context::AwsContext;
use aws_sdk_ec2::types::{
    ArchitectureValues, BlockDeviceMapping, BootModeValues, EbsBlockDevice, ImdsSupportValues,
    ResourceType, SnapshotState, TagSpecification, TpmSupportValues, VolumeType,
};
use clap::{Args, ValueEnum};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use snafu::{OptionExt, ResultExt};
use std::fmt;
use std::path::{Path, PathBuf};

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
fn tag_value<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Whether a snapshot's tags record exactly `identity` (checksum and size).
fn records(tags: &[aws_sdk_ec2::types::Tag], identity: &snapshot::Identity) -> bool {
    tag_value(tags, TAG_CHECKSUM) == Some(identity.checksum.as_str())
        && tag_value(tags, TAG_IMAGE_SIZE) == Some(identity.size.to_string().as_str())
}

/// The AMI's record of the images it was made from: `pubsys:VOLUME-checksum` and
/// `pubsys:VOLUME-size` for each volume.
fn content_tags(content: &[(&'static str, snapshot::Identity)]) -> Vec<aws_sdk_ec2::types::Tag> {
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
type Content = Vec<(&'static str, snapshot::Identity)>;

/// The identity of every local image of this publish, by volume (`os`, `data`).
async fn local_identities(args: &AmiArgs) -> Result<Content> {
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

/// An AMI found by name may be reused only when its snapshots record exactly the images of
/// this publish (a rebuilt image under an old name must not get the old AMI).
async fn check_existing_content(
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
    let recorded = |volume: &str, what: &str| {
        tag_value(image.tags(), &format!("pubsys:{volume}-{what}")).map(str::to_owned)
    };
    if recorded("os", "checksum").is_some() {
        for volume in ["os", "data"] {
            let mine = local.iter().find(|(v, _)| *v == volume).map(|(_, i)| i);
            let theirs = (recorded(volume, "checksum"), recorded(volume, "size"));
            let same = match (mine, &theirs) {
                (None, (None, None)) => true,
                (Some(identity), (Some(checksum), Some(size))) => {
                    *checksum == identity.checksum && *size == identity.size.to_string()
                }
                _ => false,
            };
            if !same {
                return differs(format!(
                    "it records {volume} checksum {:?} and size {:?}, this publish {:?}",
                    theirs.0,
                    theirs.1,
                    mine.map(|i| (&i.checksum, i.size))
                ));
            }
        }
        return Ok(local);
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
            .map_err(super::error::sdk)
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

/// Boot mode to register with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BootMode {
    /// Legacy BIOS.
    LegacyBios,
    /// UEFI only.
    Uefi,
    /// UEFI where the instance type supports it, else BIOS (Secure Boot variants).
    UefiPreferred,
}

/// The largest EBS volume, in GiB (io2 Block Express: 64 TiB).
pub const MAX_VOLUME_GIB: u32 = 65536;

/// Volume sizes are parsed into 1..=65536 GiB at the edge (EC2 takes an i32: a larger value
/// would wrap).
fn volume_gib() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=i64::from(MAX_VOLUME_GIB))
}

impl BootMode {
    /// The boot mode an image of `arch` is registered with when none is given: x86_64 images
    /// carry our GRUB for UEFI (EFI-SYSTEM) and BIOS (MBR + BIOS-BOOT), so UEFI where the
    /// instance type has it and BIOS elsewhere; arm64 instances boot only with UEFI.
    pub fn default_for(arch: Arch) -> BootMode {
        match arch {
            Arch::X86_64 => BootMode::UefiPreferred,
            Arch::Arm64 => BootMode::Uefi,
        }
    }
}

/// EBS volume type of the AMI's volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VolumeKind {
    /// General purpose SSD (reference default).
    Gp2,
    /// General purpose SSD, newer generation.
    Gp3,
    /// Provisioned IOPS SSD.
    Io1,
    /// Provisioned IOPS SSD.
    Io2,
    /// Throughput optimised HDD.
    St1,
    /// Cold HDD.
    Sc1,
    /// Magnetic.
    Standard,
}

/// SR-IOV support flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sriov {
    /// Intel 82599 VF networking (reference default).
    Simple,
    /// Not set.
    None,
}

/// A `KEY=VALUE` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagArg(pub String, pub String);

impl std::str::FromStr for TagArg {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<TagArg, String> {
        match text.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok(TagArg(key.to_owned(), value.to_owned())),
            _ => Err(format!("'{text}' is not KEY=VALUE")),
        }
    }
}

/// `pubsys ami` flags.
#[derive(Debug, Clone, Args)]
#[command(help_expected = true)]
pub struct AmiArgs {
    /// The raw (uncompressed) OS disk image
    #[arg(short = 'o', long, value_name = "PATH")]
    pub os_image: PathBuf,

    /// The raw data disk image (split-disk variants), attached as /dev/xvdb
    #[arg(short = 'd', long, value_name = "PATH")]
    pub data_image: Option<PathBuf>,

    /// The AMI name (the same in every region; re-runs find AMIs by it)
    #[arg(short = 'n', long)]
    pub name: String,

    /// The AMI description (default: the name)
    #[arg(long)]
    pub description: Option<String>,

    /// Architecture: x86_64 (amd64) or arm64 (aarch64)
    #[arg(short = 'a', long, default_value = "x86_64")]
    pub arch: Arch,

    /// UEFI variable store (PK/KEK/db) registered with uefi or uefi-preferred boot modes
    #[arg(short = 'e', long, value_name = "PATH")]
    pub uefi_data: Option<PathBuf>,

    /// Boot mode [default: uefi-preferred for x86_64, whose images carry GRUB for both UEFI and
    /// BIOS; uefi for arm64]
    #[arg(long, value_enum)]
    pub boot_mode: Option<BootMode>,

    /// Volume type of the AMI's volumes
    #[arg(long, value_enum, default_value = "gp2")]
    pub volume_type: VolumeKind,

    /// OS volume size in GiB, 1 to 65536 (EBS's largest volume) (default and minimum: the OS
    /// image size rounded up)
    #[arg(long, value_name = "GIB", value_parser = volume_gib())]
    pub os_volume_size: Option<u32>,

    /// Data volume size in GiB, 1 to 65536 (default and minimum: the data image size rounded
    /// up)
    #[arg(long, value_name = "GIB", value_parser = volume_gib())]
    pub data_volume_size: Option<u32>,

    /// ENA networking support
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub ena_support: bool,

    /// SR-IOV networking support
    #[arg(long, value_enum, default_value = "simple")]
    pub sriov_net_support: Sriov,

    /// Require IMDSv2 on instances launched from the AMI
    #[arg(long)]
    pub imdsv2: bool,

    /// Enable NitroTPM 2.0
    #[arg(long)]
    pub tpm: bool,

    /// Tag the AMIs and their snapshots in every region (repeatable)
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<TagArg>,

    /// Deprecate the AMIs at this time (RFC 3339, e.g. 2026-01-01T00:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub deprecation_time: Option<jiff::Timestamp>,

    /// Region copies in flight at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub copy_concurrency: usize,

    /// How long to wait for each copy to become available (e.g. 45m)
    #[arg(long, default_value = "60m", value_name = "DURATION")]
    pub copy_timeout: DurationArg,

    /// How long to wait for snapshots and the base AMI
    #[arg(long, default_value = "30m", value_name = "DURATION")]
    pub wait_timeout: DurationArg,

    /// Time between two state checks while waiting
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub poll_interval: DurationArg,

    /// Snapshot blocks uploaded at once
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub upload_concurrency: usize,

    /// No progress bar
    #[arg(long)]
    pub no_progress: bool,

    /// Write amis.json here (region → AMI), updated as each region progresses
    #[arg(long, value_name = "PATH")]
    pub ami_output: Option<PathBuf>,

    /// Shared AWS flags.
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// How a region ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionStatus {
    /// The AMI is available.
    Available,
    /// The AMI exists but did not become available in time.
    Pending,
    /// No usable AMI.
    Failed,
}

/// One region's result.
#[derive(Debug, Clone, Serialize)]
pub struct RegionOutcome {
    /// Region.
    pub region: String,
    /// The AMI, when one exists.
    pub image_id: Option<String>,
    /// Outcome.
    pub status: RegionStatus,
    /// Whether the AMI already existed (found by name).
    pub existing: bool,
    /// What went wrong.
    pub error: Option<String>,
}

/// What `pubsys ami` did.
#[derive(Debug, Clone, Serialize)]
pub struct AmiReport {
    /// AMI name.
    pub name: String,
    /// The base region.
    pub base_region: String,
    /// Snapshots uploaded by this run.
    pub uploaded: Vec<snapshot::Uploaded>,
    /// Per-region outcomes, base region first.
    pub regions: Vec<RegionOutcome>,
    /// Where amis.json was written.
    pub ami_output: Option<PathBuf>,
}

impl AmiReport {
    /// Whether some region has no available AMI.
    pub fn failed(&self) -> bool {
        self.regions
            .iter()
            .any(|r| r.status != RegionStatus::Available)
    }
}

impl fmt::Display for AmiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "AMI {}", self.name)?;
        for upload in &self.uploaded {
            writeln!(
                f,
                "  uploaded {} ({} of {} blocks sent, {} GiB)",
                upload.snapshot_id, upload.blocks_sent, upload.blocks_total, upload.volume_size_gib
            )?;
        }
        writeln!(f, "{:<16} {:<24} {:<10} note", "region", "image", "status")?;
        for outcome in &self.regions {
            let status = match outcome.status {
                RegionStatus::Available => "available",
                RegionStatus::Pending => "pending",
                RegionStatus::Failed => "FAILED",
            };
            let note = match (&outcome.error, outcome.existing) {
                (Some(error), _) => error.clone(),
                (None, true) => "existing".to_owned(),
                (None, false) => "created".to_owned(),
            };
            writeln!(
                f,
                "{:<16} {:<24} {:<10} {note}",
                outcome.region,
                outcome.image_id.as_deref().unwrap_or("-"),
                status
            )?;
        }
        if let Some(path) = &self.ami_output {
            writeln!(f, "wrote {}", path.display())?;
        }
        Ok(())
    }
}

/// The recorder of `pubsys ami`: entries for another AMI name belong to another release and
/// are dropped.
fn recorder(path: Option<&Path>, name: &str) -> Result<Recorder> {
    let mut amis = match path {
        Some(path) if path.exists() => amis::load(path)?,
        _ => AmisFile::new(),
    };
    amis.retain(|_, image| image.name == name);
    Ok(Recorder::new(path, amis))
}

/// Run `pubsys ami`.
pub async fn run(args: &AmiArgs, context: &Context) -> Result<AmiReport> {
    let regions = args.aws.regions(context)?;
    let base = &regions[0];
    let aws = super::context(&args.aws, context, base).await;
    let recorder = recorder(args.ami_output.as_deref(), &args.name)?;
    let wait = WaitSettings {
        timeout: args.wait_timeout.0,
        interval: args.poll_interval.0,
    };
    let mut report = AmiReport {
        name: args.name.clone(),
        base_region: base.to_string(),
        uploaded: Vec::new(),
        regions: Vec::new(),
        ami_output: args.ami_output.clone(),
    };

    // 1. The base AMI: found by name, or created from uploaded snapshots. Meanwhile, look up
    //    what the copy regions already hold, so the copies start without that round trip.
    let ec2_base = aws.ec2(base.as_str()).await.context(error::ClientSnafu {
        region: base.as_str(),
    })?;
    let targets: Vec<&Region> = regions.iter().skip(1).collect();
    let base_work = async {
        match image_named(&ec2_base, base.as_str(), &args.name).await? {
            Some(image) => {
                let id = ec2::image_id(&image, "DescribeImages", base.as_str())?.to_owned();
                check_arch(&image, args, base.as_str())?;
                let content =
                    check_existing_content(&ec2_base, base.as_str(), &image, args).await?;
                tracing::info!(
                    image_id = %id,
                    region = %base,
                    "an AMI named '{}' holding these images exists already; reusing it",
                    args.name
                );
                Ok((id, true, Vec::new(), content))
            }
            None => {
                let (id, uploaded, content) = create_base(args, &aws, base.as_str(), wait).await?;
                Ok::<_, error::Error>((id, false, uploaded, content))
            }
        }
    };
    let lookups = stream::iter(targets.iter().copied())
        .map(|region| {
            let aws = &aws;
            async move {
                // A failed lookup is simply done again by the copy itself.
                let found = match aws.ec2(region.as_str()).await {
                    Ok(ec2) => image_named(&ec2, region.as_str(), &args.name).await.ok(),
                    Err(_) => None,
                };
                (region.as_str(), found)
            }
        })
        .buffer_unordered(args.copy_concurrency.max(1))
        .collect::<std::collections::HashMap<&str, Option<Option<aws_sdk_ec2::types::Image>>>>();
    let (base_result, mut prefetched) = tokio::join!(base_work, lookups);
    let (base_id, existing, uploaded, content) = base_result?;
    report.uploaded = uploaded;
    recorder.record(base.as_str(), Image::new(&base_id, &args.name))?;
    let base_image = wait_for_image(&ec2_base, base.as_str(), &base_id, wait).await?;
    let (_, base_record) = tokio::try_join!(
        finish_image(&ec2_base, base.as_str(), &base_image, args, &content),
        describe_record(&ec2_base, base.as_str(), &base_id, &args.name)
    )?;
    recorder.record(base.as_str(), base_record)?;
    report.regions.push(RegionOutcome {
        region: base.to_string(),
        image_id: Some(base_id.clone()),
        status: RegionStatus::Available,
        existing,
        error: None,
    });

    // 2. Copies, bounded and awaited.
    if !targets.is_empty() {
        let base_snapshots = snapshot_ids(&base_image);
        // Regions can only publish from another account when they assume their own role;
        // otherwise every region uses the base credentials and there is nothing to share.
        let region_roles = context
            .infra
            .aws
            .as_ref()
            .is_some_and(|a| a.region.values().any(|r| r.role.is_some()));
        let base_share = if region_roles {
            Some(BaseShare {
                account: account(&aws, base.as_str()).await?,
                target: Target {
                    ec2: &ec2_base,
                    region: base.as_str(),
                    image_id: &base_id,
                    name: &args.name,
                    snapshots: &base_snapshots,
                },
                one_at_a_time: tokio::sync::Mutex::new(()),
            })
        } else {
            None
        };
        let copy_wait = WaitSettings {
            timeout: args.copy_timeout.0,
            interval: args.poll_interval.0,
        };
        let mut outcomes: Vec<RegionOutcome> = stream::iter(targets)
            .map(|region| {
                let prefetched = prefetched.remove(region.as_str()).flatten();
                let aws = &aws;
                let recorder = &recorder;
                let base_id = base_id.as_str();
                let base_share = base_share.as_ref();
                let content = content.as_slice();
                async move {
                    let mut outcome = RegionOutcome {
                        region: region.to_string(),
                        image_id: None,
                        status: RegionStatus::Failed,
                        existing: false,
                        error: None,
                    };
                    let result = copy_to(
                        CopyJob {
                            aws,
                            args,
                            base: base.as_str(),
                            base_id,
                            base_share,
                            content,
                            region: region.as_str(),
                            wait: copy_wait,
                            prefetched,
                        },
                        recorder,
                        &mut outcome,
                    )
                    .await;
                    if let Err(e) = result {
                        tracing::error!(region = %region, "{}", snafu::Report::from_error(&e));
                        outcome.error = Some(snafu::Report::from_error(&e).to_string());
                        if outcome.image_id.is_some()
                            && matches!(e, error::Error::WaitTimeout { .. })
                        {
                            outcome.status = RegionStatus::Pending;
                        }
                    }
                    outcome
                }
            })
            .buffer_unordered(args.copy_concurrency.max(1))
            .collect()
            .await;
        outcomes.sort_by_key(|o| regions.iter().position(|r| r.as_str() == o.region));
        report.regions.extend(outcomes);
    }
    Ok(report)
}

fn check_arch(image: &aws_sdk_ec2::types::Image, args: &AmiArgs, region: &str) -> Result<()> {
    // EC2 always reports the architecture; an empty one (emulators) is not a mismatch.
    match image.architecture() {
        Some(arch) if !arch.as_str().is_empty() && arch.as_str() != args.arch.as_str() => {
            error::ImageMismatchSnafu {
                image_id: image.image_id().unwrap_or_default(),
                name: &args.name,
                region,
                expected: args.arch.as_str(),
                actual: arch.as_str(),
            }
            .fail()
        }
        _ => Ok(()),
    }
}

/// Upload (or reuse) the snapshots and register the base AMI.
async fn create_base(
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

fn volume_type(kind: VolumeKind) -> VolumeType {
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

async fn delete_snapshots(ec2: &aws_sdk_ec2::Client, ids: &[String]) {
    for id in ids {
        tracing::warn!(snapshot_id = %id, "deleting snapshot of the failed publish");
        let _ = ec2.delete_snapshot().snapshot_id(id).send().await;
    }
}

fn user_tags(args: &AmiArgs) -> Vec<(String, String)> {
    args.tags
        .iter()
        .map(|t| (t.0.clone(), t.1.clone()))
        .collect()
}

/// A complete snapshot left by an earlier run, or a new upload. Returns the snapshot, the
/// image size in GiB, the upload (when one happened) and the image's identity.
async fn snapshot_for(
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

async fn register(
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
        .architecture(ArchitectureValues::from(args.arch.as_str()))
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
async fn finish_image(
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
async fn describe_record(
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
async fn account(aws: &AwsContext, region: &str) -> Result<String> {
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

/// What sharing the base AMI with the accounts of other regions needs.
struct BaseShare<'a> {
    /// The base region's account.
    account: String,
    /// The base AMI and its snapshots.
    target: Target<'a>,
    /// One change of the base AMI's permissions (and record) at a time: each records what it
    /// read back, which must include the others' grants.
    one_at_a_time: tokio::sync::Mutex<()>,
}

struct CopyJob<'a> {
    aws: &'a AwsContext,
    args: &'a AmiArgs,
    base: &'a str,
    base_id: &'a str,
    /// Set when regions may publish from other accounts.
    base_share: Option<&'a BaseShare<'a>>,
    /// What the base AMI was made from (recorded on every copy too).
    content: &'a [(&'static str, snapshot::Identity)],
    region: &'a str,
    wait: WaitSettings,
    /// What a lookup by name found in `region` before the copies started (`None`: not
    /// looked up, do it now).
    prefetched: Option<Option<aws_sdk_ec2::types::Image>>,
}

/// Deterministic idempotency token for the copy of `name` into `region`.
fn client_token(name: &str, region: &str) -> String {
    let digest = snapshot::sha256(format!("pubsys-copy\0{name}\0{region}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

async fn copy_to(job: CopyJob<'_>, recorder: &Recorder, outcome: &mut RegionOutcome) -> Result<()> {
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
            outcome.existing = true;
            ec2::image_id(&image, "DescribeImages", region)?.to_owned()
        }
        None => {
            let mut tags = vec![tag(TAG_NAME, &args.name)];
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
async fn grant_account(share: &BaseShare<'_>, account: &str, recorder: &Recorder) -> Result<()> {
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

/// Whether `permissions` already include `permission`.
pub fn has_permission(permissions: &[LaunchPermission], permission: &LaunchPermission) -> bool {
    permissions.contains(permission)
}

#[cfg(test)]
mod tests {
    #[test]
    fn volume_sizes_are_checked_at_the_edge() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Wrap {
            #[command(flatten)]
            ami: super::AmiArgs,
        }
        let parse = |size: &str| {
            Wrap::try_parse_from(["t", "-o", "os.img", "-n", "name", "--os-volume-size", size])
                .map(|w| w.ami.os_volume_size)
        };
        assert_eq!(parse("4").unwrap(), Some(4));
        assert_eq!(parse("65536").unwrap(), Some(65536));
        for bad in ["0", "65537", "2147483648", "4294967295"] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn x86_64_images_boot_both_ways_and_arm64_with_uefi() {
        use super::{Arch, BootMode};
        assert_eq!(BootMode::default_for(Arch::X86_64), BootMode::UefiPreferred);
        assert_eq!(BootMode::default_for(Arch::Arm64), BootMode::Uefi);
    }

    use super::{TagArg, client_token};

    #[test]
    fn tags_parse_and_tokens_are_stable() {
        assert_eq!(
            "team=os".parse::<TagArg>().unwrap(),
            TagArg("team".into(), "os".into())
        );
        assert_eq!(
            "k=".parse::<TagArg>().unwrap(),
            TagArg("k".into(), String::new())
        );
        assert!("=v".parse::<TagArg>().is_err());
        assert!("novalue".parse::<TagArg>().is_err());
        assert_eq!(
            client_token("a", "us-east-1"),
            client_token("a", "us-east-1")
        );
        assert_ne!(
            client_token("a", "us-east-1"),
            client_token("a", "us-east-2")
        );
        assert_eq!(client_token("a", "us-east-1").len(), 32);
    }
}
