//! `pubsys` binary: parse arguments, read the clock once, and hand the command to the shared
//! runner (logging, the one tokio runtime, printing, exit code).
use clap::Parser;
use cli_support::Runtime;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = pubsys::cli::Cli::parse();
    // The clock, read once, to the whole second (release times and expiries are whole seconds).
    let now = jiff::Timestamp::now();
    let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    cli_support::run_async(&cli.global, Runtime::MultiThread, || pubsys::run(&cli, now))
}
