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
        #[snafu(source(from(toml::de::Error, Box::new)))]
        source: Box<toml::de::Error>,
    },

    /// The expiration policy is not valid.
    #[snafu(display("Failed to parse repo expiration policy {origin}"))]
    ParseExpirationPolicy {
        /// Where it came from.
        origin: String,
        /// The parse error.
        #[snafu(source(from(toml::de::Error, Box::new)))]
        source: Box<toml::de::Error>,
    },

    /// An AWS command failed.
    #[snafu(display("AWS publishing failed"))]
    Aws {
        /// The AWS commands' error.
        source: Box<crate::aws::error::Error>,
    },

    /// A tuftool library operation (load, sign, write a repository) failed.
    #[snafu(display("TUF repository operation failed"))]
    Tuftool {
        /// tuftool's error.
        #[snafu(source(from(tuftool::Error, Box::new)))]
        source: Box<tuftool::Error>,
    },

    /// Probing a repository location failed for a reason other than "not found".
    #[snafu(display("Failed to check for a repository at {url}"))]
    ProbeRepo {
        /// The URL probed.
        url: String,
        /// The transport error.
        #[snafu(source(from(tough::TransportError, Box::new)))]
        source: Box<tough::TransportError>,
    },

    /// A URL could not be built.
    #[snafu(display("Bad URL {url}"))]
    BadUrl {
        /// The URL or part.
        url: String,
    },

    /// Reading a target of the repository failed.
    #[snafu(display("Failed to read target {name}"))]
    ReadTarget {
        /// The target name.
        name: String,
        /// tough's error.
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    /// The repository has no manifest.json target.
    #[snafu(display("The repository at {url} has no manifest.json target"))]
    MissingManifest {
        /// Metadata URL.
        url: String,
    },

    /// No signing key configured.
    #[snafu(display(
        "No signing key for repository '{repo}': give --signing-key, set signing_keys in Infra.toml, or pass an existing --default-key-path"
    ))]
    NoSigningKey {
        /// Repository name.
        repo: String,
    },

    /// An artifact differs from what the build report recorded.
    #[snafu(display(
        "{} does not match the build report (expected {expected}, found {actual}): refusing to sign it",
        path.display()
    ))]
    ArtifactMismatch {
        /// The artifact.
        path: std::path::PathBuf,
        /// Size and hash in the report.
        expected: String,
        /// Size and hash on disk.
        actual: String,
    },

    /// Something needed to describe the release is missing.
    #[snafu(display("Missing {what}: give it as a flag or through --build-report"))]
    MissingReleaseInput {
        /// What is missing.
        what: String,
    },

    /// The build report could not be parsed.
    #[snafu(display("Failed to parse build report {}", path.display()))]
    ParseBuildReport {
        /// The file.
        path: std::path::PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },

    /// Two inputs would publish the same target name.
    #[snafu(display("Two inputs would both be published as target '{name}'"))]
    DuplicateTargetName {
        /// The target name.
        name: String,
    },

    /// The output folder already holds what this run would write.
    #[snafu(display("{} already exists; choose another --outdir or remove it", path.display()))]
    OutputExists {
        /// The path.
        path: std::path::PathBuf,
    },

    /// A file to compare could not be read.
    #[snafu(display("Failed to read {} to compare it", path.display()))]
    CompareFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Writing the output failed.
    #[snafu(display("Failed to write {}", path.display()))]
    WriteOutput {
        /// The path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A target file already in the output differs from the one this run publishes.
    #[snafu(display("{} already exists with different content", path.display()))]
    TargetConflict {
        /// The path.
        path: std::path::PathBuf,
    },

    /// A root's SHA-512 differs from the one in Infra.toml.
    #[snafu(display("The root at {what} has SHA-512 {actual}, but Infra.toml expects {expected}"))]
    RootHashMismatch {
        /// Where the root came from.
        what: String,
        /// Expected hash.
        expected: String,
        /// Actual hash.
        actual: String,
    },

    /// `root_role_url` and `root_role_sha512` must be given together.
    #[snafu(display(
        "Repository '{repo}' needs both root_role_url and root_role_sha512, or neither"
    ))]
    RootUrlWithoutHash {
        /// Repository name.
        repo: String,
    },

    /// No URLs for a published repository.
    #[snafu(display(
        "No published location for repository '{repo}': set metadata_base_url and targets_url in Infra.toml, or pass --metadata-base-url and --targets-url"
    ))]
    NoRepoLocation {
        /// Repository name.
        repo: String,
    },

    /// The variant definition is not valid TOML of the expected shape.
    #[snafu(display("Failed to parse variant definition {}", path.display()))]
    ParseVariant {
        /// The file.
        path: std::path::PathBuf,
        /// The parse error.
        #[snafu(source(from(toml::de::Error, Box::new)))]
        source: Box<toml::de::Error>,
    },

    /// The variant definition has a bad value.
    #[snafu(display("Bad variant definition: {reason}"))]
    BadVariant {
        /// What is wrong.
        reason: String,
    },

    /// The image build failed.
    #[snafu(display("Image build failed"))]
    ImageBuilder {
        /// image-builder's error.
        #[snafu(source(from(image_builder::Error, Box::new)))]
        source: Box<image_builder::Error>,
    },

    /// A blocking task panicked or was cancelled.
    #[snafu(display("A background task failed"))]
    Join {
        /// The join error.
        source: tokio::task::JoinError,
    },

    /// Signing would produce already-expired metadata.
    #[snafu(display(
        "The {role} role would expire at {expires}, which is already past; check the release start time and the expiration policy"
    ))]
    ExpiresInPast {
        /// Role.
        role: String,
        /// The expiry.
        expires: jiff::Timestamp,
    },

    /// `manifest init` would overwrite a file.
    #[snafu(display("{} already exists; use --force to overwrite it", path.display()))]
    ManifestExists {
        /// The file.
        path: std::path::PathBuf,
    },

    /// An upload was asked for an output folder with no signed repository.
    #[snafu(display("Nothing to upload: {} has no timestamp.json (run `pubsys repo` first)", path.display()))]
    NothingToUpload {
        /// The metadata folder.
        path: std::path::PathBuf,
    },

    /// A file is larger than one S3 PutObject can carry.
    #[snafu(display("{} is {size} bytes, more than the 5 GiB a single S3 upload can carry", path.display()))]
    TooBigToUpload {
        /// The file.
        path: std::path::PathBuf,
        /// Its size.
        size: u64,
    },

    /// An S3 call failed.
    #[snafu(display("S3 {action} of {url} failed: {message}"))]
    S3 {
        /// The API call.
        action: &'static str,
        /// The object.
        url: String,
        /// The SDK's error, with its context.
        message: String,
    },

    /// A versioned or content-addressed object already exists with different content.
    #[snafu(display(
        "{url} already exists with different content; it is versioned metadata or a \
         content-addressed target that hosts may trust, so it is not overwritten (was another \
         release published meanwhile? re-run `pubsys repo` from the published repository)"
    ))]
    S3Conflict {
        /// The object.
        url: String,
    },

    /// A target in the output folder no longer holds the bytes its content-addressed name
    /// (and the signed metadata) says.
    #[snafu(display(
        "{} does not hold what its name says: SHA-256 {actual}, named {named} \
         (the output folder changed after signing; re-run `pubsys repo`)",
        path.display()
    ))]
    TargetChanged {
        /// The local file.
        path: std::path::PathBuf,
        /// The SHA-256 in its name.
        named: String,
        /// Its SHA-256 now.
        actual: String,
    },

    /// No region is known for S3.
    #[snafu(display(
        "No region for S3: set [aws.s3.NAME].region with the repository's \
         file_hosting_config_name, aws.regions in Infra.toml, or AWS_REGION"
    ))]
    NoS3Region,
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
