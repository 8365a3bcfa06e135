//! Pieces every binary in the workspace shares, so that the flags, the logging and the exit
//! codes mean the same thing in `updog`, `signpost`, `pubsys`, `tuftool` and `image-builder`.
//!
//! * [`GlobalArgs`]: the global flags (`--log-level`, `-v`/`-q`, `--json`), flattened into each
//!   binary's clap `Cli` struct.
//! * [`DiskArgs`]: which disk and which set is running (`--disk`, `--active-set`,
//!   `--lock-timeout`), the same flags in signpost and updog.
//! * [`init_logging`]: `tracing` to **stderr only**, filtered by `RUST_LOG`, `--log-level` or the
//!   verbosity count. stdout is reserved for results.
//! * [`exit`]: the exit-code table shared by all binaries.
//! * [`Report`] and the runners [`run`] / [`run_async`]: the one binary shell. Every `main.rs`
//!   parses its clap `Cli` and hands the command to a runner, which initialises logging,
//!   builds the process's one tokio runtime (async commands), prints the result (text, or one
//!   JSON document with `--json`) on stdout, prints an error with its whole chain on stderr, and
//!   turns the outcome into the exit code.
//!   [`write_report`] is the one place results are written; errors are printed with their
//!   source chain by the runner.
#![deny(missing_docs)]

use clap::Args;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
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

/// Print an error with its whole source chain on stderr (via `snafu::Report`) and return the
/// failure exit code.
fn report_error<E: std::error::Error + 'static>(error: E) -> ExitCode {
    let report = snafu::Report::from_error(error);
    let _ = writeln!(std::io::stderr().lock(), "Error: {report}");
    ExitCode::from(exit::FAILURE)
}

/// Disk selection flags (global), the same in `signpost` and `updog`.
#[derive(Debug, Clone, Args)]
pub struct DiskArgs {
    /// Work on this disk image file or block device instead of the disk holding the running
    /// root
    #[arg(long, global = true, value_name = "PATH")]
    pub disk: Option<PathBuf>,

    /// The running set of the --disk, a or b (default: the only set that is bootable and
    /// marked successful)
    #[arg(long, global = true, value_name = "SET", requires = "disk")]
    pub active_set: Option<gpt_contract::SetId>,

    /// Seconds to wait for another signpost or updog holding the disk lock
    #[arg(long, global = true, value_name = "SECONDS", default_value = "30",
          value_parser = parse_seconds)]
    pub lock_timeout: Duration,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("not a number of seconds: {text}"))?;
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text}: {e}"))
}

/// What a command hands back to the runner: how it prints and which exit code it means.
pub trait Report {
    /// The document `--json` prints (`null` is a valid answer).
    fn json(&self) -> serde_json::Result<serde_json::Value>;
    /// The text printed on stdout without `--json`; `None` prints nothing.
    fn text(&self) -> Option<String>;
    /// The process exit code (see [`exit`]); success unless the command says otherwise.
    fn exit_code(&self) -> u8 {
        exit::SUCCESS
    }
}

/// A command with nothing to print: `null` with `--json`, no text, exit 0.
impl Report for () {
    fn json(&self) -> serde_json::Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }

    fn text(&self) -> Option<String> {
        None
    }
}

/// Which tokio runtime an async command gets (one per process, built by the runner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// One thread (on-host tools: small and predictable).
    CurrentThread,
    /// A worker per core (release tools: parallel uploads and AWS calls).
    MultiThread,
}

/// Write `report` to `out` as `--json` (`json`) or text asks, and return its exit code.
pub fn write_report<R: Report + ?Sized>(
    report: &R,
    json: bool,
    out: &mut dyn Write,
) -> std::io::Result<u8> {
    if json {
        let value = report.json().map_err(std::io::Error::other)?;
        serde_json::to_writer_pretty(&mut *out, &value).map_err(std::io::Error::other)?;
        writeln!(out)?;
    } else if let Some(text) = report.text() {
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(report.exit_code())
}

/// The end of every run: print the result on stdout and exit with its code, or print the error
/// on stderr and exit with [`exit::FAILURE`].
fn finish<R: Report, E: std::error::Error + 'static>(
    global: &GlobalArgs,
    result: Result<R, E>,
) -> ExitCode {
    match result {
        Ok(report) => match write_report(&report, global.json, &mut std::io::stdout().lock()) {
            Ok(code) => ExitCode::from(code),
            Err(error) => report_error(PrintError { source: error }),
        },
        Err(error) => report_error(error),
    }
}

/// Printing the result on stdout failed (e.g. a closed pipe).
#[derive(Debug)]
struct PrintError {
    source: std::io::Error,
}

impl std::fmt::Display for PrintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot print the result on stdout")
    }
}

impl std::error::Error for PrintError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Run a synchronous command: logging from `global`, then `command`, then its result (or
/// error) printed and turned into the exit code.
pub fn run<R, E>(global: &GlobalArgs, command: impl FnOnce() -> Result<R, E>) -> ExitCode
where
    R: Report,
    E: std::error::Error + 'static,
{
    init_logging(global);
    finish(global, command())
}

/// Run an async command on the process's one tokio runtime (`runtime` says which kind):
/// logging from `global`, then the runtime, then `command`, then its result (or error) printed
/// and turned into the exit code.
pub fn run_async<R, E, F>(
    global: &GlobalArgs,
    runtime: Runtime,
    command: impl FnOnce() -> F,
) -> ExitCode
where
    R: Report,
    E: std::error::Error + 'static,
    F: std::future::Future<Output = Result<R, E>>,
{
    init_logging(global);
    let mut builder = match runtime {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread(),
    };
    match builder.enable_all().build() {
        Ok(rt) => finish(global, rt.block_on(command())),
        Err(error) => report_error(error),
    }
}

#[cfg(test)]
mod tests {
    use super::{GlobalArgs, Report, write_report};

    struct Found(Option<u32>);

    impl Report for Found {
        fn json(&self) -> serde_json::Result<serde_json::Value> {
            serde_json::to_value(self.0)
        }
        fn text(&self) -> Option<String> {
            self.0.map(|n| format!("found {n}"))
        }
        fn exit_code(&self) -> u8 {
            if self.0.is_some() { 100 } else { 0 }
        }
    }

    fn written(report: &Found, json: bool) -> (String, u8) {
        let mut out = Vec::new();
        let code = write_report(report, json, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), code)
    }

    #[test]
    fn reports_print_as_asked_and_give_their_exit_code() {
        assert_eq!(written(&Found(Some(7)), false), ("found 7\n".into(), 100));
        assert_eq!(written(&Found(Some(7)), true), ("7\n".into(), 100));
        // Nothing to say in text; JSON still answers (null), as scripts expect a document.
        assert_eq!(written(&Found(None), false), (String::new(), 0));
        assert_eq!(written(&Found(None), true), ("null\n".into(), 0));
        let mut out = Vec::new();
        assert_eq!(write_report(&(), true, &mut out).unwrap(), 0);
        assert_eq!(out, b"null\n");
    }

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
