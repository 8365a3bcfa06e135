//! The repository expiration policy: how long after the release start each role's metadata
//! stays valid (`snapshot_expiration`, `targets_expiration`, `timestamp_expiration`).
//! Offsets use the toolchain's grammar (minutes to weeks, or an absolute RFC 3339 time).

use crate::error::{self, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use snafu::ResultExt;
use std::path::Path;
use update_metadata::Offset;

/// The policy file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoExpirationPolicy {
    /// Lifetime of snapshot.json.
    pub snapshot_expiration: Offset,
    /// Lifetime of targets.json (and delegated targets).
    pub targets_expiration: Offset,
    /// Lifetime of timestamp.json.
    pub timestamp_expiration: Offset,
}

/// Expiry times for one signing run, to the whole second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Expirations {
    /// snapshot.json expiry.
    pub snapshot: Timestamp,
    /// targets.json expiry.
    pub targets: Timestamp,
    /// timestamp.json expiry.
    pub timestamp: Timestamp,
}

impl Expirations {
    /// Sign every role with its expiry here, each at the version one above its current one.
    pub fn schedule(&self) -> tuftool::repo::Schedule {
        let at = |expires| tuftool::repo::RoleSchedule {
            version: None,
            expires: Some(expires),
        };
        tuftool::repo::Schedule {
            targets: at(self.targets),
            snapshot: at(self.snapshot),
            timestamp: at(self.timestamp),
        }
    }
}

impl RepoExpirationPolicy {
    /// Parse policy text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<RepoExpirationPolicy> {
        toml::from_str(text).context(error::ParseExpirationPolicySnafu { origin })
    }

    /// Read and parse a policy file.
    pub fn load(path: &Path) -> Result<RepoExpirationPolicy> {
        let text = std::fs::read_to_string(path).context(error::ReadConfigSnafu { path })?;
        RepoExpirationPolicy::from_toml(&text, &path.display().to_string())
    }

    /// The expiry times for a release starting at `start`, truncated to whole seconds.
    pub fn expirations(&self, start: Timestamp) -> Result<Expirations> {
        let at = |offset: &Offset| -> Result<Timestamp> {
            let time = offset.resolve(start).context(error::MetadataSnafu)?;
            Ok(Timestamp::from_second(time.as_second()).unwrap_or(time))
        };
        Ok(Expirations {
            snapshot: at(&self.snapshot_expiration)?,
            targets: at(&self.targets_expiration)?,
            timestamp: at(&self.timestamp_expiration)?,
        })
    }
}

impl Expirations {
    /// Refuse to sign metadata that would already be expired at `now`.
    pub fn check_future(&self, now: Timestamp) -> Result<()> {
        for (role, expires) in [
            ("targets", self.targets),
            ("snapshot", self.snapshot),
            ("timestamp", self.timestamp),
        ] {
            snafu::ensure!(expires > now, error::ExpiresInPastSnafu { role, expires });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RepoExpirationPolicy;
    use jiff::{SignedDuration, Timestamp};
    use std::path::PathBuf;

    #[test]
    fn default_policy_loads_and_resolves() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/repo-expiration-2w-2w-1w.toml");
        let policy = RepoExpirationPolicy::load(&path).unwrap();
        let start: Timestamp = "2026-01-01T00:00:00.75Z".parse().unwrap();
        let whole = Timestamp::from_second(start.as_second()).unwrap();
        let e = policy.expirations(start).unwrap();
        assert_eq!(e.snapshot, whole + SignedDuration::from_hours(14 * 24));
        assert_eq!(e.targets, whole + SignedDuration::from_hours(14 * 24));
        assert_eq!(e.timestamp, whole + SignedDuration::from_hours(7 * 24));
        assert!(e.check_future(start).is_ok());
        let error = e
            .check_future(whole + SignedDuration::from_hours(10 * 24))
            .unwrap_err();
        assert!(error.to_string().contains("timestamp"), "{error}");
    }

    #[test]
    fn minutes_accepted_unknown_keys_rejected() {
        let ok = "snapshot_expiration = '90 minutes'\ntargets_expiration = '1 day'\ntimestamp_expiration = '30 minutes'\n";
        assert!(RepoExpirationPolicy::from_toml(ok, "inline").is_ok());
        assert!(
            RepoExpirationPolicy::from_toml(&format!("{ok}extra = '1 day'\n"), "inline").is_err()
        );
        assert!(
            RepoExpirationPolicy::from_toml("snapshot_expiration = '1 fortnight'\n", "inline")
                .is_err()
        );
    }
}
