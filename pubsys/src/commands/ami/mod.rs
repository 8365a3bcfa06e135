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
//!   deregister it). The same holds for a copy found by name in another region: every copy
//!   records the base's content from its `CopyImage` on, and one that records other content
//!   (an old copy left after its base AMI was deregistered and the image rebuilt) fails that
//!   region and is dropped from `amis.json`.
//! * `RegisterImage`/`CopyImage` answering `InvalidAMIName.Duplicate` (a retried call whose
//!   first answer was lost) is treated as "maybe done": the AMI is looked up by name.
//! * `CopyImage` carries a client token derived from the name and region (idempotent on AWS).
//!
//! `amis.json` is rewritten (atomically) after each region gets an AMI ID and again when it
//! becomes available, so a crash never loses the record of an AMI that exists. Sharing the
//! base AMI with the account of a region that publishes from another account goes through
//! [`crate::aws::permissions`], so the base region's record lists that grant too.

mod copy;
mod register;
mod reuse;

use crate::Context;
use crate::aws::amis::{self, AmisFile, Image, Recorder};
use crate::aws::ec2::{self, WaitSettings, image_named, snapshot_ids, wait_for_image};
use crate::aws::permissions::Target;
use crate::aws::snapshot;
use crate::aws::{Arch, AwsArgs, DurationArg};
use crate::config::region::Region;
use crate::error::{self, Result};
use clap::{Args, ValueEnum};
use copy::{BaseShare, CopyJob, copy_to};
use futures::stream::{self, StreamExt};
use register::{account, check_arch, create_base, describe_record, finish_image};
use reuse::check_existing_content;
use serde::Serialize;
use snafu::ResultExt;
use std::fmt;
use std::path::{Path, PathBuf};

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
            Arch::Aarch64 => BootMode::Uefi,
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
    let aws = crate::aws::context(&args.aws, context, base).await;
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
        assert_eq!(BootMode::default_for(Arch::Aarch64), BootMode::Uefi);
    }

    use super::TagArg;
    use super::copy::client_token;

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
