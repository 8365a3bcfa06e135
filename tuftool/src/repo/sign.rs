//! Signing: keys loaded once, the version/expiry schedule of each role, the tree of roles
//! being edited, and signing the changed roles, then snapshot and timestamp.

use super::{AnyTransport, RepoLocation, SignedRoleReport, Staged, targets_filename};
use crate::error::{self, Result};
use crate::expiry::next_version;
use crate::keys::KeySource;
use crate::root::SPEC_VERSION;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::num::NonZeroU64;
use tough::Repository;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{Hashes, Metafile, RoleType, Root, Signed, Snapshot, Targets, Timestamp};
use tough::sign::Sign;
use url::Url;

// ---------------------------------------------------------------------------------------------
// Keys loaded once.

/// A key loaded from its source (once: SSM and KMS are asked only once per run).
struct LoadedKey {
    keyid: Decoded<Hex>,
    signer: Box<dyn Sign>,
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKey")
            .field("keyid", &hex::encode(&self.keyid))
            .finish()
    }
}

/// The signing keys of one run, loaded once.
#[derive(Debug, Default)]
pub struct SigningKeys {
    keys: Vec<LoadedKey>,
}

impl SigningKeys {
    /// Load every source (a failure names the source).
    pub async fn load(sources: &[KeySource]) -> Result<Self> {
        let mut keys = Vec::new();
        for source in sources {
            let signer = source.load().await?;
            let keyid = signer.tuf_key().key_id().context(error::KeyIdSnafu)?;
            keys.push(LoadedKey { keyid, signer });
        }
        Ok(Self { keys })
    }

    /// How many of these keys are among `keyids`.
    fn count_in(&self, keyids: &[Decoded<Hex>]) -> usize {
        self.keys
            .iter()
            .filter(|k| keyids.contains(&k.keyid))
            .count()
    }

    /// The key IDs.
    pub fn keyids(&self) -> Vec<Decoded<Hex>> {
        self.keys.iter().map(|k| k.keyid.clone()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Locations and loading.

/// Version and expiry to sign a role with. A missing version means "current + 1"; a given one
/// must be greater than the current one.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoleSchedule {
    /// Version to sign (must increase).
    pub version: Option<NonZeroU64>,
    /// Expiry (whole seconds). Required for every role that is signed.
    pub expires: Option<jiff::Timestamp>,
}

impl RoleSchedule {
    /// The version (see [`next_version`]) and the expiry (required) to sign `role` with.
    pub fn resolve(
        &self,
        role: &str,
        current: Option<NonZeroU64>,
    ) -> Result<(NonZeroU64, jiff::Timestamp)> {
        let version = next_version(role, current, self.version)?;
        let expires = self.expires.context(error::MissingExpirySnafu { role })?;
        Ok((version, expires))
    }
}

/// Versions and expiries for the roles a command signs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Schedule {
    /// For the targets role (or the delegated targets role being changed).
    pub targets: RoleSchedule,
    /// For snapshot.
    pub snapshot: RoleSchedule,
    /// For timestamp.
    pub timestamp: RoleSchedule,
}

/// The metadata of a repository being edited: everything in memory.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub root: Signed<Root>,
    /// Bytes of a root file to publish as `<version>.root.json` (new or rotated root).
    pub root_file: Option<Vec<u8>>,
    /// Top-level targets, with delegated roles loaded inside.
    pub targets: Signed<Targets>,
    pub snapshot: Option<Signed<Snapshot>>,
    pub timestamp: Option<Signed<Timestamp>>,
    /// Where the current metadata came from (to copy unchanged files to a new outdir).
    pub source: Option<Url>,
    /// How to fetch from `source`.
    pub source_transport: Option<AnyTransport>,
    /// Delegated role files signed elsewhere, published as they are.
    pub imported: Vec<ImportedRole>,
}

/// A delegated role's metadata file signed by its owner elsewhere, to publish byte for byte.
#[derive(Debug, Clone)]
pub(crate) struct ImportedRole {
    pub name: String,
    pub version: NonZeroU64,
    pub bytes: Vec<u8>,
}

impl Tree {
    pub fn from_repo(repo: &Repository, location: &RepoLocation) -> Self {
        let source = location.metadata_url.clone();
        Tree {
            root: repo.root().clone(),
            root_file: None,
            targets: repo.targets().clone(),
            snapshot: Some(repo.snapshot().clone()),
            timestamp: Some(repo.timestamp().clone()),
            source: Some(source),
            source_transport: location.transport.clone(),
            imported: Vec::new(),
        }
    }

    pub fn consistent(&self) -> bool {
        self.root.signed.consistent_snapshot
    }

    /// The targets-type role `name` (`targets` or delegated), mutable.
    pub fn role_mut(&mut self, name: &str) -> Result<&mut Signed<Targets>> {
        if name == "targets" {
            return Ok(&mut self.targets);
        }
        self.targets
            .signed
            .delegated_targets_mut(name)
            .ok()
            .context(error::NoSuchRoleSnafu { role: name })
    }

    /// The targets-type role `name`.
    pub fn role(&self, name: &str) -> Result<&Signed<Targets>> {
        if name == "targets" {
            return Ok(&self.targets);
        }
        self.targets
            .signed
            .delegated_targets(name)
            .ok()
            .context(error::NoSuchRoleSnafu { role: name })
    }

    /// The key IDs and threshold that sign `name` (named by the root for `targets`, by the
    /// delegating role otherwise).
    fn holder(&self, name: &str) -> Result<(Vec<Decoded<Hex>>, u64)> {
        if name == "targets" {
            return top_holder(&self.root.signed, RoleType::Targets);
        }
        let parent = self
            .targets
            .signed
            .parent_of(name)
            .ok()
            .context(error::NoSuchRoleSnafu { role: name })?;
        let role = parent
            .roles
            .iter()
            .find(|r| r.name == name)
            .context(error::NoSuchRoleSnafu { role: name })?;
        Ok((role.keyids.clone(), role.threshold.get()))
    }
}

fn top_holder(root: &Root, role: RoleType) -> Result<(Vec<Decoded<Hex>>, u64)> {
    let keys = root.roles.get(&role).context(error::NoSuchRoleSnafu {
        role: role.to_string(),
    })?;
    Ok((keys.keyids.clone(), keys.threshold.get()))
}

fn check_threshold(
    keys: &SigningKeys,
    role: &str,
    keyids: &[Decoded<Hex>],
    threshold: u64,
) -> Result<()> {
    let have = keys.count_in(keyids);
    ensure!(
        have as u64 >= threshold,
        error::ThresholdNotMetSnafu {
            role,
            have,
            threshold
        }
    );
    Ok(())
}

/// Sign `role` with every key in `keys` that is among `keyids` (replacing its signatures) and
/// return the file's bytes (pretty JSON and a newline, as tough writes it) and their SHA-256.
/// The signatures are over [`crate::canonical`]'s form, which is byte-for-byte what verifiers
/// compute. Thresholds are checked before anything is signed ([`check_threshold`]).
async fn sign_in_place<T: Serialize>(
    role: &mut Signed<T>,
    name: &str,
    keyids: &[Decoded<Hex>],
    keys: &SigningKeys,
    rng: &(dyn SecureRandom + Sync),
) -> Result<(Vec<u8>, aws_lc_rs::digest::Digest)> {
    let message =
        crate::canonical::to_vec(&role.signed).context(error::CanonicalJsonSnafu { role: name })?;
    let mut signatures = Vec::new();
    for key in keys.keys.iter().filter(|k| keyids.contains(&k.keyid)) {
        let sig = key
            .signer
            .sign(&message, rng)
            .await
            .context(error::SignWithKeySnafu {
                keyid: hex::encode(&key.keyid),
            })?;
        signatures.push(tough::schema::Signature {
            keyid: key.keyid.clone(),
            sig: sig.into(),
        });
    }
    role.signatures = signatures;
    let mut buffer = serde_json::to_vec_pretty(role).context(error::SerializeSnafu {
        what: name.to_owned(),
    })?;
    buffer.push(b'\n');
    let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &buffer);
    Ok((buffer, sha256))
}

fn metafile(buffer: &[u8], sha256: &[u8], version: NonZeroU64) -> Metafile {
    Metafile {
        length: Some(buffer.len() as u64),
        hashes: Some(Hashes {
            sha256: sha256.to_vec().into(),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}

/// Sign the targets-type roles in `changed`, then snapshot (if anything changed or
/// `resign_snapshot`) and timestamp (always).
pub(crate) async fn sign_tree(
    tree: &mut Tree,
    changed: &BTreeSet<String>,
    resign_snapshot: bool,
    keys: &SigningKeys,
    schedule: &Schedule,
) -> Result<Staged> {
    let rng = SystemRandom::new();
    let consistent = tree.consistent();
    let mut staged = Staged::default();
    staged.report.root_version = tree.root.signed.version.get();
    if let Some(bytes) = &tree.root_file {
        staged.files.push((
            format!("{}.root.json", tree.root.signed.version),
            bytes.clone(),
        ));
    }

    // Check every threshold before signing anything, for a clear error.
    for name in changed {
        let (keyids, threshold) = tree.holder(name)?;
        check_threshold(keys, name, &keyids, threshold)?;
    }
    let resign_snapshot = resign_snapshot
        || !changed.is_empty()
        || !tree.imported.is_empty()
        || tree.snapshot.is_none();
    if resign_snapshot {
        let (keyids, threshold) = top_holder(&tree.root.signed, RoleType::Snapshot)?;
        check_threshold(keys, "snapshot", &keyids, threshold)?;
    }
    let (timestamp_keyids, threshold) = top_holder(&tree.root.signed, RoleType::Timestamp)?;
    check_threshold(keys, "timestamp", &timestamp_keyids, threshold)?;

    // Targets-type roles.
    let mut new_meta: Vec<(String, Metafile)> = Vec::new();
    let mut role_files = Vec::new();
    for name in changed {
        let (keyids, _) = tree.holder(name)?;
        let current = tree.role(name)?.signed.version;
        let has_current = tree.snapshot.is_some() || name != "targets";
        let (version, expires) = schedule
            .targets
            .resolve(name, has_current.then_some(current))?;
        let role = tree.role_mut(name)?;
        role.signed.version = version;
        role.signed.expires = expires;
        // Signed in place: a targets role can hold a very large map.
        let (buffer, sha256) = sign_in_place(role, name, &keyids, keys, &rng).await?;
        new_meta.push((
            format!("{name}.json"),
            metafile(&buffer, sha256.as_ref(), version),
        ));
        role_files.push((targets_filename(name, version, consistent), buffer));
        staged.report.signed.push(SignedRoleReport {
            role: name.clone(),
            version: version.get(),
            expires: expires.to_string(),
        });
    }
    for imported in &tree.imported {
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &imported.bytes);
        new_meta.push((
            format!("{}.json", imported.name),
            metafile(&imported.bytes, sha256.as_ref(), imported.version),
        ));
        role_files.push((
            targets_filename(&imported.name, imported.version, consistent),
            imported.bytes.clone(),
        ));
    }
    staged.files.extend(role_files.into_iter().rev());

    // Snapshot.
    let snapshot_meta = if resign_snapshot {
        let previous = tree.snapshot.as_ref();
        let (version, expires) = schedule
            .snapshot
            .resolve("snapshot", previous.map(|s| s.signed.version))?;
        let mut snapshot = Snapshot::new(SPEC_VERSION.to_owned(), version, expires);
        if let Some(prev) = previous {
            snapshot.meta = prev.signed.meta.clone();
            snapshot._extra = prev.signed._extra.clone();
        }
        // Entries of roles no longer delegated stay (at their last version): a client refuses
        // a snapshot that drops a role its trusted snapshot lists (spec 5.5.5; python-tuf:
        // "New snapshot is missing info"), so removing one must not break every client.
        for (k, m) in new_meta {
            snapshot.meta.insert(k, m);
        }
        let (keyids, _) = top_holder(&tree.root.signed, RoleType::Snapshot)?;
        let mut signed = Signed {
            signed: snapshot,
            signatures: Vec::new(),
        };
        let (buffer, sha256) = sign_in_place(&mut signed, "snapshot", &keyids, keys, &rng).await?;
        let meta = metafile(&buffer, sha256.as_ref(), version);
        let name = if consistent {
            format!("{version}.snapshot.json")
        } else {
            "snapshot.json".to_owned()
        };
        staged.files.push((name, buffer));
        staged.report.signed.push(SignedRoleReport {
            role: "snapshot".into(),
            version: version.get(),
            expires: expires.to_string(),
        });
        tree.snapshot = Some(signed);
        meta
    } else {
        tree.timestamp
            .as_ref()
            .and_then(|t| t.signed.meta.get("snapshot.json").cloned())
            .context(error::NoSuchRoleSnafu { role: "snapshot" })?
    };

    // Timestamp.
    let previous = tree.timestamp.as_ref();
    let (version, expires) = schedule
        .timestamp
        .resolve("timestamp", previous.map(|t| t.signed.version))?;
    let mut timestamp = Timestamp::new(SPEC_VERSION.to_owned(), version, expires);
    if let Some(prev) = previous {
        timestamp._extra = prev.signed._extra.clone();
    }
    timestamp
        .meta
        .insert("snapshot.json".to_owned(), snapshot_meta);
    let mut signed = Signed {
        signed: timestamp,
        signatures: Vec::new(),
    };
    let (buffer, _) =
        sign_in_place(&mut signed, "timestamp", &timestamp_keyids, keys, &rng).await?;
    staged.files.push(("timestamp.json".to_owned(), buffer));
    staged.report.signed.push(SignedRoleReport {
        role: "timestamp".into(),
        version: version.get(),
        expires: expires.to_string(),
    });
    tree.timestamp = Some(signed);
    Ok(staged)
}
