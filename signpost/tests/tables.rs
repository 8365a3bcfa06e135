//! The partition table itself: damaged copies, 4096-byte sectors, torn writes, and finding
//! the running disk through a (fake) sysfs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{BOOT_B, DISK_MIB, Image, LAYOUT_1GIB, assert_disk, poke, sgdisk_reports_problems};
use predicates::prelude::predicate;
use serde_json::Value;
use signpost::gpt::{BlockIo, CopyState, Table};
use signpost::layout::Layout;
use signpost::{AbState, Access, ActiveSource, DiskSource, HostPaths, SetId, State};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

const SECTOR: u64 = 512;

fn json_status(image: &Image) -> Value {
    let output = image.run(&["status", "--json"]);
    serde_json::from_str(&output).unwrap()
}

fn disk_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

#[test]
fn damaged_primary_header_is_read_from_the_backup_and_repaired_on_write() {
    let image = Image::reference();
    // Break the primary header's CRC field.
    poke(&image.path, SECTOR + 16, &[0xde, 0xad]);
    assert!(sgdisk_reports_problems(&image.path));
    let before = image.snapshot();
    image
        .signpost()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("Primary table: damaged"));
    let status = json_status(&image);
    assert_eq!(status["table"]["primary"]["state"], "invalid");
    assert_eq!(status["table"]["backup"]["state"], "valid");
    assert_eq!(image.snapshot(), before, "reading must not repair");

    image.run(&["mark-inactive-valid"]);
    assert_disk(&image.path, (1, 0, true), (0, 1, false), false);
    assert_eq!(json_status(&image)["table"]["primary"]["state"], "valid");
}

#[test]
fn damaged_primary_entries_fall_back_to_the_backup_state() {
    let image = Image::reference();
    // Give BOOT-B priority 15 in the primary entries only: the entry CRC no longer matches,
    // so the backup (priority 0) is authoritative.
    let attributes = SECTOR * 2 + u64::from(BOOT_B - 1) * 128 + 48;
    poke(&image.path, attributes + 6, &[0x0f]);
    let status = json_status(&image);
    assert_eq!(status["sets"]["b"]["priority"], 0);
    assert_eq!(status["table"]["primary"]["state"], "invalid");
    image.run(&["rewrite-table"]);
    assert_disk(&image.path, (1, 0, true), (0, 0, false), false);
}

#[test]
fn damaged_backup_is_repaired_on_write() {
    let image = Image::reference();
    let len = disk_len(&image.path);
    poke(&image.path, len - SECTOR + 16, &[0xbe, 0xef]);
    assert!(sgdisk_reports_problems(&image.path));
    assert_eq!(json_status(&image)["table"]["backup"]["state"], "invalid");
    image.run(&["clear-inactive"]);
    assert_disk(&image.path, (1, 0, true), (0, 0, false), false);
}

#[test]
fn both_copies_damaged_is_an_error_and_nothing_is_written() {
    let image = Image::reference();
    let len = disk_len(&image.path);
    poke(&image.path, SECTOR + 16, &[0xde, 0xad]);
    poke(&image.path, len - SECTOR + 16, &[0xbe, 0xef]);
    let before = image.snapshot();
    image
        .signpost()
        .arg("rewrite-table")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "both copies of the partition table",
        ));
    assert_eq!(image.snapshot(), before);
}

/// The 1 GiB reference layout with 4096-byte sectors, written with gptman (sgdisk only makes
/// 512-byte-sector tables on image files).
fn reference_4k(path: &Path) {
    let mut file = File::create(path).unwrap();
    file.set_len(DISK_MIB << 20).unwrap();
    let mut gpt = gptman::GPT::new_from(&mut file, 4096, *b"signpost-4k-test").unwrap();
    for (index, (name, role, start, size)) in LAYOUT_1GIB.iter().enumerate() {
        let number = u32::try_from(index + 1).unwrap();
        let mut unique = *b"unique-guid-0000";
        unique[15] = u8::try_from(number).unwrap();
        gpt[number] = gptman::GPTPartitionEntry {
            partition_type_guid: role.type_guid().bytes(),
            unique_partition_guid: unique,
            starting_lba: start * 256,
            ending_lba: (start + size) * 256 - 1,
            attribute_bits: if number == 3 { 0x0101 << 48 } else { 0 },
            partition_name: (*name).into(),
        };
    }
    gptman::GPT::write_protective_mbr_into(&mut file, 4096).unwrap();
    gpt.write_into(&mut file).unwrap();
}

/// Attribute fields of `numbers`, read independently by gptman (both copies must agree).
fn gptman_attributes(path: &Path, numbers: &[u32]) -> Vec<u64> {
    let mut file = File::open(path).unwrap();
    let gpt = gptman::GPT::find_from(&mut file).unwrap();
    assert_eq!(gpt.sector_size, 4096);
    assert!(gpt.is_primary(), "primary copy must be valid");
    // Read the backup copy explicitly too.
    let len = file.seek(SeekFrom::End(0)).unwrap();
    file.seek(SeekFrom::Start(len - 4096)).unwrap();
    let backup = gptman::GPTHeader::read_from(&mut file).unwrap();
    let backup_entries = backup.read_partitions(&mut file, 4096).unwrap();
    numbers
        .iter()
        .map(|n| {
            let primary = gpt[*n].attribute_bits;
            assert_eq!(primary, backup_entries[(*n - 1) as usize].attribute_bits);
            primary
        })
        .collect()
}

#[test]
fn sectors_of_4096_bytes() {
    let dir = common::tempdir();
    let path = dir.path().join("disk4k.img");
    reference_4k(&path);
    let image = Image { dir, path };
    let status = json_status(&image);
    assert_eq!(status["sector_size"], 4096);
    assert_eq!(status["active"], "a");
    image.stage_update();
    assert_eq!(
        gptman_attributes(&image.path, &[3, 8, 12]),
        [0x0101 << 48, 0x0012 << 48, 0]
    );
    image
        .signpost()
        .arg("select-boot")
        .assert()
        .success()
        .stdout("b\n");
    image.run(&["--active-set", "b", "mark-successful-boot"]);
    assert_eq!(
        gptman_attributes(&image.path, &[3, 8, 12]),
        [0x0101 << 48, 0x0102 << 48, 1 << 57]
    );
    // A damaged primary is found through the backup at the last 4096-byte LBA and repaired.
    poke(&image.path, 4096 + 16, &[0xde, 0xad]);
    assert_eq!(json_status(&image)["table"]["primary"]["state"], "invalid");
    image.run(&["rewrite-table"]);
    assert_eq!(
        gptman_attributes(&image.path, &[3, 8, 12]),
        [0x0101 << 48, 0x0102 << 48, 1 << 57]
    );
}

/// A disk whose writes stop for good after `budget` bytes, as if power were cut.
struct Torn {
    file: File,
    budget: usize,
}

impl Read for Torn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for Torn {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

impl Write for Torn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::Error::other("power cut"));
        }
        let n = buf.len().min(self.budget);
        let written = self.file.write(&buf[..n])?;
        self.budget -= written;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlockIo for Torn {
    fn sync(&mut self) -> io::Result<()> {
        // Ordering, not durability, is what this test checks; skip the real fsync for speed.
        Ok(())
    }
}

fn read_region(file: &mut File, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut buf).unwrap();
    buf
}

fn ab_of(table: &Table, path: &Path) -> AbState {
    let layout = Layout::find(table, path).unwrap();
    let flags = |n: u32| signpost::BootFlags::from_attributes(table.attributes(n).unwrap());
    AbState {
        a: flags(layout.a.boot),
        b: flags(layout.b.boot),
        boot_ever_succeeded: signpost::gpt_types::boot_ever_succeeded(
            table.attributes(layout.private).unwrap(),
        ),
    }
}

#[test]
fn a_write_torn_anywhere_leaves_the_old_or_the_new_table() {
    let image = Image::reference();
    for command in ["clear-inactive", "mark-inactive-valid"] {
        image.signpost().arg(command).assert().success();
    }
    let path = image.path.as_path();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = file.seek(SeekFrom::End(0)).unwrap();
    // The regions both copies live in: LBA 0-33 and the last 33 LBAs.
    let head_len = 34 * SECTOR as usize;
    let tail_len = 33 * SECTOR as usize;
    let tail_at = len - tail_len as u64;
    let head = read_region(&mut file, 0, head_len);
    let tail = read_region(&mut file, tail_at, tail_len);

    let old_table = Table::read(&mut file, path).unwrap();
    let old = ab_of(&old_table, path);
    let new = old.upgrade_to_inactive(SetId::A).unwrap();
    let layout = Layout::find(&old_table, path).unwrap();
    let mut new_table = old_table.clone();
    for set in SetId::BOTH {
        let boot = layout.set(set).boot;
        let attributes = new.flags(set).apply_to(old_table.attributes(boot).unwrap());
        assert!(new_table.set_attributes(boot, attributes));
    }

    let (mut saw_old, mut saw_new, mut budget) = (0, 0, 0_usize);
    loop {
        // Restore the old tables, then cut the power after `budget` bytes of the new write.
        file.seek(SeekFrom::Start(0)).unwrap();
        file.write_all(&head).unwrap();
        file.seek(SeekFrom::Start(tail_at)).unwrap();
        file.write_all(&tail).unwrap();
        let mut torn = Torn {
            file: file.try_clone().unwrap(),
            budget,
        };
        let finished = new_table.clone().write(&mut torn, path).is_ok();

        let read = Table::read(&mut file, path)
            .unwrap_or_else(|e| panic!("after {budget} bytes the table is unreadable: {e}"));
        let state = ab_of(&read, path);
        // Backup first: while the first copy is being written, the primary is untouched.
        let copy_bytes = usize::try_from(SECTOR).unwrap() + 128 * 128;
        if budget < copy_bytes {
            assert_eq!(
                read.primary_state(),
                &CopyState::Valid,
                "after {budget} bytes"
            );
            assert_eq!(read.entries(), old_table.entries(), "after {budget} bytes");
        }
        if read.entries() == old_table.entries() {
            assert_eq!(state, old);
            saw_old += 1;
        } else {
            assert_eq!(
                read.entries(),
                new_table.entries(),
                "garbage after {budget} bytes"
            );
            assert_eq!(state, new);
            saw_new += 1;
        }
        if budget % 4096 < 37 {
            // The next write through the CLI repairs whatever the tear left behind.
            image.run(&["rewrite-table"]);
            common::assert_sgdisk_clean(path);
        }
        if finished {
            assert_eq!(state, new);
            assert_eq!(read.primary_state(), &CopyState::Valid);
            assert_eq!(read.backup_state(), &CopyState::Valid);
            break;
        }
        budget += 37;
    }
    assert!(
        saw_old > 100 && saw_new > 100,
        "old {saw_old}, new {saw_new}"
    );
    assert_disk(path, (1, 0, true), (2, 1, false), false);
}

#[test]
fn host_detection_finds_the_running_set_through_sysfs() {
    let image = Image::reference();
    image.stage_update();
    image
        .signpost()
        .arg("select-boot")
        .assert()
        .success()
        .stdout("b\n");

    // A fake sysfs in which the filesystem holding `root` is dm-verity on nvme0n1p9 (ROOT-B)
    // and nvme0n1p10 (HASH-B), and /dev/nvme0n1 is the image.
    let dir = common::tempdir();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let (major, minor) = signpost::host::dev_major_minor(fs::metadata(&root).unwrap().dev());
    let sys = dir.path().join("sys");
    let disk = sys.join("devices/pci0000:00/nvme0/nvme0n1");
    let dm = sys.join("devices/virtual/block/dm-0");
    for d in ["dev/block", "class/block", "block"] {
        fs::create_dir_all(sys.join(d)).unwrap();
    }
    fs::create_dir_all(dm.join("slaves")).unwrap();
    symlink(&disk, sys.join("block/nvme0n1")).unwrap();
    for n in 1..=13 {
        let name = format!("nvme0n1p{n}");
        fs::create_dir_all(disk.join(&name)).unwrap();
        fs::write(disk.join(&name).join("partition"), format!("{n}\n")).unwrap();
        symlink(disk.join(&name), sys.join("class/block").join(&name)).unwrap();
        if n == 9 || n == 10 {
            symlink(disk.join(&name), dm.join("slaves").join(&name)).unwrap();
        }
    }
    symlink(&dm, sys.join("class/block/dm-0")).unwrap();
    symlink(&dm, sys.join(format!("dev/block/{major}:{minor}"))).unwrap();
    let dev = dir.path().join("dev");
    fs::create_dir(&dev).unwrap();
    symlink(&image.path, dev.join("nvme0n1")).unwrap();

    let source = DiskSource::Host(HostPaths {
        root,
        sysfs: sys,
        dev: dev.clone(),
    });
    let mut state = State::load(&source, Access::Write).unwrap();
    assert_eq!(state.active_if_known(), Some(SetId::B));
    assert_eq!(state.active_source(), ActiveSource::Detected);
    assert_eq!(state.disk_path(), dev.join("nvme0n1"));
    state.mark_successful_boot().unwrap();
    state.write().unwrap();
    drop(state);
    assert_disk(&image.path, (1, 0, true), (2, 0, true), true);

    // A read-only state refuses to write.
    let mut state = State::load(&source, Access::Read).unwrap();
    state.clear_inactive().unwrap();
    assert!(matches!(
        state.write(),
        Err(signpost::Error::NotOpenForWriting { .. })
    ));
}
