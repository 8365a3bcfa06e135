//! [`State`]: one disk's A/B state, loaded under a lock, changed in memory by the commands,
//! then written back crash-safely. This is the API updog uses:
//!
//! ```no_run
//! use signpost::{Access, DiskSource, State};
//!
//! # fn main() -> signpost::Result<()> {
//! let mut state = State::load(&DiskSource::host(), Access::Write)?;
//! state.clear_inactive()?;
//! state.write()?;
//! // ... write the images to the inactive set's partitions ...
//! state.mark_inactive_valid()?;
//! state.upgrade_to_inactive()?;
//! state.write()?;
//! # Ok(())
//! # }
//! ```

use crate::Result;
use crate::ab::{AbState, SetId};
use crate::disk::{Access, DEFAULT_LOCK_TIMEOUT, Disk};
use crate::error::{
    ActiveNotInSetsSnafu, ActiveSetUnknownSnafu, AttributesOutOfTableSnafu, NotOpenForWritingSnafu,
};
use crate::gpt::{CopyState, Table};
use crate::gpt_types::{BOOT_EVER_SUCCEEDED_BIT, BootFlags, boot_ever_succeeded};
use crate::host::{HostPaths, find_running_disk, partition_node};
use crate::layout::{Layout, SetPartitions};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which disk to work on, and how to tell the running set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// The disk holding the running root, found through sysfs; the running set is the one
    /// the root device sits on.
    Host(HostPaths),
    /// An explicit disk image file or block device.
    Path {
        /// The image file or block device.
        path: PathBuf,
        /// The running set; `None` infers it when exactly one set is bootable and marked
        /// successful, and otherwise leaves it unknown (commands that need it then fail with
        /// [`crate::Error::ActiveSetUnknown`]).
        active: Option<SetId>,
    },
}

impl DiskSource {
    /// What the disk flags say: `disk` (with its running set `active`, if known), else the
    /// host's own disk.
    pub fn new(disk: Option<&std::path::Path>, active: Option<SetId>) -> DiskSource {
        match disk {
            Some(path) => DiskSource::Path {
                path: path.to_owned(),
                active,
            },
            None => DiskSource::host(),
        }
    }

    /// The running host, with the standard system paths.
    pub fn host() -> DiskSource {
        DiskSource::Host(HostPaths::default())
    }
}

/// How the running set was determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActiveSource {
    /// From the running root device (sysfs).
    Detected,
    /// Given explicitly (`--active-set`).
    Given,
    /// Inferred: the only set that is bootable and marked successful.
    Inferred,
    /// Not known.
    Unknown,
}

/// The A/B state of one disk, with the disk held open and locked until it is dropped.
#[derive(Debug)]
pub struct State {
    disk: Disk,
    table: Table,
    layout: Layout,
    ab: AbState,
    active: Option<SetId>,
    active_source: ActiveSource,
}

impl State {
    /// Open the disk `source` names for `access`, lock it (waiting up to 30 s for another
    /// holder), read the table and find the sets.
    pub fn load(source: &DiskSource, access: Access) -> Result<State> {
        State::load_with_timeout(source, access, DEFAULT_LOCK_TIMEOUT)
    }

    /// [`State::load`] with an explicit lock timeout.
    pub fn load_with_timeout(
        source: &DiskSource,
        access: Access,
        lock_timeout: Duration,
    ) -> Result<State> {
        match source {
            DiskSource::Path { path, active } => {
                let mut disk = Disk::open(path, access, lock_timeout)?;
                let (table, layout, ab) = read(&mut disk)?;
                let (active, active_source) = match active {
                    Some(set) => (Some(*set), ActiveSource::Given),
                    None => match ab.infer_active() {
                        Some(set) => (Some(set), ActiveSource::Inferred),
                        None => (None, ActiveSource::Unknown),
                    },
                };
                Ok(State {
                    disk,
                    table,
                    layout,
                    ab,
                    active,
                    active_source,
                })
            }
            DiskSource::Host(paths) => {
                let running = find_running_disk(paths)?;
                let mut disk = Disk::open(&running.disk, access, lock_timeout)?;
                let (table, layout, ab) = read(&mut disk)?;
                let sets: Vec<Option<SetId>> = running
                    .partitions
                    .iter()
                    .map(|(_, number)| layout.set_of(*number))
                    .collect();
                let names = running
                    .partitions
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                // Every partition under the root must be in the same set.
                let Some(Some(active)) = sets
                    .first()
                    .filter(|first| sets.iter().all(|s| s == *first))
                else {
                    return ActiveNotInSetsSnafu {
                        path: &running.disk,
                        partitions: names,
                    }
                    .fail();
                };
                tracing::debug!(set = %active, partitions = %names, "running set detected");
                Ok(State {
                    active: Some(*active),
                    disk,
                    table,
                    layout,
                    ab,
                    active_source: ActiveSource::Detected,
                })
            }
        }
    }

    /// The disk's path.
    pub fn disk_path(&self) -> &Path {
        self.disk.path()
    }

    /// The flags of both sets and bit 57, including changes not yet written.
    pub fn ab(&self) -> &AbState {
        &self.ab
    }

    /// The flags of `set`, including changes not yet written.
    pub fn flags(&self, set: SetId) -> BootFlags {
        self.ab.flags(set)
    }

    /// Where the sets are on the disk.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The partition table as read (attribute changes are applied by [`State::write`]).
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The running set, if known.
    pub fn active_if_known(&self) -> Option<SetId> {
        self.active
    }

    /// How the running set was determined.
    pub fn active_source(&self) -> ActiveSource {
        self.active_source
    }

    /// The running set, or [`crate::Error::ActiveSetUnknown`].
    pub fn active(&self) -> Result<SetId> {
        match self.active {
            Some(set) => Ok(set),
            None => ActiveSetUnknownSnafu {
                path: self.disk.path(),
                reason: match (self.ab.a.successful, self.ab.b.successful) {
                    (true, true) => "both sets are marked successful",
                    (false, false) => "no set is marked successful",
                    _ => {
                        "the other set was flipped to and booted but never marked successful: \
                         it may be the one running"
                    }
                },
            }
            .fail(),
        }
    }

    /// The set that is not running, or [`crate::Error::ActiveSetUnknown`].
    pub fn inactive(&self) -> Result<SetId> {
        self.active().map(SetId::other)
    }

    /// The set the bootloader would pick next, if any.
    pub fn next(&self) -> Option<SetId> {
        self.ab.next()
    }

    /// Bit 57 of the PRIVATE partition: a boot has ever been marked successful.
    pub fn has_boot_ever_succeeded(&self) -> bool {
        self.ab.boot_ever_succeeded
    }

    /// `clear-inactive` in memory.
    pub fn clear_inactive(&mut self) -> Result<&AbState> {
        self.ab = self.ab.clear_inactive(self.active()?);
        Ok(&self.ab)
    }

    /// `mark-inactive-valid` in memory.
    pub fn mark_inactive_valid(&mut self) -> Result<&AbState> {
        self.ab = self.ab.mark_inactive_valid(self.active()?);
        Ok(&self.ab)
    }

    /// `upgrade-to-inactive` in memory; a refusal changes nothing.
    pub fn upgrade_to_inactive(&mut self) -> Result<&AbState> {
        self.ab = self.ab.upgrade_to_inactive(self.active()?)?;
        Ok(&self.ab)
    }

    /// `cancel-upgrade` in memory.
    pub fn cancel_upgrade(&mut self) -> Result<&AbState> {
        self.ab = self.ab.cancel_upgrade(self.active()?);
        Ok(&self.ab)
    }

    /// `rollback-to-inactive` in memory; a refusal changes nothing.
    pub fn rollback_to_inactive(&mut self) -> Result<&AbState> {
        self.ab = self.ab.rollback_to_inactive(self.active()?)?;
        Ok(&self.ab)
    }

    /// `mark-successful-boot` in memory.
    pub fn mark_successful_boot(&mut self) -> Result<&AbState> {
        self.ab = self.ab.mark_successful_boot(self.active()?);
        Ok(&self.ab)
    }

    /// `select-boot` in memory: what the bootloader does (pick the next set, spend one try).
    /// Returns the chosen set, which becomes the running one for this `State`.
    pub fn select_boot(&mut self) -> Result<SetId> {
        let (chosen, next) = self.ab.select_boot()?;
        self.ab = next;
        self.active = Some(chosen);
        self.active_source = ActiveSource::Given;
        Ok(chosen)
    }

    /// Whether [`State::write`] has something to do: flags changed in memory, or a copy of
    /// the table needs repair.
    pub fn needs_write(&self) -> bool {
        self.apply_to_table().is_some_and(|table| {
            table.entries() != self.table.entries() || self.table.needs_repair()
        })
    }

    /// The table with the in-memory flags applied; `None` if a set's partition vanished
    /// (impossible for a table [`Layout::find`] accepted).
    fn apply_to_table(&self) -> Option<Table> {
        let mut table = self.table.clone();
        for set in SetId::BOTH {
            let boot = self.layout.set(set).boot;
            let attributes = self.ab.flags(set).apply_to(table.attributes(boot)?);
            table.set_attributes(boot, attributes);
        }
        let private = self.layout.private;
        let bit = 1_u64 << BOOT_EVER_SUCCEEDED_BIT;
        let old = table.attributes(private)?;
        let new = if self.ab.boot_ever_succeeded {
            old | bit
        } else {
            old & !bit
        };
        table.set_attributes(private, new);
        Some(table)
    }

    /// Write the in-memory flags to both copies of the table (backup first, each synced),
    /// repairing a damaged copy. Every other bit and field is kept.
    pub fn write(&mut self) -> Result<()> {
        if self.disk.access() != Access::Write {
            return NotOpenForWritingSnafu {
                path: self.disk.path(),
            }
            .fail();
        }
        let Some(mut table) = self.apply_to_table() else {
            return AttributesOutOfTableSnafu {
                path: self.disk.path(),
            }
            .fail();
        };
        let path = self.disk.path().to_owned();
        table.write(&mut self.disk, &path)?;
        self.table = table;
        tracing::info!(
            disk = %path.display(),
            a = %self.ab.a,
            b = %self.ab.b,
            boot_ever_succeeded = self.ab.boot_ever_succeeded,
            "partition table written"
        );
        Ok(())
    }

    /// A report of the state, for `status`.
    pub fn status(&self) -> Status {
        let set = |id: SetId| {
            let parts = self.layout.set(id);
            let flags = self.ab.flags(id);
            SetStatus {
                partitions: parts,
                priority: flags.priority,
                tries_left: flags.tries_left,
                successful: flags.successful,
            }
        };
        Status {
            disk: self.disk.path().to_owned(),
            block_device: self.disk.is_block_device(),
            sector_size: self.table.sector_size(),
            active: self.active,
            active_source: self.active_source,
            next: self.ab.next(),
            boot_ever_succeeded: self.ab.boot_ever_succeeded,
            sets: Sets {
                a: set(SetId::A),
                b: set(SetId::B),
            },
            table: TableStatus {
                primary: self.table.primary_state().clone(),
                backup: self.table.backup_state().clone(),
            },
        }
    }
}

/// Read the table of an open disk, find the sets and decode their flags.
fn read(disk: &mut Disk) -> Result<(Table, Layout, AbState)> {
    let path = disk.path().to_owned();
    let preferred = disk.logical_sector_size();
    let table = Table::read_preferring(disk, &path, preferred)?;
    let layout = Layout::find(&table, &path)?;
    let flags = |set: SetId| {
        table
            .attributes(layout.set(set).boot)
            .map(BootFlags::from_attributes)
            .unwrap_or_default()
    };
    let ab = AbState {
        a: flags(SetId::A),
        b: flags(SetId::B),
        boot_ever_succeeded: table
            .attributes(layout.private)
            .is_some_and(boot_ever_succeeded),
    };
    Ok((table, layout, ab))
}

/// One set in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetStatus {
    /// Its partition numbers.
    #[serde(flatten)]
    pub partitions: SetPartitions,
    /// Priority (0–15).
    pub priority: u8,
    /// Tries left (0–15).
    pub tries_left: u8,
    /// Marked successful.
    pub successful: bool,
}

/// Both sets in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sets {
    /// Set A.
    pub a: SetStatus,
    /// Set B.
    pub b: SetStatus,
}

/// The condition of both copies of the table in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableStatus {
    /// The primary copy (LBA 1).
    pub primary: CopyState,
    /// The backup copy (last LBA).
    pub backup: CopyState,
}

/// What `status` reports; `status --json` prints it as one JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The disk.
    pub disk: PathBuf,
    /// Whether the disk is a block device (partition nodes are then shown as paths).
    #[serde(skip)]
    pub block_device: bool,
    /// Logical sector size of the table (512 or 4096).
    pub sector_size: u64,
    /// The running set, if known.
    pub active: Option<SetId>,
    /// How the running set was determined.
    pub active_source: ActiveSource,
    /// The set the bootloader picks next, if any.
    pub next: Option<SetId>,
    /// Bit 57 of the PRIVATE partition.
    pub boot_ever_succeeded: bool,
    /// Both sets.
    pub sets: Sets,
    /// Both copies of the table.
    pub table: TableStatus,
}

impl Status {
    /// The set `id`.
    pub fn set(&self, id: SetId) -> &SetStatus {
        match id {
            SetId::A => &self.sets.a,
            SetId::B => &self.sets.b,
        }
    }

    /// How partition `number` is shown: its device node on a block device, `#N` on an image.
    pub fn partition_label(&self, number: u32) -> String {
        if self.block_device {
            partition_node(&self.disk, number).display().to_string()
        } else {
            format!("#{number}")
        }
    }
}
