//! The error type of the `updog` crate.
use snafu::Snafu;
use std::path::PathBuf;

/// Everything that can go wrong in `updog`.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[snafu(display("Failed to read config file {}", path.display()))]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or misses a key.
    #[snafu(display("Failed to parse config file {}", path.display()))]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[snafu(source(from(toml::de::Error, Box::new)))]
        source: Box<toml::de::Error>,
    },
    /// A URL in the configuration is invalid.
    #[snafu(display("Invalid {key} '{value}' in config file {}", path.display()))]
    ConfigUrl {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
        /// The cause.
        source: url::ParseError,
    },
    /// The seed in the configuration is out of range.
    #[snafu(display("Invalid seed in config file {}", path.display()))]
    ConfigSeed {
        /// The file.
        path: PathBuf,
        /// The cause (names the value and the range).
        #[snafu(source(from(update_metadata::Error, Box::new)))]
        source: Box<update_metadata::Error>,
    },
    /// Another value in the configuration is invalid.
    #[snafu(display("Invalid {key} '{value}' in config file {}", path.display()))]
    ConfigValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
    },
    /// os-release could not be read.
    #[snafu(display("Failed to read os-release file {}", path.display()))]
    ReadOsRelease {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// os-release lacks a field.
    #[snafu(display("os-release file {} has no {field}", path.display()))]
    OsReleaseField {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
    },
    /// VERSION_ID is not strict semver.
    #[snafu(display("Unable to get OS version: VERSION_ID '{value}' in {} is not a semantic version", path.display()))]
    OsVersion {
        /// The file.
        path: PathBuf,
        /// The value.
        value: String,
        /// The cause.
        source: semver::Error,
    },
    /// This build's architecture is not one updates exist for.
    #[snafu(display("Unsupported architecture {arch}"))]
    UnsupportedArch {
        /// The architecture.
        arch: &'static str,
    },
    /// The proxy setting is not a valid URL.
    #[snafu(display("Invalid https_proxy '{proxy}'"))]
    Proxy {
        /// The value.
        proxy: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The HTTP client could not be built.
    #[snafu(display("Failed to create the HTTP client"))]
    HttpClient {
        /// The cause.
        source: reqwest::Error,
    },
    /// The lock file could not be opened or locked.
    #[snafu(display("Failed to take the lock file {}", path.display()))]
    LockFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another updog holds the run lock.
    #[snafu(display("another updog is already running (lock file {} is held); try again when it has finished", path.display()))]
    AlreadyRunning {
        /// The file.
        path: PathBuf,
    },
    /// The trusted root could not be read.
    #[snafu(display("Failed to read trusted root {}", path.display()))]
    ReadTrustedRoot {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A directory could not be created.
    #[snafu(display("Failed to create directory {}", path.display()))]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A TUF datastore left by a tough-based updog could not be cleared.
    #[snafu(display("Failed to clear the TUF datastore {} left by an earlier updog", path.display()))]
    ClearOldDatastore {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// TUF metadata could not be loaded or verified (expired, rolled back, bad signature, ...).
    #[snafu(display("Metadata error: failed to load the TUF repository at {url}"))]
    LoadMetadata {
        /// Metadata base URL.
        url: String,
        /// The cause.
        source: Box<tuf_client::Error>,
    },
    /// A target could not be looked up, read or verified.
    #[snafu(display("Failed to read target '{name}'"))]
    ReadTarget {
        /// The name.
        name: String,
        /// The cause.
        source: Box<tuf_client::Error>,
    },
    /// A target is not in the repository.
    #[snafu(display("Target '{name}' not found in repository"))]
    TargetMissing {
        /// The name.
        name: String,
    },
    /// A target lists no SHA-256 digest (the migrator's cache names files by it).
    #[snafu(display("Target '{name}' lists no sha256 hash"))]
    TargetSha256 {
        /// The name.
        name: String,
    },
    /// manifest.json is invalid.
    #[snafu(display("Error parsing manifest"))]
    ParseManifest {
        /// The cause.
        #[snafu(source(from(update_metadata::Error, Box::new)))]
        source: Box<update_metadata::Error>,
    },
    /// No migration path between the versions.
    #[snafu(display("Failed to find the migrations from {from} to {to}"))]
    MigrationPath {
        /// Lower version.
        from: semver::Version,
        /// Higher version.
        to: semver::Version,
        /// The cause.
        #[snafu(source(from(update_metadata::Error, Box::new)))]
        source: Box<update_metadata::Error>,
    },
    /// The staged-update record could not be encoded.
    #[snafu(display("cannot encode the staged-update record"))]
    EncodeRecord {
        /// The cause.
        source: serde_json::Error,
    },

    /// The clock guard: the wall clock is earlier than the latest time a load succeeded at
    /// (a clock set back could make expired metadata look valid again).
    #[snafu(display(
        "The system clock ({now}) is earlier than the latest time updog loaded the repository \
         at ({latest}, recorded in {}): the clock stepped backwards. Fix the clock; if the \
         recorded time is wrong, remove that file",
        file.display()
    ))]
    ClockSteppedBack {
        /// Current time.
        now: jiff::Timestamp,
        /// Latest time recorded.
        latest: jiff::Timestamp,
        /// The clock file.
        file: PathBuf,
    },
    /// The clock guard's file could not be written.
    #[snafu(display("Failed to write the clock file {}", path.display()))]
    WriteClock {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A cache file could not be written.
    #[snafu(display("Failed to write cache file {}", path.display()))]
    WriteCache {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Stale cache files could not be removed.
    #[snafu(display("Failed to clean cache {}", path.display()))]
    PruneCache {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A signpost operation failed.
    #[snafu(display("Partition table operation failed"))]
    Disk {
        /// The cause.
        #[snafu(source(from(signpost::Error, Box::new)))]
        source: Box<signpost::Error>,
    },
    /// The table changed under us.
    #[snafu(display("The partition table of {} changed during the update: {why}; not marking the new set valid", path.display()))]
    TableChanged {
        /// The disk.
        path: PathBuf,
        /// What changed.
        why: String,
    },
    /// A set's partition is not in the table.
    #[snafu(display("Partition {number} is not in the partition table"))]
    PartitionMissing {
        /// Partition number.
        number: u32,
    },
    /// An image does not fit its partition.
    #[snafu(display(
        "The {image} image '{name}' is larger than partition {number} ({capacity} bytes{}); nothing was written to it",
        size.map(|s| format!(", image {s} bytes")).unwrap_or_default()
    ))]
    ImageTooLarge {
        /// `root`, `boot` or `hash`.
        image: String,
        /// Target name.
        name: String,
        /// Partition number.
        number: u32,
        /// Partition size.
        capacity: u64,
        /// Declared decompressed size, if known.
        size: Option<u64>,
    },
    /// An image holds no LZ4 frame.
    #[snafu(display("The {image} image '{name}' is empty"))]
    EmptyImage {
        /// `root`, `boot` or `hash`.
        image: String,
        /// Target name.
        name: String,
    },
    /// The download of an image failed or did not verify.
    #[snafu(display(
        "Failed to download and verify the {image} image '{name}'; the new set stays unbootable"
    ))]
    DownloadImage {
        /// `root`, `boot` or `hash`.
        image: String,
        /// Target name.
        name: String,
        /// The cause.
        source: Box<tuf_client::Error>,
    },
    /// An image is not valid LZ4.
    #[snafu(display("Failed to decode LZ4-compressed {image} image '{name}'"))]
    DecodeImage {
        /// `root`, `boot` or `hash`.
        image: String,
        /// Target name.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The delta path failed (the caller falls back to the full image).
    #[snafu(display("Delta update of {image} failed"))]
    Delta {
        /// `root`, `boot`, `hash` or `index`.
        image: String,
        /// The delta crate's error.
        source: delta::Error,
    },
    /// The delta index does not fit the update.
    #[snafu(display("The delta index cannot be used: {why}"))]
    DeltaMismatch {
        /// Why.
        why: String,
    },
    /// Fetching a range of the delta store failed.
    #[snafu(display("Failed to fetch from the delta store {url}"))]
    FetchStore {
        /// The store's URL.
        url: String,
        /// The transport's error.
        source: Box<tuf_client::TransportError>,
    },
    /// A partition could not be read (as a delta seed).
    #[snafu(display("Failed to read partition {}", path.display()))]
    ReadPartition {
        /// The file or device.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A partition could not be opened.
    #[snafu(display("Failed to open partition {number} ({}) for writing", path.display()))]
    OpenPartition {
        /// The file or device.
        path: PathBuf,
        /// Partition number.
        number: u32,
        /// The cause.
        source: std::io::Error,
    },
    /// A partition write or sync failed.
    #[snafu(display("Failed writing update data to partition {number} ({})", path.display()))]
    WritePartition {
        /// The file or device.
        path: PathBuf,
        /// Partition number.
        number: u32,
        /// The cause.
        source: std::io::Error,
    },
    /// A blocking task died.
    #[snafu(display("A background task failed"))]
    Join {
        /// The cause.
        source: tokio::task::JoinError,
    },
    /// The reboot command could not run.
    #[snafu(display("Failed to run shutdown -r now"))]
    Reboot {
        /// The cause.
        source: std::io::Error,
    },
    /// The reboot command failed.
    #[snafu(display("shutdown -r now failed: {status}"))]
    RebootFailed {
        /// Its exit status.
        status: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `error` and its causes, one line (for warnings about a fallback).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
