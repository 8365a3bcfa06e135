//! Turns a root filesystem tree into an A/B GPT disk image and the update artifacts
//! (`image-layout.md`).
//!
//! The entry point for other tools (`pubsys build`) is [`build`]: give it [`BuildSettings`]
//! and a [`Progress`] sink, get a [`BuildReport`] back. Steps:
//!
//! 1. [`layout`]: the partition table arithmetic (pure).
//! 2. Root filesystem: ext4 (`mkfs.ext4 -d`, debugfs fix-ups, `resize2fs -M`) or erofs.
//! 3. [`verity`]: the dm-verity hash tree, computed here on every core.
//! 4. [`grub`]: `grub.cfg` with the `dm-mod.create` table; boot, private ([`bootconfig`]) and
//!    data filesystems.
//! 5. [`disk`]: the GPT disk images, with [`bootloader`] installed (EFI and BIOS); [`compress`]: the LZ4 artifacts; [`report`].
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod bootconfig;
pub mod bootloader;
mod builder;
pub mod cli;
pub mod commands;
pub mod compress;
pub mod disk;
pub mod error;
pub mod ext4;
pub mod grub;
pub mod ids;
pub mod layout;
pub mod progress;
pub mod report;
pub mod settings;
pub mod sparse;
pub mod tools;
pub mod tree;
pub mod verity;

pub use bootloader::BootloaderChoice;
pub use builder::build;
pub use error::{Error, Result};
pub use layout::{Banks, LayoutSettings, PartitionPlan};
pub use progress::{BarProgress, NoProgress, Progress};
pub use report::{Artifact, ArtifactKind, BuildReport};
pub use settings::{Arch, BuildSettings, RootFs};

/// What a command produced, for `main` to print.
#[derive(Debug)]
pub enum Outcome {
    /// A finished build.
    Built(Box<BuildReport>),
}

/// Run the command line `cli` describes, with progress bars when stderr is a terminal.
pub fn run(cli: &cli::Cli) -> Result<Outcome> {
    let bar = BarProgress::on_terminal();
    let progress: &dyn Progress = match &bar {
        Some(bar) => bar,
        None => &NoProgress,
    };
    match &cli.command {
        cli::Command::Build(args) => Ok(Outcome::Built(Box::new(commands::build::run(
            args, progress,
        )?))),
    }
}

/// How the binary prints an outcome: the report as JSON with `--json`, else a short summary.
impl cli_support::Report for Outcome {
    fn json(&self) -> serde_json::Result<serde_json::Value> {
        match self {
            Outcome::Built(report) => serde_json::to_value(report),
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Outcome::Built(report) => {
                let mut text = format!(
                    "Built {} in {}\nroot hash {} ({} data blocks)\n",
                    report.filename_prefix,
                    report.output_dir.display(),
                    report.verity.root_hash,
                    report.verity.data_blocks
                );
                for artifact in &report.artifacts {
                    text.push_str(&format!("{}  {}\n", artifact.sha256, artifact.file_name));
                }
                Some(text)
            }
        }
    }
}
