//! `pubsys` binary: parse arguments, initialise logging, run, print the outcome, map the result
//! to an exit code.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = pubsys::cli::Cli::parse();
    cli_support::init_logging(&cli.global);
    let outcome = match pubsys::run(&cli, jiff::Timestamp::now()) {
        Ok(outcome) => outcome,
        Err(error) => return cli_support::report_error(error),
    };
    let printed = if cli.global.json {
        outcome
            .to_json()
            .map_err(std::io::Error::other)
            .and_then(|json| cli_support::print_json(&json))
    } else {
        cli_support::print_text(&outcome.to_text())
    };
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => cli_support::report_error(error),
    }
}
