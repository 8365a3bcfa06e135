//! `image-builder` binary: parse arguments and hand the command to the shared runner (logging,
//! printing, exit code).
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = image_builder::cli::Cli::parse();
    cli_support::run(&cli.global, || image_builder::run(&cli))
}
