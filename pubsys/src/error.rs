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

    /// `manifest init` would overwrite a file.
    #[snafu(display("{} already exists; use --force to overwrite it", path.display()))]
    ManifestExists {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
