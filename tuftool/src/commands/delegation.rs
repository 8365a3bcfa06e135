//! `tuftool delegation --signing-role ROLE …`.
use super::common::{DelegatedKeysArgs, KeyArgs, RepoArgs, parse_url};
use crate::Outcome;
use crate::delegation::{self, DelegatedPaths, DelegationContext, NewDelegation};
use crate::error::Result;
use crate::expiry::Expiry;
use crate::keys;
use clap::{Args, Subcommand};
use std::num::NonZeroU64;
use std::path::PathBuf;
use tough::schema::decoded::{Decoded, Hex};
use url::Url;

/// `delegation`.
#[derive(Debug, Args)]
pub struct DelegationArgs {
    /// The role whose delegations change (targets, or a delegated role); for create-role, the
    /// name of the new role
    #[arg(long = "signing-role", value_name = "ROLE")]
    pub signing_role: String,
    /// Arguments of this group.
    #[command(subcommand)]
    pub command: DelegationCommand,
}

/// Delegation subcommands.
#[derive(Debug, Subcommand)]
pub enum DelegationCommand {
    /// Write an empty signed metadata file for a new role (the signing role) into OUTDIR,
    /// for the delegator's add-role --incoming-metadata
    CreateRole {
        /// Arguments of this group.
        #[command(flatten)]
        keys: KeyArgs,
        /// Expiry: RFC 3339 or 'in N hours|days|weeks'
        #[arg(short = 'e', long = "expires", value_name = "WHEN")]
        expires: Expiry,
        /// Version
        #[arg(long = "version", value_name = "N", default_value = "1")]
        version: NonZeroU64,
        /// Output folder
        #[arg(short = 'o', long = "outdir", value_name = "DIR")]
        outdir: PathBuf,
    },
    /// Delegate to a new role, trusting the keys given here
    AddRole {
        /// Arguments of this group.
        #[command(flatten)]
        delegated: DelegatedKeysArgs,
        /// Glob of target names the role may sign (repeatable)
        #[arg(
            short = 'p',
            long = "path",
            value_name = "GLOB",
            conflicts_with = "path_hash_prefixes"
        )]
        paths: Vec<String>,
        /// Hex prefix of sha256(target name) the role may sign (repeatable)
        #[arg(short = 'x', long = "path-hash-prefix", value_name = "HEX")]
        path_hash_prefixes: Vec<String>,
        /// Signatures required for the new role
        #[arg(short = 't', long = "threshold", value_name = "N", default_value = "1")]
        threshold: NonZeroU64,
        /// Terminating delegation
        #[arg(long)]
        terminating: bool,
        /// Folder or URL holding ROLE.json from create-role; without it the role starts empty,
        /// signed here (its keys must then be among -k)
        #[arg(short = 'i', long = "incoming-metadata", value_name = "URL", value_parser = parse_url)]
        incoming_metadata: Option<Url>,
        /// Arguments of this group.
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Add or replace targets of the signing role (a delegated role; its keys sign)
    UpdateDelegatedTargets {
        /// Input folder of targets to add (repeatable)
        #[arg(
            short = 'a',
            visible_short_alias = 't',
            long = "add-targets",
            value_name = "DIR",
            required = true
        )]
        add_targets: Vec<PathBuf>,
        /// Let an input replace an existing target with different content
        #[arg(long)]
        replace_targets: bool,
        /// Arguments of this group.
        #[command(flatten)]
        place: super::common::PlaceArgs,
        /// Arguments of this group.
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Trust another key for a role the signing role delegates to
    AddKey {
        /// Arguments of this group.
        #[command(flatten)]
        delegated: DelegatedKeysArgs,
        /// Arguments of this group.
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Stop trusting a key (for one delegated role, or all)
    RemoveKey {
        /// Key ID (hex)
        #[arg(long = "keyid", value_name = "ID")]
        keyid: Decoded<Hex>,
        /// Only for this delegated role
        #[arg(short = 'd', long = "delegated-role", value_name = "ROLE")]
        delegated_role: Option<String>,
        /// Arguments of this group.
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Remove a delegation (and the roles below it)
    Remove {
        /// The delegated role to remove
        #[arg(short = 'd', long = "delegated-role", value_name = "ROLE")]
        delegated_role: String,
        /// Arguments of this group.
        #[command(flatten)]
        repo: RepoArgs,
    },
}

fn context(signing_role: &str, repo: &RepoArgs, now: jiff::Timestamp) -> Result<DelegationContext> {
    Ok(DelegationContext {
        location: repo.location(),
        signing_role: signing_role.to_owned(),
        keys: repo.keys.keys.clone(),
        schedule: repo.schedule.schedule(now)?,
        outdir: repo.outdir.clone(),
    })
}

async fn public_keys(args: &[String]) -> Result<Vec<(Decoded<Hex>, tough::schema::key::Key)>> {
    let mut out = Vec::new();
    for a in args {
        out.push(keys::public_key_from(a).await?);
    }
    Ok(out)
}

/// Run a delegation subcommand.
pub async fn run(a: &DelegationArgs, now: jiff::Timestamp) -> Result<Outcome> {
    let role = a.signing_role.as_str();
    Ok(match &a.command {
        DelegationCommand::CreateRole {
            keys,
            expires,
            version,
            outdir,
        } => {
            let expires = expires.resolve_future(now, role)?;
            Outcome::RoleCreated(
                delegation::create_role(role, &keys.keys, *version, expires, outdir).await?,
            )
        }
        DelegationCommand::AddRole {
            delegated,
            paths,
            path_hash_prefixes,
            threshold,
            terminating,
            incoming_metadata,
            repo,
        } => {
            let ctx = context(role, repo, now)?;
            let paths = if path_hash_prefixes.is_empty() {
                DelegatedPaths::Paths(paths.clone())
            } else {
                DelegatedPaths::HashPrefixes(path_hash_prefixes.clone())
            };
            let new = NewDelegation {
                name: delegated.delegated_role.clone(),
                keys: public_keys(&delegated.delegated_keys).await?,
                threshold: *threshold,
                paths,
                terminating: *terminating,
                incoming_metadata: incoming_metadata.clone(),
            };
            Outcome::Repo(delegation::add_role(&ctx, &new).await?)
        }
        DelegationCommand::UpdateDelegatedTargets {
            add_targets,
            replace_targets,
            place,
            repo,
        } => {
            let options = repo.publish_options(add_targets, place, now)?;
            let update = crate::repo::UpdateOptions {
                replace_targets: *replace_targets,
                role: Some(role.to_owned()),
                ..Default::default()
            };
            Outcome::Repo(crate::repo::update_repo(&repo.location(), &options, &update, now).await?)
        }
        DelegationCommand::AddKey { delegated, repo } => {
            let ctx = context(role, repo, now)?;
            let found = public_keys(&delegated.delegated_keys).await?;
            Outcome::Repo(delegation::add_keys(&ctx, &delegated.delegated_role, &found).await?)
        }
        DelegationCommand::RemoveKey {
            keyid,
            delegated_role,
            repo,
        } => {
            let ctx = context(role, repo, now)?;
            Outcome::Repo(delegation::remove_key(&ctx, delegated_role.as_deref(), keyid).await?)
        }
        DelegationCommand::Remove {
            delegated_role,
            repo,
        } => {
            let ctx = context(role, repo, now)?;
            Outcome::Repo(delegation::remove_role(&ctx, delegated_role).await?)
        }
    })
}
