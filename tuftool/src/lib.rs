//! TUF repository CLI on the tough library: keys, root, create, update, download, clone.
//!
//! Skeleton: the commands arrive with issue 5. The layout is already the final one:
//! [`cli`] holds the clap types, [`error`] the crate's error type, and [`run`] dispatches.
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
pub mod error;

pub use error::{Error, Result};

/// Run the command line `cli` describes.
pub fn run(cli: &cli::Cli) -> Result<()> {
    tracing::debug!(json = cli.global.json, "starting");
    error::NotYetImplementedSnafu { issue: 5_u32 }.fail()
}
