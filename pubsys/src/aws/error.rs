//! The error type of the AWS commands (wrapped by [`crate::Error::Aws`]).
use snafu::Snafu;
use std::path::PathBuf;

/// A boxed error from an AWS SDK call (keeps the SDK's source chain).
pub type SdkFailure = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `pubsys ami`, `publish-ami`, `ssm`, `promote-ssm`,
/// `validate-ami` and `validate-ssm`.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
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

    /// A blocking task panicked or was cancelled.
    #[snafu(display("A background task failed"))]
    Join {
        /// The join error.
        source: tokio::task::JoinError,
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

/// Result with the AWS [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Box an SDK error for [`Error::Call`] (keeps the whole source chain).
pub(crate) fn sdk<E: std::error::Error + Send + Sync + 'static>(error: E) -> SdkFailure {
    Box::new(error)
}
