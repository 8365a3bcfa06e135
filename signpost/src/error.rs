//! The error type of the `signpost` crate. Every error exits with code 1 from the CLI; the
//! crate README lists them with their messages.
use crate::gpt_types::SetId;
use snafu::Snafu;
use std::path::PathBuf;

/// Everything that can go wrong in `signpost`.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// The disk could not be opened.
    #[snafu(display("cannot open disk {} for {purpose}", path.display()))]
    OpenDisk {
        /// The disk.
        path: PathBuf,
        /// `reading` or `writing`.
        purpose: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Taking the advisory lock failed.
    #[snafu(display("cannot lock disk {}", path.display()))]
    LockDisk {
        /// The disk.
        path: PathBuf,
        /// The error from flock.
        source: std::io::Error,
    },

    /// Another process held the lock for longer than the timeout.
    #[snafu(display(
        "disk {} is locked by another signpost or updog (waited {waited:.1} s); try again later",
        path.display()
    ))]
    DiskLocked {
        /// The disk.
        path: PathBuf,
        /// Seconds waited.
        waited: f64,
    },

    /// Reading the disk failed.
    #[snafu(display("cannot read the partition table of {}", path.display()))]
    ReadTable {
        /// The disk.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Neither 512- nor 4096-byte sectors show a GPT header at either end of the disk.
    #[snafu(display(
        "{} is not a GPT disk: no GPT header at LBA 1 or at the last LBA (512- or 4096-byte sectors)",
        path.display()
    ))]
    NotGpt {
        /// The disk.
        path: PathBuf,
    },

    /// Both copies of the table fail their checks.
    #[snafu(display(
        "both copies of the partition table of {} are damaged; primary: {primary}; backup: {backup}",
        path.display()
    ))]
    CorruptTable {
        /// The disk.
        path: PathBuf,
        /// What is wrong with the primary copy.
        primary: String,
        /// What is wrong with the backup copy.
        backup: String,
    },

    /// The table is valid but laid out in a way this tool does not rewrite.
    #[snafu(display("unsupported partition table on {}: {reason}", path.display()))]
    UnsupportedTable {
        /// The disk.
        path: PathBuf,
        /// What is unusual.
        reason: String,
    },

    /// Writing one copy of the table failed.
    #[snafu(display("cannot write the {copy} partition table of {}", path.display()))]
    WriteTable {
        /// The disk.
        path: PathBuf,
        /// `backup` or `primary`.
        copy: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Syncing one copy of the table to stable storage failed.
    #[snafu(display("cannot sync the {copy} partition table of {} to disk", path.display()))]
    SyncTable {
        /// The disk.
        path: PathBuf,
        /// `backup` or `primary`.
        copy: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A set lacks one of its partitions (the reference says "Failed to find guid partition
    /// for set A").
    #[snafu(display(
        "Failed to find guid partition for set {set}: {} has no {role} partition for it (type GUID {type_guid})",
        path.display()
    ))]
    MissingPartition {
        /// The disk.
        path: PathBuf,
        /// The set.
        set: SetId,
        /// `BOOT`, `ROOT` or `HASH`.
        role: &'static str,
        /// The type GUID looked for.
        type_guid: String,
    },

    /// There is no PRIVATE partition (needed for bit 57).
    #[snafu(display(
        "{} has no PRIVATE partition (type GUID 440408bb-eb0b-4328-a6e5-a29038fad706)",
        path.display()
    ))]
    MissingPrivate {
        /// The disk.
        path: PathBuf,
    },

    /// More partitions of a role than the A/B scheme has.
    #[snafu(display(
        "{} has {role} partitions {numbers}, expected exactly {expected}: not an A/B disk this tool understands",
        path.display()
    ))]
    ExtraPartitions {
        /// The disk.
        path: PathBuf,
        /// `BOOT`, `ROOT`, `HASH` or `PRIVATE`.
        role: &'static str,
        /// The partition numbers found.
        numbers: String,
        /// How many there should be.
        expected: usize,
    },

    /// A set is not numbered BOOT, BOOT+1, BOOT+2.
    #[snafu(display(
        "set {set} on {} is not numbered BOOT, BOOT+1, BOOT+2 (boot={boot}, root={root}, hash={hash})",
        path.display()
    ))]
    SetNotContiguous {
        /// The disk.
        path: PathBuf,
        /// The set.
        set: SetId,
        /// BOOT partition number.
        boot: u32,
        /// ROOT partition number.
        root: u32,
        /// HASH partition number.
        hash: u32,
    },

    /// The running set of a disk given with `--disk` is not known.
    #[snafu(display(
        "cannot tell which partition set is running from {} ({reason}); pass --active-set a or --active-set b",
        path.display()
    ))]
    ActiveSetUnknown {
        /// The disk.
        path: PathBuf,
        /// Why inference failed.
        reason: &'static str,
    },

    /// `upgrade-to-inactive` on an inactive set that was not cleared first.
    #[snafu(display(
        "Inactive partition {set} is already marked for upgrade (priority={priority}, successful={successful}); run clear-inactive and mark-inactive-valid first"
    ))]
    InactiveAlreadyMarked {
        /// The inactive set.
        set: SetId,
        /// Its priority.
        priority: u8,
        /// Its successful bit.
        successful: bool,
    },

    /// `upgrade-to-inactive` on an inactive set that was never marked valid.
    #[snafu(display(
        "Inactive partition {set} has not been marked valid (tries_left=0); run mark-inactive-valid after writing the images"
    ))]
    InactiveNotValid {
        /// The inactive set.
        set: SetId,
    },

    /// `rollback-to-inactive` to a set that would not boot.
    #[snafu(display(
        "Inactive partition {set} is not valid to roll back to (priority={priority}, tries_left={tries_left}, successful={successful})"
    ))]
    InactiveInvalidRollback {
        /// The inactive set.
        set: SetId,
        /// Its priority.
        priority: u8,
        /// Its tries left.
        tries_left: u8,
        /// Its successful bit.
        successful: bool,
    },

    /// `select-boot` found no set that will boot.
    #[snafu(display(
        "no partition set will boot: neither has (priority > 0 and tries_left > 0) or successful"
    ))]
    NoBootableSet,

    /// [`crate::State::write`] on a state loaded read-only.
    #[snafu(display("disk {} was opened read-only", path.display()))]
    NotOpenForWriting {
        /// The disk.
        path: PathBuf,
    },

    /// A set's partition entry vanished from the table (an internal invariant).
    #[snafu(display("partition entries of {} changed unexpectedly", path.display()))]
    AttributesOutOfTable {
        /// The disk.
        path: PathBuf,
    },

    /// `stat` on the root mount point failed.
    #[snafu(display("cannot stat the root filesystem {}", path.display()))]
    StatRoot {
        /// The root mount point.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A sysfs file or directory could not be read.
    #[snafu(display("cannot read {}", path.display()))]
    ReadSysfs {
        /// The sysfs path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The root device is neither a partition nor stacked on one.
    #[snafu(display(
        "Root device {device} has no lower root devices and is not a partition; pass --disk"
    ))]
    NoLowerDevice {
        /// The device name, e.g. `dm-0`.
        device: String,
    },

    /// Device stacking deeper than any real setup.
    #[snafu(display("device stack under {device} is too deep"))]
    StackTooDeep {
        /// The device name.
        device: String,
    },

    /// The root device sits on partitions of two different disks.
    #[snafu(display("root device {device} spans disks {first} and {second}"))]
    LowerDevicesSpanDisks {
        /// The device name.
        device: String,
        /// One disk.
        first: String,
        /// Another disk.
        second: String,
    },

    /// No disk in sysfs contains the partition.
    #[snafu(display("no disk in sysfs contains partition {partition}"))]
    DiskNotFound {
        /// The partition name.
        partition: String,
    },

    /// The running root is on a partition outside both sets.
    #[snafu(display(
        "Active partition {partitions} not in either detected partition set of {}",
        path.display()
    ))]
    ActiveNotInSets {
        /// The disk.
        path: PathBuf,
        /// The partitions under the running root.
        partitions: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
