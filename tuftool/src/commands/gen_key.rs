//! `tuftool gen-key`: a key with no root (for delegated roles or later `root add-key`).
use crate::Outcome;
use crate::error::Result;
use crate::keys::{KeySource, KeyType};
use clap::Args;

/// `gen-key`.
#[derive(Debug, Args)]
pub struct GenKeyArgs {
    /// Where to store the private key: a new file (mode 0600), or aws-ssm://PROFILE/NAME (PROFILE may be empty)
    pub key: KeySource,
    /// Key type
    #[arg(long = "type", value_enum, default_value_t = KeyType::Ed25519)]
    pub key_type: KeyType,
}

/// Run `gen-key`.
pub async fn run(a: &GenKeyArgs) -> Result<Outcome> {
    Ok(Outcome::GenKey(
        crate::root::gen_key(None, a.key_type, &a.key, &[]).await?,
    ))
}
