//! The error type of the `tuftool` crate.
//!
//! Display strings describe their own layer only; `main` prints the whole chain. Every error
//! exits with code 1 (see the README's exit-code table).
use snafu::Snafu;
use std::path::PathBuf;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `tuftool`.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    // ----- keys
    /// A key source could not be parsed.
    #[snafu(display("invalid key source '{source_text}': {reason}"))]
    KeySourceSyntax {
        /// The text given.
        source_text: String,
        /// Why.
        reason: String,
    },
    /// A key could not be loaded from its source.
    #[snafu(display("cannot load the key from {key}"))]
    LoadKey {
        /// The key source.
        key: String,
        /// Cause.
        source: BoxError,
    },
    /// A key's bytes are not a supported private key.
    #[snafu(display("unsupported private key: {reason}"))]
    ParseKey {
        /// Why.
        reason: String,
    },
    /// A public key file is not a TUF key object.
    #[snafu(display("not a TUF public key (JSON key object)"))]
    ParsePublicKey {
        /// Cause.
        source: serde_json::Error,
    },
    /// A key ID could not be computed.
    #[snafu(display("cannot compute a key ID"))]
    KeyId {
        /// Cause.
        #[snafu(source(from(tough::schema::Error, Box::new)))]
        source: Box<tough::schema::Error>,
    },
    /// Key generation failed.
    #[snafu(display("key generation failed"))]
    GenerateKey,
    /// An AWS key source names no region and the SDK's default chain has none.
    #[snafu(display(
        "no AWS region for the key: add ?region=R to its URL or set AWS_REGION (or the profile's region)"
    ))]
    NoAwsRegion,
    /// The AWS client factory refused.
    #[cfg(feature = "aws")]
    #[snafu(display("cannot build the AWS client for the key"))]
    AwsClient {
        /// The factory's error.
        source: aws_context::Error,
    },
    /// An AWS key source used by a build without the `aws` feature.
    #[snafu(display("{key}: this build of tuftool has no AWS support (the `aws` feature)"))]
    AwsNotBuilt {
        /// The key source.
        key: String,
    },
    /// KMS keys cannot be written.
    #[snafu(display("{key} is a KMS key: KMS keys are created in KMS, not written by tuftool"))]
    KmsNotWritable {
        /// The key source.
        key: String,
    },
    /// Writing a key to SSM failed.
    #[snafu(display("cannot write the key to SSM parameter {parameter}: {message}"))]
    WriteSsmKey {
        /// Parameter name.
        parameter: String,
        /// What the SDK said.
        message: String,
    },
    /// A supplied key may not sign this role.
    #[snafu(display("key {key} is not a {role} key of this root"))]
    KeyNotAuthorised {
        /// The key source.
        key: String,
        /// The role.
        role: String,
    },
    /// Signing failed.
    #[snafu(display("signing with key {keyid} failed"))]
    SignWithKey {
        /// Key ID.
        keyid: String,
        /// Cause.
        source: BoxError,
    },
    /// The key ID is not present.
    #[snafu(display("key {keyid} is not listed there"))]
    KeyNotInRoot {
        /// Key ID.
        keyid: String,
    },
    /// No key was given.
    #[snafu(display("at least one key is needed"))]
    NoKeys,

    // ----- files
    /// Reading a file failed.
    #[snafu(display("cannot read {}", path.display()))]
    ReadFile {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Writing a file failed.
    #[snafu(display("cannot write {}", path.display()))]
    WriteFile {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Creating a folder failed.
    #[snafu(display("cannot create folder {}", path.display()))]
    CreateDir {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A path has no parent or file name.
    #[snafu(display("{} has no parent folder or file name", path.display()))]
    NoParent {
        /// Path.
        path: PathBuf,
    },
    /// An output path already exists.
    #[snafu(display("{} already exists; it must not", path.display()))]
    OutputExists {
        /// Path.
        path: PathBuf,
    },
    /// `--allow-root-download` with no root at `-r`: trust on first use is not offered.
    #[snafu(display(
        "{} does not exist: tuftool does not download a root to trust (--allow-root-download); \
         get root.json out of band and pass it with -r",
        path.display()
    ))]
    RootDownload {
        /// The missing root.
        path: PathBuf,
    },
    /// A target's place holds a file and `--target-path-exists fail` was given.
    #[snafu(display(
        "{} exists already (--target-path-exists fail)",
        path.display()
    ))]
    TargetPathExists {
        /// The existing file.
        path: PathBuf,
    },
    /// Placing a target failed.
    #[snafu(display("cannot place {} at {}", src.display(), dest.display()))]
    PublishTarget {
        /// Input file.
        src: PathBuf,
        /// Destination.
        dest: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An input is not a folder.
    #[snafu(display("{} is not a folder", path.display()))]
    NotADirectory {
        /// Path.
        path: PathBuf,
    },
    /// Walking an input folder failed.
    #[snafu(display("cannot walk {}", path.display()))]
    WalkDir {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[snafu(display("a background task failed"))]
    Join {
        /// Cause.
        source: tokio::task::JoinError,
    },

    // ----- times and versions
    /// An expiry could not be parsed.
    #[snafu(display("invalid expiry '{text}': use RFC 3339 or 'in N minutes|hours|days|weeks'"))]
    ExpirySyntax {
        /// Text given.
        text: String,
    },
    /// An expiry is out of range.
    #[snafu(display("expiry out of range"))]
    ExpiryRange,
    /// An expiry is in the past.
    #[snafu(display("the {role} expiry {expires} is not in the future"))]
    ExpiryInPast {
        /// Role.
        role: String,
        /// Expiry.
        expires: String,
    },
    /// A time computation failed.
    #[snafu(display("invalid time"))]
    Time {
        /// Cause.
        source: jiff::Error,
    },
    /// A given version does not increase.
    #[snafu(display("{role} version {given} must be greater than the current version {current}"))]
    VersionNotIncreasing {
        /// Role.
        role: String,
        /// Current version.
        current: u64,
        /// Given version.
        given: u64,
    },
    /// A version would overflow.
    #[snafu(display("{role} version cannot be incremented"))]
    VersionOverflow {
        /// Role.
        role: String,
    },
    /// An expiry was not given for a role that is signed.
    #[snafu(display("no expiry given for {role} (use --{role}-expires or --expires)"))]
    MissingExpiry {
        /// Role.
        role: String,
    },

    // ----- root
    /// A root file could not be parsed.
    #[snafu(display("{} is not a valid root.json", path.display()))]
    ParseRoot {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// A root is not signed by its own threshold.
    #[snafu(display("{} is not signed by its root threshold", path.display()))]
    BadRoot {
        /// Path.
        path: PathBuf,
        /// Cause (boxed: tough's schema error is large).
        #[snafu(source(from(tough::schema::Error, Box::new)))]
        source: Box<tough::schema::Error>,
    },
    /// A root has expired.
    #[snafu(display("{} expired at {expires}", path.display()))]
    RootExpired {
        /// Path.
        path: PathBuf,
        /// Expiry.
        expires: String,
    },
    /// The root checks of `root sign` failed.
    #[snafu(display("{} fails its checks: {problems}", path.display()))]
    RootCheck {
        /// Path.
        path: PathBuf,
        /// Problems found.
        problems: String,
    },
    /// A rotated root's version does not follow.
    #[snafu(display("{} has version {given}; the repository's root is version {current}, so the next must be {current} + 1", path.display()))]
    RootVersion {
        /// Path.
        path: PathBuf,
        /// Current version.
        current: u64,
        /// Given version.
        given: u64,
    },
    /// Root lacks a root role.
    #[snafu(display("root.json has no root role"))]
    MissingRootRole,
    /// No role was given.
    #[snafu(display("at least one role is needed"))]
    NoRoles,
    /// Serialization failed.
    #[snafu(display("cannot serialize {what}"))]
    Serialize {
        /// What.
        what: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// A tough schema operation failed.
    #[snafu(display("{what} failed"))]
    Tough {
        /// What.
        what: String,
        /// Cause (boxed: tough's schema error is large).
        #[snafu(source(from(tough::schema::Error, Box::new)))]
        source: Box<tough::schema::Error>,
    },

    // ----- repositories
    /// A location is neither a URL nor a path.
    #[snafu(display("invalid location '{text}'"))]
    Location {
        /// Text.
        text: String,
    },
    /// Loading (and verifying) a repository failed.
    #[snafu(display("cannot load the repository at {url}"))]
    LoadRepo {
        /// Metadata URL.
        url: String,
        /// Cause.
        source: Box<tough::error::Error>,
    },
    /// Fetching a file failed.
    #[snafu(display("cannot fetch {url}"))]
    Fetch {
        /// URL.
        url: String,
        /// Cause.
        #[snafu(source(from(tough::TransportError, Box::new)))]
        source: Box<tough::TransportError>,
    },
    /// A metadata file is missing.
    #[snafu(display("{url} does not exist"))]
    MissingMetadata {
        /// URL.
        url: String,
    },
    /// Metadata bytes do not match what snapshot or timestamp lists.
    #[snafu(display(
        "{url} is not the metadata that was verified (its length, hash, version or signatures \
         differ from what snapshot, timestamp or the root chain say)"
    ))]
    MetadataMismatch {
        /// URL.
        url: String,
    },
    /// A metadata file could not be parsed.
    #[snafu(display("{url} is not valid metadata"))]
    ParseMetadata {
        /// URL.
        url: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// Too few keys for a role.
    #[snafu(display(
        "threshold not met for role {role}: {have} of the supplied keys can sign it, {threshold} needed"
    ))]
    ThresholdNotMet {
        /// Role.
        role: String,
        /// Keys available.
        have: usize,
        /// Threshold.
        threshold: u64,
    },
    /// Signing a role failed.
    #[snafu(display("cannot sign {role}"))]
    SignRole {
        /// Role.
        role: String,
        /// Cause.
        source: Box<tough::error::Error>,
    },
    /// A role could not be written as canonical JSON.
    #[snafu(display("cannot write {role} as canonical JSON"))]
    CanonicalJson {
        /// Role.
        role: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A role does not exist.
    #[snafu(display("no role named {role} in this repository"))]
    NoSuchRole {
        /// Role.
        role: String,
    },
    /// A role already exists.
    #[snafu(display("a role named {role} already exists"))]
    RoleExists {
        /// Role.
        role: String,
    },
    /// A role name is not allowed.
    #[snafu(display("'{role}' cannot be the name of a delegated role"))]
    RoleName {
        /// Role.
        role: String,
    },
    /// A role is not delegated by the signing role.
    #[snafu(display("{parent} does not delegate to {role}"))]
    NotDelegatedBy {
        /// Role.
        role: String,
        /// Parent role.
        parent: String,
    },
    /// An incoming delegated role is not signed by the trusted keys.
    #[snafu(display("{role}'s metadata is not signed by the keys given for it"))]
    VerifyIncoming {
        /// Role.
        role: String,
        /// Cause.
        #[snafu(source(from(tough::schema::Error, Box::new)))]
        source: Box<tough::schema::Error>,
    },
    /// The output already holds a repository.
    #[snafu(display("{} exists: the output already holds a repository (use update)", path.display()))]
    RepoExists {
        /// Path.
        path: PathBuf,
    },
    /// A path cannot be a target name.
    #[snafu(display("{} cannot be a target name (not UTF-8, empty, or outside its folder)", path.display()))]
    TargetName {
        /// Path or name.
        path: PathBuf,
    },
    /// A signed target name that cannot be a local path.
    #[snafu(display(
        "refusing the target name {name:?}: a target name must be a relative path of plain components (no '..', '.', leading '/' or empty parts)"
    ))]
    UnsafeTargetName {
        /// The name as signed.
        name: String,
    },
    /// Two inputs map to the same target name.
    #[snafu(display("two inputs have the target name {name}: {first} and {second}"))]
    TargetCollision {
        /// Name.
        name: String,
        /// First input.
        first: String,
        /// Second input.
        second: String,
    },
    /// An input would replace an existing target with different content.
    #[snafu(display("target {name} already exists with different content than {}; use --replace-targets to replace it", path.display()))]
    TargetExists {
        /// Name.
        name: String,
        /// Input path.
        path: PathBuf,
    },
    /// A target to remove does not exist.
    #[snafu(display("no target named {name} in role {role}"))]
    NoSuchTarget {
        /// Name.
        name: String,
        /// Role.
        role: String,
    },
    /// A target lies outside its role's delegated paths.
    #[snafu(display("target {name} is outside the paths delegated to {role}"))]
    TargetOutsideDelegation {
        /// Name.
        name: String,
        /// Role.
        role: String,
    },
    /// A target's bytes do not match its metadata.
    #[snafu(display("target {name} from {url} does not match its length or sha256"))]
    TargetMismatch {
        /// Name.
        name: String,
        /// URL.
        url: String,
    },
    /// A target is not found in the repository metadata.
    #[snafu(display("no target named {name} in the repository"))]
    UnknownTarget {
        /// Name.
        name: String,
    },
    /// A target's file is not at the repository.
    #[snafu(display("target {name} is listed but not found at {url}"))]
    TargetNotFound {
        /// Name.
        name: String,
        /// URL.
        url: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
