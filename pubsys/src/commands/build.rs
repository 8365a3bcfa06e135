//! `pubsys build`: build a variant's images with the image-builder library, from a small
//! variant definition, into the folder where `pubsys repo` and `pubsys ami` look for them.
//!
//! ```toml
//! name = "aws-dev"          # variant
//! arch = "x86_64"
//! version = "1.0.0"
//! root_dir = "rootfs"       # relative to this file; /boot inside it is the boot tree
//! # boot_dir = "boot"       # or a separate boot tree
//! # build_id = "local"
//! [image]
//! os_image_size_gib = 2
//! data_image_size_gib = 1
//! partition_plan = "split"  # or "unified"
//! root_fs = "ext4"          # or "erofs"
//! kernel_parameters = ["console=ttyS0"]
//! # source_date_epoch = 1700000000
//! ```

use crate::error::{self, Result};
use clap::{Args, ValueEnum};
use image_builder::{BootloaderChoice, BuildSettings, LayoutSettings, PartitionPlan, RootFs};
use semver::Version;
use serde::{Deserialize, Serialize};
use snafu::ResultExt;
use std::fmt;
use std::path::{Path, PathBuf};
use update_metadata::Arch;

/// The variant definition file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    /// Variant name.
    pub name: String,
    /// Architecture.
    pub arch: Arch,
    /// Release version.
    pub version: Version,
    /// Build ID (default: `local`).
    pub build_id: Option<String>,
    /// Root tree, relative to the variant file.
    pub root_dir: PathBuf,
    /// Boot tree, relative to the variant file (default: the root tree's /boot).
    pub boot_dir: Option<PathBuf>,
    /// Image layout options.
    #[serde(default)]
    pub image: ImageConfig,
}

/// `[image]` of the variant definition.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// OS image size in GiB (default 2).
    pub os_image_size_gib: Option<u32>,
    /// Data image size in GiB (default 1).
    pub data_image_size_gib: Option<u32>,
    /// `split` (default) or `unified`.
    pub partition_plan: Option<String>,
    /// `ext4` (default) or `erofs`.
    pub root_fs: Option<String>,
    /// Kernel parameters for grub.cfg.
    #[serde(default)]
    pub kernel_parameters: Vec<String>,
    /// Fixed SOURCE_DATE_EPOCH for a reproducible build.
    pub source_date_epoch: Option<i64>,
}

/// Arguments of `pubsys build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Variant definition TOML
    #[arg(long, value_name = "PATH")]
    pub variant_config: PathBuf,

    /// Override the version of the variant definition
    #[arg(long, value_parser = update_metadata::parse_version)]
    pub version: Option<Version>,

    /// Override the build ID
    #[arg(long)]
    pub build_id: Option<String>,

    /// Where images go (default: build/images/ARCH-VARIANT); the build lands in
    /// VERSION-BUILD_ID/ below it, with build-report.json
    #[arg(long, value_name = "PATH")]
    pub out_dir: Option<PathBuf>,

    /// Also keep the uncompressed disk images (what `pubsys ami` uploads)
    #[arg(long)]
    pub keep_raw_images: bool,

    /// GRUB build to install (a folder made by bootloader/build), or `none` [default:
    /// $IMAGE_BUILDER_BOOTLOADER, else our GRUB build at TARGET_DIR/bootloader/current]
    #[arg(long, value_name = "DIR|none")]
    pub bootloader: Option<BootloaderChoice>,
}

/// What `pubsys build` produced.
#[derive(Debug, Serialize)]
pub struct BuildOutcome {
    /// The report file (give it to `pubsys repo --build-report`).
    pub build_report: PathBuf,
    /// image-builder's report.
    pub report: image_builder::BuildReport,
}

impl fmt::Display for BuildOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        writeln!(
            f,
            "built {} {} {} ({})",
            r.variant, r.arch, r.version, r.build_id
        )?;
        for artifact in &r.artifacts {
            writeln!(
                f,
                "  {:<48} {:>12} bytes",
                artifact.file_name, artifact.size
            )?;
        }
        writeln!(f, "report: {}", self.build_report.display())
    }
}

fn choice<T: ValueEnum>(value: Option<&str>, default: T, what: &str) -> Result<T> {
    match value {
        None => Ok(default),
        Some(text) => T::from_str(text, true).map_err(|_| {
            error::BadVariantSnafu {
                reason: format!("unknown {what} '{text}'"),
            }
            .build()
        }),
    }
}

/// Settings for image-builder from the variant file and the flags.
pub fn settings(args: &BuildArgs) -> Result<BuildSettings> {
    let path = &args.variant_config;
    let text = std::fs::read_to_string(path).context(error::ReadConfigSnafu { path })?;
    let config: VariantConfig = toml::from_str(&text).context(error::ParseVariantSnafu { path })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let arch = config.arch;
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        PathBuf::from("build/images").join(format!("{}-{}", config.arch, config.name))
    });
    let mut settings = BuildSettings::new(
        base.join(&config.root_dir),
        out_dir,
        config.name.clone(),
        arch,
        args.version.clone().unwrap_or(config.version),
        args.build_id
            .clone()
            .or(config.build_id)
            .unwrap_or_else(|| "local".into()),
    );
    settings.boot_dir = config.boot_dir.map(|dir| base.join(dir));
    let defaults = LayoutSettings::default();
    settings.layout = LayoutSettings {
        os_image_size_gib: config
            .image
            .os_image_size_gib
            .unwrap_or(defaults.os_image_size_gib),
        data_image_size_gib: config
            .image
            .data_image_size_gib
            .unwrap_or(defaults.data_image_size_gib),
        partition_plan: choice(
            config.image.partition_plan.as_deref(),
            PartitionPlan::Split,
            "partition_plan",
        )?,
        banks: defaults.banks,
    };
    settings.root_fs = choice(config.image.root_fs.as_deref(), RootFs::Ext4, "root_fs")?;
    settings.kernel_params = config.image.kernel_parameters;
    settings.source_date_epoch = config.image.source_date_epoch;
    settings.keep_raw_images = args.keep_raw_images;
    settings.bootloader = args
        .bootloader
        .clone()
        .unwrap_or_else(BootloaderChoice::default_for_exe);
    Ok(settings)
}

/// Run `pubsys build` (the build itself runs on a blocking thread).
pub async fn run(args: &BuildArgs) -> Result<BuildOutcome> {
    let settings = settings(args)?;
    let report = tokio::task::spawn_blocking(move || {
        let bar = image_builder::BarProgress::on_terminal();
        match &bar {
            Some(bar) => image_builder::build(&settings, bar),
            None => image_builder::build(&settings, &image_builder::NoProgress),
        }
    })
    .await
    .context(error::JoinSnafu)?
    .context(error::ImageBuilderSnafu)?;
    let build_report = image_builder::BuildReport::report_path(&report.output_dir);
    Ok(BuildOutcome {
        build_report,
        report,
    })
}
