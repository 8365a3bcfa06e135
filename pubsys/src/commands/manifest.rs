//! `pubsys manifest …`: the operator commands for `manifest.json` (what the reference `updata`
//! tool does), built on `update-metadata`. Every write is atomic; re-adding a release replaces
//! it; ceilings are per variant and arch; `set-waves` on a missing update is an error.

use crate::args::VariantArchArgs;
use crate::error::{self, Result};
use clap::{Args, Subcommand};
use jiff::Timestamp;
use semver::Version;
use serde::Serialize;
use snafu::{ResultExt, ensure};
use std::fmt;
use std::path::{Path, PathBuf};
use update_metadata::{Images, Manifest, NewUpdate, Offset, Release, WaveSchedule};

/// `pubsys manifest` subcommands.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Create an empty manifest (refuses to overwrite an existing file without --force)
    Init(InitArgs),
    /// Add an update, or replace the one with the same variant, arch and version
    AddUpdate(AddUpdateArgs),
    /// Remove the update with this variant, arch and version
    RemoveUpdate(UpdateArgs),
    /// Set an update's waves from a wave schedule and a release start time
    SetWaves(SetWavesArgs),
    /// Replace the migration table with the one in Release.toml
    SetMigrations(SetMigrationsArgs),
    /// Set the ceiling of every update of one variant and arch
    SetMaxVersion(SetMaxVersionArgs),
    /// Check a manifest: it parses, and every update's waves are in time order (exit 3 if not)
    Validate(FileArg),
}

/// The manifest file to work on.
#[derive(Debug, Args)]
pub struct FileArg {
    /// Path of manifest.json
    #[arg(value_name = "MANIFEST")]
    pub file: PathBuf,
}

/// Arguments of `manifest init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    file: FileArg,
    /// Overwrite an existing file
    #[arg(long)]
    force: bool,
}

/// Which update: variant, arch and version.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    file: FileArg,
    #[command(flatten)]
    which: VariantArchArgs,
    /// Release version (semver; a leading v is accepted)
    #[arg(long, value_parser = parse_version)]
    version: Version,
}

/// Arguments of `manifest add-update`.
#[derive(Debug, Args)]
pub struct AddUpdateArgs {
    #[command(flatten)]
    update: UpdateArgs,
    /// TUF target name of the boot image
    #[arg(long)]
    boot_image: String,
    /// TUF target name of the root image
    #[arg(long)]
    root_image: String,
    /// TUF target name of the dm-verity hash image
    #[arg(long)]
    hash_image: String,
    /// Ceiling for this variant and arch (default: the group's highest, raised to --version)
    #[arg(long, value_parser = parse_version)]
    max_version: Option<Version>,
}

/// Arguments of `manifest set-waves`.
#[derive(Debug, Args)]
pub struct SetWavesArgs {
    #[command(flatten)]
    update: UpdateArgs,
    /// Wave schedule TOML (e.g. waves/default-waves.toml)
    #[arg(long, value_name = "PATH")]
    wave_policy_path: PathBuf,
    /// Release start: RFC 3339, or an offset from now such as 'in 2 hours' (default: now)
    #[arg(long, value_name = "TIME")]
    release_start_time: Option<Offset>,
}

/// Arguments of `manifest set-migrations`.
#[derive(Debug, Args)]
pub struct SetMigrationsArgs {
    #[command(flatten)]
    file: FileArg,
    /// Release.toml whose [migrations] table replaces the manifest's
    #[arg(long, value_name = "PATH")]
    release_config_path: PathBuf,
}

/// Arguments of `manifest set-max-version`.
#[derive(Debug, Args)]
pub struct SetMaxVersionArgs {
    #[command(flatten)]
    file: FileArg,
    #[command(flatten)]
    which: VariantArchArgs,
    /// The new ceiling
    #[arg(long, value_parser = parse_version)]
    max_version: Version,
}

use update_metadata::parse_version;

/// One update, as listed in the summary.
#[derive(Debug, Serialize)]
pub struct UpdateSummary {
    /// Variant.
    pub variant: String,
    /// Arch.
    pub arch: String,
    /// Version.
    pub version: String,
    /// Ceiling.
    pub max_version: String,
    /// Number of waves.
    pub waves: usize,
    /// First wave's start, if any.
    pub first_wave: Option<Timestamp>,
}

/// What the manifest looks like after the command.
#[derive(Debug, Serialize)]
pub struct ManifestReport {
    /// The file.
    pub file: PathBuf,
    /// What was done.
    pub action: String,
    /// Every update in the file.
    pub updates: Vec<UpdateSummary>,
    /// Number of migration hops.
    pub migration_hops: usize,
    /// Problems found by `validate` (empty otherwise).
    pub problems: Vec<String>,
}

impl ManifestReport {
    fn new(
        file: &Path,
        action: String,
        manifest: &Manifest,
        problems: Vec<String>,
    ) -> ManifestReport {
        let updates = manifest
            .updates
            .iter()
            .map(|u| UpdateSummary {
                variant: u.variant.clone(),
                arch: u.arch.clone(),
                version: u.version.to_string(),
                max_version: u.max_version.to_string(),
                waves: u.waves.0.len(),
                first_wave: u.waves.0.values().next().copied(),
            })
            .collect();
        ManifestReport {
            file: file.to_owned(),
            action,
            updates,
            migration_hops: manifest.migrations.0.len(),
            problems,
        }
    }
}

impl fmt::Display for ManifestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.file.display(), self.action)?;
        for u in &self.updates {
            let first = u.first_wave.map_or_else(
                || "no waves".to_owned(),
                |t| format!("{} waves from {t}", u.waves),
            );
            writeln!(
                f,
                "  {} {} {} (max {}), {first}",
                u.variant, u.arch, u.version, u.max_version
            )?;
        }
        writeln!(f, "  {} migration hops", self.migration_hops)?;
        for problem in &self.problems {
            writeln!(f, "  PROBLEM: {problem}")?;
        }
        Ok(())
    }
}

fn load(path: &Path) -> Result<Manifest> {
    Manifest::load(path).context(error::MetadataSnafu)
}

fn save(path: &Path, manifest: &Manifest, action: String) -> Result<ManifestReport> {
    manifest.save(path).context(error::MetadataSnafu)?;
    Ok(ManifestReport::new(path, action, manifest, Vec::new()))
}

/// Run a `pubsys manifest` subcommand; `now` is the clock.
pub fn run(command: &ManifestCommand, now: Timestamp) -> Result<ManifestReport> {
    match command {
        ManifestCommand::Init(args) => {
            let path = &args.file.file;
            ensure!(
                args.force || !path.exists(),
                error::ManifestExistsSnafu { path }
            );
            save(path, &Manifest::default(), "created".into())
        }
        ManifestCommand::AddUpdate(args) => {
            let u = &args.update;
            let mut manifest = load(&u.file.file)?;
            let replaced = manifest
                .updates
                .iter()
                .any(|x| x.is(&u.which.variant, u.which.arch.as_str(), &u.version));
            manifest.add_update(NewUpdate {
                variant: u.which.variant.clone(),
                arch: u.which.arch.as_str().to_owned(),
                version: u.version.clone(),
                images: Images {
                    boot: args.boot_image.clone(),
                    root: args.root_image.clone(),
                    hash: args.hash_image.clone(),
                    extra: Default::default(),
                },
                // New images: a delta made for the old ones no longer applies.
                delta: None,
                max_version: args.max_version.clone(),
            });
            let verb = if replaced { "replaced" } else { "added" };
            save(
                &u.file.file,
                &manifest,
                format!("{verb} {} {} {}", u.which.variant, u.which.arch, u.version),
            )
        }
        ManifestCommand::RemoveUpdate(u) => {
            let mut manifest = load(&u.file.file)?;
            manifest
                .remove_update(&u.which.variant, u.which.arch.as_str(), &u.version)
                .context(error::MetadataSnafu)?;
            save(
                &u.file.file,
                &manifest,
                format!("removed {} {} {}", u.which.variant, u.which.arch, u.version),
            )
        }
        ManifestCommand::SetWaves(args) => {
            let u = &args.update;
            let mut manifest = load(&u.file.file)?;
            let schedule =
                WaveSchedule::load(&args.wave_policy_path).context(error::MetadataSnafu)?;
            let start = match &args.release_start_time {
                Some(offset) => offset.resolve(now).context(error::MetadataSnafu)?,
                None => now,
            };
            manifest
                .set_waves(
                    &u.which.variant,
                    u.which.arch.as_str(),
                    &u.version,
                    &schedule,
                    start,
                )
                .context(error::MetadataSnafu)?;
            save(
                &u.file.file,
                &manifest,
                format!(
                    "set waves of {} {} {} from {start}",
                    u.which.variant, u.which.arch, u.version
                ),
            )
        }
        ManifestCommand::SetMigrations(args) => {
            let mut manifest = load(&args.file.file)?;
            let release = Release::load(&args.release_config_path).context(error::MetadataSnafu)?;
            manifest.set_migrations(&release);
            save(
                &args.file.file,
                &manifest,
                format!("set migrations from {}", args.release_config_path.display()),
            )
        }
        ManifestCommand::SetMaxVersion(args) => {
            let mut manifest = load(&args.file.file)?;
            manifest
                .set_max_version(
                    &args.which.variant,
                    args.which.arch.as_str(),
                    &args.max_version,
                )
                .context(error::MetadataSnafu)?;
            save(
                &args.file.file,
                &manifest,
                format!(
                    "set max version of {} {} to {}",
                    args.which.variant, args.which.arch, args.max_version
                ),
            )
        }
        ManifestCommand::Validate(args) => {
            let manifest = load(&args.file)?;
            let problems: Vec<String> = manifest
                .updates
                .iter()
                .filter(|u| u.version > u.max_version)
                .map(|u| {
                    format!(
                        "{} {} {} is above its max_version {} and is never offered",
                        u.variant, u.arch, u.version, u.max_version
                    )
                })
                .chain(manifest.check_wave_order().err().map(|e| e.to_string()))
                .collect();
            let action = if problems.is_empty() {
                "valid"
            } else {
                "has problems"
            };
            Ok(ManifestReport::new(
                &args.file,
                action.into(),
                &manifest,
                problems,
            ))
        }
    }
}
