//! The error type of the `pubsys` crate (repository and AWS commands alike).
use snafu::Snafu;
use std::path::PathBuf;

/// A boxed error from an AWS SDK call (keeps the SDK's source chain).
pub type SdkFailure = Box<dyn std::error::Error + Send + Sync + 'static>;

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

    /// A tuftool library operation (load, sign, write a repository) failed.
    #[snafu(display("TUF repository operation failed"))]
    Tuftool {
        /// tuftool's error.
        #[snafu(source(from(tuftool::Error, Box::new)))]
        source: Box<tuftool::Error>,
    },

    /// Building the delta index and store failed.
    #[snafu(display("Failed to build the delta index and store"))]
    Delta {
        /// The delta crate's error.
        source: delta::Error,
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

    // The AWS commands and service layer.
    /// Building an AWS client failed.
    #[snafu(display("Failed to build AWS client for {region}"))]
    Client {
        /// Region.
        region: String,
        /// The factory's error.
        source: aws_context::Error,
    },

    /// No region to work in.
    #[snafu(display("No regions given: use --regions or set aws.regions in Infra.toml"))]
    NoRegions,

    /// An AWS call failed.
    #[snafu(display("{operation} failed in {region}"))]
    Call {
        /// The API operation.
        operation: &'static str,
        /// Region.
        region: String,
        /// The SDK error.
        source: SdkFailure,
    },

    /// Changing who may use an AMI or snapshot failed.
    #[snafu(display("{operation} on {resource} in {region} failed"))]
    ModifyPermissions {
        /// The API operation.
        operation: &'static str,
        /// The AMI or snapshot.
        resource: String,
        /// Region.
        region: String,
        /// The SDK error.
        source: SdkFailure,
    },

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

    /// A JSON file is not valid.
    #[snafu(display("Failed to parse {}", path.display()))]
    ParseJson {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },

    /// JSON could not be produced.
    #[snafu(display("Failed to serialize {what}"))]
    Serialize {
        /// What was serialized.
        what: &'static str,
        /// The error.
        source: serde_json::Error,
    },

    /// The SSM parameter templates are not valid.
    #[snafu(display("Failed to parse SSM parameter templates {}", path.display()))]
    ParseTemplates {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: toml::de::Error,
    },

    /// The template file has no `[[parameter]]`.
    #[snafu(display("No [[parameter]] entries in {}", path.display()))]
    NoTemplates {
        /// The file.
        path: PathBuf,
    },

    /// A template could not be rendered.
    #[snafu(display("Failed to render SSM template '{template}': {message}"))]
    Render {
        /// The template text.
        template: String,
        /// What is wrong.
        message: String,
    },

    /// A disk image is empty or too large for an EBS snapshot.
    #[snafu(display("{} cannot be uploaded as a snapshot: {reason}", path.display()))]
    ImageSize {
        /// The image.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// A snapshot block could not be uploaded.
    #[snafu(display("Failed to upload block {index} of snapshot {snapshot_id} in {region}"))]
    PutBlock {
        /// The snapshot.
        snapshot_id: String,
        /// Block index.
        index: u64,
        /// Region.
        region: String,
        /// The SDK error.
        source: SdkFailure,
    },

    /// A snapshot ended in the `error` state.
    #[snafu(display("Snapshot {snapshot_id} in {region} is in state '{state}'"))]
    SnapshotState {
        /// The snapshot.
        snapshot_id: String,
        /// Region.
        region: String,
        /// Its state.
        state: String,
    },

    /// More than one AMI has the name.
    #[snafu(display(
        "{count} AMIs named '{name}' exist in {region} ({ids}); remove the extras first"
    ))]
    DuplicateImages {
        /// AMI name.
        name: String,
        /// Region.
        region: String,
        /// How many.
        count: usize,
        /// Their IDs.
        ids: String,
    },

    /// An existing AMI does not match what is being published.
    #[snafu(display(
        "AMI {image_id} named '{name}' in {region} has architecture {actual}, not {expected}"
    ))]
    ImageMismatch {
        /// The AMI.
        image_id: String,
        /// Its name.
        name: String,
        /// Region.
        region: String,
        /// Architecture asked for.
        expected: String,
        /// Architecture found.
        actual: String,
    },

    /// An AMI of this name exists, made from other images.
    #[snafu(display(
        "AMI {image_id} named '{name}' in {region} was made from other images ({why}); \
         give this build a new name, or deregister that AMI"
    ))]
    ExistingContent {
        /// The AMI.
        image_id: String,
        /// Its name.
        name: String,
        /// Region.
        region: String,
        /// What differs.
        why: String,
    },

    /// An AMI is in a failed state.
    #[snafu(display("AMI {image_id} in {region} is in state '{state}'"))]
    ImageState {
        /// The AMI.
        image_id: String,
        /// Region.
        region: String,
        /// Its state.
        state: String,
    },

    /// An AMI or snapshot did not become ready in time.
    #[snafu(display("Timed out after {seconds} s waiting for {what} in {region}"))]
    WaitTimeout {
        /// What was awaited.
        what: String,
        /// Region.
        region: String,
        /// The limit.
        seconds: u64,
    },

    /// An AMI could not be found.
    #[snafu(display("AMI {image_id} not found in {region}"))]
    ImageNotFound {
        /// The AMI.
        image_id: String,
        /// Region.
        region: String,
    },

    /// AWS answered without a field pubsys needs.
    #[snafu(display("{operation} in {region} returned no {field}"))]
    MissingField {
        /// The API operation.
        operation: &'static str,
        /// Region.
        region: String,
        /// The missing field.
        field: &'static str,
    },

    /// Some regions failed (the others were recorded).
    #[snafu(display("{failed} of {total} regions failed: {regions}"))]
    RegionsFailed {
        /// How many failed.
        failed: usize,
        /// How many were processed.
        total: usize,
        /// Which ones.
        regions: String,
    },

    /// The AMI input file lists no region.
    #[snafu(display("{} lists no AMIs", path.display()))]
    EmptyAmiInput {
        /// The file.
        path: PathBuf,
    },

    /// Requested regions are missing from the AMI input file.
    #[snafu(display("{} has no AMI for regions: {regions}", path.display()))]
    RegionsNotInInput {
        /// The file.
        path: PathBuf,
        /// The missing regions.
        regions: String,
    },

    /// `publish-ami` needs at least one principal.
    #[snafu(display(
        "Nothing to grant or revoke: give --user-ids, --group-names, --organization-arns or --organizational-unit-arns"
    ))]
    NoPrincipals,

    /// A private AMI would be published under `/aws/`.
    #[snafu(display(
        "Cowardly refusing to publish private image {image_id} to public namespace: {name} in {region} (use --allow-private-images to override)"
    ))]
    PrivateImage {
        /// The AMI.
        image_id: String,
        /// The parameter.
        name: String,
        /// Region.
        region: String,
    },

    /// Existing parameters would change without `--allow-clobber`.
    #[snafu(display(
        "{count} existing parameters would change (e.g. {example}); use --allow-clobber to overwrite them"
    ))]
    Clobber {
        /// How many.
        count: usize,
        /// One of them.
        example: String,
    },

    /// Some parameters could not be set or did not read back correctly.
    #[snafu(display("Failed to set {failed} of {total} parameters (e.g. {example})"))]
    SetParameters {
        /// How many failed.
        failed: usize,
        /// How many were to be set.
        total: usize,
        /// One failure, described.
        example: String,
    },

    /// A parameter kept being throttled.
    #[snafu(display("PutParameter for {name} in {region} was throttled too many times"))]
    Throttled {
        /// The parameter.
        name: String,
        /// Region.
        region: String,
    },

    /// `promote-ssm` found no source parameter.
    #[snafu(display("No parameters found for source version '{source_version}' in any region"))]
    NoSourceParameters {
        /// The source version.
        source_version: String,
    },

    /// `--check-unexpected` needs a prefix to list.
    #[snafu(display("--check-unexpected needs aws.ssm_prefix in Infra.toml"))]
    NoPrefix,
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Box an SDK error for [`Error::Call`] (keeps the whole source chain).
pub(crate) fn sdk<E: std::error::Error + Send + Sync + 'static>(error: E) -> SdkFailure {
    Box::new(error)
}
