//! `tuftool` binary: parse arguments, initialise logging, build the runtime, run, print the
//! outcome, and map the result to an exit code.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = tuftool::cli::Cli::parse();
    cli_support::init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => return cli_support::report_error(error),
    };
    let outcome = runtime.block_on(tuftool::run(&cli, jiff::Timestamp::now()));
    match outcome {
        Ok(outcome) => {
            let printed = if cli.global.json {
                cli_support::print_json(&outcome)
            } else {
                cli_support::print_text(&outcome.text())
            };
            match printed {
                Ok(()) => ExitCode::SUCCESS,
                Err(source) => cli_support::report_error(tuftool::Error::Print { source }),
            }
        }
        Err(error) => cli_support::report_error(error),
    }
}
