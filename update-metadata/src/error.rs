//! The error type of the `update-metadata` crate.

use jiff::Timestamp;
use semver::Version;
use snafu::Snafu;
use std::path::PathBuf;

/// Everything that can go wrong reading, editing or applying update metadata.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[snafu(display("Failed to read {}", path.display()))]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A file could not be written.
    #[snafu(display("Failed to write {}", path.display()))]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// `manifest.json` is not valid.
    #[snafu(display("Failed to parse manifest {origin}"))]
    ParseManifest {
        /// Where the manifest came from.
        origin: String,
        /// The parse error; it names the bad field or key.
        source: serde_json::Error,
    },

    /// The manifest could not be serialised.
    #[snafu(display("Failed to serialise the manifest"))]
    SerializeManifest {
        /// The serialisation error.
        source: serde_json::Error,
    },

    /// A migration name that is not one plain file name.
    #[snafu(display("Refusing to write the manifest: {reason}"))]
    UnsafeMigrationName {
        /// Which name, and why.
        reason: String,
    },

    /// A wave schedule file is not valid TOML of the expected shape.
    #[snafu(display("Failed to parse wave schedule {origin}"))]
    ParseWaveSchedule {
        /// Where the schedule came from.
        origin: String,
        /// The parse error.
        source: toml::de::Error,
    },

    /// A wave schedule file parsed but breaks a rule.
    #[snafu(display("Invalid wave schedule {origin}"))]
    InvalidWaveSchedule {
        /// Where the schedule came from.
        origin: String,
        /// The broken rule.
        source: Box<Error>,
    },

    /// A schedule has no waves.
    #[snafu(display("A wave schedule needs at least one wave"))]
    EmptySchedule,

    /// A fleet percentage outside 1–100.
    #[snafu(display(
        "Wave {wave} has fleet_percentage {percentage}; it must be between 1 and 100"
    ))]
    WavePercentage {
        /// 1-based wave number.
        wave: usize,
        /// The value given.
        percentage: u8,
    },

    /// Fleet percentages that do not strictly increase.
    #[snafu(display(
        "Fleet percentages must strictly increase, but wave {first} ({first_percentage}%) is followed by wave {second} ({second_percentage}%)"
    ))]
    WavePercentagesNotIncreasing {
        /// 1-based number of the earlier wave.
        first: usize,
        /// Its percentage.
        first_percentage: u8,
        /// 1-based number of the later wave.
        second: usize,
        /// Its percentage.
        second_percentage: u8,
    },

    /// Wave start times that do not strictly increase.
    #[snafu(display(
        "Wave start times must strictly increase, but wave {first} starts at {first_start} and wave {second} at {second_start}"
    ))]
    WaveStartsNotIncreasing {
        /// 1-based number of the earlier wave.
        first: usize,
        /// Its start.
        first_start: String,
        /// 1-based number of the later wave.
        second: usize,
        /// Its start.
        second_start: String,
    },

    /// An offset that is neither `[in] <n> <unit>` nor an RFC 3339 time.
    #[snafu(display(
        "Bad offset '{text}': expected RFC 3339, or something like 'in 7 days' (units: minutes, hours, days, weeks)"
    ))]
    BadOffset {
        /// The text given.
        text: String,
    },

    /// An offset that leads outside the representable time range.
    #[snafu(display("Offset '{offset}' leads outside the supported time range"))]
    OffsetOverflow {
        /// The offset.
        offset: String,
    },

    /// A seed above 2047.
    #[snafu(display("Seed {value} is out of range: seeds are 0..=2047"))]
    SeedOutOfRange {
        /// The value given.
        value: u64,
    },

    /// A manifest whose wave times do not increase with the key.
    #[snafu(display(
        "Waves of update {update} are out of order: key {key} at {time} is not before key {next_key} at {next_time}"
    ))]
    WavesUnordered {
        /// The update, as `variant arch version`.
        update: String,
        /// The earlier key.
        key: u32,
        /// Its time.
        time: Timestamp,
        /// The later key.
        next_key: u32,
        /// Its time.
        next_time: Timestamp,
    },

    /// `version_lock` is neither `latest` nor a version.
    #[snafu(display("Bad version string '{text}' in config"))]
    BadVersionLock {
        /// The value given.
        text: String,
    },

    /// An unknown architecture name.
    #[snafu(display("unknown architecture '{text}' (expected x86_64, amd64, aarch64 or arm64)"))]
    UnknownArch {
        /// The value given.
        text: String,
    },

    /// `Release.toml` is not valid.
    #[snafu(display("Failed to parse release file {origin}"))]
    ParseRelease {
        /// Where it came from.
        origin: String,
        /// The parse error.
        source: toml::de::Error,
    },

    /// No chain of migration hops leads between two versions.
    #[snafu(display(
        "Missing migration: no path from {from} to {to}; the highest version reachable from {from} is {reached}, and no hop leads from there to {to}"
    ))]
    MissingMigration {
        /// The lower version of the request.
        from: Version,
        /// The higher version of the request.
        to: Version,
        /// The highest version reachable from `from`.
        reached: Version,
    },

    /// No update with this variant, arch and version.
    #[snafu(display(
        "No update for variant {variant}, arch {arch}, version {version} in the manifest"
    ))]
    UpdateNotFound {
        /// Variant asked for.
        variant: String,
        /// Arch asked for.
        arch: String,
        /// Version asked for.
        version: Version,
    },

    /// No update at all for a (variant, arch) group.
    #[snafu(display("No updates for variant {variant}, arch {arch} in the manifest"))]
    NoUpdatesInGroup {
        /// Variant asked for.
        variant: String,
        /// Arch asked for.
        arch: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
