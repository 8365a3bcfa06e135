//! pubsys: the release CLI.
//!
//! Layout, one command tree: [`cli`] holds the top-level clap types, [`commands`] one module
//! per subcommand (its clap `Args` and `run`; `ami` is a folder, split by what it does),
//! [`args`] the argument groups several commands share, [`aws`] the AWS service layer (EC2,
//! EBS, SSM calls, snapshot upload, the `amis.json` and SSM parameter records, permissions,
//! templates, validation results), [`repo`] and [`s3`] the repository and S3 plumbing,
//! [`config`] `Infra.toml` and the expiration policy, [`error`] the crate's one error type.
//! [`run`] dispatches and returns an [`Outcome`], which the shared runner prints. The
//! [`Context`] holds the configuration, the clock and the one AWS client factory.
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod args;
pub mod aws;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod progress;
pub mod repo;
pub mod s3;

pub use error::{Error, Result};

use cli::{Cli, Command, WavesCommand};
use jiff::Timestamp;

/// What a command produced, for `main` to print as text or JSON.
#[derive(Debug)]
pub enum Outcome {
    /// `pubsys waves show`.
    Waves(commands::waves::WavesReport),
    /// `pubsys manifest …`.
    Manifest(commands::manifest::ManifestReport),
    /// `pubsys repo`.
    Repo(commands::repo::RepoReport),
    /// `pubsys setup`.
    Setup(commands::setup::SetupReport),
    /// `pubsys build`.
    Build(Box<commands::build::BuildOutcome>),
    /// `pubsys validate-repo`.
    ValidateRepo(commands::validate_repo::ValidateRepoReport),
    /// `pubsys check-repo-expirations`.
    CheckRepoExpirations(commands::check_repo_expirations::ExpirationsReport),
    /// `pubsys refresh-repo`.
    RefreshRepo(commands::refresh_repo::RefreshReport),
    /// `pubsys upload-repo`.
    UploadRepo(s3::UploadReport),
    /// `pubsys ami`.
    Ami(commands::ami::AmiReport),
    /// `pubsys publish-ami`.
    PublishAmi(commands::publish_ami::PublishAmiReport),
    /// `pubsys ssm` and `pubsys promote-ssm`.
    Ssm(aws::ssm::SsmReport),
    /// `pubsys validate-ami`.
    ValidateAmi(commands::validate_ami::ValidateAmiReport),
    /// `pubsys validate-ssm`.
    ValidateSsm(commands::validate_ssm::ValidateSsmReport),
}

/// `$body` with `$r` bound to the report inside `$outcome`, whatever command made it (every
/// report is `Display` for text and `Serialize` for `--json`).
macro_rules! with_report {
    ($outcome:expr, $r:ident => $body:expr) => {
        match $outcome {
            Outcome::Waves($r) => $body,
            Outcome::Manifest($r) => $body,
            Outcome::Repo($r) => $body,
            Outcome::Setup($r) => $body,
            Outcome::Build($r) => $body,
            Outcome::ValidateRepo($r) => $body,
            Outcome::CheckRepoExpirations($r) => $body,
            Outcome::RefreshRepo($r) => $body,
            Outcome::UploadRepo($r) => $body,
            Outcome::Ami($r) => $body,
            Outcome::PublishAmi($r) => $body,
            Outcome::Ssm($r) => $body,
            Outcome::ValidateAmi($r) => $body,
            Outcome::ValidateSsm($r) => $body,
        }
    };
}

/// How the binary prints an outcome and which exit code it means (3 when a validation found
/// problems).
impl cli_support::Report for Outcome {
    fn json(&self) -> serde_json::Result<serde_json::Value> {
        with_report!(self, r => serde_json::to_value(r))
    }

    fn text(&self) -> Option<String> {
        Some(with_report!(self, r => r.to_string()))
    }

    /// The exit code for this outcome: 3 when a validation found problems, 1 when an AWS
    /// command failed in some region.
    fn exit_code(&self) -> u8 {
        match self {
            Outcome::Manifest(report) if !report.problems.is_empty() => {
                cli_support::exit::VALIDATION_FAILED
            }
            Outcome::ValidateRepo(report) if !report.problems.is_empty() => {
                cli_support::exit::VALIDATION_FAILED
            }
            Outcome::CheckRepoExpirations(report) if report.has_problems() => {
                cli_support::exit::VALIDATION_FAILED
            }
            Outcome::ValidateAmi(report) if report.has_problems() => {
                cli_support::exit::VALIDATION_FAILED
            }
            Outcome::ValidateSsm(report) if report.has_problems() => {
                cli_support::exit::VALIDATION_FAILED
            }
            Outcome::Ami(report) if report.failed() => cli_support::exit::FAILURE,
            Outcome::PublishAmi(report) if report.failed() => cli_support::exit::FAILURE,
            Outcome::Ssm(report) if report.failed() => cli_support::exit::FAILURE,
            _ => cli_support::exit::SUCCESS,
        }
    }
}

/// What every command may use: the configuration, loaded once, and the clock.
#[derive(Debug)]
pub struct Context {
    /// `Infra.toml` (empty defaults when none was given).
    pub infra: config::infra::InfraConfig,
    /// The time the run started, to the whole second.
    pub now: Timestamp,
    /// The AWS client factory, built on first use (see [`aws::factory`]).
    aws: tokio::sync::OnceCell<std::sync::Arc<aws_context::AwsContext>>,
}

impl Context {
    /// A context with `infra` at `now`; the AWS factory is built when first needed.
    pub fn new(infra: config::infra::InfraConfig, now: Timestamp) -> Context {
        Context {
            infra,
            now,
            aws: tokio::sync::OnceCell::new(),
        }
    }
}

/// Run the command line `cli` describes; `now` is the clock.
pub async fn run(cli: &Cli, now: Timestamp) -> Result<Outcome> {
    let infra = match &cli.infra_config {
        Some(path) => config::infra::InfraConfig::load(path)?,
        None => config::infra::InfraConfig::default(),
    };
    let context = Context::new(infra, now);
    tracing::debug!(repos = context.infra.repo.len(), "configuration loaded");
    let now = context.now;
    match &cli.command {
        Command::Waves(WavesCommand::Show(args)) => {
            commands::waves::run(args, now).map(Outcome::Waves)
        }
        Command::Manifest(command) => commands::manifest::run(command, now).map(Outcome::Manifest),
        Command::Repo(args) => commands::repo::run(args, &context).await.map(Outcome::Repo),
        Command::Build(args) => commands::build::run(args)
            .await
            .map(|b| Outcome::Build(Box::new(b))),
        Command::Setup(args) => commands::setup::run(args, &context)
            .await
            .map(Outcome::Setup),
        Command::ValidateRepo(args) => commands::validate_repo::run(args, &context)
            .await
            .map(Outcome::ValidateRepo),
        Command::CheckRepoExpirations(args) => {
            commands::check_repo_expirations::run(args, &context)
                .await
                .map(Outcome::CheckRepoExpirations)
        }
        Command::RefreshRepo(args) => commands::refresh_repo::run(args, &context)
            .await
            .map(Outcome::RefreshRepo),
        Command::UploadRepo(args) => commands::upload_repo::run(args, &context)
            .await
            .map(Outcome::UploadRepo),
        Command::Ami(args) => commands::ami::run(args, &context).await.map(Outcome::Ami),
        Command::PublishAmi(args) => commands::publish_ami::run(args, &context)
            .await
            .map(Outcome::PublishAmi),
        Command::Ssm(args) => commands::ssm::run(args, &context).await.map(Outcome::Ssm),
        Command::PromoteSsm(args) => commands::promote_ssm::run(args, &context)
            .await
            .map(Outcome::Ssm),
        Command::ValidateAmi(args) => commands::validate_ami::run(args, &context)
            .await
            .map(Outcome::ValidateAmi),
        Command::ValidateSsm(args) => commands::validate_ssm::run(args, &context)
            .await
            .map(Outcome::ValidateSsm),
    }
}
