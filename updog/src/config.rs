//! `/etc/updog.toml` (reference keys plus our path and network extensions), `os-release`, and
//! the validated [`Settings`] every command receives.
//!
//! Layering: a command-line flag wins over the configuration file, which wins over the
//! standard path. Unknown keys are ignored with a warning (the file is rendered by the host's
//! API server, which may know keys this version does not).
use crate::cli::PathArgs;
pub use crate::defaults::{
    DEFAULT_CONFIG, DEFAULT_DATASTORE, DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_LOCK_FILE,
    DEFAULT_MAX_RETRIES, DEFAULT_METADATA_CACHE, DEFAULT_MIGRATIONS_CACHE, DEFAULT_MIN_THROUGHPUT,
    DEFAULT_OS_RELEASE, DEFAULT_THROUGHPUT_GRACE_SECS, DEFAULT_TRUSTED_ROOT,
};
use crate::error::{self, Result};
use semver::Version;
use serde::Deserialize;
use snafu::{OptionExt, ResultExt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use update_metadata::{Arch, Seed, VersionLock};
use url::Url;

/// The configuration file as written.
#[derive(Debug, Clone, Deserialize)]
pub struct UpdogConfig {
    /// TUF metadata base URL.
    pub metadata_base_url: String,
    /// TUF targets base URL.
    pub targets_base_url: String,
    /// Wave seed, 0..=2047.
    pub seed: u64,
    /// `latest` or a version.
    #[serde(default = "latest")]
    pub version_lock: VersionLock,
    /// Skip wave gating.
    #[serde(default)]
    pub ignore_waves: bool,
    /// Proxy for every request (empty: none; the environment's `HTTPS_PROXY` then applies).
    #[serde(default)]
    pub https_proxy: Option<String>,
    /// Hosts that bypass the proxy.
    #[serde(default)]
    pub no_proxy: Option<Vec<String>>,
    /// Extension: trusted root path.
    #[serde(default)]
    pub trusted_root: Option<PathBuf>,
    /// Extension: os-release path.
    #[serde(default)]
    pub os_release: Option<PathBuf>,
    /// Extension: TUF datastore directory.
    #[serde(default)]
    pub datastore: Option<PathBuf>,
    /// Extension: metadata cache directory.
    #[serde(default)]
    pub metadata_cache: Option<PathBuf>,
    /// Extension: migrations cache directory.
    #[serde(default)]
    pub migrations_cache: Option<PathBuf>,
    /// Extension: lock file.
    #[serde(default)]
    pub lock_file: Option<PathBuf>,
    /// Extension: seconds without a received byte before a transfer is retried.
    #[serde(default)]
    pub idle_timeout_secs: Option<f64>,
    /// Extension: consecutive failed attempts without progress before giving up.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Extension: the average throughput (bytes per second) every transfer must keep once
    /// `throughput_grace_secs` have passed (0 turns the rule off).
    #[serde(default)]
    pub min_throughput_bytes_per_sec: Option<u64>,
    /// Extension: seconds a transfer may take before the minimum throughput applies.
    #[serde(default)]
    pub throughput_grace_secs: Option<f64>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

fn latest() -> VersionLock {
    VersionLock::Latest
}

/// Network behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSettings {
    /// A transfer that receives nothing for this long is abandoned and retried.
    pub idle_timeout: Duration,
    /// Consecutive failed attempts without progress before giving up.
    pub max_retries: u32,
    /// Slow-retrieval bound: a transfer of N bytes may take at most
    /// `grace + N / min_bytes_per_sec`, however steadily bytes arrive.
    pub throughput: Throughput,
    /// Proxy URL for every request, if configured.
    pub https_proxy: Option<String>,
    /// Hosts that bypass the proxy.
    pub no_proxy: Vec<String>,
}

/// The minimum-throughput rule (TUF's slow-retrieval protection): after `grace`, the average
/// rate since the transfer started must stay at or above `min_bytes_per_sec`, so a mirror that
/// trickles one byte at a time (and so never trips the idle timeout) is dropped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Minimum average rate; 0 turns the rule off.
    pub min_bytes_per_sec: u64,
    /// Time allowed before the rule applies (connection set-up, slow start).
    pub grace: Duration,
}

impl Throughput {
    /// How long a transfer that has received `bytes` may have run in all; `None` without a
    /// limit.
    pub fn budget(&self, bytes: u64) -> Option<Duration> {
        if self.min_bytes_per_sec == 0 {
            return None;
        }
        Some(self.grace + Duration::from_secs_f64(bytes as f64 / self.min_bytes_per_sec as f64))
    }
}

/// Where updog keeps and finds things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Trusted root.
    pub trusted_root: PathBuf,
    /// os-release.
    pub os_release: PathBuf,
    /// TUF datastore.
    pub datastore: PathBuf,
    /// Metadata cache for the migrator.
    pub metadata_cache: PathBuf,
    /// Migrations cache for the migrator.
    pub migrations_cache: PathBuf,
    /// Lock file.
    pub lock_file: PathBuf,
}

/// The validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// TUF metadata base URL.
    pub metadata_base_url: Url,
    /// TUF targets base URL.
    pub targets_base_url: Url,
    /// This host's wave seed.
    pub seed: Seed,
    /// The version lock.
    pub version_lock: VersionLock,
    /// Skip wave gating.
    pub ignore_waves: bool,
    /// Network behaviour.
    pub network: NetworkSettings,
    /// Paths.
    pub paths: Paths,
}

/// What the host knows about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsRelease {
    /// `VERSION_ID`.
    pub version: Version,
    /// `VARIANT_ID`.
    pub variant: String,
}

/// The architecture this binary runs on.
pub fn host_arch() -> Result<Arch> {
    std::env::consts::ARCH
        .parse()
        .ok()
        .context(error::UnsupportedArchSnafu {
            arch: std::env::consts::ARCH,
        })
}

/// Paths that need no configuration file (for commands that work offline).
/// Paths for the offline commands (`update-apply`, `update-revert`): the configuration file's
/// values if it can be read, else the flags and defaults.
pub fn paths_for_offline(args: &PathArgs) -> Paths {
    match load_settings(args) {
        Ok(settings) => settings.paths,
        Err(e) => {
            tracing::debug!(error = %e, "configuration not used");
            offline_paths(args)
        }
    }
}

/// The flags and defaults alone, without the configuration file.
pub fn offline_paths(args: &PathArgs) -> Paths {
    resolve_paths(args, None)
}

fn resolve_paths(args: &PathArgs, config: Option<&UpdogConfig>) -> Paths {
    let pick = |flag: &Option<PathBuf>, conf: Option<&PathBuf>, default: &str| {
        flag.clone()
            .or_else(|| conf.cloned())
            .unwrap_or_else(|| PathBuf::from(default))
    };
    Paths {
        trusted_root: pick(
            &args.trusted_root,
            config.and_then(|c| c.trusted_root.as_ref()),
            DEFAULT_TRUSTED_ROOT,
        ),
        os_release: pick(
            &args.os_release,
            config.and_then(|c| c.os_release.as_ref()),
            DEFAULT_OS_RELEASE,
        ),
        datastore: pick(
            &args.datastore,
            config.and_then(|c| c.datastore.as_ref()),
            DEFAULT_DATASTORE,
        ),
        metadata_cache: pick(
            &args.metadata_cache,
            config.and_then(|c| c.metadata_cache.as_ref()),
            DEFAULT_METADATA_CACHE,
        ),
        migrations_cache: pick(
            &args.migrations_cache,
            config.and_then(|c| c.migrations_cache.as_ref()),
            DEFAULT_MIGRATIONS_CACHE,
        ),
        lock_file: pick(
            &args.lock_file,
            config.and_then(|c| c.lock_file.as_ref()),
            DEFAULT_LOCK_FILE,
        ),
    }
}

/// Parse the configuration text (`origin` names it in errors).
pub fn parse_config(text: &str, origin: &Path) -> Result<UpdogConfig> {
    toml::from_str(text).context(error::ParseConfigSnafu { path: origin })
}

/// Read and validate the configuration file named by `args`.
pub fn load_settings(args: &PathArgs) -> Result<Settings> {
    let path = &args.config;
    let text = std::fs::read_to_string(path).context(error::ReadConfigSnafu { path })?;
    let config = parse_config(&text, path)?;
    settings_from(config, args)
}

/// Validate a parsed configuration.
pub fn settings_from(config: UpdogConfig, args: &PathArgs) -> Result<Settings> {
    let path = &args.config;
    for key in config.unknown.keys() {
        tracing::warn!(config = %path.display(), key, "ignoring unknown configuration key");
    }
    let url = |text: &str, key: &'static str| -> Result<Url> {
        let mut url = Url::parse(text).context(error::ConfigUrlSnafu {
            path,
            key,
            value: text,
        })?;
        // Base URLs are joined with file names: they must end with a slash.
        if !url.path().ends_with('/') {
            let with_slash = format!("{}/", url.path());
            url.set_path(&with_slash);
        }
        Ok(url)
    };
    let seed = Seed::new(config.seed).context(error::ConfigSeedSnafu { path })?;
    let idle = config
        .idle_timeout_secs
        .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS);
    let idle_timeout = Duration::try_from_secs_f64(idle)
        .ok()
        .filter(|d| !d.is_zero())
        .context(error::ConfigValueSnafu {
            path,
            key: "idle_timeout_secs",
            value: idle.to_string(),
        })?;
    let grace = config
        .throughput_grace_secs
        .unwrap_or(DEFAULT_THROUGHPUT_GRACE_SECS);
    let grace = Duration::try_from_secs_f64(grace)
        .ok()
        .context(error::ConfigValueSnafu {
            path,
            key: "throughput_grace_secs",
            value: grace.to_string(),
        })?;
    let throughput = Throughput {
        min_bytes_per_sec: config
            .min_throughput_bytes_per_sec
            .unwrap_or(DEFAULT_MIN_THROUGHPUT),
        grace,
    };
    let paths = resolve_paths(args, Some(&config));
    Ok(Settings {
        metadata_base_url: url(&config.metadata_base_url, "metadata_base_url")?,
        targets_base_url: url(&config.targets_base_url, "targets_base_url")?,
        seed,
        version_lock: config.version_lock,
        ignore_waves: config.ignore_waves,
        network: NetworkSettings {
            idle_timeout,
            max_retries: config.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            throughput,
            https_proxy: config.https_proxy.filter(|p| !p.trim().is_empty()),
            no_proxy: config.no_proxy.unwrap_or_default(),
        },
        paths,
    })
}

/// Parse os-release text: `VERSION_ID` (strict semver) and `VARIANT_ID`.
pub fn parse_os_release(text: &str, path: &Path) -> Result<OsRelease> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            fields.insert(key.trim().to_owned(), value.to_owned());
        }
    }
    let version_text = fields
        .get("VERSION_ID")
        .context(error::OsReleaseFieldSnafu {
            path,
            field: "VERSION_ID",
        })?;
    let version = Version::parse(version_text).context(error::OsVersionSnafu {
        path,
        value: version_text.clone(),
    })?;
    let variant = fields
        .get("VARIANT_ID")
        .filter(|v| !v.is_empty())
        .context(error::OsReleaseFieldSnafu {
            path,
            field: "VARIANT_ID",
        })?
        .clone();
    Ok(OsRelease { version, variant })
}

/// Read os-release.
pub fn load_os_release(path: &Path) -> Result<OsRelease> {
    let text = std::fs::read_to_string(path).context(error::ReadOsReleaseSnafu { path })?;
    parse_os_release(&text, path)
}

#[cfg(test)]
mod tests {
    use super::{PathArgs, parse_config, parse_os_release, settings_from};
    use std::path::{Path, PathBuf};
    use update_metadata::VersionLock;

    const REFERENCE: &str = r#"
metadata_base_url = "https://updates.example.com/2020-07-07/aws-k8s-1.28/x86_64"
targets_base_url = "https://updates.example.com/targets/"
seed = 1234
version_lock = "v1.19.2"
ignore_waves = false
https_proxy = "http://proxy.example.com:3128"
no_proxy = ["localhost", "169.254.169.254"]
future_key = 1
"#;

    fn args() -> PathArgs {
        PathArgs {
            config: PathBuf::from("updog.toml"),
            ..PathArgs::default()
        }
    }

    #[test]
    fn reference_config_loads_with_defaults_and_overrides() {
        let config = parse_config(REFERENCE, Path::new("updog.toml")).unwrap();
        assert!(config.unknown.contains_key("future_key"));
        let mut args = args();
        args.lock_file = Some(PathBuf::from("/tmp/x.lock"));
        let settings = settings_from(config, &args).unwrap();
        assert_eq!(settings.seed.get(), 1234);
        assert_eq!(
            settings.version_lock,
            VersionLock::Pinned("1.19.2".parse().unwrap())
        );
        assert!(settings.metadata_base_url.as_str().ends_with("x86_64/"));
        assert_eq!(settings.network.no_proxy.len(), 2);
        assert_eq!(settings.paths.lock_file, PathBuf::from("/tmp/x.lock"));
        assert_eq!(
            settings.paths.trusted_root,
            PathBuf::from(super::DEFAULT_TRUSTED_ROOT)
        );
    }

    #[test]
    fn seed_above_range_is_rejected_with_the_range() {
        let text = REFERENCE.replace("seed = 1234", "seed = 2048");
        let config = parse_config(&text, Path::new("updog.toml")).unwrap();
        let error = settings_from(config, &args()).unwrap_err();
        let report = snafu::Report::from_error(error).to_string();
        assert!(
            report.contains("2048") && report.contains("0..=2047"),
            "{report}"
        );
    }

    #[test]
    fn minimal_config_defaults_lock_and_waves() {
        let text = "metadata_base_url = \"file:///r/metadata\"\ntargets_base_url = \"file:///r/targets\"\nseed = 0\n";
        let settings = settings_from(parse_config(text, Path::new("u")).unwrap(), &args()).unwrap();
        assert_eq!(settings.version_lock, VersionLock::Latest);
        assert!(!settings.ignore_waves);
        assert!(settings.network.https_proxy.is_none());
    }

    #[test]
    fn os_release_needs_strict_semver_and_variant() {
        let ok = parse_os_release(
            "NAME=Bottlerocket\nVERSION_ID=1.15.0\nVARIANT_ID=\"aws-k8s-1.28\"\n",
            Path::new("os-release"),
        )
        .unwrap();
        assert_eq!(ok.version, "1.15.0".parse().unwrap());
        assert_eq!(ok.variant, "aws-k8s-1.28");
        assert!(parse_os_release("VERSION_ID=1.15\nVARIANT_ID=x\n", Path::new("o")).is_err());
        assert!(parse_os_release("VERSION_ID=1.15.0\n", Path::new("o")).is_err());
    }
}
