//! pubsys: the release CLI.
//!
//! Today: `pubsys waves show`. The repository (`repo`, `validate-repo`, ...) and AWS (`ami`,
//! `ssm`, ...) commands arrive with their issues. Layout: [`cli`] holds the clap types,
//! [`commands`] one module per subcommand, [`error`] the crate's error type, and [`run`]
//! dispatches and returns an [`Outcome`] that `main` prints.
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
pub mod commands;
pub mod error;

pub use error::{Error, Result};

use cli::{Cli, Command, WavesCommand};
use jiff::Timestamp;

/// What a command produced, for `main` to print as text or JSON.
#[derive(Debug)]
pub enum Outcome {
    /// `pubsys waves show`.
    Waves(commands::waves::WavesReport),
}

impl Outcome {
    /// Human-readable text.
    pub fn to_text(&self) -> String {
        match self {
            Outcome::Waves(report) => report.to_string(),
        }
    }

    /// The JSON document `--json` prints.
    pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        match self {
            Outcome::Waves(report) => serde_json::to_value(report),
        }
    }
}

/// Run the command line `cli` describes; `now` is the clock.
pub fn run(cli: &Cli, now: Timestamp) -> Result<Outcome> {
    match &cli.command {
        Command::Waves(WavesCommand::Show(args)) => {
            commands::waves::run(args, now).map(Outcome::Waves)
        }
    }
}
