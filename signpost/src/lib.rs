//! The on-host A/B partition switch: GPT priority, tries and successful bits, rollback.
//!
//! Skeleton: the commands arrive with issue 3. The layout is already the final one:
//! [`cli`] holds the clap types, [`error`] the crate's error type, and [`run`] dispatches.
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
pub mod error;
pub mod gpt_types;

pub use error::{Error, Result};

/// Run the command line `cli` describes.
pub fn run(cli: &cli::Cli) -> Result<()> {
    tracing::debug!(json = cli.global.json, "starting");
    error::NotYetImplementedSnafu { issue: 3_u32 }.fail()
}
