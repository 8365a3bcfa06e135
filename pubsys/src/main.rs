//! `pubsys` binary: parse arguments, initialise logging, run, map the result to an exit code.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = pubsys::cli::Cli::parse();
    cli_support::init_logging(&cli.global);
    match pubsys::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => cli_support::report_error(error),
    }
}
