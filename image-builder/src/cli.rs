//! Command-line types (clap derive only, no logic).
use crate::bootloader::BootloaderChoice;
use crate::layout::PartitionPlan;
use crate::settings::{Arch, RootFs};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Turns a root filesystem tree into an A/B GPT disk image and the update artifacts
#[derive(Debug, Parser)]
#[command(name = "image-builder", version, help_expected = true)]
pub struct Cli {
    /// Global flags shared by every binary.
    #[command(flatten)]
    pub global: cli_support::GlobalArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the disk image(s) and the boot/root/hash update artifacts from a root tree
    Build(BuildArgs),
}

/// `image-builder build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Staged root filesystem tree (its /boot is moved to the BOOT partition unless --boot-dir)
    #[arg(long, value_name = "DIR")]
    pub root_dir: PathBuf,

    /// Boot tree holding `vmlinuz` [default: ROOT_DIR/boot]
    #[arg(long, value_name = "DIR")]
    pub boot_dir: Option<PathBuf>,

    /// Output directory; the artifacts go to OUT_DIR/VERSION-BUILD_ID/
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,

    /// Image name, the first part of every file name
    #[arg(long, default_value = "bottlerocket", value_name = "NAME")]
    pub image_name: String,

    /// Variant name (e.g. aws-k8s-1.31)
    #[arg(long, value_name = "VARIANT")]
    pub variant: String,

    /// Target architecture: x86_64 (amd64) or aarch64 (arm64)
    #[arg(long, value_name = "ARCH")]
    pub arch: Arch,

    /// Release version (semver; a leading `v` is accepted)
    #[arg(long, value_name = "SEMVER", value_parser = update_metadata::parse_version)]
    pub version: semver::Version,

    /// Build ID, e.g. a short commit hash
    #[arg(long, value_name = "ID")]
    pub build_id: String,

    /// OS image size G in GiB: BOOT = 20·G, ROOT = 460·G, HASH = 5·G MiB per bank
    #[arg(long, default_value_t = 2, value_name = "GIB")]
    pub os_image_size_gib: u32,

    /// Data image size D in GiB
    #[arg(long, default_value_t = 1, value_name = "GIB")]
    pub data_image_size_gib: u32,

    /// split: OS disk + separate data disk; unified: one disk with the data partition
    #[arg(long, value_enum, default_value_t = PartitionPlan::Split)]
    pub partition_plan: PartitionPlan,

    /// One bank of doubled partitions instead of A/B (image feature in-place-updates = false)
    #[arg(long)]
    pub single_bank: bool,

    /// Root filesystem type
    #[arg(long, value_enum, default_value_t = RootFs::Ext4)]
    pub root_fs: RootFs,

    /// Variant kernel parameter for grub.cfg (repeatable, kept in order)
    #[arg(long = "kernel-param", value_name = "PARAM")]
    pub kernel_params: Vec<String>,

    /// Image feature grub-set-private-var: boot with `bootconfig` and PRIVATE's bootconfig.data
    #[arg(long)]
    pub grub_set_private_var: bool,

    /// Bootconfig snippet file for PRIVATE's bootconfig.data (repeatable; needs
    /// --grub-set-private-var)
    #[arg(long = "bootconfig", value_name = "FILE")]
    pub bootconfig_snippets: Vec<PathBuf>,

    /// Make the build reproducible: fixed timestamps, and IDs and salt derived from the inputs
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,

    /// Also keep the uncompressed disk images (PREFIX.img, PREFIX-data.img)
    #[arg(long)]
    pub keep_raw_images: bool,

    /// GRUB build to install (a folder made by bootloader/build), or `none` to leave EFI-SYSTEM
    /// and BIOS-BOOT empty [default: $IMAGE_BUILDER_BOOTLOADER, else our GRUB build at
    /// TARGET_DIR/bootloader/current beside this executable]
    #[arg(long, value_name = "DIR|none")]
    pub bootloader: Option<BootloaderChoice>,

    /// Threads for hashing and compression [default: one per core]
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::{CommandFactory, Parser};

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_accepts_a_leading_v() {
        let cli = Cli::try_parse_from([
            "image-builder",
            "build",
            "--root-dir",
            "r",
            "--out-dir",
            "o",
            "--variant",
            "x",
            "--arch",
            "aarch64",
            "--version",
            "v1.2.3",
            "--build-id",
            "b",
        ])
        .unwrap();
        let super::Command::Build(args) = cli.command;
        assert_eq!(args.version.to_string(), "1.2.3");
    }
}
