//! Parsing one metadata file and checking its signatures, type, version and expiry.
use crate::crypto::{self, HashSetError, Hashers, Threshold};
use crate::error::{self, Result};
use crate::schema::{Common, Envelope, Key, MetaFile, Root};
use serde::Serialize;
use serde::de::DeserializeOwned;
use snafu::{ResultExt, ensure};
use std::collections::HashMap;

/// The top-level roles.
pub(crate) const TOP_LEVEL: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

/// A parsed metadata file: the bytes as received, the signatures, the canonical form of
/// `signed`, the common fields and the role's own fields.
#[derive(Debug, Clone)]
pub(crate) struct Parsed<T> {
    pub role: String,
    pub bytes: Vec<u8>,
    pub envelope: Envelope,
    pub canonical: Vec<u8>,
    pub common: Common,
    pub expires: jiff::Timestamp,
    pub body: T,
}

impl<T: DeserializeOwned> Parsed<T> {
    /// Parse `bytes` as metadata of `role`, whose `_type` must be `expected_type`.
    pub(crate) fn parse(role: &str, expected_type: &str, bytes: Vec<u8>) -> Result<Self> {
        let envelope: Envelope =
            serde_json::from_slice(&bytes).context(error::ParseMetadataSnafu { role })?;
        let common: Common = serde_json::from_value(envelope.signed.clone())
            .context(error::ParseMetadataSnafu { role })?;
        ensure!(
            common.type_ == expected_type,
            error::WrongTypeSnafu {
                role,
                expected: expected_type,
                found: common.type_.clone(),
            }
        );
        ensure!(
            common.spec_version.split('.').next() == Some("1"),
            error::UnsupportedSpecVersionSnafu {
                role,
                version: common.spec_version.clone(),
            }
        );
        ensure!(
            common.version >= 1,
            error::InvalidMetadataSnafu {
                role,
                reason: "version 0",
            }
        );
        let expires: jiff::Timestamp =
            common
                .expires
                .parse()
                .map_err(|_| error::Error::InvalidMetadata {
                    role: role.to_owned(),
                    reason: format!("expires '{}' is not an RFC 3339 time", common.expires),
                })?;
        let body: T = serde_json::from_value(envelope.signed.clone())
            .context(error::ParseMetadataSnafu { role })?;
        let canonical =
            canonical_json(&envelope.signed).context(error::CanonicalizeSnafu { role })?;
        Ok(Self {
            role: role.to_owned(),
            bytes,
            envelope,
            canonical,
            common,
            expires,
            body,
        })
    }
}

impl<T> Parsed<T> {
    /// The version.
    pub(crate) fn version(&self) -> u64 {
        self.common.version
    }

    /// Check that a threshold of the distinct `keyids` (keys from `keys`) signed this.
    pub(crate) fn verify(
        &self,
        delegator: &str,
        keys: &HashMap<String, Key>,
        keyids: &[String],
        threshold: u64,
    ) -> Result<()> {
        ensure!(
            threshold >= 1,
            error::InvalidMetadataSnafu {
                role: delegator,
                reason: format!("threshold 0 for {}", self.role),
            }
        );
        match crypto::count_valid(&self.canonical, &self.envelope.signatures, keys, keyids) {
            Threshold::DuplicateSignature(keyid) => error::DuplicateSignatureSnafu {
                role: self.role.clone(),
                keyid,
            }
            .fail(),
            Threshold::Valid(valid) if valid >= threshold => Ok(()),
            Threshold::Valid(valid) => error::VerifySignaturesSnafu {
                role: self.role.clone(),
                delegator,
                valid,
                threshold,
            }
            .fail(),
        }
    }

    /// Check the version against the one expected.
    pub(crate) fn check_version(&self, expected: u64) -> Result<()> {
        ensure!(
            self.version() == expected,
            error::VersionMismatchSnafu {
                role: self.role.clone(),
                expected,
                found: self.version(),
            }
        );
        Ok(())
    }

    /// Whether it has expired at `now` (expired when `expires` is not later than `now`).
    pub(crate) fn is_expired(&self, now: jiff::Timestamp) -> bool {
        self.expires <= now
    }

    /// Fail if it has expired at `now`.
    pub(crate) fn check_expiry(&self, now: jiff::Timestamp) -> Result<()> {
        ensure!(
            !self.is_expired(now),
            error::ExpiredSnafu {
                role: self.role.clone(),
                expires: self.expires,
            }
        );
        Ok(())
    }
}

impl Parsed<Root> {
    /// Check that every top-level role is defined with a threshold of at least 1.
    pub(crate) fn validate_roles(&self) -> Result<()> {
        for role in TOP_LEVEL {
            let Some(keys) = self.body.roles.get(role) else {
                return error::InvalidMetadataSnafu {
                    role: "root",
                    reason: format!("no '{role}' role"),
                }
                .fail();
            };
            ensure!(
                keys.threshold >= 1,
                error::InvalidMetadataSnafu {
                    role: "root",
                    reason: format!("threshold 0 for '{role}'"),
                }
            );
        }
        Ok(())
    }

    /// Check that `metadata` (of top-level `role`) is signed by a threshold of this root's
    /// keys for `role`.
    pub(crate) fn verify_role<T>(&self, role: &str, metadata: &Parsed<T>) -> Result<()> {
        let Some(keys) = self.body.roles.get(role) else {
            return error::InvalidMetadataSnafu {
                role: "root",
                reason: format!("no '{role}' role"),
            }
            .fail();
        };
        let delegator = format!("root v{}", self.version());
        metadata.verify(&delegator, &self.body.keys, &keys.keyids, keys.threshold)
    }
}

/// The canonical JSON (OLPC) form of a value.
fn canonical_json(value: &serde_json::Value) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    value.serialize(&mut ser).map_err(std::io::Error::other)?;
    Ok(out)
}

/// Check `bytes` against the length and hashes a `meta` entry gives (each only if present).
pub(crate) fn check_meta_file(name: &str, meta: &MetaFile, bytes: &[u8]) -> Result<()> {
    if let Some(length) = meta.length {
        ensure!(
            length == bytes.len() as u64,
            error::LengthMismatchSnafu {
                name,
                expected: length,
                found: bytes.len() as u64,
            }
        );
    }
    if let Some(hashes) = &meta.hashes {
        let mut hashers = match Hashers::new(hashes) {
            Ok(h) => h,
            Err(HashSetError::NoneSupported) => {
                return error::NoSupportedHashSnafu { name }.fail();
            }
            Err(HashSetError::BadHex(algorithm)) => {
                return error::InvalidHashSnafu { name, algorithm }.fail();
            }
        };
        hashers.update(bytes);
        if let Some(algorithm) = hashers.mismatch() {
            return error::HashMismatchSnafu { name, algorithm }.fail();
        }
    }
    Ok(())
}
