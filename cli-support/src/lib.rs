//! Pieces every binary in the workspace shares, so that the flags, the logging and the exit
//! codes mean the same thing in `updog`, `signpost`, `pubsys`, `tuftool` and `image-builder`.
//!
//! * [`GlobalArgs`]: the global flags (`--log-level`, `-v`/`-q`, `--json`), flattened into each
//!   binary's clap `Cli` struct.
//! * [`init_logging`]: `tracing` to **stderr only**, filtered by `RUST_LOG`, `--log-level` or the
//!   verbosity count. stdout is reserved for results.
//! * [`exit`]: the exit-code table shared by all binaries.
//! * [`print_json`] / [`report_error`]: the one place where results and errors are printed.
#![deny(missing_docs)]

use clap::Args;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// Exit codes used by every binary (see the workspace README).
pub mod exit {
    /// Success.
    pub const SUCCESS: u8 = 0;
    /// Failure: the error chain was printed on stderr.
    pub const FAILURE: u8 = 1;
    /// Usage error (clap's own code).
    pub const USAGE: u8 = 2;
    /// A validation command found problems (`pubsys validate-*`, `check-repo-expirations`).
    pub const VALIDATION_FAILED: u8 = 3;
    /// `updog check-update`: an update is available.
    pub const UPDATE_AVAILABLE: u8 = 100;
}

/// Global flags shared by every binary; flatten into the top-level clap struct.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Log filter for stderr, e.g. `debug` or `info,tough=warn` (overrides -v/-q; `RUST_LOG`
    /// overrides both)
    #[arg(short = 'l', long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// More logging on stderr (-v: debug, -vv: trace)
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less logging on stderr (-q: errors only)
    #[arg(short = 'q', long = "quiet", global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,

    /// Print the result as one JSON document on stdout
    #[arg(long, global = true)]
    pub json: bool,
}

impl GlobalArgs {
    /// The tracing filter these flags ask for (before `RUST_LOG` is considered).
    pub fn filter_directive(&self) -> String {
        if let Some(level) = &self.log_level {
            return level.clone();
        }
        let base = match (self.quiet, self.verbose) {
            (q, _) if q > 0 => "error",
            (_, 0) => "info",
            (_, 1) => "debug",
            _ => "trace",
        };
        // Third-party crates stay quiet unless asked for explicitly with --log-level.
        format!(
            "{base},aws_config=warn,aws_smithy_runtime=warn,hyper=warn,reqwest=warn,rustls=warn"
        )
    }
}

/// Initialise `tracing` on stderr. Call once, from `main`.
pub fn init_logging(args: &GlobalArgs) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(args.filter_directive()));
    // A second initialisation (only possible in tests) is harmless, so its error is ignored.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Print `value` as pretty JSON on stdout, followed by a newline.
pub fn print_json<T: Serialize>(value: &T) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::other)?;
    writeln!(out)
}

/// Print text on stdout (results only).
pub fn print_text(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

/// Print an error with its whole source chain on stderr (via `snafu::Report`) and return the
/// failure exit code.
pub fn report_error<E: std::error::Error + 'static>(error: E) -> ExitCode {
    let report = snafu::Report::from_error(error);
    let _ = writeln!(std::io::stderr().lock(), "Error: {report}");
    ExitCode::from(exit::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::GlobalArgs;

    fn args(log_level: Option<&str>, verbose: u8, quiet: u8) -> GlobalArgs {
        GlobalArgs {
            log_level: log_level.map(str::to_owned),
            verbose,
            quiet,
            json: false,
        }
    }

    #[test]
    fn verbosity_maps_to_levels() {
        assert!(args(None, 0, 0).filter_directive().starts_with("info,"));
        assert!(args(None, 1, 0).filter_directive().starts_with("debug,"));
        assert!(args(None, 3, 0).filter_directive().starts_with("trace,"));
        assert!(args(None, 0, 1).filter_directive().starts_with("error,"));
        assert_eq!(
            args(Some("warn,tough=debug"), 2, 0).filter_directive(),
            "warn,tough=debug"
        );
    }
}
