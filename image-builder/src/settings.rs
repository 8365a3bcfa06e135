//! The validated settings of one build ([`BuildSettings`]) and the domain types behind them.
use crate::bootloader::BootloaderChoice;
use crate::error::{self, Result};
use crate::layout::LayoutSettings;
use serde::Serialize;
use snafu::ensure;
use std::path::PathBuf;

/// Target architecture: the workspace's one `Arch` (update-metadata).
pub use update_metadata::Arch;

/// The root filesystem type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RootFs {
    /// ext4 made by `mkfs.ext4 -d`, shrunk to its minimum (the default).
    Ext4,
    /// erofs made by `mkfs.erofs` with lz4hc (image feature `erofs-root-partition`).
    Erofs,
}

/// Everything one build needs; validated by [`BuildSettings::validate`].
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// The staged root filesystem tree.
    pub root_dir: PathBuf,
    /// The boot tree (kernel etc.); `None` takes `<root_dir>/boot`.
    pub boot_dir: Option<PathBuf>,
    /// Where `<version>-<build-id>/` is written.
    pub out_dir: PathBuf,
    /// First part of the file names (`bottlerocket`).
    pub image_name: String,
    /// Variant name (`aws-k8s-1.31`).
    pub variant: String,
    /// Architecture.
    pub arch: Arch,
    /// Release version.
    pub version: semver::Version,
    /// Build ID (e.g. a commit hash).
    pub build_id: String,
    /// Disk layout.
    pub layout: LayoutSettings,
    /// Root filesystem type.
    pub root_fs: RootFs,
    /// Variant kernel parameters for grub.cfg.
    pub kernel_params: Vec<String>,
    /// Image feature `grub-set-private-var`: pass `bootconfig` and load it as the initrd.
    pub grub_set_private_var: bool,
    /// Bootconfig snippets, concatenated into PRIVATE's `bootconfig.data` (needs
    /// `grub_set_private_var`).
    pub bootconfig_snippets: Vec<PathBuf>,
    /// `SOURCE_DATE_EPOCH`: fixes timestamps and derives every ID from the inputs, making the
    /// build reproducible.
    pub source_date_epoch: Option<i64>,
    /// Also keep the uncompressed disk images (`<prefix>.img`, `<prefix>-data.img`).
    pub keep_raw_images: bool,
    /// Worker threads for hashing and compression (0: one per core).
    pub threads: usize,
    /// The bootloader to install into EFI-SYSTEM and BIOS-BOOT.
    pub bootloader: BootloaderChoice,
}

/// A name that becomes part of a file name.
fn check_name(what: &str, value: &str) -> Result<()> {
    ensure!(
        !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
            && !value.starts_with('.'),
        error::InvalidSettingSnafu {
            reason: format!(
                "the {what} {value:?} must be non-empty and use only letters, digits, '.', '_', '-' and '+'"
            )
        }
    );
    Ok(())
}

impl BuildSettings {
    /// Settings with the defaults for everything but the identity and the paths.
    pub fn new(
        root_dir: PathBuf,
        out_dir: PathBuf,
        variant: String,
        arch: Arch,
        version: semver::Version,
        build_id: String,
    ) -> BuildSettings {
        BuildSettings {
            root_dir,
            boot_dir: None,
            out_dir,
            image_name: "bottlerocket".to_owned(),
            variant,
            arch,
            version,
            build_id,
            layout: LayoutSettings::default(),
            root_fs: RootFs::Ext4,
            kernel_params: Vec::new(),
            grub_set_private_var: false,
            bootconfig_snippets: Vec::new(),
            source_date_epoch: None,
            keep_raw_images: false,
            threads: 0,
            bootloader: BootloaderChoice::None,
        }
    }

    /// Check the names and combinations that the types alone do not rule out.
    pub fn validate(&self) -> Result<()> {
        check_name("image name", &self.image_name)?;
        check_name("variant", &self.variant)?;
        check_name("build ID", &self.build_id)?;
        ensure!(
            self.bootconfig_snippets.is_empty() || self.grub_set_private_var,
            error::InvalidSettingSnafu {
                reason: "bootconfig snippets need the grub-set-private-var image feature"
            }
        );
        ensure!(
            self.source_date_epoch.is_none_or(|e| e >= 0),
            error::InvalidSettingSnafu {
                reason: "the source date epoch must not be negative"
            }
        );
        for param in &self.kernel_params {
            ensure!(
                !param.is_empty() && !param.contains(['"', '\n', '\\', ' ']),
                error::InvalidSettingSnafu {
                    reason: format!(
                        "the kernel parameter {param:?} must be one word without quotes or backslashes"
                    )
                }
            );
        }
        Ok(())
    }

    /// `<image-name>-<variant>-<arch>`: the start of every file name.
    pub fn friendly_name(&self) -> String {
        format!("{}-{}-{}", self.image_name, self.variant, self.arch)
    }

    /// `FILENAME_PREFIX = <image-name>-<variant>-<arch>-<version>-<build-id>`.
    pub fn filename_prefix(&self) -> String {
        format!(
            "{}-{}-{}",
            self.friendly_name(),
            self.version,
            self.build_id
        )
    }

    /// The output directory name, `<version>-<build-id>`.
    pub fn output_dir_name(&self) -> String {
        format!("{}-{}", self.version, self.build_id)
    }

    /// Threads to use.
    pub fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Arch, BuildSettings};

    fn settings() -> BuildSettings {
        BuildSettings::new(
            "/r".into(),
            "/o".into(),
            "aws-dev".into(),
            Arch::X86_64,
            "1.2.3".parse().unwrap(),
            "abc123".into(),
        )
    }

    #[test]
    fn names() {
        let s = settings();
        assert_eq!(
            s.filename_prefix(),
            "bottlerocket-aws-dev-x86_64-1.2.3-abc123"
        );
        assert_eq!(s.output_dir_name(), "1.2.3-abc123");
        s.validate().unwrap();
    }

    #[test]
    fn bad_settings_are_rejected() {
        let mut s = settings();
        s.variant = "a/b".into();
        assert!(s.validate().is_err());
        let mut s = settings();
        s.bootconfig_snippets.push("x".into());
        assert!(s.validate().is_err());
        s.grub_set_private_var = true;
        s.validate().unwrap();
        let mut s = settings();
        s.kernel_params.push("a\"b".into());
        assert!(s.validate().is_err());
    }
}
