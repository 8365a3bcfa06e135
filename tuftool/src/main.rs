//! `tuftool` binary: parse arguments and hand the command to the shared runner (logging, the
//! one tokio runtime, printing, exit code).
use clap::Parser;
use cli_support::Runtime;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = tuftool::cli::Cli::parse();
    cli_support::run_async(&cli.global, Runtime::MultiThread, || {
        tuftool::run(&cli, jiff::Timestamp::now())
    })
}
