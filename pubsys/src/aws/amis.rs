//! `amis.json`: region → the AMI published there (reference format, `pubsys.md` §7.1).
//!
//! ```json
//! { "us-west-2": { "id": "ami-…", "name": "…", "public": false, "launch_permissions": [] } }
//! ```
//!
//! `public` and `launch_permissions` are optional on read; unknown fields are kept. While a
//! permission change is in flight its record also has a `pending` entry (see
//! [`PendingChange`]), which the reference ignores.

use crate::error::{self, Result};
use serde::{Deserialize, Serialize};
use snafu::{OptionExt, ResultExt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The whole file: region name → image.
pub type AmisFile = BTreeMap<String, Image>;

/// One region's AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// AMI ID.
    pub id: String,
    /// AMI name.
    pub name: String,
    /// Whether anyone may launch it (launch permission group `all`).
    #[serde(default)]
    pub public: bool,
    /// Launch permissions.
    #[serde(default)]
    pub launch_permissions: Vec<LaunchPermission>,
    /// ENA support. pubsys does not record it; an expected-AMIs file for `validate-ami` may
    /// (it is then compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ena_support: Option<bool>,
    /// SR-IOV support, as `ena_support`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sriov_net_support: Option<String>,
    /// A permission change begun and not known to be finished (our addition to the format,
    /// written only while one is in flight; re-running the command that began it finishes
    /// it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingChange>,
    /// Fields written by other tools, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Image {
    /// An image record without permissions.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Image {
        Image {
            id: id.into(),
            name: name.into(),
            public: false,
            launch_permissions: Vec::new(),
            ena_support: None,
            sriov_net_support: None,
            pending: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Record `permissions` as the image's launch permissions (and `public` from them).
    pub fn set_permissions(&mut self, permissions: Vec<LaunchPermission>) {
        self.public = is_public(&permissions);
        self.launch_permissions = permissions;
    }
}

/// Whether a permission change adds or removes principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Add the principals (`publish-ami --grant`, a cross-account share by `ami`).
    Grant,
    /// Remove the principals (`publish-ami --revoke`).
    Revoke,
}

impl Operation {
    /// `grant` or `revoke`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Grant => "grant",
            Operation::Revoke => "revoke",
        }
    }
}

/// A permission change on an AMI and its snapshots: the `pending` entry of an amis.json
/// record while it is in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    /// Add or remove.
    pub operation: Operation,
    /// The principals added or removed (snapshots take only accounts and groups).
    pub launch_permissions: Vec<LaunchPermission>,
}

/// A launch permission: exactly one principal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LaunchPermission {
    /// A group; only `all` exists.
    #[serde(rename = "group")]
    Group(String),
    /// An account ID.
    #[serde(rename = "userid")]
    UserId(String),
    /// An organization ARN.
    #[serde(rename = "organizationarn")]
    OrganizationArn(String),
    /// An organizational unit ARN.
    #[serde(rename = "organizationalunitarn")]
    OrganizationalUnitArn(String),
}

impl LaunchPermission {
    /// Convert from the EC2 type (`None` when it names no principal).
    pub fn from_ec2(permission: &aws_sdk_ec2::types::LaunchPermission) -> Option<LaunchPermission> {
        if let Some(group) = permission.group() {
            return Some(LaunchPermission::Group(group.as_str().to_owned()));
        }
        if let Some(user) = permission.user_id() {
            return Some(LaunchPermission::UserId(user.to_owned()));
        }
        if let Some(org) = permission.organization_arn() {
            return Some(LaunchPermission::OrganizationArn(org.to_owned()));
        }
        permission
            .organizational_unit_arn()
            .map(|ou| LaunchPermission::OrganizationalUnitArn(ou.to_owned()))
    }
}

/// Whether `permissions` make an image public.
pub fn is_public(permissions: &[LaunchPermission]) -> bool {
    permissions
        .iter()
        .any(|p| matches!(p, LaunchPermission::Group(g) if g == "all"))
}

/// Read an `amis.json`.
pub fn load(path: &Path) -> Result<AmisFile> {
    let bytes = super::read(path)?;
    serde_json::from_slice(&bytes).context(error::ParseJsonSnafu { path })
}

/// Read an `amis.json` that must list at least one region; with `regions` non-empty, check
/// they are all present.
pub fn load_for(path: &Path, regions: &[String]) -> Result<AmisFile> {
    let amis = load(path)?;
    snafu::ensure!(!amis.is_empty(), error::EmptyAmiInputSnafu { path });
    let missing: Vec<&str> = regions
        .iter()
        .filter(|r| !amis.contains_key(r.as_str()))
        .map(String::as_str)
        .collect();
    snafu::ensure!(
        missing.is_empty(),
        error::RegionsNotInInputSnafu {
            path,
            regions: missing.join(", ")
        }
    );
    Ok(amis)
}

/// Write an `amis.json` atomically.
pub fn save(path: &Path, amis: &AmisFile) -> Result<()> {
    super::write_json(path, amis, "amis.json")
}

/// Keeps an amis.json in step with what exists: every [`Recorder::record`] rewrites the
/// whole file atomically (nothing is written without a path).
#[derive(Debug)]
pub struct Recorder {
    path: Option<PathBuf>,
    amis: Mutex<AmisFile>,
}

impl Recorder {
    /// A recorder of `amis`, written to `path` when there is one.
    pub fn new(path: Option<&Path>, amis: AmisFile) -> Recorder {
        Recorder {
            path: path.map(Path::to_owned),
            amis: Mutex::new(amis),
        }
    }

    /// The record of `region` when it is of `image_id`.
    pub fn get(&self, region: &str, image_id: &str) -> Option<Image> {
        let amis = self.amis.lock().unwrap_or_else(|e| e.into_inner());
        amis.get(region)
            .filter(|image| image.id == image_id)
            .cloned()
    }

    /// Set the record of `region` and write the file.
    pub fn record(&self, region: &str, image: Image) -> Result<()> {
        let mut amis = self.amis.lock().unwrap_or_else(|e| e.into_inner());
        amis.insert(region.to_owned(), image);
        self.write(&amis)
    }

    /// Write `amis` to the file, if there is one.
    fn write(&self, amis: &AmisFile) -> Result<()> {
        match &self.path {
            Some(path) => save(path, amis),
            None => Ok(()),
        }
    }

    /// Drop the record of `region` if it names `image_id` (an AMI found not to be this
    /// publish's), and write the file.
    pub fn forget(&self, region: &str, image_id: &str) -> Result<()> {
        let mut amis = self.amis.lock().unwrap_or_else(|e| e.into_inner());
        if amis.get(region).is_none_or(|image| image.id != image_id) {
            return Ok(());
        }
        amis.remove(region);
        self.write(&amis)
    }
}

/// The image of `region`, or an error naming the file.
pub fn image<'a>(amis: &'a AmisFile, region: &str, path: &Path) -> Result<&'a Image> {
    amis.get(region).context(error::RegionsNotInInputSnafu {
        path,
        regions: region.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::{AmisFile, LaunchPermission, is_public};

    #[test]
    fn reference_format_round_trips_and_keeps_unknown_fields() {
        let text = r#"{
          "us-west-2": { "id": "ami-0abc", "name": "br-1", "public": false, "launch_permissions": [] },
          "us-east-1": { "id": "ami-0def", "name": "br-1", "public": true,
                         "launch_permissions": [ {"group": "all"}, {"userid": "123456789012"},
                                                 {"organizationarn": "arn:aws:organizations::1:organization/o-1"} ],
                         "extra": 7 },
          "eu-west-1": { "id": "ami-0123", "name": "br-1" }
        }"#;
        let amis: AmisFile = serde_json::from_str(text).unwrap();
        assert!(!amis["eu-west-1"].public);
        assert!(amis["eu-west-1"].launch_permissions.is_empty());
        let east = &amis["us-east-1"];
        assert!(is_public(&east.launch_permissions));
        assert_eq!(
            east.launch_permissions[1],
            LaunchPermission::UserId("123456789012".into())
        );
        let written = serde_json::to_value(&amis).unwrap();
        assert_eq!(written["us-east-1"]["extra"], 7);
        assert_eq!(
            written["us-east-1"]["launch_permissions"][0],
            serde_json::json!({"group": "all"})
        );
        assert_eq!(written["eu-west-1"]["public"], false);
    }
}
