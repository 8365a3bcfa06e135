//! The standard paths and limits, used where neither a flag nor the configuration file says
//! otherwise (a leaf module: the CLI and the configuration both name them).

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/updog.toml";
/// Default trusted root.
pub const DEFAULT_TRUSTED_ROOT: &str = "/usr/share/updog/root.json";
/// Default os-release file.
pub const DEFAULT_OS_RELEASE: &str = "/usr/lib/os-release";
/// Default TUF datastore.
pub const DEFAULT_DATASTORE: &str = "/var/lib/updog/tuf";
/// Default metadata cache for the migrator.
pub const DEFAULT_METADATA_CACHE: &str = "/var/cache/bottlerocket-metadata";
/// Default migrations cache for the migrator.
pub const DEFAULT_MIGRATIONS_CACHE: &str = "/var/lib/bottlerocket-migrations";
/// Default lock file.
pub const DEFAULT_LOCK_FILE: &str = "/run/lock/updog.lock";
/// Default idle timeout: a transfer that receives nothing for this long is retried.
pub const DEFAULT_IDLE_TIMEOUT_SECS: f64 = 30.0;
/// Default minimum average throughput (bytes per second) a transfer must keep after the grace
/// period: at 8 KiB/s, a 500 MB image may take up to about 17 hours, a 1 KiB file 60 s.
pub const DEFAULT_MIN_THROUGHPUT: u64 = 8192;
/// Default grace period before the minimum throughput applies.
pub const DEFAULT_THROUGHPUT_GRACE_SECS: f64 = 60.0;
/// Default number of consecutive failed attempts (without a byte of progress) before giving up.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
