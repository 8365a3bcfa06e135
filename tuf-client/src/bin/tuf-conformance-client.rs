//! `tuf-conformance-client`: the tuf-conformance client CLI over `tuf_client::conformance`.
//! Options may come before or after the command. Exit 0 on success, 1 on any failure, 2 on
//! a usage error.
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use url::Url;

/// TUF client for the tuf-conformance test suite (tuf-client library)
#[derive(Debug, Parser)]
#[command(name = "tuf-conformance-client", version, help_expected = true)]
struct Cli {
    /// Where trusted metadata is kept
    #[arg(long, global = true, value_name = "DIR")]
    metadata_dir: Option<PathBuf>,
    /// Repository metadata URL
    #[arg(long, global = true, value_name = "URL")]
    metadata_url: Option<Url>,
    /// Target to download (repeatable, processed in order)
    #[arg(long = "target-name", global = true, value_name = "NAME")]
    target_names: Vec<String>,
    /// Folder for downloaded targets
    #[arg(long, global = true, value_name = "DIR")]
    target_dir: Option<PathBuf>,
    /// Targets base URL
    #[arg(long, global = true, value_name = "URL")]
    target_base_url: Option<Url>,
    /// Most root rotations accepted in one refresh
    #[arg(long, global = true, default_value_t = 32)]
    max_root_rotations: u64,
    /// Global logging flags.
    #[command(flatten)]
    global: cli_support::GlobalArgs,
    /// The command.
    #[command(subcommand)]
    command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Trust a root (copied into the metadata folder)
    Init {
        /// The trusted root.json
        trusted_root: PathBuf,
    },
    /// Update the top-level metadata
    Refresh,
    /// Refresh, then download and verify targets
    Download,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli_support::run_async(&cli.global, cli_support::Runtime::CurrentThread, || {
        run(&cli)
    })
}

/// Why a command failed (the suite reads only the exit code; the text goes to stderr).
#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

fn required<'a, T>(value: &'a Option<T>, flag: &str) -> Result<&'a T, Failure> {
    value
        .as_ref()
        .ok_or_else(|| Failure(format!("{flag} is required")))
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    let dir = required(&cli.metadata_dir, "--metadata-dir")?;
    let report = |e: tuf_client::Error| Failure(snafu::Report::from_error(e).to_string());
    let limits = tuf_client::Limits {
        max_root_rotations: cli.max_root_rotations,
        ..tuf_client::Limits::default()
    };
    match &cli.command {
        Command::Init { trusted_root } => {
            tuf_client::conformance::init(dir, trusted_root).map_err(report)
        }
        Command::Refresh => {
            let url = required(&cli.metadata_url, "--metadata-url")?;
            tuf_client::conformance::refresh(dir, url, None, limits, None)
                .await
                .map(|_| ())
                .map_err(report)
        }
        Command::Download => {
            let url = required(&cli.metadata_url, "--metadata-url")?;
            let base = required(&cli.target_base_url, "--target-base-url")?;
            let target_dir = required(&cli.target_dir, "--target-dir")?;
            tuf_client::conformance::download(dir, url, base, &cli.target_names, target_dir, limits)
                .await
                .map(|_| ())
                .map_err(report)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Cli;
    use clap::{CommandFactory, Parser};

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_in_any_order() {
        let a = Cli::try_parse_from([
            "c",
            "--metadata-dir",
            "/m",
            "refresh",
            "--metadata-url",
            "http://x/",
        ])
        .unwrap();
        let b = Cli::try_parse_from([
            "c",
            "refresh",
            "--metadata-url",
            "http://x/",
            "--metadata-dir",
            "/m",
        ])
        .unwrap();
        assert_eq!(a.metadata_dir, b.metadata_dir);
        assert_eq!(a.metadata_url, b.metadata_url);
    }
}
