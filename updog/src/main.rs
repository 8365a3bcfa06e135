//! `updog` binary: parse arguments and hand the command to the shared runner (logging, the one
//! current-thread tokio runtime, printing, exit code).
use clap::Parser;
use cli_support::Runtime;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = updog::cli::Cli::parse();
    cli_support::run_async(&cli.global, Runtime::CurrentThread, || {
        updog::run(&cli, jiff::Timestamp::now())
    })
}
