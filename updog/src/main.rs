//! `updog` binary: parse arguments, initialise logging, build the one (current-thread) tokio
//! runtime, run, print, and map the result to an exit code.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = updog::cli::Cli::parse();
    cli_support::init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return cli_support::report_error(error),
    };
    let result = runtime.block_on(updog::run(&cli, jiff::Timestamp::now()));
    match result.and_then(|outcome| {
        updog::output::print(&outcome, cli.global.json)?;
        Ok(outcome.exit_code())
    }) {
        Ok(code) => ExitCode::from(code),
        Err(error) => cli_support::report_error(error),
    }
}
