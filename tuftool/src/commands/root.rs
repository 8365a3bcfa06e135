//! `tuftool root …`: offline editing of root.json.
use crate::Outcome;
use crate::error::Result;
use crate::expiry::Expiry;
use crate::keys::{self, KeySource, KeyType};
use crate::root::{self, RootInit, TopRole};
use clap::{Args, Subcommand};
use std::num::NonZeroU64;
use std::path::PathBuf;
use tough::schema::decoded::{Decoded, Hex};

/// `root` subcommands.
#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Write a new unsigned root.json: no keys, threshold 1 for every role
    Init(InitArgs),
    /// Set the expiry (clears signatures)
    Expire {
        /// root.json to edit
        path: PathBuf,
        /// RFC 3339 time or 'in N hours|days|weeks'
        expires: Expiry,
    },
    /// Set a role's signature threshold (clears signatures)
    SetThreshold {
        /// root.json to edit
        path: PathBuf,
        /// Role
        #[arg(value_enum)]
        role: TopRole,
        /// Threshold (at least 1)
        threshold: NonZeroU64,
    },
    /// Set the version (clears signatures)
    SetVersion {
        /// root.json to edit
        path: PathBuf,
        /// Version
        version: NonZeroU64,
    },
    /// Increment the version (clears signatures)
    BumpVersion {
        /// root.json to edit
        path: PathBuf,
    },
    /// Add keys to roles (clears signatures)
    AddKey(AddKeyArgs),
    /// Remove a key from one role, or from every role and the key list (clears signatures)
    RemoveKey {
        /// root.json to edit
        path: PathBuf,
        /// Key ID (hex)
        keyid: Decoded<Hex>,
        /// Only from this role
        #[arg(value_enum)]
        role: Option<TopRole>,
    },
    /// Generate a key, store it (file created 0600, or SSM), and add it to roles
    GenKey(GenKeyArgs),
    /// The reference tuftool's spelling of `gen-key --type rsaN`: an RSA key of `-b` bits
    GenRsaKey(GenRsaKeyArgs),
    /// Sign root.json (keeps other signatures; checks thresholds)
    Sign(SignArgs),
}

/// `root init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// root.json to create (must not exist)
    pub path: PathBuf,
    /// Version
    #[arg(long, default_value = "1")]
    pub version: NonZeroU64,
    /// Expiry: RFC 3339 or 'in N hours|days|weeks' (default: in 52 weeks)
    #[arg(short = 'e', long = "expires", value_name = "WHEN")]
    pub expires: Option<Expiry>,
    /// Do not use consistent snapshots (versioned metadata, hash-prefixed targets)
    #[arg(long)]
    pub no_consistent_snapshot: bool,
}

/// `root add-key`.
#[derive(Debug, Args)]
pub struct AddKeyArgs {
    /// root.json to edit
    pub path: PathBuf,
    /// Private key source to add (its public part is added)
    #[arg(short = 'k', long = "key", value_name = "KEY")]
    pub keys: Vec<KeySource>,
    /// Public key file (a TUF key JSON object, as printed by gen-key --json)
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<PathBuf>,
    /// Arguments of this group.
    #[command(flatten)]
    pub roles: RoleArgs,
}

/// `-R/--role` (the reference's `-r`), repeatable, at least one.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// Roles to add the key(s) to
    #[arg(
        short = 'R',
        visible_short_alias = 'r',
        long = "role",
        value_enum,
        required = true
    )]
    pub roles: Vec<TopRole>,
}

/// The root, the new key's destination and its roles: what `root gen-key` and
/// `root gen-rsa-key` share.
#[derive(Debug, Args)]
pub struct NewKeyArgs {
    /// root.json to add the key to
    pub path: PathBuf,
    /// Where to store the private key: a new file, or aws-ssm://PROFILE/NAME (PROFILE may be empty)
    pub key: KeySource,
    /// Arguments of this group.
    #[command(flatten)]
    pub roles: RoleArgs,
}

/// `root gen-key`.
#[derive(Debug, Args)]
pub struct GenKeyArgs {
    /// Arguments of this group.
    #[command(flatten)]
    pub new: NewKeyArgs,
    /// Key type
    #[arg(long = "type", value_enum, default_value_t = KeyType::Ed25519)]
    pub key_type: KeyType,
}

/// `root gen-rsa-key` (the reference tuftool's command).
#[derive(Debug, Args)]
pub struct GenRsaKeyArgs {
    /// Arguments of this group.
    #[command(flatten)]
    pub new: NewKeyArgs,
    /// Modulus size: 2048, 3072 or 4096
    #[arg(short = 'b', long = "bits", default_value_t = 2048, value_parser = rsa_bits)]
    pub bits: u16,
}

async fn gen_key(new: &NewKeyArgs, key_type: KeyType) -> Result<root::GenKeyReport> {
    root::gen_key(Some(&new.path), key_type, &new.key, &new.roles.roles).await
}

fn rsa_bits(text: &str) -> std::result::Result<u16, String> {
    match text {
        "2048" => Ok(2048),
        "3072" => Ok(3072),
        "4096" => Ok(4096),
        _ => Err(format!("{text}: RSA keys are 2048, 3072 or 4096 bits")),
    }
}

/// `root sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// root.json to sign
    pub path: PathBuf,
    /// Arguments of this group.
    #[command(flatten)]
    pub keys: super::common::KeyArgs,
    /// The previous root, for a rotation: keys of its root role may sign too (cross-signing),
    /// and its threshold must be met
    #[arg(short = 'c', long = "cross-sign", value_name = "OLD_ROOT")]
    pub cross_sign: Option<PathBuf>,
    /// Report threshold problems as warnings instead of failing
    #[arg(short = 'i', long)]
    pub ignore_threshold: bool,
}

/// Run a `root` subcommand.
pub async fn run(cmd: &RootCommand, now: jiff::Timestamp) -> Result<Outcome> {
    Ok(match cmd {
        RootCommand::Init(a) => {
            let expires = match a.expires {
                Some(e) => e.resolve(now)?,
                None => Expiry::In(jiff::SignedDuration::from_hours(52 * 7 * 24)).resolve(now)?,
            };
            let init = RootInit {
                version: a.version,
                consistent_snapshot: !a.no_consistent_snapshot,
                expires,
            };
            Outcome::root(&a.path, &root::init_root(&a.path, &init)?)
        }
        RootCommand::Expire { path, expires } => {
            Outcome::root(path, &root::set_expires(path, expires.resolve(now)?)?)
        }
        RootCommand::SetThreshold {
            path,
            role,
            threshold,
        } => Outcome::root(path, &root::set_threshold(path, *role, *threshold)?),
        RootCommand::SetVersion { path, version } => {
            Outcome::root(path, &root::set_version(path, *version)?)
        }
        RootCommand::BumpVersion { path } => Outcome::root(path, &root::bump_version(path)?),
        RootCommand::AddKey(a) => {
            let mut added = Vec::new();
            let mut found = Vec::new();
            for k in &a.keys {
                found.push(k.public_key().await?);
            }
            for p in &a.public_keys {
                let data = std::fs::read(p).map_err(|source| crate::Error::ReadFile {
                    path: p.clone(),
                    source,
                })?;
                found.push(keys::parse_public_key(&data)?);
            }
            if found.is_empty() {
                return crate::error::NoKeysSnafu.fail();
            }
            for (keyid, key) in &found {
                root::add_key(&a.path, keyid, key, &a.roles.roles)?;
                added.push(hex::encode(keyid));
            }
            Outcome::KeysAdded {
                path: a.path.clone(),
                keyids: added,
            }
        }
        RootCommand::RemoveKey { path, keyid, role } => {
            Outcome::root(path, &root::remove_key(path, keyid, *role)?)
        }
        RootCommand::GenKey(a) => Outcome::GenKey(gen_key(&a.new, a.key_type).await?),
        RootCommand::GenRsaKey(a) => {
            let key_type = match a.bits {
                4096 => KeyType::Rsa4096,
                3072 => KeyType::Rsa3072,
                _ => KeyType::Rsa2048,
            };
            Outcome::GenKey(gen_key(&a.new, key_type).await?)
        }
        RootCommand::Sign(a) => Outcome::RootSigned(
            root::sign_root(
                &a.path,
                &a.keys.keys,
                a.cross_sign.as_deref(),
                a.ignore_threshold,
            )
            .await?,
        ),
    })
}
