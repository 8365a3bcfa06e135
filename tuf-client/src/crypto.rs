//! Signature verification (ed25519, ecdsa-sha2-nistp256, rsassa-pss-sha256,
//! rsa-pkcs1v15-sha256) and hashes (sha256, sha512), on aws-lc-rs.
use crate::schema::{Key, Signature};
use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, VerificationAlgorithm};
use std::collections::{BTreeSet, HashMap};

/// The hash algorithms this client can check, by their TUF names.
pub const SUPPORTED_HASHES: &[&str] = &["sha256", "sha512"];

/// The digest algorithm for a TUF hash name, if supported.
pub(crate) fn digest_algorithm(name: &str) -> Option<&'static digest::Algorithm> {
    match name {
        "sha256" => Some(&digest::SHA256),
        "sha512" => Some(&digest::SHA512),
        _ => None,
    }
}

/// The public key bytes of `key`: the DER of a PEM block, or hex-decoded bytes.
fn public_key_bytes(key: &Key) -> Option<Vec<u8>> {
    let public = key.keyval.public.as_deref()?.trim();
    if public.starts_with("-----BEGIN") {
        pem::parse(public).ok().map(|p| p.into_contents())
    } else {
        hex::decode(public).ok()
    }
}

/// Whether `sig` (hex) is a valid signature of `message` by `key`. Unknown schemes, malformed
/// keys and malformed signatures are simply "not valid".
pub(crate) fn verify_signature(key: &Key, message: &[u8], sig: &str) -> bool {
    let algorithm: &dyn VerificationAlgorithm = match (key.keytype.as_str(), key.scheme.as_str()) {
        ("ed25519", "ed25519") => &signature::ED25519,
        ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
            &signature::ECDSA_P256_SHA256_ASN1
        }
        ("rsa", "rsassa-pss-sha256") => &signature::RSA_PSS_2048_8192_SHA256,
        ("rsa", "rsa-pkcs1v15-sha256") => &signature::RSA_PKCS1_2048_8192_SHA256,
        _ => return false,
    };
    let (Some(public), Ok(sig)) = (public_key_bytes(key), hex::decode(sig)) else {
        return false;
    };
    if sig.is_empty() {
        return false;
    }
    signature::UnparsedPublicKey::new(algorithm, public)
        .verify(message, &sig)
        .is_ok()
}

/// The outcome of a threshold check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Threshold {
    /// This many distinct authorised keys signed validly (compare with the threshold).
    Valid(u64),
    /// The same keyid appears in two signatures.
    DuplicateSignature(String),
}

/// Count the valid signatures over `message` from the distinct keyids in `authorised`
/// (duplicates in `authorised` count once; keyids without a key in `keys` and signatures
/// from other keys are ignored). Keyids are taken as the metadata gives them.
pub(crate) fn count_valid(
    message: &[u8],
    signatures: &[Signature],
    keys: &HashMap<String, Key>,
    authorised: &[String],
) -> Threshold {
    let mut by_keyid: HashMap<&str, &str> = HashMap::new();
    for s in signatures {
        if by_keyid.insert(s.keyid.as_str(), s.sig.as_str()).is_some() {
            return Threshold::DuplicateSignature(s.keyid.clone());
        }
    }
    let distinct: BTreeSet<&str> = authorised.iter().map(String::as_str).collect();
    let mut valid = 0;
    for keyid in distinct {
        let (Some(sig), Some(key)) = (by_keyid.get(keyid), keys.get(keyid)) else {
            continue;
        };
        if verify_signature(key, message, sig) {
            valid += 1;
        }
    }
    Threshold::Valid(valid)
}

/// An incremental hasher for every supported algorithm of a hash map.
pub(crate) struct Hashers {
    contexts: Vec<(String, Vec<u8>, digest::Context)>,
}

impl std::fmt::Debug for Hashers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.contexts.iter().map(|(n, _, _)| n.as_str()).collect();
        f.debug_struct("Hashers")
            .field("algorithms", &names)
            .finish()
    }
}

/// Why a set of hashes cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashSetError {
    /// No algorithm is supported.
    NoneSupported,
    /// A supported algorithm's value is not hex.
    BadHex(String),
}

impl Hashers {
    /// Hashers for the supported algorithms in `hashes` (name → hex); the others are ignored.
    pub(crate) fn new<'a>(
        hashes: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self, HashSetError> {
        let mut contexts = Vec::new();
        for (name, value) in hashes {
            let Some(algorithm) = digest_algorithm(name) else {
                continue;
            };
            let expected = hex::decode(value).map_err(|_| HashSetError::BadHex(name.clone()))?;
            contexts.push((name.clone(), expected, digest::Context::new(algorithm)));
        }
        if contexts.is_empty() {
            return Err(HashSetError::NoneSupported);
        }
        Ok(Self { contexts })
    }

    /// Feed bytes.
    pub(crate) fn update(&mut self, data: &[u8]) {
        for (_, _, ctx) in &mut self.contexts {
            ctx.update(data);
        }
    }

    /// The first algorithm whose digest does not match, if any.
    pub(crate) fn mismatch(self) -> Option<String> {
        self.contexts
            .into_iter()
            .find(|(_, expected, ctx)| ctx.clone().finish().as_ref() != expected.as_slice())
            .map(|(name, _, _)| name)
    }
}

/// SHA-256 of `data`, hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::{HashSetError, Hashers, Threshold, count_valid, sha256_hex, verify_signature};
    use crate::schema::{Key, KeyVal, Signature};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
    };
    use std::collections::{BTreeMap, HashMap};

    fn ed_key() -> (Ed25519KeyPair, Key) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let key = Key {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: Some(hex::encode(pair.public_key().as_ref())),
            },
        };
        (pair, key)
    }

    fn sig(keyid: &str, pair: &Ed25519KeyPair, msg: &[u8]) -> Signature {
        Signature {
            keyid: keyid.into(),
            sig: hex::encode(pair.sign(msg).as_ref()),
        }
    }

    #[test]
    fn ed25519_and_ecdsa_hex_and_pem_keys_verify() {
        let (pair, key) = ed_key();
        let s = sig("a", &pair, b"msg");
        assert!(verify_signature(&key, b"msg", &s.sig));
        assert!(!verify_signature(&key, b"other", &s.sig));
        assert!(!verify_signature(&key, b"msg", ""));
        assert!(!verify_signature(&key, b"msg", "zz"));

        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let signature = hex::encode(ec.sign(&rng, b"msg").unwrap().as_ref());
        let point = ec.public_key().as_ref().to_vec();
        let hex_key = Key {
            keytype: "ecdsa-sha2-nistp256".into(),
            scheme: "ecdsa-sha2-nistp256".into(),
            keyval: KeyVal {
                public: Some(hex::encode(&point)),
            },
        };
        assert!(verify_signature(&hex_key, b"msg", &signature));
        // The same key as a PEM SubjectPublicKeyInfo.
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(&point);
        let pem_key = Key {
            keytype: "ecdsa".into(),
            scheme: "ecdsa-sha2-nistp256".into(),
            keyval: KeyVal {
                public: Some(pem::encode(&pem::Pem::new("PUBLIC KEY", spki))),
            },
        };
        assert!(verify_signature(&pem_key, b"msg", &signature));
        assert!(!verify_signature(&pem_key, b"msg2", &signature));
        let unknown = Key {
            scheme: "ecdsa-sha2-nistp384".into(),
            ..pem_key
        };
        assert!(!verify_signature(&unknown, b"msg", &signature));
    }

    #[test]
    fn threshold_counts_distinct_authorised_keys_once() {
        let (p1, k1) = ed_key();
        let (p2, k2) = ed_key();
        let (p3, k3) = ed_key();
        let keys = HashMap::from([
            ("1".to_owned(), k1),
            ("2".to_owned(), k2),
            ("3".to_owned(), k3),
        ]);
        let msg = b"signed";
        let sigs = vec![sig("1", &p1, msg), sig("2", &p2, msg), sig("3", &p3, msg)];
        let auth = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            count_valid(msg, &sigs, &keys, &auth(&["1", "2"])),
            Threshold::Valid(2)
        );
        // A keyid listed twice counts once.
        assert_eq!(
            count_valid(msg, &sigs, &keys, &auth(&["1", "1", "1"])),
            Threshold::Valid(1)
        );
        // Keys without a key entry, and bad signatures, count zero.
        assert_eq!(
            count_valid(msg, &sigs, &keys, &auth(&["9"])),
            Threshold::Valid(0)
        );
        let bad = vec![sig("1", &p2, msg), sig("2", &p2, msg)];
        assert_eq!(
            count_valid(msg, &bad, &keys, &auth(&["1", "2"])),
            Threshold::Valid(1)
        );
        // Duplicate signature keyids are refused.
        let dup = vec![sig("1", &p1, msg), sig("1", &p1, msg)];
        assert_eq!(
            count_valid(msg, &dup, &keys, &auth(&["1"])),
            Threshold::DuplicateSignature("1".into())
        );
    }

    #[test]
    fn hashes_all_supported_algorithms_are_checked() {
        let data = b"target file contents";
        let sha256 = sha256_hex(data);
        let sha512 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, data));
        let both = BTreeMap::from([
            ("sha256".to_owned(), sha256.clone()),
            ("sha512".to_owned(), sha512.clone()),
        ]);
        let mut h = Hashers::new(&both).unwrap();
        h.update(&data[..5]);
        h.update(&data[5..]);
        assert_eq!(h.mismatch(), None);
        let wrong = BTreeMap::from([
            ("sha256".to_owned(), sha256),
            ("sha512".to_owned(), "00".repeat(64)),
        ]);
        let mut h = Hashers::new(&wrong).unwrap();
        h.update(data);
        assert_eq!(h.mismatch().as_deref(), Some("sha512"));
        let only512 = BTreeMap::from([
            ("sha512".to_owned(), sha512.clone()),
            ("blake9".to_owned(), "00".into()),
        ]);
        let mut h = Hashers::new(&only512).unwrap();
        h.update(data);
        assert_eq!(h.mismatch(), None);
        let unknown = BTreeMap::from([("unknown-hash".to_owned(), sha512)]);
        assert_eq!(
            Hashers::new(&unknown).err(),
            Some(HashSetError::NoneSupported)
        );
        let bad = BTreeMap::from([("sha256".to_owned(), "xyz".to_owned())]);
        assert_eq!(
            Hashers::new(&bad).err(),
            Some(HashSetError::BadHex("sha256".into()))
        );
    }
}
