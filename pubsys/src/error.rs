//! The error type of the `pubsys` crate.
use snafu::Snafu;

/// Everything that can go wrong in `pubsys`.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// Reading or applying update metadata (manifest, wave schedule, Release.toml) failed.
    #[snafu(display("Update metadata error"))]
    Metadata {
        /// The underlying error.
        #[snafu(source(from(update_metadata::Error, Box::new)))]
        source: Box<update_metadata::Error>,
    },

    /// A configuration file could not be read.
    #[snafu(display("Failed to read {}", path.display()))]
    ReadConfig {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// `Infra.toml` is not valid.
    #[snafu(display("Failed to parse infra config {origin}"))]
    ParseInfra {
        /// Where it came from.
        origin: String,
        /// The parse error.
        source: toml::de::Error,
    },

    /// The expiration policy is not valid.
    #[snafu(display("Failed to parse repo expiration policy {origin}"))]
    ParseExpirationPolicy {
        /// Where it came from.
        origin: String,
        /// The parse error.
        source: toml::de::Error,
    },

    /// An AWS command failed.
    #[snafu(display("AWS publishing failed"))]
    Aws {
        /// The AWS commands' error.
        source: Box<crate::aws::Error>,
    },

    /// `manifest init` would overwrite a file.
    #[snafu(display("{} already exists; use --force to overwrite it", path.display()))]
    ManifestExists {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
