//! `pubsys` binary: parse arguments, initialise logging, run, print the outcome, map the result
//! to an exit code.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = pubsys::cli::Cli::parse();
    cli_support::init_logging(&cli.global);
    // The clock, read once, to the whole second (release times and expiries are whole seconds).
    let now = jiff::Timestamp::now();
    let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    // The one runtime of the process (AWS SDK calls are async); libraries never build one.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return cli_support::report_error(error),
    };
    let outcome = match runtime.block_on(pubsys::run(&cli, now)) {
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
        Ok(()) => ExitCode::from(outcome.exit_code()),
        Err(error) => cli_support::report_error(error),
    }
}
