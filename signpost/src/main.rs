//! `signpost` binary: parse arguments and hand the command to the shared runner (logging,
//! printing, exit code: 0 success, 1 failure, 2 usage error).
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = signpost::cli::Cli::parse();
    cli_support::run(&cli.global, || signpost::run(&cli))
}
