//! Delegated targets roles: create a role file, delegate to it, change its keys, remove it.
//!
//! Unlike the reference tool, the keys trusted for a delegated role are always given by the
//! delegator (`--delegated-key`), never read from the delegatee's own file, and every command
//! publishes a complete new repository version (the changed roles, snapshot and timestamp),
//! signed with only the keys those roles need.
use crate::error::{self, Result};
use crate::keys::{self, KeySource};
use crate::repo::{
    self, ImportedRole, RepoLocation, RepoReport, Schedule, SigningKeys, Tree, ValidatePaths,
};
use crate::root::SPEC_VERSION;
use aws_lc_rs::rand::SystemRandom;
use serde::Serialize;
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::schema::{
    DelegatedRole, DelegatedTargets, Delegations, KeyHolder, PathHashPrefix, PathPattern, PathSet,
    Signed, Targets,
};

/// What a role delegates: glob patterns or hash prefixes.
#[derive(Debug, Clone)]
pub enum DelegatedPaths {
    /// Target-name glob patterns (note: tough's `*` also matches `/`).
    Paths(Vec<String>),
    /// Hex prefixes of the SHA-256 of target names.
    HashPrefixes(Vec<String>),
}

impl DelegatedPaths {
    fn to_path_set(&self) -> Result<PathSet> {
        Ok(match self {
            DelegatedPaths::Paths(p) => PathSet::Paths(
                p.iter()
                    .map(|s| {
                        PathPattern::new(s.clone()).context(error::ToughSnafu {
                            what: "path pattern",
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
            DelegatedPaths::HashPrefixes(p) => PathSet::PathHashPrefixes(
                p.iter()
                    .map(|s| {
                        PathHashPrefix::new(s.clone()).context(error::ToughSnafu {
                            what: "hash prefix",
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
        })
    }
}

/// Report of `create-role`.
#[derive(Debug, Serialize)]
pub struct CreateRoleReport {
    /// Role name.
    pub role: String,
    /// File written.
    pub path: PathBuf,
    /// Key IDs that signed it (the keys the delegator should trust).
    pub keyids: Vec<String>,
}

/// Write an empty, signed metadata file for a new delegated role,
/// `OUTDIR/metadata/<role>.json` (percent-encoded name; where the reference tuftool writes
/// it), for the delegator to import with `add-role --incoming-metadata OUTDIR/metadata`.
pub async fn create_role(
    name: &str,
    key_sources: &[KeySource],
    version: NonZeroU64,
    expires: jiff::Timestamp,
    outdir: &Path,
) -> Result<CreateRoleReport> {
    ensure!(
        name != "targets" && !name.is_empty(),
        error::RoleNameSnafu { role: name }
    );
    let path = outdir
        .join("metadata")
        .join(format!("{}.json", repo::encode_role_filename(name)));
    crate::fsutil::ensure_absent(&path)?;
    let mut delegations = Delegations::new();
    let mut keyids = Vec::new();
    for source in key_sources {
        let (keyid, key) = source.public_key().await?;
        delegations.keys.insert(keyid.clone(), key);
        keyids.push(keyid);
    }
    let threshold = NonZeroU64::new(keyids.len() as u64).context(error::NoKeysSnafu)?;
    delegations.roles.push(DelegatedRole {
        name: name.to_owned(),
        keyids: keyids.clone(),
        threshold,
        paths: PathSet::Paths(Vec::new()),
        terminating: false,
        targets: None,
    });
    let content = DelegatedTargets {
        name: name.to_owned(),
        targets: Targets::new(SPEC_VERSION.to_owned(), version, expires),
    };
    let boxed = keys::boxed_sources(key_sources);
    let signed = tough::editor::signed::SignedRole::new(
        content,
        &KeyHolder::Delegations(delegations),
        &boxed,
        &SystemRandom::new(),
    )
    .await
    .map_err(Box::new)
    .context(error::SignRoleSnafu { role: name })?;
    crate::fsutil::write_atomic(&path, signed.buffer())?;
    Ok(CreateRoleReport {
        role: name.to_owned(),
        path,
        keyids: keyids.iter().map(hex::encode).collect(),
    })
}

/// Common inputs of the commands that change a repository's delegations.
#[derive(Debug, Clone)]
pub struct DelegationContext {
    /// The repository.
    pub location: RepoLocation,
    /// The role whose delegations change (`targets` or a delegated role).
    pub signing_role: String,
    /// Keys: the signing role's, plus snapshot and timestamp.
    pub keys: Vec<KeySource>,
    /// Versions and expiries (the `targets` entries apply to the changed targets-type roles).
    pub schedule: Schedule,
    /// Output folder (usually the repository itself).
    pub outdir: PathBuf,
}

async fn finish(
    ctx: &DelegationContext,
    mut tree: Tree,
    changed: BTreeSet<String>,
) -> Result<RepoReport> {
    tree.targets.signed.validate_paths()?;
    let keys = SigningKeys::load(&ctx.keys).await?;
    let staged = repo::sign_tree(&mut tree, &changed, true, &keys, &ctx.schedule).await?;
    repo::commit(&tree, staged, &ctx.outdir, &[], repo::Place::default()).await
}

async fn load_tree(ctx: &DelegationContext) -> Result<Tree> {
    let repo = repo::load_repo(&ctx.location).await?;
    Ok(Tree::from_repo(&repo, &ctx.location))
}

/// A new delegation.
#[derive(Debug, Clone)]
pub struct NewDelegation {
    /// Name of the delegated role.
    pub name: String,
    /// Public keys the delegator trusts for it (key IDs and keys).
    pub keys: Vec<(Decoded<Hex>, Key)>,
    /// Signatures required.
    pub threshold: NonZeroU64,
    /// What it may sign.
    pub paths: DelegatedPaths,
    /// Stop the search at this role for matching names.
    pub terminating: bool,
    /// Folder or URL holding `<role>.json` signed by the role's keys (from `create-role`).
    /// Without it, the role starts empty, signed here by its keys (which must be among `-k`).
    pub incoming_metadata: Option<url::Url>,
}

/// Delegate part of `signing_role`'s namespace to a new role.
pub async fn add_role(ctx: &DelegationContext, new: &NewDelegation) -> Result<RepoReport> {
    ensure!(!new.keys.is_empty(), error::NoKeysSnafu);
    let mut tree = load_tree(ctx).await?;
    ensure!(
        tree.role(&new.name).is_err() && new.name != "targets",
        error::RoleExistsSnafu {
            role: new.name.clone()
        }
    );
    let (role_targets, imported) = match &new.incoming_metadata {
        Some(url) => {
            let file = format!("{}.json", repo::encode_role_filename(&new.name));
            let url = url
                .join(&file)
                .ok()
                .context(error::LocationSnafu { text: file.clone() })?;
            let bytes = repo::fetch_bytes(&url)
                .await?
                .context(error::MissingMetadataSnafu {
                    url: url.to_string(),
                })?;
            let role: Signed<Targets> =
                serde_json::from_slice(&bytes).context(error::ParseMetadataSnafu {
                    url: url.to_string(),
                })?;
            let version = role.signed.version;
            (
                role,
                Some(ImportedRole {
                    name: new.name.clone(),
                    version,
                    bytes,
                }),
            )
        }
        None => {
            let expires = ctx
                .schedule
                .targets
                .expires
                .context(error::MissingExpirySnafu {
                    role: new.name.clone(),
                })?;
            let version = ctx.schedule.targets.version.unwrap_or(NonZeroU64::MIN);
            (
                Signed {
                    signed: Targets::new(SPEC_VERSION.to_owned(), version, expires),
                    signatures: Vec::new(),
                },
                None,
            )
        }
    };
    let parent = tree.role_mut(&ctx.signing_role)?;
    let delegations = parent
        .signed
        .delegations
        .get_or_insert_with(Delegations::new);
    for (keyid, key) in &new.keys {
        delegations.keys.insert(keyid.clone(), key.clone());
    }
    delegations.roles.push(DelegatedRole {
        name: new.name.clone(),
        keyids: new.keys.iter().map(|(k, _)| k.clone()).collect(),
        threshold: new.threshold,
        paths: new.paths.to_path_set()?,
        terminating: new.terminating,
        targets: Some(role_targets.clone()),
    });
    let imported = match imported {
        Some(imported) => {
            // The delegatee's file must be signed by the keys the delegator trusts.
            delegations.verify_role(&role_targets, &new.name).context(
                error::VerifyIncomingSnafu {
                    role: new.name.clone(),
                },
            )?;
            imported
        }
        None => {
            // A new, empty role signed here by its own keys (which must be among `-k`).
            let holder = KeyHolder::Delegations(delegations.clone());
            let version = role_targets.signed.version;
            let content = DelegatedTargets {
                name: new.name.clone(),
                targets: role_targets.signed,
            };
            let boxed = keys::boxed_sources(&ctx.keys);
            let signed = tough::editor::signed::SignedRole::new(
                content,
                &holder,
                &boxed,
                &SystemRandom::new(),
            )
            .await
            .map_err(Box::new)
            .context(error::SignRoleSnafu {
                role: new.name.clone(),
            })?;
            *tree.role_mut(&new.name)? = signed.signed().clone().targets().1;
            ImportedRole {
                name: new.name.clone(),
                version,
                bytes: signed.buffer().clone(),
            }
        }
    };
    tree.imported.push(imported);
    finish(ctx, tree, BTreeSet::from([ctx.signing_role.clone()])).await
}

/// Trust more keys for delegated role `role` (a child of the signing role).
pub async fn add_keys(
    ctx: &DelegationContext,
    role: &str,
    new_keys: &[(Decoded<Hex>, Key)],
) -> Result<RepoReport> {
    ensure!(!new_keys.is_empty(), error::NoKeysSnafu);
    let mut tree = load_tree(ctx).await?;
    let delegations = child_delegations(&mut tree, &ctx.signing_role, role)?;
    for (keyid, key) in new_keys {
        delegations.keys.insert(keyid.clone(), key.clone());
        let entry = delegations
            .roles
            .iter_mut()
            .find(|r| r.name == role)
            .context(error::NoSuchRoleSnafu { role })?;
        if !entry.keyids.contains(keyid) {
            entry.keyids.push(keyid.clone());
        }
    }
    finish(ctx, tree, BTreeSet::from([ctx.signing_role.clone()])).await
}

/// Stop trusting a key: for `role` only, or (without it) for every role the signing role
/// delegates to, and drop it from the delegations' keys.
pub async fn remove_key(
    ctx: &DelegationContext,
    role: Option<&str>,
    keyid: &Decoded<Hex>,
) -> Result<RepoReport> {
    let mut tree = load_tree(ctx).await?;
    let parent = tree.role_mut(&ctx.signing_role)?;
    let delegations = parent
        .signed
        .delegations
        .as_mut()
        .context(error::NoSuchRoleSnafu {
            role: role.unwrap_or("(any)"),
        })?;
    ensure!(
        delegations.keys.contains_key(keyid),
        error::KeyNotInRootSnafu {
            keyid: hex::encode(keyid)
        }
    );
    // The roles that trusted the key: their metadata may carry its signature, so each is
    // re-signed in the same publication (with its remaining keys, which must be among -k);
    // otherwise clients could no longer verify it.
    let mut changed = BTreeSet::from([ctx.signing_role.clone()]);
    match role {
        Some(role) => {
            let entry = delegations
                .roles
                .iter_mut()
                .find(|r| r.name == role)
                .context(error::NoSuchRoleSnafu { role })?;
            entry.keyids.retain(|k| k != keyid);
            changed.insert(role.to_owned());
        }
        None => {
            for r in &mut delegations.roles {
                if r.keyids.contains(keyid) {
                    changed.insert(r.name.clone());
                }
                r.keyids.retain(|k| k != keyid);
            }
            delegations.keys.remove(keyid);
        }
    }
    for r in &delegations.roles {
        ensure!(
            r.keyids.len() as u64 >= r.threshold.get(),
            error::ThresholdNotMetSnafu {
                role: r.name.clone(),
                have: r.keyids.len(),
                threshold: r.threshold.get()
            }
        );
    }
    finish(ctx, tree, changed).await
}

/// Remove the delegation to `role` (and, with it, every role it delegates to).
pub async fn remove_role(ctx: &DelegationContext, role: &str) -> Result<RepoReport> {
    let mut tree = load_tree(ctx).await?;
    let delegations = child_delegations(&mut tree, &ctx.signing_role, role)?;
    delegations.roles.retain(|r| r.name != role);
    // Drop keys no remaining role uses.
    let used: BTreeSet<Decoded<Hex>> = delegations
        .roles
        .iter()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    delegations.keys.retain(|k, _| used.contains(k));
    finish(ctx, tree, BTreeSet::from([ctx.signing_role.clone()])).await
}

fn child_delegations<'a>(
    tree: &'a mut Tree,
    parent: &str,
    role: &str,
) -> Result<&'a mut Delegations> {
    let parent_role = tree.role_mut(parent)?;
    let delegations = parent_role
        .signed
        .delegations
        .as_mut()
        .context(error::NoSuchRoleSnafu { role })?;
    ensure!(
        delegations.roles.iter().any(|r| r.name == role),
        error::NotDelegatedBySnafu { role, parent }
    );
    Ok(delegations)
}
