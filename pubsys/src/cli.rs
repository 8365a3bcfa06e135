//! Command-line types (clap derive only, no logic).
use crate::commands::manifest::ManifestCommand;
use crate::commands::waves::WavesArgs;
use clap::{Parser, Subcommand};

/// pubsys: the release CLI. Builds variant images, signs them into TUF repositories with a
/// wave schedule, publishes to S3, AMIs and SSM, and validates all of it.
#[derive(Debug, Parser)]
#[command(name = "pubsys", version, help_expected = true)]
pub struct Cli {
    /// Global flags shared by every binary.
    #[command(flatten)]
    pub global: cli_support::GlobalArgs,

    /// Infra.toml: repositories, signing keys, AWS regions and roles (an Infra.lock beside it
    /// is never read). Without it, commands use empty defaults.
    #[arg(long, global = true, value_name = "PATH", env = "PUBSYS_INFRA_CONFIG")]
    pub infra_config: Option<std::path::PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// pubsys subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect wave schedules: the manifest keys a schedule produces and when each share of
    /// the fleet becomes eligible
    #[command(subcommand)]
    Waves(WavesCommand),
    /// Edit and check manifest.json (init, add-update, remove-update, set-waves,
    /// set-migrations, set-max-version, validate)
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Sign a release (images, manifest with waves and migrations) into the TUF repository of
    /// its variant and arch: a new one, or the published one extended
    Repo(crate::commands::repo::RepoArgs),
    /// Publish a signed output folder to S3, timestamp.json last (finishes a failed
    /// `repo --upload`; skips objects already present)
    UploadRepo(crate::commands::upload_repo::UploadRepoArgs),
    /// Build a variant's disk images and update artifacts (image-builder) from a variant
    /// definition TOML
    Build(crate::commands::build::BuildArgs),
    /// Make sure a repository has a trusted root and a signing key, creating them if needed
    Setup(crate::commands::setup::SetupArgs),
    /// Verify a published repository (and with --validate-targets every target); exit 3 on
    /// problems
    ValidateRepo(crate::commands::validate_repo::ValidateRepoArgs),
    /// List when each role of a published repository expires; exit 3 if any expires before
    /// the limit
    CheckRepoExpirations(crate::commands::check_repo_expirations::CheckExpirationsArgs),
    /// Re-sign a published repository with new expirations (all roles, or only
    /// snapshot+timestamp, or only timestamp)
    RefreshRepo(crate::commands::refresh_repo::RefreshRepoArgs),
    /// Upload a disk image as EBS snapshots, register an AMI and copy it to every region;
    /// re-runs finish what is missing
    Ami(crate::commands::ami::AmiArgs),
    /// Grant or revoke launch permissions on the AMIs of an amis.json (and their snapshots)
    PublishAmi(crate::commands::publish_ami::PublishAmiArgs),
    /// Publish SSM parameters rendered from templates for the AMIs of an amis.json
    Ssm(crate::commands::ssm::SsmArgs),
    /// Copy SSM parameters from one version name to another (e.g. to `latest`)
    PromoteSsm(crate::commands::promote_ssm::PromoteSsmArgs),
    /// Check that the AMIs of an amis.json exist with the expected attributes (exit 3 if not)
    ValidateAmi(crate::commands::validate_ami::ValidateAmiArgs),
    /// Check SSM parameters against an ssm-params.json (exit 3 if not)
    ValidateSsm(crate::commands::validate_ssm::ValidateSsmArgs),
}

/// `pubsys waves` subcommands.
#[derive(Debug, Subcommand)]
pub enum WavesCommand {
    /// Show a schedule's waves and when 1%, 10%, 50% and 100% of a fleet become eligible
    Show(WavesArgs),
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
