//! `image-builder` binary: parse arguments, initialise logging, run, map the result to an exit code.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = image_builder::cli::Cli::parse();
    cli_support::init_logging(&cli.global);
    match image_builder::run(&cli)
        .and_then(|outcome| image_builder::print(&outcome, cli.global.json))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => cli_support::report_error(error),
    }
}
