//! `manifest.json`: the list of updates with their waves and images, and the migration table.
//!
//! Every field is required, as in the reference. Unknown fields (top level, updates, images)
//! are **kept** and written back (decision h). Output is pretty JSON with a two-space indent,
//! wave keys in numeric order, times in canonical UTC, migration keys canonical and sorted.
//! Editing follows the publisher's rules: re-adding an update replaces it in place (decision g),
//! `max_version` bookkeeping is per (variant, arch), and every write is atomic (decision i).

use crate::error::{self, Result};
use crate::fs::write_atomic;
use crate::migrations::{Migrations, Release};
use crate::waves::{WaveSchedule, Waves};
use jiff::Timestamp;
use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use snafu::{OptionExt, ResultExt, ensure};
use std::path::Path;

/// The whole `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Every published update.
    pub updates: Vec<Update>,
    /// Migration hops and the migrations each runs.
    pub migrations: Migrations,
    /// Fields this version does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One published update: a variant, arch and version with its images and waves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// Variant name, matched exactly (e.g. `aws-k8s-1.28`).
    pub variant: String,
    /// Architecture name, matched exactly (`x86_64` or `aarch64`). Kept as text so that a
    /// manifest with an entry for an unknown architecture still loads on every host.
    pub arch: String,
    /// The version this update installs.
    pub version: Version,
    /// Ceiling: an update above it is never offered.
    pub max_version: Version,
    /// Seed threshold → start time.
    pub waves: Waves,
    /// TUF target names of the partition images.
    pub images: Images,
    /// TUF target names of the delta index and store (see the `delta` crate), when the
    /// publisher made them. Hosts that do not know the field (the reference updog ignores
    /// unknown fields) use the full images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    /// Fields this version does not know (e.g. the legacy `status`), kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// TUF target names of the three LZ4-compressed partition images of an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Images {
    /// The BOOT partition image.
    pub boot: String,
    /// The ROOT partition image.
    pub root: String,
    /// The dm-verity HASH partition image.
    pub hash: String,
    /// Fields this version does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// TUF target names of an update's delta index and store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The index (signed like every target): a hash per block, a SHA-256 per image.
    pub index: String,
    /// The store, read by byte ranges; every piece is checked against the index.
    pub store: String,
    /// Fields this version does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a publisher gives to add (or replace) an update.
#[derive(Debug, Clone)]
pub struct NewUpdate {
    /// Variant name.
    pub variant: String,
    /// Architecture name.
    pub arch: String,
    /// Version of the release.
    pub version: Version,
    /// The images' TUF target names.
    pub images: Images,
    /// The delta index and store, if made.
    pub delta: Option<Delta>,
    /// Explicit ceiling for the (variant, arch) group; `None` keeps the group's highest
    /// ceiling, raised to `version` if needed.
    pub max_version: Option<Version>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            updates: Vec::new(),
            migrations: Migrations::default(),
            extra: Map::new(),
        }
    }
}

impl Update {
    /// Whether this update is for `variant`, `arch` and `version` exactly.
    pub fn is(&self, variant: &str, arch: &str, version: &Version) -> bool {
        self.in_group(variant, arch) && &self.version == version
    }

    /// Whether this update belongs to the (variant, arch) group.
    pub fn in_group(&self, variant: &str, arch: &str) -> bool {
        self.variant == variant && self.arch == arch
    }
}

impl Manifest {
    /// Parse `manifest.json` bytes. `origin` names the document in errors.
    pub fn from_slice(bytes: &[u8], origin: &str) -> Result<Manifest> {
        serde_json::from_slice(bytes).context(error::ParseManifestSnafu { origin })
    }

    /// Read and parse a `manifest.json` file.
    pub fn load(path: &Path) -> Result<Manifest> {
        let bytes = std::fs::read(path).context(error::ReadFileSnafu { path })?;
        Manifest::from_slice(&bytes, &path.display().to_string())
    }

    /// The canonical serialised form: pretty JSON, two-space indent, trailing newline.
    pub fn to_json(&self) -> Result<String> {
        for name in self.migrations.0.values().flatten() {
            crate::migrations::check_migration_name(name)
                .map_err(|reason| error::Error::UnsafeMigrationName { reason })?;
        }
        let mut text = serde_json::to_string_pretty(self).context(error::SerializeManifestSnafu)?;
        text.push('\n');
        Ok(text)
    }

    /// Write the canonical form to `path` atomically (temp file in the same folder, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_json()?;
        write_atomic(path, text.as_bytes(), 0o644).context(error::WriteFileSnafu { path })
    }

    /// Add an update, or replace the one with the same variant, arch and version in place
    /// (keeping its waves and unknown fields, so a re-publish never opens the gate to the whole
    /// fleet). Then set the group's ceiling on every update of the same variant and arch: the
    /// explicit `max_version`, or the group's highest ceiling raised to the new version.
    pub fn add_update(&mut self, new: NewUpdate) {
        let NewUpdate {
            variant,
            arch,
            version,
            images,
            delta,
            max_version,
        } = new;
        let ceiling = max_version.unwrap_or_else(|| {
            self.updates
                .iter()
                .filter(|u| u.in_group(&variant, &arch))
                .map(|u| u.max_version.clone())
                .chain([version.clone()])
                .max()
                .unwrap_or_else(|| version.clone())
        });
        match self
            .updates
            .iter_mut()
            .find(|u| u.is(&variant, &arch, &version))
        {
            Some(existing) => {
                existing.images = images;
                existing.delta = delta;
            }
            None => self.updates.push(Update {
                variant: variant.clone(),
                arch: arch.clone(),
                version,
                max_version: ceiling.clone(),
                waves: Waves::default(),
                images,
                delta,
                extra: Map::new(),
            }),
        }
        for update in self
            .updates
            .iter_mut()
            .filter(|u| u.in_group(&variant, &arch))
        {
            update.max_version = ceiling.clone();
        }
    }

    /// Remove the update with this variant, arch and version, returning it.
    pub fn remove_update(
        &mut self,
        variant: &str,
        arch: &str,
        version: &Version,
    ) -> Result<Update> {
        let index = self
            .updates
            .iter()
            .position(|u| u.is(variant, arch, version))
            .context(error::UpdateNotFoundSnafu {
                variant,
                arch,
                version: version.clone(),
            })?;
        Ok(self.updates.remove(index))
    }

    /// Replace the waves of one update with `schedule` resolved from `start`, then check that
    /// every update's waves are in time order.
    pub fn set_waves(
        &mut self,
        variant: &str,
        arch: &str,
        version: &Version,
        schedule: &WaveSchedule,
        start: Timestamp,
    ) -> Result<()> {
        let waves = schedule.resolve(start)?;
        let update = self
            .updates
            .iter_mut()
            .find(|u| u.is(variant, arch, version))
            .context(error::UpdateNotFoundSnafu {
                variant,
                arch,
                version: version.clone(),
            })?;
        update.waves = waves;
        self.check_wave_order()
    }

    /// Set the ceiling of every update of one (variant, arch) group.
    pub fn set_max_version(
        &mut self,
        variant: &str,
        arch: &str,
        max_version: &Version,
    ) -> Result<()> {
        let mut group = self
            .updates
            .iter_mut()
            .filter(|u| u.in_group(variant, arch))
            .peekable();
        ensure!(
            group.peek().is_some(),
            error::NoUpdatesInGroupSnafu { variant, arch }
        );
        for update in group {
            update.max_version = max_version.clone();
        }
        Ok(())
    }

    /// Replace the whole migration table with the release's.
    pub fn set_migrations(&mut self, release: &Release) {
        self.migrations = release.migrations.clone();
    }

    /// Check that every update's wave times strictly increase with the key.
    pub fn check_wave_order(&self) -> Result<()> {
        for update in &self.updates {
            if let Some(((key, time), (next_key, next_time))) = update.waves.first_disorder() {
                return error::WavesUnorderedSnafu {
                    update: format!("{} {} {}", update.variant, update.arch, update.version),
                    key,
                    time,
                    next_key,
                    next_time,
                }
                .fail();
            }
        }
        Ok(())
    }

    /// The migrations to run between two versions (see [`Migrations::path`]).
    pub fn migration_path(&self, from: &Version, to: &Version) -> Result<Vec<String>> {
        self.migrations.path(from, to)
    }
}
