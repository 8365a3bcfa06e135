//! Refusals and bad input: a clear error, exit 1, and not one byte written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Image, LAYOUT_1GIB, Row, assert_disk, tool};
use predicates::prelude::predicate;
use signpost::gpt_types::PartitionRole;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Run `args` on `image`, expect exit 1 with `message` on stderr, and check the disk did not
/// change at all.
fn refused(image: &Image, args: &[&str], message: &str) {
    let before = image.snapshot();
    image
        .signpost()
        .args(args)
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains(message));
    assert_eq!(
        image.snapshot(),
        before,
        "refused {args:?} changed the disk"
    );
}

#[test]
fn upgrade_without_valid_inactive_is_refused() {
    let image = Image::reference();
    image.run(&["clear-inactive"]);
    refused(
        &image,
        &["upgrade-to-inactive"],
        "Inactive partition B has not been marked valid",
    );
    assert_disk(&image.path, (1, 0, true), (0, 0, false), false);
}

#[test]
fn upgrade_twice_is_refused() {
    let image = Image::reference();
    image.stage_update();
    refused(
        &image,
        &["upgrade-to-inactive"],
        "Inactive partition B is already marked for upgrade",
    );
    assert_disk(&image.path, (1, 0, true), (2, 1, false), false);
}

#[test]
fn rollback_to_an_unbootable_set_is_refused() {
    let image = Image::reference();
    refused(
        &image,
        &["rollback-to-inactive"],
        "Inactive partition B is not valid to roll back to (priority=0, tries_left=0, successful=false)",
    );
    image.run(&["mark-inactive-valid"]);
    // Tries but no priority: still not bootable.
    refused(
        &image,
        &["rollback-to-inactive"],
        "not valid to roll back to",
    );
}

#[test]
fn unknown_running_set_is_refused() {
    let image = Image::reference();
    // Make both sets successful: the running set cannot be inferred.
    tool("sgdisk", &["-A", "8:set:56", &image.path.to_string_lossy()]);
    for command in [
        "clear-inactive",
        "mark-inactive-valid",
        "upgrade-to-inactive",
        "cancel-upgrade",
        "rollback-to-inactive",
        "mark-successful-boot",
    ] {
        refused(
            &image,
            &[command],
            "cannot tell which partition set is running",
        );
    }
    // status still works and says so.
    image
        .signpost()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Active:  unknown (pass --active-set)",
        ));
}

#[test]
fn select_boot_with_no_bootable_set_is_refused() {
    let image = Image::reference();
    tool(
        "sgdisk",
        &["-A", "3:clear:56", &image.path.to_string_lossy()],
    );
    refused(&image, &["select-boot"], "no partition set will boot");
}

#[test]
fn active_set_requires_disk_and_bad_values_are_usage_errors() {
    let image = Image::reference();
    assert_cmd::Command::cargo_bin("signpost")
        .unwrap()
        .args(["--active-set", "a", "status"])
        .assert()
        .code(2);
    image
        .signpost()
        .args(["--active-set", "c", "status"])
        .assert()
        .code(2);
    image.signpost().arg("no-such-command").assert().code(2);
    image.signpost().assert().code(2);
}

fn image_with(rows: &[Row]) -> Image {
    Image::with_rows(rows)
}

#[test]
fn not_a_gpt_disk() {
    let dir = common::tempdir();
    let path = dir.path().join("zeros.img");
    fs::File::create(&path).unwrap().set_len(64 << 20).unwrap();
    let image = Image { dir, path };
    refused(&image, &["status"], "is not a GPT disk");
    refused(&image, &["clear-inactive"], "is not a GPT disk");
    // An empty file too.
    let empty = image.dir.path().join("empty.img");
    fs::File::create(&empty).unwrap();
    let empty = Image {
        dir: common::tempdir(),
        path: empty,
    };
    refused(&empty, &["status"], "is not a GPT disk");
}

#[test]
fn missing_disk_file() {
    let image = Image {
        dir: common::tempdir(),
        path: PathBuf::from("/nonexistent/disk.img"),
    };
    image
        .signpost()
        .arg("status")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot open disk /nonexistent/disk.img for reading",
        ));
}

#[test]
fn missing_set_b() {
    let mut rows = LAYOUT_1GIB.to_vec();
    // BOOT-B typed as RESERVED: set B has no BOOT partition.
    rows[7].1 = PartitionRole::Reserved;
    let image = image_with(&rows);
    refused(
        &image,
        &["status"],
        "Failed to find guid partition for set B: ",
    );
    refused(&image, &["clear-inactive"], "has no BOOT partition for it");
}

#[test]
fn single_bank_disk_has_no_set_b() {
    let rows: Vec<Row> = LAYOUT_1GIB[..6]
        .iter()
        .copied()
        .chain([LAYOUT_1GIB[11], LAYOUT_1GIB[12]])
        .collect();
    let image = image_with(&rows);
    refused(
        &image,
        &["status"],
        "Failed to find guid partition for set B",
    );
}

#[test]
fn extra_sets_are_refused() {
    let mut rows = LAYOUT_1GIB.to_vec();
    // RESERVED-B typed as BOOT: three BOOT partitions.
    rows[10].1 = PartitionRole::Boot;
    let image = image_with(&rows);
    refused(
        &image,
        &["status"],
        "has BOOT partitions 3, 8, 11, expected exactly 2",
    );
    refused(&image, &["mark-successful-boot"], "expected exactly 2");
}

#[test]
fn wrong_type_guids_are_refused() {
    let mut rows = LAYOUT_1GIB.to_vec();
    // ROOT-A and HASH-A swapped: set A is not BOOT, BOOT+1, BOOT+2.
    rows[3].1 = PartitionRole::Hash;
    rows[4].1 = PartitionRole::Root;
    let image = image_with(&rows);
    refused(&image, &["clear-inactive"], "set A on");
    // No PRIVATE partition (typed as DATA instead).
    let mut rows = LAYOUT_1GIB.to_vec();
    rows[11].1 = PartitionRole::Data;
    let image = image_with(&rows);
    refused(&image, &["status"], "has no PRIVATE partition");
}

/// Makes a file read-only for this test, even for root (`chattr +i`), and undoes it on drop.
struct ReadOnly<'a>(&'a Path, bool);

impl<'a> ReadOnly<'a> {
    fn new(path: &'a Path) -> ReadOnly<'a> {
        fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
        // /proc/self belongs to the effective user.
        let root = fs::metadata("/proc/self").unwrap().uid() == 0;
        if root {
            tool("chattr", &["+i", &path.to_string_lossy()]);
        }
        ReadOnly(path, root)
    }
}

impl Drop for ReadOnly<'_> {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(self.0)
                .status();
        }
    }
}

#[test]
fn read_only_disk_can_be_read_but_not_written() {
    let image = Image::reference();
    let _guard = ReadOnly::new(&image.path);
    image.run(&["status"]);
    image.run(&["has-boot-ever-succeeded"]);
    refused(
        &image,
        &["clear-inactive"],
        &format!("cannot open disk {} for writing", image.path.display()),
    );
    refused(&image, &["select-boot"], "for writing");
}

#[test]
fn a_held_lock_stops_a_second_writer() {
    let image = Image::reference();
    let holder = fs::File::open(&image.path).unwrap();
    rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockShared).unwrap();
    // Readers share the lock.
    image.run(&["status"]);
    let before = image.snapshot();
    assert_cmd::Command::cargo_bin("signpost")
        .unwrap()
        .arg("--disk")
        .arg(&image.path)
        .args(["--lock-timeout", "0.3", "clear-inactive"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "is locked by another signpost or updog",
        ));
    assert_eq!(image.snapshot(), before);
    drop(holder);
    image.run(&["clear-inactive"]);
}
