//! Identifiers (GUIDs, filesystem UUIDs, ext4 hash seeds, the verity salt), all derived from one
//! 32-byte build seed. With `--source-date-epoch` the seed is a hash of the build's inputs, so
//! two builds of the same input are byte-identical (`image-layout.md` §6); without it the seed
//! is random, like upstream.
use crate::error::{self, Result};
use aws_lc_rs::digest::{Context, SHA256};
use gpt_contract::Guid;

/// The seed every identifier of one build is derived from.
#[derive(Clone, PartialEq, Eq)]
pub struct Seed([u8; 32]);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

impl Seed {
    /// A seed derived from `inputs` (hashed with length prefixes, so fields cannot run into
    /// each other).
    pub fn from_inputs(inputs: &[&str]) -> Seed {
        let mut context = Context::new(&SHA256);
        context.update(b"image-builder seed v1");
        for input in inputs {
            context.update(&(input.len() as u64).to_le_bytes());
            context.update(input.as_bytes());
        }
        let mut seed = [0; 32];
        seed.copy_from_slice(context.finish().as_ref());
        Seed(seed)
    }

    /// A random seed from the system's generator.
    pub fn random() -> Result<Seed> {
        let mut seed = [0; 32];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| error::RandomSnafu.build())?;
        Ok(Seed(seed))
    }

    /// 32 bytes derived for `label`.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut context = Context::new(&SHA256);
        context.update(&self.0);
        context.update(label.as_bytes());
        let mut out = [0; 32];
        out.copy_from_slice(context.finish().as_ref());
        out
    }

    /// A version-4-shaped UUID (RFC 4122 byte order) derived for `label`.
    pub fn uuid(&self, label: &str) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&self.derive(label)[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        bytes
    }

    /// A GPT GUID derived for `label` (on-disk byte order).
    pub fn guid(&self, label: &str) -> Guid {
        let text = uuid_text(&self.uuid(label));
        // Invariant: `uuid_text` always yields the canonical 36-character form.
        Guid::parse(&text).unwrap_or(Guid::NIL)
    }
}

/// The canonical text form of a UUID in RFC 4122 (big-endian) byte order.
pub fn uuid_text(bytes: &[u8; 16]) -> String {
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::{Seed, uuid_text};

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = Seed::from_inputs(&["bottlerocket", "aws-k8s", "1.0.0"]);
        let b = Seed::from_inputs(&["bottlerocket", "aws-k8s", "1.0.0"]);
        let c = Seed::from_inputs(&["bottlerocket", "aws-k8s1.0.0", ""]);
        assert_eq!(a.derive("x"), b.derive("x"));
        assert_ne!(a.derive("x"), c.derive("x"));
        assert_ne!(a.derive("x"), a.derive("y"));
        let text = uuid_text(&a.uuid("root"));
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert_eq!(a.guid("root").to_string(), text);
        assert_ne!(
            Seed::random().unwrap().derive("x"),
            Seed::random().unwrap().derive("x")
        );
    }
}
