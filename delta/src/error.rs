//! The error type of the `delta` crate.
use snafu::Snafu;

/// Everything that can go wrong building, reading or applying a delta.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// Reading an image or a partition failed.
    #[snafu(display("Failed to read {what}"))]
    Read {
        /// What was read.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Writing the store, the index or a partition failed.
    #[snafu(display("Failed to write {what}"))]
    Write {
        /// What was written.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Compressing a group failed.
    #[snafu(display("Failed to compress a group of image {image}"))]
    Compress {
        /// The image.
        image: String,
        /// The zstd error.
        source: std::io::Error,
    },

    /// The index is not one this version reads.
    #[snafu(display("Delta index is not valid: {reason}"))]
    BadIndex {
        /// What is wrong with it.
        reason: String,
    },

    /// A piece fetched from the store is not what the index says.
    #[snafu(display(
        "Store bytes {offset}..{end} of image {image} do not match the index: {reason}"
    ))]
    BadPiece {
        /// The image.
        image: String,
        /// Start of the piece in the store.
        offset: u64,
        /// End of the piece in the store.
        end: u64,
        /// What did not match.
        reason: String,
    },

    /// Blocks of the image were never fetched (a range failed or was not applied).
    #[snafu(display("{missing} blocks of image {image} were never fetched"))]
    Incomplete {
        /// The image.
        image: String,
        /// Blocks still missing.
        missing: usize,
    },

    /// The fetched bytes do not cover the range asked for.
    #[snafu(display("Store range {offset}+{len} answered with {got} bytes"))]
    ShortRange {
        /// Start of the range.
        offset: u64,
        /// Length asked for.
        len: u64,
        /// Bytes received.
        got: u64,
    },

    /// The image does not fit the partition it is written to.
    #[snafu(display("Image {image} is {size} bytes; the partition holds {capacity}"))]
    TooLarge {
        /// The image.
        image: String,
        /// Image size.
        size: u64,
        /// Partition size.
        capacity: u64,
    },

    /// The assembled partition does not hold the image the signed index describes.
    #[snafu(display(
        "The assembled image {image} has SHA-256 {actual}; the signed index says {expected}"
    ))]
    Digest {
        /// The image.
        image: String,
        /// Expected digest (hex).
        expected: String,
        /// Actual digest (hex).
        actual: String,
    },

    /// Fetching a store range failed (the fetcher's own error, as text).
    #[snafu(display("Failed to fetch store bytes {offset}+{len}: {message}"))]
    Fetch {
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// The fetcher's message.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
