//! `signpost` binary: parse arguments, initialise logging, run, print, map the result to an
//! exit code (0 success, 1 failure, 2 usage error).
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = signpost::cli::Cli::parse();
    cli_support::init_logging(&cli.global);
    let result =
        signpost::run(&cli).and_then(|outcome| signpost::output::print(&outcome, cli.global.json));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => cli_support::report_error(error),
    }
}
