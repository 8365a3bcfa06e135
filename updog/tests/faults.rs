//! Faults: a tampered image, a dropped connection, a stalled server, an image larger than its
//! partition, expired and rolled-back metadata, a concurrent run. After each failure the disk
//! still boots set A by signpost's rules, `sgdisk -v` is clean, and (where the fault is gone)
//! a following normal run completes the update.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    Fault, Release, Scenario, assert_sgdisk_clean, flags, next_set, partition_range, read_range,
};
use jiff::{SignedDuration, Timestamp};
use signpost::SetId;
use std::fs;

fn past() -> Timestamp {
    Timestamp::now() - SignedDuration::from_hours(24 * 10)
}

fn stderr(output: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&output.get_output().stderr).into_owned()
}

/// Set A still boots; set B is not bootable; the table is clean.
fn assert_still_boots_a(scenario: &Scenario) {
    assert_eq!(flags(&scenario.disk, 3), (1, 0, true));
    let (_, tries, successful) = flags(&scenario.disk, 8);
    assert_eq!(
        (tries, successful),
        (0, false),
        "set B must not be bootable"
    );
    assert_eq!(next_set(&scenario.disk), Some(SetId::A));
    assert_sgdisk_clean(&scenario.disk);
}

#[test]
fn corrupted_byte_never_marks_the_set_valid() {
    let release = Release::new("1.1.0", 21);
    let scenario = Scenario::new(&release, past());
    let served = scenario.served_target(&release.names()[0]);
    let good = fs::read(&served).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    fs::write(&served, &bad).unwrap();

    let out = scenario.updog().arg("update").assert().code(1);
    let text = stderr(&out);
    assert!(
        text.contains("Failed to download and verify the root image"),
        "{text}"
    );
    assert!(text.to_lowercase().contains("hash"), "{text}");
    assert_still_boots_a(&scenario);

    fs::write(&served, &good).unwrap();
    scenario.updog().arg("update").assert().code(0);
    scenario.assert_set_b_holds(&release);
    assert_eq!(next_set(&scenario.disk), Some(SetId::B));
}

#[test]
fn dropped_connection_resumes_with_range() {
    let release = Release::new("1.1.0", 23);
    let scenario = Scenario::with_options(&release, past(), false);
    let [root, ..] = release.names();
    scenario.server.fault(
        &root,
        Fault::DropAfter {
            bytes: 300_000,
            // The first request only reads the LZ4 header (size check); then two drops.
            times: 3,
        },
    );
    scenario.updog().arg("update").assert().code(0);
    scenario.assert_set_b_holds(&release);
    assert_eq!(next_set(&scenario.disk), Some(SetId::B));
    let ranges: Vec<String> = scenario
        .server
        .log()
        .iter()
        .filter(|r| r.path.ends_with(&root))
        .filter_map(|r| r.range.clone())
        .collect();
    assert!(ranges.contains(&"bytes=300000-".to_owned()), "{ranges:?}");
    assert!(ranges.contains(&"bytes=600000-".to_owned()), "{ranges:?}");
    assert_sgdisk_clean(&scenario.disk);
}

#[test]
fn stalled_server_hits_the_idle_timeout() {
    let release = Release::new("1.1.0", 25);
    let scenario = Scenario::with_options(&release, past(), false);
    scenario.write_config(1500, "idle_timeout_secs = 0.5\nmax_retries = 1\n");
    let [_, boot, _] = release.names();
    scenario
        .server
        .fault(&boot, Fault::StallAfter { bytes: 100_000 });
    let started = std::time::Instant::now();
    let out = scenario.updog().arg("update").assert().code(1);
    let text = stderr(&out);
    assert!(text.contains("idle timeout"), "{text}");
    assert!(text.contains("boot image"), "{text}");
    assert!(started.elapsed().as_secs() < 30);
    assert_still_boots_a(&scenario);

    scenario.server.clear_faults();
    scenario.updog().arg("update").assert().code(0);
    scenario.assert_set_b_holds(&release);
}

#[test]
fn a_trickling_mirror_is_dropped_by_the_minimum_throughput() {
    let release = Release::new("1.1.0", 31);
    let scenario = Scenario::with_options(&release, past(), false);
    // One byte every 0.3 s never trips the 2 s idle timeout; without a throughput rule the
    // update would run for days (the watchdog below would then fail the test).
    scenario.write_config(
        1500,
        "idle_timeout_secs = 2\nmin_throughput_bytes_per_sec = 20000\nthroughput_grace_secs = 1\n",
    );
    let [_, boot, _] = release.names();
    scenario.server.fault(
        &boot,
        Fault::Trickle {
            bytes: 50_000,
            every: std::time::Duration::from_millis(300),
        },
    );
    let started = std::time::Instant::now();
    let out = scenario
        .updog()
        .arg("update")
        .timeout(std::time::Duration::from_secs(90))
        .assert()
        .code(1);
    let text = stderr(&out);
    assert!(text.contains("too slow"), "{text}");
    assert!(text.contains("min_throughput_bytes_per_sec"), "{text}");
    assert!(text.contains("boot image"), "{text}");
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    assert_still_boots_a(&scenario);

    scenario.server.clear_faults();
    scenario.updog().arg("update").assert().code(0);
    scenario.assert_set_b_holds(&release);
}

#[test]
fn a_clock_set_back_is_refused() {
    let release = Release::new("1.1.0", 33);
    let scenario = Scenario::new(&release, past());
    scenario.updog().arg("check-update").assert().code(100);
    let clock = scenario.path("datastore/latest-known-time");
    let recorded: Timestamp = fs::read_to_string(&clock).unwrap().trim().parse().unwrap();
    assert!(recorded <= Timestamp::now());
    // The recorded time is a day ahead of the wall clock: as if the clock went back a day
    // (which could make expired metadata look valid again).
    let ahead = Timestamp::now() + SignedDuration::from_hours(24);
    fs::write(&clock, ahead.to_string()).unwrap();
    let out = scenario.updog().arg("update").assert().code(1);
    let text = stderr(&out);
    assert!(text.contains("stepped backwards"), "{text}");
    assert_still_boots_a(&scenario);
    // Once the file is removed (the clock is right), it runs again.
    fs::remove_file(&clock).unwrap();
    scenario.updog().arg("update").assert().code(0);
    scenario.assert_set_b_holds(&release);
}

#[test]
fn declared_oversize_image_is_refused_before_any_write() {
    let mut release = Release::new("1.1.0", 27);
    // HASH-B is 5 MiB.
    release.hash = common::mixed_data(6 << 20, 99);
    let scenario = Scenario::new(&release, past());
    let before_gpt = read_range(&scenario.disk, 0, 1 << 20);
    let out = scenario.updog().arg("update").assert().code(1);
    let text = stderr(&out);
    assert!(text.contains("larger than partition 10"), "{text}");
    assert!(text.contains("6291456"), "{text}");
    // Nothing written: not the table, not the root partition of B.
    assert_eq!(read_range(&scenario.disk, 0, 1 << 20), before_gpt);
    let (root_b, _) = partition_range(9);
    assert!(
        read_range(&scenario.disk, root_b, 1 << 20)
            .iter()
            .all(|b| *b == 0)
    );
    assert_eq!(flags(&scenario.disk, 8), (0, 0, false));
    assert_still_boots_a(&scenario);
}

#[test]
fn undeclared_oversize_image_stops_at_the_partition_end() {
    let mut release = Release::new("1.1.0", 29);
    release.hash = common::mixed_data(6 << 20, 98);
    let scenario = Scenario::with_options(&release, past(), false);
    let out = scenario.updog().arg("update").assert().code(1);
    let text = stderr(&out);
    assert!(text.contains("larger than partition 10"), "{text}");
    // Not a byte past HASH-B: RESERVED-B (partition 11) is untouched.
    let (reserved_b, _) = partition_range(11);
    assert!(
        read_range(&scenario.disk, reserved_b, 1 << 20)
            .iter()
            .all(|b| *b == 0)
    );
    assert_still_boots_a(&scenario);
}

#[test]
fn expired_metadata_is_an_error() {
    let release = Release::new("1.1.0", 31);
    let scenario = Scenario::new(&release, past());
    scenario.resign(2, Timestamp::now() - SignedDuration::from_hours(1));
    let text = refused_metadata(&scenario);
    assert!(text.contains("timestamp metadata expired at"), "{text}");
}

/// check-update and update both fail on the metadata, leaving the disk as it was; returns the
/// (lower-case) error text.
fn refused_metadata(scenario: &Scenario) -> String {
    let out = scenario
        .updog()
        .args(["check-update", "--now"])
        .assert()
        .code(1);
    let text = stderr(&out);
    assert!(text.contains("Metadata error"), "{text}");
    scenario.updog().arg("update").assert().code(1);
    assert_still_boots_a(scenario);
    text.to_lowercase()
}

#[test]
fn older_timestamp_after_a_newer_one_is_refused() {
    let release = Release::new("1.1.0", 33);
    let scenario = Scenario::new(&release, past());
    let old = scenario.path("repo-v1");
    copy_dir(&scenario.path("repo"), &old);
    scenario.resign(2, Timestamp::now() + SignedDuration::from_hours(48));
    scenario
        .updog()
        .args(["check-update", "--now"])
        .assert()
        .code(100);
    // The server now replays version 1: the datastore remembers version 2.
    scenario.server.set_root(&old);
    let text = refused_metadata(&scenario);
    assert!(
        text.contains("timestamp version rolled back from 2 to 1"),
        "{text}"
    );
}

#[test]
fn a_second_run_fails_fast_on_the_lock() {
    let release = Release::new("1.1.0", 35);
    let scenario = Scenario::new(&release, past());
    let lock = fs::File::create(scenario.path("updog.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    for args in [&["update"][..], &["check-update"], &["update-apply"]] {
        let out = scenario.updog().args(args).assert().code(1);
        assert!(
            stderr(&out).contains("another updog is already running"),
            "{args:?}"
        );
    }
    assert_still_boots_a(&scenario);
    drop(lock);
    scenario.updog().arg("update").assert().code(0);
}

#[test]
fn broken_migration_chain_fails_before_the_disk_is_touched() {
    let release = Release::new("1.2.0", 37);
    let scenario = Scenario::new(&release, past());
    // The manifest has a hop (1.0.0, 1.2.0); running 0.9.0 has no path.
    fs::write(
        scenario.path("os-release"),
        "VERSION_ID=0.9.0\nVARIANT_ID=test-variant\n",
    )
    .unwrap();
    let before = read_range(&scenario.disk, 0, 1 << 20);
    let out = scenario.updog().arg("update").assert().code(1);
    assert!(
        stderr(&out).contains("migrations from 0.9.0 to 1.2.0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read_range(&scenario.disk, 0, 1 << 20), before);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}
