//! Update selection on the host: which updates apply to this host, and which one to take.
//!
//! The rules are the reference's (`reference/update-metadata.md` §4), with wave gating from
//! [`crate::waves`]:
//! 1. applicable = same variant, same arch, `version <= max_version`, and ready for this
//!    host's seed now (unless waves are ignored); sorted by version, highest first;
//! 2. a forced version (`--image V`) takes exactly V, even a downgrade or a reinstall;
//! 3. a version lock other than `latest` takes exactly that version, unless already running;
//! 4. `latest` takes the first update that is newer than the running version, **or** any
//!    update when the running version is above that update's ceiling (the "regret" rule: a
//!    host above a pulled release is moved down to the highest allowed version).

use crate::error::{self, Error, Result};
use crate::manifest::{Manifest, Update};
use crate::waves::Seed;
use jiff::Timestamp;
use semver::Version;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A CPU architecture the OS is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// 64-bit x86.
    X86_64,
    /// 64-bit ARM.
    Aarch64,
}

impl Arch {
    /// The name used in manifests, artifact names and `uname -m`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The name EC2 uses (`x86_64`, `arm64`): AMI architectures, and the `arch` of SSM
    /// parameter templates.
    pub const fn ec2_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = Error;

    /// `x86_64` (or `amd64`) and `aarch64` (or `arm64`).
    fn from_str(text: &str) -> Result<Arch> {
        match text {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            _ => error::UnknownArchSnafu { text }.fail(),
        }
    }
}

impl Serialize for Arch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The `version_lock` setting: follow the newest release, or stay on one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionLock {
    /// Take the newest applicable release.
    Latest,
    /// Take exactly this version (a lower one downgrades).
    Pinned(Version),
}

/// The workspace's one version parser for what people type: strict semver, with an optional
/// leading `v` (`v1.2.3`).
pub fn parse_version(text: &str) -> std::result::Result<Version, semver::Error> {
    Version::parse(text.strip_prefix('v').unwrap_or(text))
}

impl FromStr for VersionLock {
    type Err = Error;

    /// `latest`, or a strict semver with an optional leading `v`.
    fn from_str(text: &str) -> Result<VersionLock> {
        if text == "latest" {
            return Ok(VersionLock::Latest);
        }
        parse_version(text)
            .map(VersionLock::Pinned)
            .map_err(|_| error::BadVersionLockSnafu { text }.build())
    }
}

impl fmt::Display for VersionLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionLock::Latest => f.write_str("latest"),
            VersionLock::Pinned(version) => write!(f, "v{version}"),
        }
    }
}

impl Serialize for VersionLock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VersionLock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What the host knows about itself.
#[derive(Debug, Clone)]
pub struct Host {
    /// The running variant (`VARIANT_ID`).
    pub variant: String,
    /// The running architecture.
    pub arch: Arch,
    /// The running OS version.
    pub version: Version,
    /// The host's wave seed.
    pub seed: Seed,
}

/// How to choose among the applicable updates.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The configured version lock.
    pub lock: VersionLock,
    /// `--image V`: take exactly this version (bypasses the lock and "newer than running").
    pub forced: Option<Version>,
    /// `--now` / `ignore_waves`: take updates whatever the wave schedule says.
    pub ignore_waves: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            lock: VersionLock::Latest,
            forced: None,
            ignore_waves: false,
        }
    }
}

impl Manifest {
    /// Every update that applies to `host` at `now`, highest version first.
    pub fn applicable_updates(
        &self,
        host: &Host,
        now: Timestamp,
        ignore_waves: bool,
    ) -> Vec<&Update> {
        let mut updates: Vec<&Update> = self
            .updates
            .iter()
            .filter(|u| u.variant == host.variant && u.arch == host.arch.as_str())
            .filter(|u| u.version <= u.max_version)
            .filter(|u| ignore_waves || u.waves.is_ready(host.seed, now))
            .collect();
        updates.sort_by(|a, b| b.version.cmp(&a.version));
        updates
    }

    /// The update `host` should take at `now` under `policy`, if any.
    pub fn select_update(&self, host: &Host, now: Timestamp, policy: &Policy) -> Option<&Update> {
        let applicable = self.applicable_updates(host, now, policy.ignore_waves);
        if let Some(forced) = &policy.forced {
            return applicable.into_iter().find(|u| &u.version == forced);
        }
        match &policy.lock {
            VersionLock::Pinned(locked) if locked == &host.version => None,
            VersionLock::Pinned(locked) => applicable.into_iter().find(|u| &u.version == locked),
            VersionLock::Latest => applicable
                .into_iter()
                .find(|u| host.version < u.version || host.version > u.max_version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Arch, VersionLock};

    #[test]
    fn arch_names() {
        assert_eq!("x86_64".parse::<Arch>().unwrap(), Arch::X86_64);
        assert_eq!("arm64".parse::<Arch>().unwrap(), Arch::Aarch64);
        assert!("riscv64".parse::<Arch>().is_err());
    }

    #[test]
    fn version_lock_parsing() {
        assert_eq!(
            "latest".parse::<VersionLock>().unwrap(),
            VersionLock::Latest
        );
        assert_eq!(
            "v1.2.3".parse::<VersionLock>().unwrap(),
            VersionLock::Pinned("1.2.3".parse().unwrap())
        );
        assert_eq!(
            "1.2.3".parse::<VersionLock>().unwrap(),
            VersionLock::Pinned("1.2.3".parse().unwrap())
        );
        let error = "1.2".parse::<VersionLock>().unwrap_err().to_string();
        assert_eq!(error, "Bad version string '1.2' in config");
        assert!("Latest".parse::<VersionLock>().is_err());
    }
}
