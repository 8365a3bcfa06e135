//! Signing keys: where they live ([`KeySource`]), how their bytes are parsed, and how new ones
//! are generated.
//!
//! A key source is written on the command line as
//!
//! * a local path (optionally prefixed with `file://`): a private key in PEM or DER, PKCS#8 or
//!   PKCS#1 (RSA), for RSA, Ed25519 and ECDSA P-256 alike;
//! * `aws-ssm://[PROFILE]/parameter/name[?kms-key-id=ID][&region=R]`: an SSM SecureString
//!   holding a key in one of the local-file formats (PEM, since SSM values are text);
//! * `aws-kms://[PROFILE]/KEY-ID-OR-ALIAS[?region=R]`: an asymmetric RSA key in AWS KMS
//!   (RSASSA-PSS-SHA256; signing only, it cannot be written).
//!
//! AWS clients come from the workspace's one factory, [`aws_context::AwsContext`]: a caller
//! that has one (pubsys, with Infra.toml's profile and role chain) hands it in with
//! [`KeySource::with_aws`]; otherwise one is built for the URL's profile, in its `region` or
//! the SDK's default region. The standard endpoint override (`AWS_ENDPOINT_URL`) applies.
//!
//! [`KeySource`] implements tough's [`tough::key_source::KeySource`], so a list of them can be
//! handed to tough's editors as `Vec<Box<dyn tough::key_source::KeySource>>` (see
//! [`KeySource::boxed`] and [`boxed_sources`]).

pub mod aws;
use crate::error::{self, Result};
use crate::fsutil;
pub use aws::AwsHandle;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use snafu::{OptionExt, ResultExt, ensure};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tough::async_trait;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::sign::{Sign, parse_keypair};

/// Boxed error type used by tough's key-source trait.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a private key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// A local file in PEM or DER (PKCS#8, or PKCS#1 for RSA).
    File {
        /// Path of the key file.
        path: PathBuf,
    },
    /// An AWS SSM parameter (SecureString) holding a PEM private key.
    Ssm {
        /// AWS profile name, if any (the URL's host part).
        profile: Option<String>,
        /// Parameter name, starting with `/`.
        parameter: String,
        /// KMS key used to encrypt the SecureString when writing (`?kms-key-id=`).
        kms_key_id: Option<String>,
        /// The parameter's region (`?region=`); else the factory's.
        region: Option<String>,
        /// Where the client comes from.
        aws: AwsHandle,
    },
    /// An asymmetric RSA key in AWS KMS (RSASSA-PSS-SHA256).
    Kms {
        /// AWS profile name, if any (the URL's host part).
        profile: Option<String>,
        /// Key ID, ARN or `alias/NAME`.
        key_id: String,
        /// The key's region (`?region=`); else the factory's.
        region: Option<String>,
        /// Where the client comes from.
        aws: AwsHandle,
    },
}

impl FromStr for KeySource {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("file://") {
            ensure!(
                !rest.is_empty(),
                error::KeySourceSyntaxSnafu {
                    source_text: s,
                    reason: "empty path"
                }
            );
            return Ok(KeySource::File {
                path: PathBuf::from(rest),
            });
        }
        if s.starts_with("aws-ssm://") || s.starts_with("aws-kms://") {
            let url = url::Url::parse(s)
                .ok()
                .context(error::KeySourceSyntaxSnafu {
                    source_text: s,
                    reason: "not a valid URL",
                })?;
            let profile = url.host_str().filter(|h| !h.is_empty()).map(str::to_owned);
            let path = url.path();
            ensure!(
                path.len() > 1,
                error::KeySourceSyntaxSnafu {
                    source_text: s,
                    reason: "missing parameter name or key ID"
                }
            );
            let query = |key: &str| {
                url.query_pairs()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.into_owned())
            };
            let region = query("region");
            if url.scheme() == "aws-ssm" {
                return Ok(KeySource::Ssm {
                    profile,
                    parameter: path.to_owned(),
                    kms_key_id: query("kms-key-id"),
                    region,
                    aws: AwsHandle::default(),
                });
            }
            // KMS key IDs have no leading slash; aliases keep their inner slash (alias/NAME).
            return Ok(KeySource::Kms {
                profile,
                key_id: path[1..].to_owned(),
                region,
                aws: AwsHandle::default(),
            });
        }
        ensure!(
            !s.is_empty(),
            error::KeySourceSyntaxSnafu {
                source_text: s,
                reason: "empty path"
            }
        );
        ensure!(
            !s.contains("://"),
            error::KeySourceSyntaxSnafu {
                source_text: s,
                reason: "unknown scheme (use a path, file://, aws-ssm:// or aws-kms://)"
            }
        );
        Ok(KeySource::File {
            path: PathBuf::from(s),
        })
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File { path } => write!(f, "{}", path.display()),
            KeySource::Ssm {
                profile,
                parameter,
                kms_key_id,
                region,
                ..
            } => {
                write!(
                    f,
                    "aws-ssm://{}{parameter}",
                    profile.as_deref().unwrap_or("")
                )?;
                let mut separator = '?';
                for (key, value) in [("kms-key-id", kms_key_id), ("region", region)] {
                    if let Some(value) = value {
                        write!(f, "{separator}{key}={value}")?;
                        separator = '&';
                    }
                }
                Ok(())
            }
            KeySource::Kms {
                profile,
                key_id,
                region,
                ..
            } => {
                write!(f, "aws-kms://{}/{key_id}", profile.as_deref().unwrap_or(""))?;
                if let Some(region) = region {
                    write!(f, "?region={region}")?;
                }
                Ok(())
            }
        }
    }
}

impl KeySource {
    /// This source as a boxed tough key source.
    pub fn boxed(&self) -> Box<dyn tough::key_source::KeySource> {
        Box::new(self.clone())
    }

    /// Load the signing key.
    pub async fn load(&self) -> Result<Box<dyn Sign>> {
        tough::key_source::KeySource::as_sign(self)
            .await
            .map_err(|source| error::Error::LoadKey {
                key: self.to_string(),
                source,
            })
    }

    /// The public TUF key and its key ID.
    pub async fn public_key(&self) -> Result<(Decoded<Hex>, Key)> {
        let key = self.load().await?.tuf_key();
        let keyid = key.key_id().context(error::KeyIdSnafu)?;
        Ok((keyid, key))
    }

    /// Store a newly generated private key (PEM text, or DER bytes for local Ed25519/ECDSA
    /// files) at this source. Local files are created with mode 0600 and must not exist.
    async fn store(&self, generated: &GeneratedKey) -> Result<()> {
        match self {
            KeySource::File { path } => {
                let bytes = generated.file_bytes();
                fsutil::write_new_private(path, &bytes)
            }
            KeySource::Ssm {
                profile,
                parameter,
                kms_key_id,
                region,
                aws,
            } => {
                let target = aws::SsmParameter {
                    aws,
                    profile: profile.as_deref(),
                    parameter,
                    region: region.as_deref(),
                };
                aws::store_ssm(
                    &target,
                    kms_key_id.as_deref(),
                    &generated.keyid,
                    &generated.pem(),
                )
                .await
            }
            KeySource::Kms { .. } => error::KmsNotWritableSnafu {
                key: self.to_string(),
            }
            .fail(),
        }
    }
}

/// Box every source for tough's editors.
pub fn boxed_sources(sources: &[KeySource]) -> Vec<Box<dyn tough::key_source::KeySource>> {
    sources.iter().map(KeySource::boxed).collect()
}

#[async_trait]
impl tough::key_source::KeySource for KeySource {
    async fn as_sign(&self) -> std::result::Result<Box<dyn Sign>, BoxError> {
        match self {
            KeySource::File { path } => {
                let data = tokio::fs::read(path).await?;
                Ok(parse_private_key(&data)?)
            }
            KeySource::Ssm {
                profile,
                parameter,
                region,
                aws,
                ..
            } => {
                let source = aws::SsmParameter {
                    aws,
                    profile: profile.as_deref(),
                    parameter,
                    region: region.as_deref(),
                };
                aws::load_ssm(&source).await
            }
            KeySource::Kms {
                profile,
                key_id,
                region,
                aws,
            } => aws::load_kms(aws, profile.as_deref(), key_id, region.as_deref()).await,
        }
    }

    async fn write(&self, value: &str, key_id_hex: &str) -> std::result::Result<(), BoxError> {
        // tough calls this only from key generation flows; ours go through `store`.
        let _ = (value, key_id_hex);
        Err(format!("writing keys through tough is not supported for {self}").into())
    }
}

/// Parse a private key: PEM or DER; PKCS#8 (RSA, Ed25519, ECDSA P-256) or PKCS#1 (RSA).
///
/// tough's own parser accepts Ed25519 and ECDSA only as raw DER and RSA only as PEM; this
/// function normalises the encoding first, so every combination works.
pub fn parse_private_key(data: &[u8]) -> Result<Box<dyn Sign>> {
    let der_and_tag = match pem::parse(data) {
        Ok(block) => (block.contents().to_vec(), Some(block.tag().to_owned())),
        Err(_) => (data.to_vec(), None),
    };
    let (der, tag) = der_and_tag;
    if let Some(tag) = &tag {
        ensure!(
            tag == "PRIVATE KEY" || tag == "RSA PRIVATE KEY",
            error::ParseKeySnafu {
                reason: format!("PEM block '{tag}' is not an unencrypted private key")
            }
        );
    }
    // Ed25519 / ECDSA PKCS#8 DER.
    if tag.as_deref() != Some("RSA PRIVATE KEY") {
        if let Ok(ed) = Ed25519KeyPair::from_pkcs8(&der) {
            return Ok(Box::new(tough::sign::SignKeyPair::ED25519(ed)));
        }
        if let Ok(ec) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der) {
            return Ok(Box::new(tough::sign::SignKeyPair::ECDSA(ec)));
        }
    }
    // RSA: tough reads PEM only.
    let tags: &[&str] = match tag.as_deref() {
        Some("RSA PRIVATE KEY") => &["RSA PRIVATE KEY"],
        _ => &["PRIVATE KEY", "RSA PRIVATE KEY"],
    };
    for tag in tags {
        let pem_text = pem::encode(&pem::Pem::new(*tag, der.clone()));
        if let Ok(key) = parse_keypair(pem_text.as_bytes()) {
            return Ok(Box::new(key));
        }
    }
    error::ParseKeySnafu {
        reason: "not an RSA, Ed25519 or ECDSA P-256 private key in PEM or DER (PKCS#8 or PKCS#1)",
    }
    .fail()
}

/// Parse a public key file: a TUF key object in JSON (as printed by `root gen-key --json`).
pub fn parse_public_key(data: &[u8]) -> Result<(Decoded<Hex>, Key)> {
    let key: Key = serde_json::from_slice(data).context(error::ParsePublicKeySnafu)?;
    let keyid = key.key_id().context(error::KeyIdSnafu)?;
    Ok((keyid, key))
}

/// Read a public key: a TUF key JSON file, or derive it from a private key source.
pub async fn public_key_from(arg: &str) -> Result<(Decoded<Hex>, Key)> {
    let path = Path::new(arg);
    if path.is_file() {
        let data = std::fs::read(path).context(error::ReadFileSnafu { path })?;
        if let Ok(found) = parse_public_key(&data) {
            return Ok(found);
        }
    }
    KeySource::from_str(arg)?.public_key().await
}

/// Kinds of key `gen-key` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// Ed25519 (scheme `ed25519`).
    Ed25519,
    /// ECDSA on NIST P-256 with SHA-256 (scheme `ecdsa-sha2-nistp256`).
    EcdsaP256,
    /// RSA 2048 bits (scheme `rsassa-pss-sha256`).
    Rsa2048,
    /// RSA 3072 bits.
    Rsa3072,
    /// RSA 4096 bits.
    Rsa4096,
}

/// A freshly generated key: PKCS#8 DER plus its TUF public form. Its `Debug` leaves the
/// private key out.
pub struct GeneratedKey {
    /// Key type.
    pub key_type: KeyType,
    /// PKCS#8 DER of the private key (kept out of logs: Debug is derived only for the type).
    pkcs8: Vec<u8>,
    /// Key ID.
    pub keyid: Decoded<Hex>,
    /// Public key as it appears in metadata.
    pub public: Key,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("key_type", &self.key_type)
            .field("pkcs8", &"<redacted>")
            .field("keyid", &self.keyid)
            .field("public", &self.public)
            .finish()
    }
}

impl GeneratedKey {
    /// PEM text (`PRIVATE KEY`, PKCS#8).
    fn pem(&self) -> String {
        pem::encode(&pem::Pem::new("PRIVATE KEY", self.pkcs8.clone()))
    }

    /// Bytes for a local file: PEM for RSA (what tough reads), DER for Ed25519 and ECDSA (what
    /// tough and the reference tuftool read). Our own loader reads either.
    fn file_bytes(&self) -> Vec<u8> {
        match self.key_type {
            KeyType::Ed25519 | KeyType::EcdsaP256 => self.pkcs8.clone(),
            _ => self.pem().into_bytes(),
        }
    }
}

/// Generate a private key of `key_type`.
pub fn generate_key(key_type: KeyType) -> Result<GeneratedKey> {
    let rng = SystemRandom::new();
    let pkcs8: Vec<u8> = match key_type {
        KeyType::Ed25519 => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .ok()
            .context(error::GenerateKeySnafu)?
            .as_ref()
            .to_vec(),
        KeyType::EcdsaP256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .ok()
            .context(error::GenerateKeySnafu)?
            .as_ref()
            .to_vec(),
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
            let size = match key_type {
                KeyType::Rsa2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
                KeyType::Rsa3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
                _ => aws_lc_rs::rsa::KeySize::Rsa4096,
            };
            let pair = aws_lc_rs::rsa::KeyPair::generate(size)
                .ok()
                .context(error::GenerateKeySnafu)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                pair.as_der().ok().context(error::GenerateKeySnafu)?;
            der.as_ref().to_vec()
        }
    };
    let public = parse_private_key(&pkcs8)?.tuf_key();
    let keyid = public.key_id().context(error::KeyIdSnafu)?;
    Ok(GeneratedKey {
        key_type,
        pkcs8,
        keyid,
        public,
    })
}

/// Generate a key and store it at `dest` (a local file is created with mode 0600 and must not
/// exist; an SSM parameter must not exist either).
pub async fn gen_key(key_type: KeyType, dest: &KeySource) -> Result<GeneratedKey> {
    if let KeySource::Kms { .. } = dest {
        return error::KmsNotWritableSnafu {
            key: dest.to_string(),
        }
        .fail();
    }
    let generated = tokio::task::spawn_blocking(move || generate_key(key_type))
        .await
        .context(error::JoinSnafu)??;
    dest.store(&generated).await?;
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::{AwsHandle, KeySource, KeyType, generate_key, parse_private_key};

    #[test]
    fn debug_never_shows_the_private_key() {
        for key_type in [KeyType::Ed25519, KeyType::EcdsaP256] {
            let key = generate_key(key_type).unwrap();
            let text = format!("{key:?}");
            assert!(text.contains("<redacted>"), "{text}");
            assert!(!text.contains(&format!("{:?}", key.pkcs8)), "{text}");
            let pem = key.pem();
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            assert!(!text.contains(&body), "{text}");
        }
    }
    use std::path::PathBuf;
    use std::str::FromStr;

    #[test]
    fn parses_key_sources() {
        assert_eq!(
            KeySource::from_str("keys/root.pem").unwrap(),
            KeySource::File {
                path: PathBuf::from("keys/root.pem")
            }
        );
        assert_eq!(
            KeySource::from_str("file:///abs/k.der").unwrap(),
            KeySource::File {
                path: PathBuf::from("/abs/k.der")
            }
        );
        assert_eq!(
            KeySource::from_str("aws-ssm://prof/a/b?kms-key-id=alias/x").unwrap(),
            KeySource::Ssm {
                profile: Some("prof".into()),
                parameter: "/a/b".into(),
                kms_key_id: Some("alias/x".into()),
                region: None,
                aws: AwsHandle::default(),
            }
        );
        assert_eq!(
            KeySource::from_str("aws-ssm:///a/b").unwrap(),
            KeySource::Ssm {
                profile: None,
                parameter: "/a/b".into(),
                kms_key_id: None,
                region: None,
                aws: AwsHandle::default(),
            }
        );
        assert_eq!(
            KeySource::from_str("aws-kms:///alias/root").unwrap(),
            KeySource::Kms {
                profile: None,
                key_id: "alias/root".into(),
                region: None,
                aws: AwsHandle::default(),
            }
        );
        let regional = KeySource::from_str("aws-kms://p/alias/r?region=eu-west-1").unwrap();
        assert_eq!(regional.to_string(), "aws-kms://p/alias/r?region=eu-west-1");
        let ssm = "aws-ssm:///k/x?kms-key-id=alias/k&region=us-east-2";
        assert_eq!(KeySource::from_str(ssm).unwrap().to_string(), ssm);
        assert!(KeySource::from_str("s3://bucket/key").is_err());
        assert!(KeySource::from_str("").is_err());
        assert!(KeySource::from_str("aws-ssm://prof").is_err());
    }

    #[test]
    fn generated_keys_parse_in_every_encoding() {
        for key_type in [KeyType::Ed25519, KeyType::EcdsaP256, KeyType::Rsa2048] {
            let key = generate_key(key_type).unwrap();
            let from_der = parse_private_key(&key.pkcs8).unwrap().tuf_key();
            let from_pem = parse_private_key(key.pem().as_bytes()).unwrap().tuf_key();
            assert_eq!(from_der, key.public);
            assert_eq!(from_pem, key.public);
            let from_file = parse_private_key(&key.file_bytes()).unwrap().tuf_key();
            assert_eq!(from_file, key.public);
        }
    }

    #[test]
    fn rejects_garbage_and_public_keys() {
        assert!(parse_private_key(b"hello").is_err());
        let public = pem::encode(&pem::Pem::new("PUBLIC KEY", vec![1, 2, 3]));
        assert!(parse_private_key(public.as_bytes()).is_err());
    }
}
