//! TUF repository tool on the [`tough`] library: keys, root editing, create, update, refresh,
//! download, clone, transfer-metadata and delegations.
//!
//! The binary is a thin shell over this library; pubsys calls the library directly:
//!
//! * keys: [`keys::KeySource`] (parse with `FromStr`: a path, `aws-ssm://…`, `aws-kms://…`;
//!   usable as a tough `KeySource`), [`keys::gen_key`], [`keys::parse_private_key`];
//! * root: [`root::init_root`], [`root::add_key`], [`root::gen_key`], [`root::sign_root`], …;
//! * repositories: [`repo::create_repo`], [`repo::update_repo`], [`repo::refresh`],
//!   [`repo::load_repo`]; [`fetch::download`], [`fetch::clone_repo`],
//!   [`fetch::transfer_metadata`]; [`delegation`].
//!
//! Every write is atomic, expiries are whole seconds, versions only increase, and an error
//! leaves the repository as it was.
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod canonical;
pub mod cli;
pub mod commands;
pub mod delegation;
pub mod error;
pub mod expiry;
pub mod fetch;
pub mod fsutil;
pub mod keys;
#[cfg(feature = "aws")]
pub mod kms;
pub mod repo;
pub mod root;
pub mod targets;

pub use error::{Error, Result};

use serde::Serialize;
use std::path::{Path, PathBuf};
use tough::schema::{Root, Signed};

/// The result of a command, printed by `main` as text or (with `--json`) as one JSON document.
#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Outcome {
    /// root.json after an edit.
    Root {
        /// File.
        path: PathBuf,
        /// Version.
        version: u64,
        /// Expiry.
        expires: String,
        /// Signatures present.
        signatures: usize,
    },
    /// Keys added to root.json.
    KeysAdded {
        /// File.
        path: PathBuf,
        /// Key IDs.
        keyids: Vec<String>,
    },
    /// A key was generated.
    GenKey(root::GenKeyReport),
    /// root.json was signed.
    RootSigned(root::SignReport),
    /// Repository metadata was signed and written.
    Repo(repo::RepoReport),
    /// Targets were downloaded.
    Download(fetch::DownloadReport),
    /// A repository was cloned.
    Clone(fetch::CloneReport),
    /// A delegated role file was created.
    RoleCreated(delegation::CreateRoleReport),
}

/// How the binary prints an outcome: itself as JSON with `--json`, else [`Outcome::text`].
impl cli_support::Report for Outcome {
    fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(self)
    }

    fn text(&self) -> Option<String> {
        Some(Outcome::text(self))
    }
}

impl Outcome {
    fn root(path: &Path, root: &Signed<Root>) -> Self {
        Outcome::Root {
            path: path.to_path_buf(),
            version: root.signed.version.get(),
            expires: root.signed.expires.to_string(),
            signatures: root.signatures.len(),
        }
    }

    /// Human-readable form (stdout).
    pub fn text(&self) -> String {
        match self {
            Outcome::Root {
                path,
                version,
                expires,
                signatures,
            } => format!(
                "{}: version {version}, expires {expires}, {signatures} signature(s)",
                path.display()
            ),
            Outcome::KeysAdded { keyids, .. } => keyids
                .iter()
                .map(|k| format!("Added key: {k}"))
                .collect::<Vec<_>>()
                .join("\n"),
            Outcome::GenKey(r) => r.keyid.clone(),
            Outcome::RootSigned(r) => {
                let mut s = format!(
                    "Signed by {}; {}/{} root signatures",
                    r.signed_by.join(", "),
                    r.signatures,
                    r.threshold
                );
                if let (Some(n), Some(t)) = (r.cross_signatures, r.cross_threshold) {
                    s.push_str(&format!("; {n}/{t} from the previous root"));
                }
                s
            }
            Outcome::Repo(r) => {
                let roles: Vec<String> = r
                    .signed
                    .iter()
                    .map(|s| format!("{} v{}", s.role, s.version))
                    .collect();
                format!(
                    "Signed {}; {} target(s) added, {} removed; {} file(s) written to {}",
                    roles.join(", "),
                    r.targets_added.len(),
                    r.targets_removed.len(),
                    r.files_written.len(),
                    r.metadata_dir.display()
                )
            }
            Outcome::Download(r) => format!(
                "Downloaded {} target(s) to {}",
                r.targets.len(),
                r.outdir.display()
            ),
            Outcome::Clone(r) => format!(
                "Cloned {} metadata file(s) to {} and {} target(s)",
                r.metadata_files.len(),
                r.metadata_dir.display(),
                r.targets.len()
            ),
            Outcome::RoleCreated(r) => {
                format!("Wrote {} (keys {})", r.path.display(), r.keyids.join(", "))
            }
        }
    }
}

/// Run the command line `cli` describes. `now` is the clock (injected for tests).
pub async fn run(cli: &cli::Cli, now: jiff::Timestamp) -> Result<Outcome> {
    use cli::Command;
    match &cli.command {
        Command::Root(c) => commands::root::run(c, now).await,
        Command::GenKey(a) => commands::gen_key::run(a).await,
        Command::Create(a) => commands::create::run(a, now).await,
        Command::Update(a) => commands::update::run(a, now).await,
        Command::Refresh(a) => commands::refresh::run(a, now).await,
        Command::Download(a) => commands::download::run(a).await,
        Command::Clone(a) => commands::clone::run(a).await,
        Command::TransferMetadata(a) => commands::transfer_metadata::run(a, now).await,
        Command::Delegation(a) => commands::delegation::run(a, now).await,
    }
}
