//! Signing with an asymmetric RSA key kept in AWS KMS (RSASSA-PSS-SHA256): the public half is
//! read with `GetPublicKey`, each signature is one `Sign` call: over the message itself
//! (`MessageType=RAW`, KMS hashes it) when it is at most 4096 bytes, the most KMS takes raw,
//! else over its SHA-256 digest (`MessageType=DIGEST`); real KMS gives the same signature
//! either way. (moto's KMS treats a DIGEST message as raw bytes and hashes it again, so the
//! moto test signs small metadata, through RAW.) Our own signer instead of tough-kms: it takes its client from the workspace's
//! AWS factory and reads the modulus size from `KeySpec` or, where a KMS-compatible service
//! returns only that field, the older `CustomerMasterKeySpec`.
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SecureRandom;
use std::collections::HashMap;
use tough::async_trait;
use tough::schema::decoded::{Decoded, RsaPem};
use tough::schema::key::{Key, RsaKey, RsaScheme};
use tough::sign::Sign;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

const ALGORITHM: aws_sdk_kms::types::SigningAlgorithmSpec =
    aws_sdk_kms::types::SigningAlgorithmSpec::RsassaPssSha256;

/// The largest message KMS signs as it is (`MessageType=RAW`).
const MAX_RAW: usize = 4096;

/// One KMS key, ready to sign.
#[derive(Debug)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    public: Decoded<RsaPem>,
    modulus_bytes: usize,
}

/// The modulus size in bytes of a key spec such as `RSA_3072`.
fn modulus_bytes(spec: &str) -> Option<usize> {
    let bits: usize = spec.strip_prefix("RSA_")?.parse().ok()?;
    (bits.is_multiple_of(8) && bits >= 2048).then_some(bits / 8)
}

impl KmsSigner {
    /// Read `key_id`'s public key and check it can sign with RSASSA-PSS-SHA256.
    pub async fn load(client: aws_sdk_kms::Client, key_id: &str) -> Result<KmsSigner, BoxError> {
        let response = client
            .get_public_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| aws_sdk_kms::error::DisplayErrorContext(e).to_string())?;
        let spec = response
            .key_spec()
            .map(|s| s.as_str().to_owned())
            .or_else(|| {
                #[allow(deprecated)]
                response
                    .customer_master_key_spec()
                    .map(|s| s.as_str().to_owned())
            })
            .ok_or_else(|| format!("KMS key {key_id}: GetPublicKey named no key spec"))?;
        let modulus_bytes = modulus_bytes(&spec).ok_or_else(|| {
            format!("KMS key {key_id} is {spec}, not an RSA key of 2048 bits or more")
        })?;
        if !response.signing_algorithms().contains(&ALGORITHM) {
            return Err(format!("KMS key {key_id} cannot sign with RSASSA_PSS_SHA_256").into());
        }
        let der = response
            .public_key()
            .ok_or_else(|| format!("KMS key {key_id}: GetPublicKey returned no key"))?;
        let pem = pem::encode_config(
            &pem::Pem::new("PUBLIC KEY", der.as_ref().to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        let public: Decoded<RsaPem> = pem
            .parse()
            .map_err(|e| format!("KMS key {key_id}: the public key does not parse: {e}"))?;
        Ok(KmsSigner {
            client,
            key_id: key_id.to_owned(),
            public,
            modulus_bytes,
        })
    }
}

#[async_trait]
impl Sign for KmsSigner {
    fn tuf_key(&self) -> Key {
        Key::Rsa {
            keyval: RsaKey {
                public: self.public.clone(),
                _extra: HashMap::new(),
            },
            scheme: RsaScheme::RsassaPssSha256,
            _extra: HashMap::new(),
        }
    }

    async fn sign(
        &self,
        msg: &[u8],
        _rng: &(dyn SecureRandom + Sync),
    ) -> Result<Vec<u8>, BoxError> {
        let (message, kind) = if msg.len() <= MAX_RAW {
            (msg.to_vec(), aws_sdk_kms::types::MessageType::Raw)
        } else {
            (
                digest(&SHA256, msg).as_ref().to_vec(),
                aws_sdk_kms::types::MessageType::Digest,
            )
        };
        let response = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(aws_sdk_kms::primitives::Blob::new(message))
            .message_type(kind)
            .signing_algorithm(ALGORITHM)
            .send()
            .await
            .map_err(|e| aws_sdk_kms::error::DisplayErrorContext(e).to_string())?;
        let signature = response
            .signature()
            .ok_or_else(|| format!("KMS key {}: Sign returned no signature", self.key_id))?
            .as_ref();
        // A signature is an integer below the modulus; KMS may drop leading zero bytes, which
        // strict verifiers (ring, aws-lc) refuse: left-pad to the modulus size.
        if signature.len() > self.modulus_bytes {
            return Err(format!(
                "KMS key {}: a {}-byte signature for a {}-byte modulus",
                self.key_id,
                signature.len(),
                self.modulus_bytes
            )
            .into());
        }
        let mut padded = vec![0; self.modulus_bytes - signature.len()];
        padded.extend_from_slice(signature);
        Ok(padded)
    }
}

#[cfg(test)]
mod tests {
    use super::modulus_bytes;

    #[test]
    fn key_specs() {
        assert_eq!(modulus_bytes("RSA_2048"), Some(256));
        assert_eq!(modulus_bytes("RSA_4096"), Some(512));
        assert_eq!(modulus_bytes("ECC_NIST_P256"), None);
        assert_eq!(modulus_bytes("RSA_1024"), None);
        assert_eq!(modulus_bytes("RSA_x"), None);
    }
}
