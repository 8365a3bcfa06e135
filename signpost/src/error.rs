//! The error type of the `signpost` crate.
use snafu::Snafu;

/// Everything that can go wrong in `signpost`.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// The crate is still a skeleton.
    #[snafu(display("signpost has no commands yet: they arrive with issue {issue}"))]
    NotYetImplemented {
        /// The issue that builds the commands.
        issue: u32,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
