//! The crate's error type.
use crate::transport::TransportError;
use snafu::Snafu;
use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading a repository or fetching a target.
///
/// Variants are named after the operation that failed. [`Error::is_not_found`] tells a
/// missing file (on the server) from every other failure.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// Reading a trusted metadata file from the metadata folder failed.
    #[snafu(display("failed to read trusted metadata {}", path.display()))]
    ReadTrusted {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// There is no trusted root: neither in the metadata folder nor given to the loader.
    #[snafu(display("no trusted root: {} does not exist and no root was given", path.display()))]
    NoTrustedRoot {
        /// Where the trusted root was looked for.
        path: PathBuf,
    },

    /// Metadata is not valid JSON or lacks a field the specification requires.
    #[snafu(display("failed to parse {role} metadata"))]
    ParseMetadata {
        /// The role.
        role: String,
        /// The JSON error.
        source: serde_json::Error,
    },

    /// Metadata has a field whose value the specification does not allow.
    #[snafu(display("invalid {role} metadata: {reason}"))]
    InvalidMetadata {
        /// The role.
        role: String,
        /// What is wrong.
        reason: String,
    },

    /// Canonical JSON could not be produced for the signed part of the metadata.
    #[snafu(display("failed to canonicalize {role} metadata"))]
    Canonicalize {
        /// The role.
        role: String,
        /// The serialisation error.
        source: std::io::Error,
    },

    /// The metadata's `_type` is not the role's type.
    #[snafu(display("{role} metadata has type '{found}', expected '{expected}'"))]
    WrongType {
        /// The role.
        role: String,
        /// The expected type.
        expected: String,
        /// The type found.
        found: String,
    },

    /// The metadata's `spec_version` has an unsupported major version.
    #[snafu(display("{role} metadata uses unsupported spec_version {version}"))]
    UnsupportedSpecVersion {
        /// The role.
        role: String,
        /// The version found.
        version: String,
    },

    /// The same keyid appears twice in the metadata's signatures.
    #[snafu(display("{role} metadata has two signatures with keyid {keyid}"))]
    DuplicateSignature {
        /// The role.
        role: String,
        /// The repeated keyid.
        keyid: String,
    },

    /// Fewer valid signatures than the threshold.
    #[snafu(display(
        "{role} metadata has {valid} valid signature(s) from {delegator}'s keys, threshold is {threshold}"
    ))]
    VerifySignatures {
        /// The role.
        role: String,
        /// The role whose keys were used (the delegator).
        delegator: String,
        /// Valid signatures from distinct authorised keys.
        valid: u64,
        /// The threshold.
        threshold: u64,
    },

    /// The metadata's version is not the one expected (URL version, or snapshot/timestamp
    /// meta version).
    #[snafu(display("{role} metadata has version {found}, expected {expected}"))]
    VersionMismatch {
        /// The role.
        role: String,
        /// Expected version.
        expected: u64,
        /// Version found.
        found: u64,
    },

    /// A rollback: the new version is lower than the trusted one.
    #[snafu(display("{role} version rolled back from {trusted} to {new}"))]
    Rollback {
        /// The role (for snapshot meta entries: the entry's file name).
        role: String,
        /// The trusted version.
        trusted: u64,
        /// The new version.
        new: u64,
    },

    /// A new snapshot no longer lists a role the trusted snapshot lists.
    #[snafu(display("new snapshot no longer lists {role}"))]
    RoleRemoved {
        /// The missing file name.
        role: String,
    },

    /// The metadata has expired.
    #[snafu(display("{role} metadata expired at {expires}"))]
    Expired {
        /// The role.
        role: String,
        /// When it expired.
        expires: jiff::Timestamp,
    },

    /// The metadata that should describe a role's file does not list it.
    #[snafu(display("{listing} does not list {role}"))]
    MissingMeta {
        /// The role looked for.
        role: String,
        /// The listing role (timestamp or snapshot).
        listing: String,
    },

    /// A metadata file is not on the server.
    #[snafu(display("metadata {url} was not found"))]
    MetadataNotFound {
        /// The URL.
        url: String,
        /// The transport's report.
        source: TransportError,
    },

    /// Fetching a metadata file failed (for another reason than "not found").
    #[snafu(display("failed to fetch metadata {url}"))]
    FetchMetadata {
        /// The URL.
        url: String,
        /// The transport's error.
        source: TransportError,
    },

    /// A downloaded file is longer than allowed.
    #[snafu(display("{url} is longer than the {max} bytes allowed"))]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        max: u64,
    },

    /// A metadata or target file does not have the length its listing gives.
    #[snafu(display("{name} has length {found}, expected {expected}"))]
    LengthMismatch {
        /// The metadata or target name.
        name: String,
        /// Expected length.
        expected: u64,
        /// Length received.
        found: u64,
    },

    /// A metadata or target file does not have the hash its listing gives.
    #[snafu(display("{name} does not match its {algorithm} hash"))]
    HashMismatch {
        /// The metadata or target name.
        name: String,
        /// The algorithm.
        algorithm: String,
    },

    /// A hash in metadata is not valid hex.
    #[snafu(display("{name} has an invalid {algorithm} hash"))]
    InvalidHash {
        /// The metadata or target name.
        name: String,
        /// The algorithm.
        algorithm: String,
    },

    /// None of the hash algorithms listed for a target or metadata file is supported.
    #[snafu(display("{name} lists no supported hash algorithm (supported: sha256, sha512)"))]
    NoSupportedHash {
        /// The target or metadata name.
        name: String,
    },

    /// Writing a trusted metadata file failed.
    #[snafu(display("failed to write {}", path.display()))]
    WriteMetadata {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Removing a no-longer-trusted metadata file failed.
    #[snafu(display("failed to remove {}", path.display()))]
    RemoveMetadata {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A delegated role name that cannot be used (empty, or a top-level role's name).
    #[snafu(display("invalid delegated role name '{role}'"))]
    InvalidRoleName {
        /// The name.
        role: String,
    },

    /// A target name that cannot be fetched safely (empty, `.`/`..` or empty segments).
    #[snafu(display("invalid target name '{name}'"))]
    InvalidTargetName {
        /// The name.
        name: String,
    },

    /// No trusted targets metadata lists the target.
    #[snafu(display("target '{name}' is not listed by any trusted targets role"))]
    TargetNotFound {
        /// The target name.
        name: String,
    },

    /// A target file is not on the server.
    #[snafu(display("target {url} was not found"))]
    TargetFileNotFound {
        /// The URL.
        url: String,
        /// The transport's report.
        source: TransportError,
    },

    /// Fetching a target file failed (for another reason than "not found").
    #[snafu(display("failed to fetch target {url}"))]
    FetchTarget {
        /// The URL.
        url: String,
        /// The transport's error.
        source: TransportError,
    },

    /// Writing a downloaded target failed.
    #[snafu(display("failed to write target {}", path.display()))]
    WriteTarget {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A URL could not be built.
    #[snafu(display("failed to build a URL from {base} and {path}"))]
    JoinUrl {
        /// The base URL.
        base: String,
        /// The relative path.
        path: String,
        /// The parse error.
        source: url::ParseError,
    },

    /// The HTTP client could not be built.
    #[snafu(display("failed to build the HTTP client"))]
    HttpClient {
        /// reqwest's error.
        source: reqwest::Error,
    },

    /// A blocking task panicked or was cancelled.
    #[snafu(display("a blocking task failed"))]
    Join {
        /// The join error.
        source: tokio::task::JoinError,
    },
}

impl Error {
    /// Whether this error means "a file was not found on the server" (metadata or target).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::MetadataNotFound { .. } | Error::TargetFileNotFound { .. }
        )
    }
}
