//! Reading and writing the GUID partition table, both copies, crash-safely.
//!
//! gptman encodes and checks headers and entries (signature, revision, header CRC32, entry
//! array CRC32); this module decides which copy to trust and in which order to write:
//!
//! * **Sector size**: the primary header is looked for at LBA 1 with 512-byte sectors, then
//!   with 4096-byte sectors; if neither is valid, the backup at the last LBA, in the same order.
//! * **Backup fallback**: if the primary header or its entries fail a check, the backup copy is
//!   used; if both are valid, the primary is authoritative (a differing backup is "stale").
//! * **Writes** go to the backup copy first, then the primary, each followed by a sync, so a
//!   write torn at any point leaves a valid copy holding the old state (the primary) or the
//!   new one (the backup). Both copies are rewritten at the locations the table already
//!   records; nothing is moved.
//!
//! The disk is any [`BlockIo`], so tests can tear writes with a wrapper.

use crate::Result;
use crate::error::{
    CorruptTableSnafu, NotGptSnafu, ReadTableSnafu, SyncTableSnafu, UnsupportedTableSnafu,
    WriteTableSnafu,
};
use gptman::{GPTHeader, GPTPartitionEntry};
use serde::Serialize;
use snafu::ResultExt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The sector sizes probed, in order.
pub const SECTOR_SIZES: [u64; 2] = [512, 4096];
/// The only partition entry size gptman (and every real table) uses.
const ENTRY_SIZE: u32 = 128;
/// More entries than any partitioning tool creates; a larger count is treated as corruption.
const MAX_ENTRIES: u32 = 16_384;

/// A disk the table can be written to: random access plus a durable flush.
pub trait BlockIo: Read + Write + Seek {
    /// Make everything written so far durable (fsync).
    fn sync(&mut self) -> io::Result<()>;
}

impl BlockIo for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

/// The condition of one copy of the table, as found when it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "problem")]
pub enum CopyState {
    /// Valid, and (for the backup) the same table as the primary.
    Valid,
    /// Valid on its own, but a different table from the primary (e.g. a torn write stopped
    /// between the two copies). Rewritten on the next write.
    Stale,
    /// Failed a check; the text says which. Rewritten on the next write.
    Invalid(String),
}

/// Why one copy could not be used.
enum CopyProblem {
    /// No `EFI PART` signature at all (not a GPT at this sector size).
    NoSignature,
    /// Something that looks like a GPT header but fails a check.
    Bad(String),
}

struct Copy {
    header: GPTHeader,
    entries: Vec<GPTPartitionEntry>,
}

/// A partition table read from a disk: the entries plus the two headers to write them under.
#[derive(Debug, Clone)]
pub struct Table {
    sector_size: u64,
    primary: GPTHeader,
    backup: GPTHeader,
    entries: Vec<GPTPartitionEntry>,
    primary_state: CopyState,
    backup_state: CopyState,
}

impl Table {
    /// Read the table from `disk` (`path` names it in errors).
    pub fn read<D: Read + Seek + ?Sized>(disk: &mut D, path: &Path) -> Result<Table> {
        Table::read_preferring(disk, path, None)
    }

    /// [`Table::read`], probing `preferred` first when it is one of [`SECTOR_SIZES`] (a block
    /// device's logical sector size).
    pub fn read_preferring<D: Read + Seek + ?Sized>(
        disk: &mut D,
        path: &Path,
        preferred: Option<u64>,
    ) -> Result<Table> {
        let len = disk
            .seek(SeekFrom::End(0))
            .context(ReadTableSnafu { path })?;
        let mut sector_sizes = SECTOR_SIZES;
        if preferred == Some(SECTOR_SIZES[1]) {
            sector_sizes.reverse();
        }
        let mut primary_problems = Vec::new();
        for sector_size in sector_sizes {
            match read_copy(disk, sector_size, 1, len) {
                Ok(primary) => return from_primary(disk, path, sector_size, len, primary),
                Err(CopyProblem::Bad(problem)) => {
                    primary_problems.push(format!("{sector_size}-byte sectors: {problem}"));
                }
                Err(CopyProblem::NoSignature) => {}
            }
        }
        let mut backup_problems = Vec::new();
        for sector_size in sector_sizes {
            if len < 2 * sector_size || len % sector_size != 0 {
                continue;
            }
            let last = len / sector_size - 1;
            match read_copy(disk, sector_size, last, len) {
                Ok(backup) => {
                    let problem = if primary_problems.is_empty() {
                        "no GPT header at LBA 1".to_owned()
                    } else {
                        primary_problems.join("; ")
                    };
                    return from_backup(path, sector_size, backup, problem);
                }
                Err(CopyProblem::Bad(problem)) => {
                    backup_problems.push(format!("{sector_size}-byte sectors: {problem}"));
                }
                Err(CopyProblem::NoSignature) => {}
            }
        }
        if primary_problems.is_empty() && backup_problems.is_empty() {
            return NotGptSnafu { path }.fail();
        }
        let none = || "no GPT header found".to_owned();
        CorruptTableSnafu {
            path,
            primary: non_empty_or(primary_problems.join("; "), none),
            backup: non_empty_or(backup_problems.join("; "), none),
        }
        .fail()
    }

    /// The logical sector size the table was found with (512 or 4096).
    pub fn sector_size(&self) -> u64 {
        self.sector_size
    }

    /// All partition entries, used or not; entry `i` is partition number `i + 1`.
    pub fn entries(&self) -> &[GPTPartitionEntry] {
        &self.entries
    }

    /// The attribute field of partition `number` (1-based), if it exists.
    pub fn attributes(&self, number: u32) -> Option<u64> {
        let index = usize::try_from(number.checked_sub(1)?).ok()?;
        self.entries.get(index).map(|entry| entry.attribute_bits)
    }

    /// Change the attribute field of partition `number` (1-based). Returns whether it exists.
    pub fn set_attributes(&mut self, number: u32, attributes: u64) -> bool {
        let Some(index) = number.checked_sub(1).and_then(|i| usize::try_from(i).ok()) else {
            return false;
        };
        match self.entries.get_mut(index) {
            Some(entry) => {
                entry.attribute_bits = attributes;
                true
            }
            None => false,
        }
    }

    /// The condition of the primary copy when it was read.
    pub fn primary_state(&self) -> &CopyState {
        &self.primary_state
    }

    /// The condition of the backup copy when it was read.
    pub fn backup_state(&self) -> &CopyState {
        &self.backup_state
    }

    /// Whether a copy is invalid or stale, so that the next write repairs it.
    pub fn needs_repair(&self) -> bool {
        self.primary_state != CopyState::Valid || self.backup_state != CopyState::Valid
    }

    /// Write both copies with fresh CRCs: the backup header and entries first, sync, then the
    /// primary, sync. `path` names the disk in errors.
    pub fn write<D: BlockIo + ?Sized>(&mut self, disk: &mut D, path: &Path) -> Result<()> {
        let sector_size = self.sector_size;
        for (copy, header) in [("backup", &mut self.backup), ("primary", &mut self.primary)] {
            write_copy(disk, sector_size, header, &self.entries)
                .context(WriteTableSnafu { path, copy })?;
            disk.sync().context(SyncTableSnafu { path, copy })?;
        }
        self.primary_state = CopyState::Valid;
        self.backup_state = CopyState::Valid;
        Ok(())
    }
}

fn non_empty_or(text: String, default: impl FnOnce() -> String) -> String {
    if text.is_empty() { default() } else { text }
}

/// Number of sectors the entry array of `header` takes.
fn entry_sectors(header: &GPTHeader, sector_size: u64) -> u64 {
    (u64::from(header.number_of_partition_entries) * u64::from(header.size_of_partition_entry))
        .div_ceil(sector_size)
}

/// Read and check the copy whose header is at `lba`.
fn read_copy<D: Read + Seek + ?Sized>(
    disk: &mut D,
    sector_size: u64,
    lba: u64,
    len: u64,
) -> std::result::Result<Copy, CopyProblem> {
    let bad = |text: String| CopyProblem::Bad(text);
    if lba.saturating_add(1).saturating_mul(sector_size) > len {
        return Err(CopyProblem::NoSignature);
    }
    disk.seek(SeekFrom::Start(lba * sector_size))
        .map_err(|e| bad(format!("seek to LBA {lba}: {e}")))?;
    let header = match GPTHeader::read_from(disk) {
        Ok(header) => header,
        Err(gptman::Error::InvalidSignature) => return Err(CopyProblem::NoSignature),
        Err(e) => return Err(bad(format!("header at LBA {lba}: {e}"))),
    };
    if header.primary_lba != lba {
        return Err(bad(format!(
            "header at LBA {lba} says it is at LBA {}",
            header.primary_lba
        )));
    }
    // gptman assumes 128-byte entries; check before it reads them.
    if header.size_of_partition_entry != ENTRY_SIZE
        || header.number_of_partition_entries == 0
        || header.number_of_partition_entries > MAX_ENTRIES
    {
        return Err(bad(format!(
            "header at LBA {lba}: unsupported entry array ({} entries of {} bytes)",
            header.number_of_partition_entries, header.size_of_partition_entry
        )));
    }
    let array_end = header
        .partition_entry_lba
        .checked_add(entry_sectors(&header, sector_size))
        .and_then(|end| end.checked_mul(sector_size));
    if array_end.is_none_or(|end| end > len) || header.partition_entry_lba < 2 {
        return Err(bad(format!(
            "header at LBA {lba}: entry array at LBA {} lies outside the disk",
            header.partition_entry_lba
        )));
    }
    let entries = header.read_partitions(disk, sector_size).map_err(|e| {
        bad(format!(
            "entries at LBA {}: {e}",
            header.partition_entry_lba
        ))
    })?;
    Ok(Copy { header, entries })
}

/// The header fields both copies share (everything but the locations and CRCs).
fn same_table(a: &Copy, b: &Copy) -> bool {
    a.entries == b.entries
        && a.header.disk_guid == b.header.disk_guid
        && a.header.first_usable_lba == b.header.first_usable_lba
        && a.header.last_usable_lba == b.header.last_usable_lba
        && a.header.number_of_partition_entries == b.header.number_of_partition_entries
}

/// Check that an entry array at `entry_lba` fits between the header and the usable area.
fn check_array_place(
    path: &Path,
    header: &GPTHeader,
    sector_size: u64,
    entry_lba: u64,
    copy: &str,
) -> Result<()> {
    let end = entry_lba.saturating_add(entry_sectors(header, sector_size));
    let fits = if copy == "primary" {
        entry_lba >= 2 && end <= header.first_usable_lba
    } else {
        entry_lba > header.last_usable_lba && end <= header.primary_lba
    };
    if fits {
        Ok(())
    } else {
        UnsupportedTableSnafu {
            path,
            reason: format!("the {copy} entry array would not fit at LBA {entry_lba}"),
        }
        .fail()
    }
}

fn from_primary<D: Read + Seek + ?Sized>(
    disk: &mut D,
    path: &Path,
    sector_size: u64,
    len: u64,
    primary: Copy,
) -> Result<Table> {
    let backup_lba = primary.header.backup_lba;
    if backup_lba <= primary.header.last_usable_lba
        || backup_lba.saturating_add(1).saturating_mul(sector_size) > len
    {
        return UnsupportedTableSnafu {
            path,
            reason: format!("the primary header puts the backup at LBA {backup_lba}"),
        }
        .fail();
    }
    let (backup_header, backup_state) = match read_copy(disk, sector_size, backup_lba, len) {
        Ok(backup) => {
            let state = if same_table(&primary, &backup) {
                CopyState::Valid
            } else {
                CopyState::Stale
            };
            let mut header = primary.header.clone();
            header.primary_lba = backup_lba;
            header.backup_lba = primary.header.primary_lba;
            header.partition_entry_lba = backup.header.partition_entry_lba;
            (header, state)
        }
        Err(problem) => {
            let text = match problem {
                CopyProblem::NoSignature => format!("no GPT header at LBA {backup_lba}"),
                CopyProblem::Bad(text) => text,
            };
            let mut header = primary.header.clone();
            header.primary_lba = backup_lba;
            header.backup_lba = primary.header.primary_lba;
            header.partition_entry_lba =
                backup_lba.saturating_sub(entry_sectors(&primary.header, sector_size));
            (header, CopyState::Invalid(text))
        }
    };
    check_array_place(
        path,
        &backup_header,
        sector_size,
        backup_header.partition_entry_lba,
        "backup",
    )?;
    Ok(Table {
        sector_size,
        primary: primary.header,
        backup: backup_header,
        entries: primary.entries,
        primary_state: CopyState::Valid,
        backup_state,
    })
}

fn from_backup(path: &Path, sector_size: u64, backup: Copy, problem: String) -> Result<Table> {
    if backup.header.backup_lba != 1 {
        return UnsupportedTableSnafu {
            path,
            reason: format!(
                "the backup header puts the primary at LBA {}",
                backup.header.backup_lba
            ),
        }
        .fail();
    }
    let mut primary = backup.header.clone();
    primary.primary_lba = 1;
    primary.backup_lba = backup.header.primary_lba;
    primary.partition_entry_lba = 2;
    check_array_place(path, &primary, sector_size, 2, "primary")?;
    tracing::warn!(
        disk = %path.display(),
        problem = %problem,
        "the primary GPT is damaged; using the backup copy (the next write repairs the primary)"
    );
    Ok(Table {
        sector_size,
        primary,
        backup: backup.header,
        entries: backup.entries,
        primary_state: CopyState::Invalid(problem),
        backup_state: CopyState::Valid,
    })
}

/// Write one copy: zero the rest of the header sector, then the header and entries (gptman
/// recomputes both CRCs).
fn write_copy<D: Write + Seek + ?Sized>(
    disk: &mut D,
    sector_size: u64,
    header: &mut GPTHeader,
    entries: &[GPTPartitionEntry],
) -> io::Result<()> {
    let header_size = u64::from(header.header_size);
    let padding =
        usize::try_from(sector_size.saturating_sub(header_size)).map_err(io::Error::other)?;
    disk.seek(SeekFrom::Start(
        header.primary_lba * sector_size + header_size,
    ))?;
    disk.write_all(&vec![0; padding])?;
    header
        .write_into(disk, sector_size, entries)
        .map_err(|e| match e {
            gptman::Error::Io(io) => io,
            other => io::Error::other(other),
        })
}

#[cfg(test)]
mod tests {
    use super::{BlockIo, CopyState, Table};
    use crate::Error;
    use gptman::{GPT, GPTHeader, GPTPartitionEntry};
    use std::io::{self, Cursor, Seek, SeekFrom, Write};
    use std::path::Path;

    impl BlockIo for Cursor<Vec<u8>> {
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A 4 MiB in-memory disk with one partition, written by gptman.
    fn tiny_disk(sector_size: u64) -> Cursor<Vec<u8>> {
        let mut disk = Cursor::new(vec![0; 4 << 20]);
        let mut gpt = GPT::new_from(&mut disk, sector_size, [7; 16]).expect("new table");
        let start = gpt.header.first_usable_lba;
        gpt[1] = GPTPartitionEntry {
            partition_type_guid: [1; 16],
            unique_partition_guid: [2; 16],
            starting_lba: start,
            ending_lba: start + 10,
            attribute_bits: 0x0101 << 48,
            partition_name: "one".into(),
        };
        gpt.write_into(&mut disk).expect("write table");
        disk
    }

    fn path() -> &'static Path {
        Path::new("tiny.img")
    }

    /// The 92 on-disk bytes of `h` (little-endian, UEFI layout).
    fn header_bytes(h: &GPTHeader) -> Vec<u8> {
        let mut out = Vec::with_capacity(92);
        out.extend_from_slice(&h.signature);
        out.extend_from_slice(&h.revision);
        out.extend_from_slice(&h.header_size.to_le_bytes());
        out.extend_from_slice(&h.crc32_checksum.to_le_bytes());
        out.extend_from_slice(&h.reserved);
        for value in [
            h.primary_lba,
            h.backup_lba,
            h.first_usable_lba,
            h.last_usable_lba,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&h.disk_guid);
        out.extend_from_slice(&h.partition_entry_lba.to_le_bytes());
        out.extend_from_slice(&h.number_of_partition_entries.to_le_bytes());
        out.extend_from_slice(&h.size_of_partition_entry.to_le_bytes());
        out.extend_from_slice(&h.partition_entry_array_crc32.to_le_bytes());
        out
    }

    /// Rewrite the header at `lba` through `change`, with a fresh header CRC.
    fn edit_header(disk: &mut Cursor<Vec<u8>>, lba: u64, change: fn(&mut GPTHeader)) {
        disk.seek(SeekFrom::Start(lba * 512)).expect("seek");
        let mut header = GPTHeader::read_from(disk).expect("header");
        change(&mut header);
        header.update_crc32_checksum();
        disk.seek(SeekFrom::Start(lba * 512)).expect("seek");
        disk.write_all(&header_bytes(&header))
            .expect("write header");
    }

    #[test]
    fn finds_both_sector_sizes() {
        for sector_size in [512, 4096] {
            let mut disk = tiny_disk(sector_size);
            let table = Table::read(&mut disk, path()).expect("reads");
            assert_eq!(table.sector_size(), sector_size);
            assert_eq!(table.attributes(1), Some(0x0101 << 48));
            assert!(!table.needs_repair());
        }
    }

    #[test]
    fn repair_restores_the_primary_byte_for_byte() {
        for sector_size in [512, 4096] {
            let mut disk = tiny_disk(sector_size);
            let original = disk.get_ref().clone();
            let ss = usize::try_from(sector_size).expect("fits");
            disk.get_mut()[ss..ss * 3].fill(0xaa);
            let mut table = Table::read(&mut disk, path()).expect("falls back to the backup");
            assert!(matches!(table.primary_state(), CopyState::Invalid(_)));
            assert_eq!(table.backup_state(), &CopyState::Valid);
            table.write(&mut disk, path()).expect("writes");
            assert!(
                disk.get_ref() == &original,
                "repaired disk differs ({sector_size})"
            );
        }
    }

    #[test]
    fn odd_entry_arrays_are_rejected_without_panicking() {
        for change in [
            (|h: &mut GPTHeader| h.size_of_partition_entry = 256) as fn(&mut GPTHeader),
            |h: &mut GPTHeader| h.number_of_partition_entries = u32::MAX,
            |h: &mut GPTHeader| h.partition_entry_lba = 1 << 40,
        ] {
            let mut disk = tiny_disk(512);
            let last = (4 << 20) / 512 - 1;
            edit_header(&mut disk, 1, change);
            // The backup still serves.
            let table = Table::read(&mut disk, path()).expect("backup serves");
            assert!(matches!(table.primary_state(), CopyState::Invalid(_)));
            edit_header(&mut disk, last, change);
            let error = Table::read(&mut disk, path()).expect_err("both copies odd");
            assert!(matches!(error, Error::CorruptTable { .. }), "{error:?}");
        }
    }

    #[test]
    fn zeros_are_not_a_gpt() {
        let mut disk = Cursor::new(vec![0; 1 << 20]);
        let error = Table::read(&mut disk, path()).expect_err("no table");
        assert!(matches!(error, Error::NotGpt { .. }));
        let mut empty = Cursor::new(Vec::new());
        assert!(matches!(
            Table::read(&mut empty, path()),
            Err(Error::NotGpt { .. })
        ));
    }
}
