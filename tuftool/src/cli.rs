//! Command-line types (clap derive only, no logic).
use crate::commands::clone::CloneArgs;
use crate::commands::create::CreateArgs;
use crate::commands::delegation::DelegationArgs;
use crate::commands::download::DownloadArgs;
use crate::commands::gen_key::GenKeyArgs;
use crate::commands::refresh::RefreshArgs;
use crate::commands::root::RootCommand;
use crate::commands::transfer_metadata::TransferArgs;
use crate::commands::update::UpdateArgs;
use clap::{Parser, Subcommand};

/// TUF repository tool on the tough library: keys, root, create, update, refresh, download,
/// clone, delegations. Exit codes: 0 success, 1 failure (message on stderr, nothing written),
/// 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "tuftool", version, help_expected = true)]
pub struct Cli {
    /// Global flags shared by every binary.
    #[command(flatten)]
    pub global: cli_support::GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Edit root.json offline: init, keys, thresholds, versions, expiry, signing
    #[command(subcommand)]
    Root(RootCommand),
    /// Generate a private key (file created 0600, or SSM) and print its public key
    GenKey(GenKeyArgs),
    /// Create a repository from a signed root and input folders
    Create(CreateArgs),
    /// Add or remove targets, rotate root; re-sign targets, snapshot and timestamp
    Update(UpdateArgs),
    /// Re-sign timestamp (and optionally snapshot) with only those roles' keys
    Refresh(RefreshArgs),
    /// Verify a repository and download targets into a new folder
    Download(DownloadArgs),
    /// Verify a repository and copy its metadata (whole root chain) and optionally targets
    Clone(CloneArgs),
    /// Re-sign a repository's targets and delegations under another root
    TransferMetadata(TransferArgs),
    /// Delegated roles: create-role, add-role, update-delegated-targets, add-key, remove-key,
    /// remove
    Delegation(DelegationArgs),
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
