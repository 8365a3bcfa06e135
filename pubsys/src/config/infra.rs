//! `Infra.toml`: where repositories, signing keys and AWS accounts are.
//!
//! The schema is the reference's (`reference/pubsys.md` §3), so existing files load, with
//! two changes: `signing_keys` may also be a **list** of key sources (several keys can meet a
//! threshold above 1), and `Infra.lock` is never read (the reference let it silently replace
//! `Infra.toml`). Unknown fields are rejected where the reference rejects them.

pub use super::region::Region;
use crate::error::{self, Result};
use serde::{Deserialize, Deserializer};
use snafu::ResultExt;
use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use url::Url;

/// The whole `Infra.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfraConfig {
    /// Repositories by name (`[repo.default]`, ...).
    #[serde(default)]
    pub repo: BTreeMap<String, RepoConfig>,
    /// AWS accounts, regions and roles.
    pub aws: Option<AwsConfig>,
    /// VMware datacenters (accepted for compatibility; OVA upload is not implemented).
    pub vmware: Option<VmwareConfig>,
    /// Vendors for `publish-kit` (accepted for compatibility).
    #[serde(default)]
    pub vendor: BTreeMap<String, VendorConfig>,
}

/// One `[repo.<name>]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// Where the trusted root.json is (`https://` or `file://`).
    pub root_role_url: Option<Url>,
    /// SHA-512 (hex) the fetched root.json must have.
    pub root_role_sha512: Option<String>,
    /// Key source(s) that sign targets, snapshot and timestamp.
    #[serde(default, deserialize_with = "one_or_many")]
    pub signing_keys: Vec<SigningKeyConfig>,
    /// Base URL of existing metadata (`<base>/<variant>/<arch>/`); with `targets_url`, a
    /// release extends that repository.
    pub metadata_base_url: Option<Url>,
    /// URL of the existing targets.
    pub targets_url: Option<Url>,
    /// Infrastructure-provisioning only: root key sources.
    #[serde(default, deserialize_with = "one_or_many")]
    pub root_keys: Vec<SigningKeyConfig>,
    /// Infrastructure-provisioning only.
    pub file_hosting_config_name: Option<String>,
    /// Infrastructure-provisioning only: root threshold.
    pub root_key_threshold: Option<NonZeroU16>,
    /// Infrastructure-provisioning only: threshold of the other roles.
    pub pub_key_threshold: Option<NonZeroU16>,
}

/// Where a private signing key lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningKeyConfig {
    /// A local PEM or DER private key file.
    File {
        /// Path of the key file.
        path: PathBuf,
    },
    /// An AWS KMS asymmetric key.
    Kms {
        /// Key ID or ARN.
        key_id: Option<String>,
        /// Key ID → region where that key is available.
        #[serde(default)]
        available_keys: BTreeMap<String, String>,
        /// Provisioning only.
        key_alias: Option<String>,
        /// Provisioning only.
        #[serde(default)]
        regions: Vec<String>,
        /// Provisioning only.
        #[serde(default)]
        key_stack_arns: BTreeMap<String, String>,
    },
    /// Private key text in an SSM SecureString parameter.
    Ssm {
        /// Parameter name.
        parameter: String,
    },
}

impl fmt::Display for SigningKeyConfig {
    /// The key's location as a tuftool key-source URL (never the key itself).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKeyConfig::File { path } => write!(f, "file://{}", path.display()),
            SigningKeyConfig::Kms { key_id, .. } => {
                write!(f, "aws-kms:///{}", key_id.as_deref().unwrap_or(""))
            }
            SigningKeyConfig::Ssm { parameter } => write!(f, "aws-ssm://{parameter}"),
        }
    }
}

/// The `[aws]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Regions to publish to, in order; the first is the base region (registration and STS).
    #[serde(default)]
    pub regions: Vec<Region>,
    /// Named profile for base credentials.
    pub profile: Option<String>,
    /// Role assumed before any call.
    pub role: Option<String>,
    /// Prefix of every SSM parameter name.
    pub ssm_prefix: Option<String>,
    /// Per-region settings.
    #[serde(default)]
    pub region: BTreeMap<Region, AwsRegionConfig>,
    /// Provisioning only: S3 buckets by name.
    #[serde(default)]
    pub s3: BTreeMap<String, S3Config>,
}

/// `[aws.region.<name>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsRegionConfig {
    /// Role assumed in this region, after the global role.
    pub role: Option<String>,
}

/// `[aws.s3.<name>]` (provisioning; unknown fields allowed, as in the reference).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct S3Config {
    /// Bucket region.
    pub region: Option<String>,
    /// Key prefix.
    pub s3_prefix: Option<String>,
    /// VPC endpoint.
    pub vpc_endpoint_id: Option<String>,
    /// Stack ARN output.
    pub stack_arn: Option<String>,
    /// Bucket name output.
    pub bucket_name: Option<String>,
}

/// `[vmware]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmwareConfig {
    /// Datacenter names.
    #[serde(default)]
    pub datacenters: Vec<String>,
    /// Values common to every datacenter.
    pub common: Option<DatacenterConfig>,
    /// Per-datacenter values.
    #[serde(default)]
    pub datacenter: BTreeMap<String, DatacenterConfig>,
}

/// One vSphere datacenter (every value optional; `common` fills gaps).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatacenterConfig {
    /// GOVC_URL.
    pub vsphere_url: Option<String>,
    /// GOVC_DATACENTER.
    pub datacenter: Option<String>,
    /// GOVC_DATASTORE.
    pub datastore: Option<String>,
    /// GOVC_NETWORK.
    pub network: Option<String>,
    /// GOVC_FOLDER.
    pub folder: Option<String>,
    /// GOVC_RESOURCE_POOL.
    pub resource_pool: Option<String>,
}

/// `[vendor.<name>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorConfig {
    /// Container registry.
    pub registry: String,
}

/// A single table or a list of tables.
fn one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<SigningKeyConfig>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(SigningKeyConfig),
        Many(Vec<SigningKeyConfig>),
    }
    match OneOrMany::deserialize(deserializer) {
        Ok(OneOrMany::One(key)) => Ok(vec![key]),
        Ok(OneOrMany::Many(keys)) => Ok(keys),
        Err(_) => Err(serde::de::Error::custom(
            "expected a key source such as { file = { path = \"key.pem\" } }, { kms = { key_id = \"…\" } } or { ssm = { parameter = \"/name\" } }, or a list of them",
        )),
    }
}

impl InfraConfig {
    /// Parse `Infra.toml` text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<InfraConfig> {
        toml::from_str(text).context(error::ParseInfraSnafu { origin })
    }

    /// Read and parse an `Infra.toml` file (an `Infra.lock` beside it is ignored).
    pub fn load(path: &Path) -> Result<InfraConfig> {
        let text = std::fs::read_to_string(path).context(error::ReadConfigSnafu { path })?;
        InfraConfig::from_toml(&text, &path.display().to_string())
    }

    /// The repository called `name`, or an empty default (as the reference does).
    pub fn repo(&self, name: &str) -> RepoConfig {
        self.repo.get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::{InfraConfig, SigningKeyConfig};
    use std::path::PathBuf;

    fn example() -> InfraConfig {
        InfraConfig::load(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/Infra.toml.example"),
        )
        .unwrap()
    }

    #[test]
    fn reference_example_loads() {
        let infra = example();
        let repo = infra.repo("default");
        assert_eq!(
            repo.signing_keys,
            [SigningKeyConfig::File {
                path: "/home/user/key.pem".into()
            }]
        );
        assert_eq!(
            repo.metadata_base_url.unwrap().as_str(),
            "https://example.com/"
        );
        let aws = infra.aws.clone().unwrap();
        let regions: Vec<&str> = aws.regions.iter().map(|r| r.as_str()).collect();
        assert_eq!(regions, ["us-west-2", "us-east-1", "us-east-2"]);
        assert_eq!(
            aws.region.values().next().unwrap().role.as_deref(),
            Some("arn:aws:iam::012345678901:role/assume-regional")
        );
        assert_eq!(
            infra.vmware.as_ref().unwrap().datacenter["north"]
                .datastore
                .as_deref(),
            Some("WorkloadDatastore")
        );
        assert!(infra.repo("missing").signing_keys.is_empty());
    }

    #[test]
    fn several_signing_keys_and_errors() {
        let text = r#"
            [repo.two]
            signing_keys = [{ file = { path = "a.pem" } }, { ssm = { parameter = "/keys/b" } }]
        "#;
        let infra = InfraConfig::from_toml(text, "inline").unwrap();
        assert_eq!(infra.repo("two").signing_keys.len(), 2);
        assert_eq!(
            infra.repo("two").signing_keys[1].to_string(),
            "aws-ssm:///keys/b"
        );

        for bad in [
            "[repo.x]\nunknown = 1\n",
            "[aws]\nregions = [\"US West\"]\n",
            "[repo.x]\nsigning_keys = { vault = { path = \"x\" } }\n",
            "[repo.x]\nmetadata_base_url = \"not a url\"\n",
        ] {
            let error = InfraConfig::from_toml(bad, "inline").unwrap_err();
            assert!(
                snafu::Report::from_error(error)
                    .to_string()
                    .contains("inline"),
                "{bad}"
            );
        }
    }
}
