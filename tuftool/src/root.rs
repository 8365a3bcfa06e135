//! Offline editing of `root.json`: init, expiry, thresholds, versions, keys, signing.
//!
//! Every edit except [`sign_root`] clears the signatures (an edited root must be signed again);
//! every write is atomic and pretty-printed. Signatures are over OLPC canonical JSON.
use crate::error::{self, Result};
use crate::fsutil;
use crate::keys::{self, KeySource, KeyType};
use aws_lc_rs::rand::SystemRandom;
use serde::Serialize;
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::Path;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::schema::{Role, RoleKeys, RoleType, Root, Signature, Signed};

/// The spec version we write.
pub const SPEC_VERSION: &str = "1.0.0";

/// A top-level role, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TopRole {
    /// The root role.
    Root,
    /// The snapshot role.
    Snapshot,
    /// The targets role.
    Targets,
    /// The timestamp role.
    Timestamp,
}

impl TopRole {
    /// Every top-level role.
    pub const ALL: [TopRole; 4] = [
        TopRole::Root,
        TopRole::Snapshot,
        TopRole::Targets,
        TopRole::Timestamp,
    ];

    /// tough's name for it.
    pub fn role_type(self) -> RoleType {
        match self {
            TopRole::Root => RoleType::Root,
            TopRole::Snapshot => RoleType::Snapshot,
            TopRole::Targets => RoleType::Targets,
            TopRole::Timestamp => RoleType::Timestamp,
        }
    }
}

/// Read and parse a root file.
pub fn load_root(path: &Path) -> Result<Signed<Root>> {
    let data = std::fs::read(path).context(error::ReadFileSnafu { path })?;
    serde_json::from_slice(&data).context(error::ParseRootSnafu { path })
}

/// Serialize a root the way we write every metadata file: pretty JSON and a newline.
pub fn root_bytes(root: &Signed<Root>) -> Result<Vec<u8>> {
    let mut bytes =
        serde_json::to_vec_pretty(root).context(error::SerializeSnafu { what: "root" })?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn save_root(path: &Path, root: &Signed<Root>) -> Result<()> {
    fsutil::write_atomic(path, &root_bytes(root)?)
}

/// Load, apply `edit`, clear the signatures, save.
fn edit_root(path: &Path, edit: impl FnOnce(&mut Root) -> Result<()>) -> Result<Signed<Root>> {
    let mut root = load_root(path)?;
    edit(&mut root.signed)?;
    root.signatures.clear();
    save_root(path, &root)?;
    Ok(root)
}

/// Options of [`init_root`].
#[derive(Debug, Clone)]
pub struct RootInit {
    /// The root's version.
    pub version: NonZeroU64,
    /// Whether the repository uses consistent snapshots (recommended; the default).
    pub consistent_snapshot: bool,
    /// Expiry (whole seconds).
    pub expires: jiff::Timestamp,
}

/// Write a fresh, unsigned root with no keys and threshold 1 for every role. Fails if `path`
/// exists.
pub fn init_root(path: &Path, init: &RootInit) -> Result<Signed<Root>> {
    fsutil::ensure_absent(path)?;
    let roles = TopRole::ALL
        .iter()
        .map(|r| {
            (
                r.role_type(),
                RoleKeys {
                    keyids: Vec::new(),
                    threshold: NonZeroU64::MIN,
                    _extra: HashMap::new(),
                },
            )
        })
        .collect();
    let root = Signed {
        signed: Root {
            spec_version: SPEC_VERSION.to_owned(),
            consistent_snapshot: init.consistent_snapshot,
            version: init.version,
            expires: crate::expiry::whole_seconds(init.expires)?,
            keys: HashMap::new(),
            roles,
            _extra: HashMap::new(),
        },
        signatures: Vec::new(),
    };
    save_root(path, &root)?;
    Ok(root)
}

/// Set the expiry (truncated to whole seconds).
pub fn set_expires(path: &Path, expires: jiff::Timestamp) -> Result<Signed<Root>> {
    let expires = crate::expiry::whole_seconds(expires)?;
    edit_root(path, |root| {
        root.expires = expires;
        Ok(())
    })
}

/// Set `role`'s signature threshold.
pub fn set_threshold(path: &Path, role: TopRole, threshold: NonZeroU64) -> Result<Signed<Root>> {
    edit_root(path, |root| {
        root.roles
            .entry(role.role_type())
            .or_insert_with(|| RoleKeys {
                keyids: Vec::new(),
                threshold,
                _extra: HashMap::new(),
            })
            .threshold = threshold;
        Ok(())
    })
}

/// Set the version.
pub fn set_version(path: &Path, version: NonZeroU64) -> Result<Signed<Root>> {
    edit_root(path, |root| {
        root.version = version;
        Ok(())
    })
}

/// Increment the version.
pub fn bump_version(path: &Path) -> Result<Signed<Root>> {
    edit_root(path, |root| {
        root.version = root
            .version
            .checked_add(1)
            .context(error::VersionOverflowSnafu { role: "root" })?;
        Ok(())
    })
}

/// Add a public key to `roles` (reusing an identical key entry). Returns the key ID.
pub fn add_key(
    path: &Path,
    keyid: &Decoded<Hex>,
    key: &Key,
    roles: &[TopRole],
) -> Result<Signed<Root>> {
    ensure!(!roles.is_empty(), error::NoRolesSnafu);
    edit_root(path, |root| {
        insert_key(root, keyid, key, roles);
        Ok(())
    })
}

fn insert_key(root: &mut Root, keyid: &Decoded<Hex>, key: &Key, roles: &[TopRole]) {
    root.keys
        .entry(keyid.clone())
        .or_insert_with(|| key.clone());
    for role in roles {
        let entry = root
            .roles
            .entry(role.role_type())
            .or_insert_with(|| RoleKeys {
                keyids: Vec::new(),
                threshold: NonZeroU64::MIN,
                _extra: HashMap::new(),
            });
        if !entry.keyids.contains(keyid) {
            entry.keyids.push(keyid.clone());
        }
    }
}

/// Remove a key from one role, or (without `role`) from every role and from `keys`.
pub fn remove_key(
    path: &Path,
    keyid: &Decoded<Hex>,
    role: Option<TopRole>,
) -> Result<Signed<Root>> {
    edit_root(path, |root| {
        ensure!(
            root.keys.contains_key(keyid),
            error::KeyNotInRootSnafu {
                keyid: hex::encode(keyid)
            }
        );
        match role {
            Some(role) => {
                let entry =
                    root.roles
                        .get_mut(&role.role_type())
                        .context(error::KeyNotInRootSnafu {
                            keyid: hex::encode(keyid),
                        })?;
                let before = entry.keyids.len();
                entry.keyids.retain(|k| k != keyid);
                ensure!(
                    entry.keyids.len() < before,
                    error::KeyNotInRootSnafu {
                        keyid: hex::encode(keyid)
                    }
                );
            }
            None => {
                root.keys.remove(keyid);
                for entry in root.roles.values_mut() {
                    entry.keyids.retain(|k| k != keyid);
                }
            }
        }
        Ok(())
    })
}

/// What `gen-key` made.
#[derive(Debug, Serialize)]
pub struct GenKeyReport {
    /// Key ID.
    pub keyid: String,
    /// Key type.
    pub key_type: KeyType,
    /// Where the private key was stored.
    pub key_source: String,
    /// Roles the key was added to in root.json (empty when no root was given).
    pub roles: Vec<TopRole>,
    /// The public key as it appears in metadata.
    pub public_key: Key,
}

/// Generate a key, store it at `dest`, and (with `root_path`) add it to `roles`.
///
/// The root is checked to be readable before the key is generated, and the key is stored
/// before the root is updated, so a failure never leaves a root listing a lost key.
pub async fn gen_key(
    root_path: Option<&Path>,
    key_type: KeyType,
    dest: &KeySource,
    roles: &[TopRole],
) -> Result<GenKeyReport> {
    if let Some(path) = root_path {
        load_root(path)?;
        ensure!(!roles.is_empty(), error::NoRolesSnafu);
    }
    let generated = keys::gen_key(key_type, dest).await?;
    if let Some(path) = root_path {
        add_key(path, &generated.keyid, &generated.public, roles)?;
    }
    Ok(GenKeyReport {
        keyid: hex::encode(&generated.keyid),
        key_type,
        key_source: dest.to_string(),
        roles: if root_path.is_some() {
            roles.to_vec()
        } else {
            Vec::new()
        },
        public_key: generated.public,
    })
}

/// What `root sign` did.
#[derive(Debug, Serialize)]
pub struct SignReport {
    /// Key IDs that signed now.
    pub signed_by: Vec<String>,
    /// Valid signatures from the root role of this root, and its threshold.
    pub signatures: usize,
    /// Root threshold of this root.
    pub threshold: u64,
    /// Valid signatures from the previous root's root role (when cross-signing).
    pub cross_signatures: Option<usize>,
    /// The previous root's threshold (when cross-signing).
    pub cross_threshold: Option<u64>,
    /// Problems found (only reported, not fatal, with `ignore_threshold`).
    pub warnings: Vec<String>,
}

/// Count the valid root-role signatures on `signed` made by keys that `keys_from` lists in its
/// root role (each signature is checked through tough's verifier, one key at a time).
fn count_valid(keys_from: &Root, signed: &Signed<Root>) -> Result<(usize, u64)> {
    let role = keys_from
        .roles
        .get(&RoleType::Root)
        .context(error::MissingRootRoleSnafu)?;
    let mut valid = 0usize;
    let mut seen = std::collections::HashSet::new();
    for sig in &signed.signatures {
        if !role.keyids.contains(&sig.keyid) || !seen.insert(sig.keyid.clone()) {
            continue;
        }
        let Some(key) = keys_from.keys.get(&sig.keyid) else {
            continue;
        };
        let mut probe = keys_from.clone();
        probe.keys = HashMap::from([(sig.keyid.clone(), key.clone())]);
        probe.roles.insert(
            RoleType::Root,
            RoleKeys {
                keyids: vec![sig.keyid.clone()],
                threshold: NonZeroU64::MIN,
                _extra: HashMap::new(),
            },
        );
        let candidate = Signed {
            signed: signed.signed.clone(),
            signatures: vec![sig.clone()],
        };
        if probe.verify_role(&candidate).is_ok() {
            valid += 1;
        }
    }
    Ok((valid, role.threshold.get()))
}

/// Sign the root at `path` with every supplied key that is in its root role or, for a rotation,
/// in the root role of `previous` (cross-signing). Existing signatures by other keys are kept.
///
/// Checks (errors unless `ignore_threshold`, then warnings): each role lists at least its
/// threshold of keys; this root's root-role signatures meet its threshold; with `previous`,
/// the previous root's root-role signatures meet the previous threshold, and the version is
/// exactly one more than the previous version.
pub async fn sign_root(
    path: &Path,
    key_sources: &[KeySource],
    previous: Option<&Path>,
    ignore_threshold: bool,
) -> Result<SignReport> {
    let mut root = load_root(path)?;
    let previous = previous.map(load_root).transpose()?;
    let data = root.signed.canonical_form().context(error::ToughSnafu {
        what: "canonical JSON of root",
    })?;
    let rng = SystemRandom::new();

    let authorised = |r: &Root, keyid: &Decoded<Hex>| {
        r.roles
            .get(&RoleType::Root)
            .is_some_and(|role| role.keyids.contains(keyid))
    };
    let mut signed_by = Vec::new();
    for source in key_sources {
        let signer = source.load().await?;
        let keyid = signer.tuf_key().key_id().context(error::KeyIdSnafu)?;
        let in_new = authorised(&root.signed, &keyid);
        let in_old = previous
            .as_ref()
            .is_some_and(|p| authorised(&p.signed, &keyid));
        ensure!(
            in_new || in_old,
            error::KeyNotAuthorisedSnafu {
                key: source.to_string(),
                role: "root"
            }
        );
        let sig = signer
            .sign(&data, &rng)
            .await
            .map_err(|source| error::Error::SignWithKey {
                keyid: hex::encode(&keyid),
                source,
            })?;
        root.signatures.retain(|s| s.keyid != keyid);
        root.signatures.push(Signature {
            keyid: keyid.clone(),
            sig: sig.into(),
        });
        signed_by.push(hex::encode(keyid));
    }

    let mut problems = Vec::new();
    for (role, keys) in &root.signed.roles {
        if (keys.keyids.len() as u64) < keys.threshold.get() {
            problems.push(format!(
                "role {role} lists {} key(s) but its threshold is {}",
                keys.keyids.len(),
                keys.threshold
            ));
        }
    }
    for role in TopRole::ALL {
        if !root.signed.roles.contains_key(&role.role_type()) {
            problems.push(format!("role {} is missing", role.role_type()));
        }
    }
    let (signatures, threshold) = count_valid(&root.signed, &root)?;
    if (signatures as u64) < threshold {
        problems.push(format!(
            "{signatures} valid root signature(s), threshold is {threshold}"
        ));
    }
    let (mut cross_signatures, mut cross_threshold) = (None, None);
    if let Some(prev) = &previous {
        let (n, t) = count_valid(&prev.signed, &root)?;
        if (n as u64) < t {
            problems.push(format!(
                "{n} valid signature(s) from the previous root's keys, its threshold is {t}"
            ));
        }
        if Some(root.signed.version) != prev.signed.version.checked_add(1) {
            problems.push(format!(
                "version {} does not follow the previous root's version {}",
                root.signed.version, prev.signed.version
            ));
        }
        cross_signatures = Some(n);
        cross_threshold = Some(t);
    }
    if !problems.is_empty() && !ignore_threshold {
        return error::RootCheckSnafu {
            path,
            problems: problems.join("; "),
        }
        .fail();
    }
    for p in &problems {
        tracing::warn!("{p}");
    }
    save_root(path, &root)?;
    Ok(SignReport {
        signed_by,
        signatures,
        threshold,
        cross_signatures,
        cross_threshold,
        warnings: problems,
    })
}

#[cfg(test)]
mod tests {
    use super::{
        RootInit, TopRole, add_key, init_root, load_root, remove_key, set_threshold, sign_root,
    };
    use crate::keys::{KeySource, KeyType, gen_key};
    use std::num::NonZeroU64;

    #[tokio::test]
    async fn init_add_sign_and_cross_sign() {
        let dir = tempfile::tempdir().unwrap();
        let root1 = dir.path().join("1.root.json");
        let init = RootInit {
            version: NonZeroU64::MIN,
            consistent_snapshot: true,
            expires: jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24),
        };
        init_root(&root1, &init).unwrap();
        assert!(init_root(&root1, &init).is_err(), "init never overwrites");
        let k1 = KeySource::File {
            path: dir.path().join("k1"),
        };
        let g1 = gen_key(KeyType::Ed25519, &k1).await.unwrap();
        add_key(&root1, &g1.keyid, &g1.public, &TopRole::ALL).unwrap();
        // Unsigned root fails the check and is not modified.
        let before = std::fs::read(&root1).unwrap();
        let k2 = KeySource::File {
            path: dir.path().join("k2"),
        };
        let g2 = gen_key(KeyType::EcdsaP256, &k2).await.unwrap();
        assert!(
            sign_root(&root1, std::slice::from_ref(&k2), None, false)
                .await
                .is_err()
        );
        assert_eq!(std::fs::read(&root1).unwrap(), before);
        let report = sign_root(&root1, std::slice::from_ref(&k1), None, false)
            .await
            .unwrap();
        assert_eq!(report.signatures, 1);

        // Rotation: root 2 with k2 only, signed by k2 and cross-signed by k1.
        let root2 = dir.path().join("2.root.json");
        std::fs::copy(&root1, &root2).unwrap();
        super::bump_version(&root2).unwrap();
        add_key(&root2, &g2.keyid, &g2.public, &[TopRole::Root]).unwrap();
        remove_key(&root2, &g1.keyid, Some(TopRole::Root)).unwrap();
        set_threshold(&root2, TopRole::Root, NonZeroU64::MIN).unwrap();
        assert!(
            sign_root(&root2, std::slice::from_ref(&k2), Some(&root1), false)
                .await
                .is_err()
        );
        let report = sign_root(&root2, &[k2, k1], Some(&root1), false)
            .await
            .unwrap();
        assert_eq!(report.cross_signatures, Some(1));
        assert_eq!(load_root(&root2).unwrap().signatures.len(), 2);
    }
}
