//! The on-host update client: finds an update in a TUF repository, verifies it, caches the
//! settings migrations, writes the three partition images to the inactive A/B set and asks
//! signpost to flip the boot flags.
//!
//! * [`cli`]: the clap types; [`config`]: `/etc/updog.toml`, os-release, validated settings.
//! * [`session`]: the run lock, settings, TUF repository ([`repo`], through
//!   [`transport::UpdogTransport`]) and manifest every networked command starts from.
//! * [`commands`]: one module per subcommand; [`commands::update`] holds the write sequence.
//! * [`images`]: streaming a verified image through LZ4 into a partition; [`migrations`]:
//!   the migrator's cache; [`progress`]: the progress bar and JSON events; [`lock`]: the run
//!   lock; [`output`]: printing.
//!
//! The update flow and the A/B state diagram are in the crate README.
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod defaults;
pub mod delta;
pub mod error;
pub mod images;
pub mod lock;
pub mod migrations;
pub mod output;
pub mod progress;
pub mod repo;
pub mod session;
pub mod transport;

pub use error::{Error, Result};

use cli::{Cli, Command};
use commands::explain::ExplainReport;
use commands::update::UpdateReport;
use jiff::Timestamp;
use progress::Progress;
use update_metadata::Update;

/// An available update and what it costs to download.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    /// The update (its fields are the JSON's, as the reference prints them).
    #[serde(flatten)]
    pub update: Update,
    /// Bytes to download, in full and by the delta path (with `--json` only: it reads the
    /// disk; `null` when it cannot be told).
    pub download: Option<delta::Download>,
}

/// What a command produced; its [`cli_support::Report`] impl (in [`output`]) says how it prints
/// and which exit code it means.
#[derive(Debug)]
pub enum Outcome {
    /// `check-update`: the update this host would take, if any, and what it costs to download.
    Check(Option<Checked>),
    /// `check-update --all`: every applicable update.
    CheckAll(Vec<Update>),
    /// `update` / `update-image`.
    Updated(UpdateReport),
    /// `update-apply` / `update-revert`: the disk's state afterwards.
    Flipped {
        /// `applied` or `reverted`.
        action: &'static str,
        /// The state after the change.
        status: Box<signpost::Status>,
    },
    /// `prepare`.
    Prepared {
        /// The update prepared for.
        update: Option<Update>,
        /// The cache.
        cache: Option<migrations::CacheReport>,
    },
    /// `explain`.
    Explained(ExplainReport),
}

/// Run the command `cli` describes, at `now` (the clock for wave gating and metadata expiry).
pub async fn run(cli: &Cli, now: Timestamp) -> Result<Outcome> {
    use commands::update::Mode;
    use session::{Disk, Inputs};
    let progress = Progress::for_process(cli.global.json);
    match &cli.command {
        Command::CheckUpdate(args) => {
            commands::check_update::run(Inputs::from_cli(cli, now)?, args, cli.global.json).await
        }
        Command::Update(args) => {
            let mode = if args.reboot.reboot {
                Mode::ApplyAndReboot
            } else {
                Mode::Apply
            };
            commands::update::run(Inputs::from_cli(cli, now)?, &args.select, mode, &progress).await
        }
        Command::UpdateImage(args) => {
            commands::update::run(Inputs::from_cli(cli, now)?, args, Mode::Stage, &progress).await
        }
        Command::UpdateApply(args) => {
            let paths = config::paths_for_offline(&cli.paths);
            commands::apply::apply(Disk::from_cli(cli), &paths, *args).await
        }
        Command::UpdateRevert => {
            let paths = config::paths_for_offline(&cli.paths);
            commands::apply::revert(Disk::from_cli(cli), &paths).await
        }
        Command::Prepare(args) => commands::prepare::run(Inputs::from_cli(cli, now)?, args).await,
        Command::Explain => commands::explain::run(Inputs::from_cli(cli, now)?).await,
    }
}
