//! Argument groups shared by several commands (one long and one short flag per meaning).
use crate::error::Result;
use crate::expiry::Expiry;
use crate::keys::KeySource;
use crate::repo::{self, RepoLocation, RoleSchedule, Schedule};
use clap::Args;
use std::num::NonZeroU64;
use std::path::PathBuf;
use url::Url;

/// `-k/--key`, repeatable.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Signing key: a file (PEM or DER), aws-ssm://PROFILE/NAME or aws-kms://PROFILE/ID (PROFILE may be empty);
    /// repeat for several keys
    #[arg(
        short = 'k',
        long = "key",
        visible_alias = "keys",
        value_name = "KEY",
        required = true
    )]
    pub keys: Vec<KeySource>,
}

/// Where an existing repository is.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Trusted root.json of the repository (any version; the chain is followed up from it)
    #[arg(
        short = 'r',
        long = "root",
        visible_alias = "current-root",
        value_name = "PATH"
    )]
    pub root: PathBuf,
    /// Metadata base: a folder, file:// or http(s):// URL
    #[arg(short = 'm', long = "metadata-url", value_name = "URL", value_parser = parse_url)]
    pub metadata_url: Url,
}

/// `--allow-expired-repo`.
#[derive(Debug, Clone, Args)]
pub struct ExpiredArgs {
    /// Load the repository even if its metadata has expired (to repair it)
    #[arg(long)]
    pub allow_expired_repo: bool,
}

/// Parse a location (URL or folder path) for clap.
pub fn parse_url(text: &str) -> Result<Url, String> {
    repo::parse_location(text).map_err(|e| e.to_string())
}

impl LoadArgs {
    /// As a library location.
    pub fn location(&self, targets_url: Option<Url>, allow_expired: bool) -> RepoLocation {
        RepoLocation::new(
            self.root.clone(),
            self.metadata_url.clone(),
            targets_url,
            allow_expired,
        )
    }
}

/// Versions and expiries of the roles a command signs.
#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    /// Expiry of every role signed, unless given per role: RFC 3339 or 'in N hours|days|weeks'
    #[arg(short = 'e', long = "expires", value_name = "WHEN")]
    pub expires: Option<Expiry>,
    /// Targets (or changed delegated role) version; default: current + 1; must increase
    #[arg(long, value_name = "N")]
    pub targets_version: Option<NonZeroU64>,
    /// Targets (or changed delegated role) expiry
    #[arg(long, value_name = "WHEN")]
    pub targets_expires: Option<Expiry>,
    /// Snapshot version; default: current + 1; must increase
    #[arg(long, value_name = "N")]
    pub snapshot_version: Option<NonZeroU64>,
    /// Snapshot expiry
    #[arg(long, value_name = "WHEN")]
    pub snapshot_expires: Option<Expiry>,
    /// Timestamp version; default: current + 1; must increase
    #[arg(long, value_name = "N")]
    pub timestamp_version: Option<NonZeroU64>,
    /// Timestamp expiry
    #[arg(long, value_name = "WHEN")]
    pub timestamp_expires: Option<Expiry>,
}

impl ScheduleArgs {
    /// Resolve against `now` (expiries must be in the future).
    pub fn schedule(&self, now: jiff::Timestamp) -> Result<Schedule> {
        let one = |version, expires: Option<Expiry>, role: &str| -> Result<RoleSchedule> {
            let expires = expires
                .or(self.expires)
                .map(|e| e.resolve_future(now, role))
                .transpose()?;
            Ok(RoleSchedule { version, expires })
        };
        Ok(Schedule {
            targets: one(self.targets_version, self.targets_expires, "targets")?,
            snapshot: one(self.snapshot_version, self.snapshot_expires, "snapshot")?,
            timestamp: one(self.timestamp_version, self.timestamp_expires, "timestamp")?,
        })
    }
}

/// How targets are placed.
#[derive(Debug, Clone, Args)]
pub struct PlaceArgs {
    /// How target files are placed in OUTDIR/targets
    #[arg(long, value_enum, default_value_t = crate::fsutil::LinkMode::Copy)]
    pub link_mode: crate::fsutil::LinkMode,
    /// Also place targets whose names have a folder at tough's `<sha256>.dir/file`, for
    /// tough-based clients such as the reference tuftool (the spec's `dir/<sha256>.file` is
    /// always written; this adds one folder per such target)
    #[arg(long)]
    pub tough_placement: bool,
    /// Follow symlinks in input folders
    #[arg(short = 'f', long = "follow")]
    pub follow: bool,
    /// Files hashed and placed at once
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = default_jobs())]
    pub jobs: usize,
    /// A file already at a target's place in OUTDIR/targets: skip (keep it if its SHA-256 is
    /// the target's, else replace it), replace, or fail
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = crate::fsutil::PathExists::Skip)]
    pub target_path_exists: crate::fsutil::PathExists,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

/// An existing repository, the keys to sign with, the output folder and the schedule: the
/// inputs of every command that publishes a new version of a repository.
#[derive(Debug, Clone, Args)]
pub struct RepoArgs {
    /// Arguments of this group.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Arguments of this group.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Output folder (usually the repository itself)
    #[arg(short = 'o', long = "outdir", value_name = "DIR")]
    pub outdir: PathBuf,
    /// Arguments of this group.
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Arguments of this group.
    #[command(flatten)]
    pub expired: ExpiredArgs,
}

impl RepoArgs {
    /// Where the repository is.
    pub fn location(&self) -> RepoLocation {
        self.load.location(None, self.expired.allow_expired_repo)
    }

    /// Options for publishing `add_targets` placed by `place`.
    pub fn publish_options(
        &self,
        add_targets: &[PathBuf],
        place: &PlaceArgs,
        now: jiff::Timestamp,
    ) -> Result<crate::repo::PublishOptions> {
        publish_options(
            &self.keys,
            add_targets,
            place,
            &self.schedule,
            &self.outdir,
            now,
        )
    }
}

/// Options for publishing targets.
pub fn publish_options(
    keys: &KeyArgs,
    add_targets: &[PathBuf],
    place: &PlaceArgs,
    schedule: &ScheduleArgs,
    outdir: &std::path::Path,
    now: jiff::Timestamp,
) -> Result<crate::repo::PublishOptions> {
    Ok(crate::repo::PublishOptions {
        keys: keys.keys.clone(),
        add_targets: add_targets.to_vec(),
        follow_links: place.follow,
        place: crate::repo::Place {
            link_mode: place.link_mode,
            tough_placement: place.tough_placement,
            jobs: place.jobs,
            exists: place.target_path_exists,
        },
        schedule: schedule.schedule(now)?,
        outdir: outdir.to_path_buf(),
    })
}

/// The reference tuftool's root download (trust on first use). Accepted so its scripts run;
/// when the `-r` file exists (the usual case) nothing changes. Without it the command fails:
/// a root fetched from the repository it is meant to verify proves nothing.
#[derive(Debug, Clone, Args)]
pub struct RootDownloadArgs {
    /// Reference flag: download the root when the -r file is missing (refused: see above)
    #[arg(long)]
    pub allow_root_download: bool,
    /// Reference flag: the root version to download
    #[arg(long, value_name = "N", requires = "allow_root_download")]
    pub root_version: Option<std::num::NonZeroU64>,
}

impl RootDownloadArgs {
    /// Refuse a root download the reference would have made.
    pub fn check(&self, load: &LoadArgs) -> Result<()> {
        snafu::ensure!(
            !self.allow_root_download || load.root.exists(),
            crate::error::RootDownloadSnafu { path: &load.root }
        );
        Ok(())
    }
}

/// `-a/--add-targets DIR`, repeatable: the targets `create` and `update` publish.
#[derive(Debug, Clone, Args)]
pub struct AddTargetsArgs {
    /// Input folder; every file below it becomes a target named by its relative path
    /// (repeatable; two inputs with the same name are an error)
    #[arg(
        short = 'a',
        visible_short_alias = 't',
        long = "add-targets",
        value_name = "DIR"
    )]
    pub add_targets: Vec<PathBuf>,
}

/// The delegated role and the keys to trust for it (`add-role`, `add-key`).
#[derive(Debug, Clone, Args)]
pub struct DelegatedKeysArgs {
    /// The delegated role
    #[arg(short = 'd', long = "delegated-role", value_name = "ROLE")]
    pub delegated_role: String,
    /// Key to trust for it: a public key JSON file or a key source (repeatable)
    #[arg(
        long = "delegated-key",
        visible_alias = "new-key",
        value_name = "KEY",
        required = true
    )]
    pub delegated_keys: Vec<String>,
}
