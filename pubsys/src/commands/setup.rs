//! `pubsys setup`: make sure a repository has a trusted root and a signing key, creating them
//! through the tuftool library when they do not exist. Idempotent: a second run changes
//! nothing.
//!
//! * With `root_role_url` and `root_role_sha512` in `Infra.toml`: an existing local root must
//!   have that SHA-512; otherwise it is fetched (`file://`, `http(s)://`), checked and written.
//! * Without them: an existing local root is used; otherwise a key is generated at the default
//!   key path (mode 0600) unless one exists, and a new root (consistent snapshots, threshold 1,
//!   the key in every role, expiring after `--root-expiration`) is signed and written (0644).
//! * A root without any usable key is an error unless `--allow-missing-key`.

use crate::Context;
use crate::error::{self, Result};
use crate::repo as shared;
use clap::Args;
use serde::Serialize;
use snafu::{ResultExt, ensure};
use std::fmt;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::Transport;
use tuftool::keys::{KeySource, KeyType};
use tuftool::root::{RootInit, TopRole};
use update_metadata::Offset;

/// Arguments of `pubsys setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Repository name in Infra.toml ([repo.NAME])
    #[arg(long, default_value = "default")]
    pub repo: String,

    /// Where the trusted root.json is (or will be) kept
    #[arg(long, value_name = "PATH")]
    pub root_role_path: PathBuf,

    /// Signing key file used (or generated) when Infra.toml names no signing key
    #[arg(long, value_name = "PATH")]
    pub default_key_path: PathBuf,

    /// Accept an existing root without any usable signing key
    #[arg(long)]
    pub allow_missing_key: bool,

    /// Expiry of a newly created root: an offset such as 'in 52 weeks', or RFC 3339
    #[arg(long, value_name = "TIME", default_value = "in 52 weeks")]
    pub root_expiration: Offset,

    /// Type of a newly generated key
    #[arg(long, value_enum, default_value = "ed25519")]
    pub key_type: KeyType,
}

/// What `pubsys setup` found or did.
#[derive(Debug, Serialize)]
pub struct SetupReport {
    /// The root file.
    pub root_role_path: PathBuf,
    /// `existing`, `fetched` or `created`.
    pub root: String,
    /// Key sources in use.
    pub keys: Vec<String>,
    /// `existing`, `generated` or `missing`.
    pub key: String,
}

impl fmt::Display for SetupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "root {}: {}", self.root_role_path.display(), self.root)?;
        writeln!(f, "signing key ({}): {}", self.key, self.keys.join(", "))
    }
}

fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, bytes))
}

fn write_root(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).context(error::WriteOutputSnafu { path: parent })?;
    }
    update_metadata::fs::write_atomic(path, bytes, 0o644).context(error::WriteOutputSnafu { path })
}

/// Run `pubsys setup`.
pub async fn run(args: &SetupArgs, context: &Context) -> Result<SetupReport> {
    let repo = context.infra.repo(&args.repo);
    let configured: Vec<KeySource> = repo.signing_keys.iter().map(shared::key_source).collect();
    let default_key = KeySource::File {
        path: args.default_key_path.clone(),
    };
    let root_path = &args.root_role_path;

    let root = match (&repo.root_role_url, &repo.root_role_sha512) {
        (Some(url), Some(expected)) => {
            let expected = expected.to_ascii_lowercase();
            if root_path.exists() {
                let bytes =
                    std::fs::read(root_path).context(error::ReadConfigSnafu { path: root_path })?;
                let actual = sha512_hex(&bytes);
                ensure!(
                    actual == expected,
                    error::RootHashMismatchSnafu {
                        what: root_path.display().to_string(),
                        expected,
                        actual
                    }
                );
                "existing"
            } else {
                let stream = tough::DefaultTransport::new()
                    .fetch(url.clone())
                    .await
                    .context(error::ProbeRepoSnafu {
                        url: url.to_string(),
                    })?;
                let bytes =
                    tough::IntoVec::into_vec(stream)
                        .await
                        .context(error::ProbeRepoSnafu {
                            url: url.to_string(),
                        })?;
                let actual = sha512_hex(&bytes);
                ensure!(
                    actual == expected,
                    error::RootHashMismatchSnafu {
                        what: url.to_string(),
                        expected,
                        actual
                    }
                );
                write_root(root_path, &bytes)?;
                "fetched"
            }
        }
        (None, None) if root_path.exists() => "existing",
        (None, None) => "create",
        _ => return error::RootUrlWithoutHashSnafu { repo: &args.repo }.fail(),
    };

    // The key.
    let (keys, key_state) = if !configured.is_empty() {
        (configured, "existing")
    } else if args.default_key_path.exists() {
        (vec![default_key.clone()], "existing")
    } else if root == "create" {
        if let Some(parent) = args
            .default_key_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).context(error::WriteOutputSnafu { path: parent })?;
        }
        tuftool::keys::gen_key(args.key_type, &default_key)
            .await
            .context(error::TuftoolSnafu)?;
        tracing::warn!(path = %args.default_key_path.display(), "generated a new signing key; keep it somewhere safe");
        (vec![default_key.clone()], "generated")
    } else {
        ensure!(
            args.allow_missing_key,
            error::NoSigningKeySnafu { repo: &args.repo }
        );
        (Vec::new(), "missing")
    };

    let root = if root == "create" {
        create_root(
            root_path,
            &keys,
            args.root_expiration
                .resolve(context.now)
                .context(error::MetadataSnafu)?,
        )
        .await?;
        "created"
    } else {
        root
    };
    Ok(SetupReport {
        root_role_path: root_path.clone(),
        root: root.to_owned(),
        keys: keys.iter().map(ToString::to_string).collect(),
        key: key_state.to_owned(),
    })
}

/// A new root with every key in every role, threshold 1, signed, written without ever
/// overwriting an existing file.
async fn create_root(path: &Path, keys: &[KeySource], expires: jiff::Timestamp) -> Result<()> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).context(error::WriteOutputSnafu { path: folder })?;
    let staging = tempfile::Builder::new()
        .prefix(".pubsys-root-")
        .tempdir_in(folder)
        .context(error::WriteOutputSnafu { path: folder })?;
    let draft = staging.path().join("root.json");
    let init = RootInit {
        version: NonZeroU64::MIN,
        consistent_snapshot: true,
        expires,
    };
    tuftool::root::init_root(&draft, &init).context(error::TuftoolSnafu)?;
    for key in keys {
        let (keyid, public) = key.public_key().await.context(error::TuftoolSnafu)?;
        tuftool::root::add_key(&draft, &keyid, &public, &TopRole::ALL)
            .context(error::TuftoolSnafu)?;
    }
    tuftool::root::sign_root(&draft, keys, None, false)
        .await
        .context(error::TuftoolSnafu)?;
    std::fs::hard_link(&draft, path).context(error::WriteOutputSnafu { path })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .context(error::WriteOutputSnafu { path })
}
