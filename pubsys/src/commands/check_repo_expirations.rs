//! `pubsys check-repo-expirations`: list when each role of a published repository expires and
//! flag those expiring before a limit (exit 3). The repository is loaded with expiry
//! enforcement off, so an already-expired one can still be inspected.

use crate::Context;
use crate::error::{self, Result};
use crate::repo::{self as shared, LocationArgs};
use clap::Args;
use jiff::Timestamp;
use serde::Serialize;
use snafu::ResultExt;
use std::fmt;
use update_metadata::Offset;

/// Arguments of `pubsys check-repo-expirations`.
#[derive(Debug, Args)]
pub struct CheckExpirationsArgs {
    #[command(flatten)]
    location: LocationArgs,

    /// Flag roles that expire before this: an offset from now ('3 days') or RFC 3339
    #[arg(long, value_name = "TIME", default_value = "3 days")]
    expiration_limit: Offset,
}

/// One role's expiry.
#[derive(Debug, Serialize)]
pub struct RoleExpiry {
    /// Role name.
    pub role: String,
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: Timestamp,
    /// `ok`, `expiring` or `expired`.
    pub status: &'static str,
}

/// What `check-repo-expirations` found.
#[derive(Debug, Serialize)]
pub struct ExpirationsReport {
    /// Metadata URL.
    pub metadata_url: String,
    /// The limit used.
    pub limit: Timestamp,
    /// Every role.
    pub roles: Vec<RoleExpiry>,
}

impl ExpirationsReport {
    /// Whether any role expires before the limit.
    pub fn has_problems(&self) -> bool {
        self.roles.iter().any(|r| r.status != "ok")
    }
}

impl fmt::Display for ExpirationsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} (limit {})", self.metadata_url, self.limit)?;
        for r in &self.roles {
            writeln!(
                f,
                "  {:<10} v{:<12} expires {}  {}",
                r.role, r.version, r.expires, r.status
            )?;
        }
        Ok(())
    }
}

/// Run `pubsys check-repo-expirations`.
pub async fn run(args: &CheckExpirationsArgs, context: &Context) -> Result<ExpirationsReport> {
    let location = args.location.location(context, true).await?;
    let limit = args
        .expiration_limit
        .resolve(context.now)
        .context(error::MetadataSnafu)?;
    let repo = shared::load(&location).await?;
    let mut roles = vec![
        (
            "root".to_owned(),
            repo.root().signed.version.get(),
            repo.root().signed.expires,
        ),
        (
            "targets".to_owned(),
            repo.targets().signed.version.get(),
            repo.targets().signed.expires,
        ),
        (
            "snapshot".to_owned(),
            repo.snapshot().signed.version.get(),
            repo.snapshot().signed.expires,
        ),
        (
            "timestamp".to_owned(),
            repo.timestamp().signed.version.get(),
            repo.timestamp().signed.expires,
        ),
    ];
    for delegated in repo.targets().signed.signed_delegated_targets() {
        roles.push((
            delegated.signed.name.clone(),
            delegated.signed.targets.version.get(),
            delegated.signed.targets.expires,
        ));
    }
    let roles = roles
        .into_iter()
        .map(|(role, version, expires)| {
            let status = if expires <= context.now {
                tracing::error!(%role, %expires, "expired");
                "expired"
            } else if expires <= limit {
                tracing::warn!(%role, %expires, "expiring before the limit");
                "expiring"
            } else {
                "ok"
            };
            RoleExpiry {
                role,
                version,
                expires,
                status,
            }
        })
        .collect();
    Ok(ExpirationsReport {
        metadata_url: location.metadata_url.to_string(),
        limit,
        roles,
    })
}
