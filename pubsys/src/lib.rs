//! pubsys: the release CLI.
//!
//! Today: `pubsys waves show` and `pubsys manifest …`. The repository (`repo`, `validate-repo`, ...) and AWS (`ami`,
//! `ssm`, ...) commands arrive with their issues. Layout: [`cli`] holds the clap types,
//! [`commands`] one module per subcommand, [`error`] the crate's error type, and [`run`]
//! dispatches and returns an [`Outcome`] that `main` prints.
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod aws;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;

pub use error::{Error, Result};

use cli::{Cli, Command, WavesCommand};
use jiff::Timestamp;
use snafu::ResultExt;

/// What a command produced, for `main` to print as text or JSON.
#[derive(Debug)]
pub enum Outcome {
    /// `pubsys waves show`.
    Waves(commands::waves::WavesReport),
    /// `pubsys manifest …`.
    Manifest(commands::manifest::ManifestReport),
    /// The AWS commands (`ami`, `publish-ami`, `ssm`, `promote-ssm`, `validate-*`).
    Aws(aws::AwsReport),
}

impl Outcome {
    /// Human-readable text.
    pub fn to_text(&self) -> String {
        match self {
            Outcome::Waves(report) => report.to_string(),
            Outcome::Manifest(report) => report.to_string(),
            Outcome::Aws(report) => report.to_string(),
        }
    }

    /// The JSON document `--json` prints.
    pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        match self {
            Outcome::Waves(report) => serde_json::to_value(report),
            Outcome::Manifest(report) => serde_json::to_value(report),
            Outcome::Aws(report) => serde_json::to_value(report),
        }
    }

    /// The exit code for this outcome (3 when a validation found problems).
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Manifest(report) if !report.problems.is_empty() => {
                cli_support::exit::VALIDATION_FAILED
            }
            Outcome::Aws(report) => report.exit_code(),
            _ => cli_support::exit::SUCCESS,
        }
    }
}

/// What every command may use: the configuration, loaded once, and the clock.
#[derive(Debug)]
pub struct Context {
    /// `Infra.toml` (empty defaults when none was given).
    pub infra: config::infra::InfraConfig,
    /// The time the run started, to the whole second.
    pub now: Timestamp,
}

/// Run the command line `cli` describes; `now` is the clock.
pub async fn run(cli: &Cli, now: Timestamp) -> Result<Outcome> {
    let infra = match &cli.infra_config {
        Some(path) => config::infra::InfraConfig::load(path)?,
        None => config::infra::InfraConfig::default(),
    };
    let context = Context { infra, now };
    tracing::debug!(repos = context.infra.repo.len(), "configuration loaded");
    let now = context.now;
    match &cli.command {
        Command::Waves(WavesCommand::Show(args)) => {
            commands::waves::run(args, now).map(Outcome::Waves)
        }
        Command::Manifest(command) => commands::manifest::run(command, now).map(Outcome::Manifest),
        Command::Aws(command) => aws::run(command, &context)
            .await
            .map(Outcome::Aws)
            .map_err(Box::new)
            .context(error::AwsSnafu),
    }
}
