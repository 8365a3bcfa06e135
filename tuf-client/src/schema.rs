//! The metadata formats of the TUF specification (§4), as this client reads them. Unknown
//! fields are kept out of the typed structs but stay in the signed bytes (signatures are
//! verified over the canonical form of the whole `signed` object).
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// The signed envelope of every metadata file.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Envelope {
    pub signatures: Vec<Signature>,
    pub signed: serde_json::Value,
}

/// One signature.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Signature {
    pub keyid: String,
    pub sig: String,
}

/// Fields every role's `signed` object has.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Common {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
}

/// A public key as metadata lists it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Key {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
}

/// The public part of a key.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct KeyVal {
    #[serde(default)]
    pub public: Option<String>,
}

/// Keys and threshold of a top-level role.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub(crate) struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u64,
}

/// root.json's `signed`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Root {
    #[serde(default)]
    pub consistent_snapshot: bool,
    pub keys: HashMap<String, Key>,
    pub roles: HashMap<String, RoleKeys>,
}

/// A file listed in timestamp or snapshot `meta`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MetaFile {
    pub version: u64,
    #[serde(default)]
    pub length: Option<u64>,
    #[serde(default)]
    pub hashes: Option<BTreeMap<String, String>>,
}

/// timestamp.json's and snapshot.json's `signed` (both have `meta`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Meta {
    pub meta: BTreeMap<String, MetaFile>,
}

/// A target as targets metadata lists it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default)]
    pub custom: Option<serde_json::Value>,
}

/// targets.json's (and delegated roles') `signed`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Targets {
    pub targets: BTreeMap<String, TargetFile>,
    #[serde(default)]
    pub delegations: Option<Delegations>,
}

/// The delegations of a targets role.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Delegations {
    pub keys: HashMap<String, Key>,
    #[serde(default)]
    pub roles: Option<Vec<DelegatedRole>>,
    #[serde(default)]
    pub succinct_roles: Option<SuccinctRoles>,
}

/// One delegation.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<String>,
    pub threshold: u64,
    #[serde(default)]
    pub terminating: bool,
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub path_hash_prefixes: Option<Vec<String>>,
}

/// Hash-bin delegations written compactly (TAP 15).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SuccinctRoles {
    pub keyids: Vec<String>,
    pub threshold: u64,
    pub bit_length: u32,
    pub name_prefix: String,
}
