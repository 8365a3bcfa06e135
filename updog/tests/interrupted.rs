//! `update` killed (SIGKILL) at 20 points: while fetching each piece of metadata, the
//! manifest, the migration, the size checks, and at several offsets of each image. (The
//! migrator's metadata cache, root chain included, is written from the verified datastore
//! without a request, so there is no fetch of it to stall.) The server stalls at the point, the test waits until updog
//! is there, then kills it. After each kill the disk still boots set A by signpost's rules,
//! set B is not bootable and `sgdisk -v` is clean; a final normal run completes the update.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Fault, Release, Scenario, assert_sgdisk_clean, flags, next_set};
use jiff::{SignedDuration, Timestamp};
use signpost::SetId;
use std::time::{Duration, Instant};

#[test]
fn killed_anywhere_the_host_still_boots_and_the_next_run_completes() {
    let release = Release::new("1.1.0", 41);
    let scenario = Scenario::with_options(
        &release,
        Timestamp::now() - SignedDuration::from_hours(240),
        false,
    );
    let [root, boot, hash] = release.names();
    // (path suffix, stall at byte, which request to that path to wait for).
    let points: Vec<(&str, u64, usize)> = vec![
        ("timestamp.json", 0, 1),
        ("1.snapshot.json", 0, 1),
        ("1.targets.json", 0, 1),
        ("2.root.json", 0, 1),
        ("manifest.json", 0, 1),
        ("migrate_1.1.0_foo.lz4", 0, 1),
        (&root, 0, 1),
        (&boot, 0, 1),
        (&hash, 0, 1),
        (&root, 4_096, 2),
        (&root, 65_536, 2),
        (&root, 400_000, 2),
        (&root, 900_000, 2),
        (&root, 1_150_000, 2),
        (&root, 1_400_000, 2),
        (&boot, 1_000, 2),
        (&boot, 200_000, 2),
        (&boot, 500_000, 2),
        (&hash, 20_000, 2),
        (&hash, 60_000, 2),
    ];
    assert!(points.len() >= 20);
    let binary = assert_cmd::cargo::cargo_bin("updog");
    for (index, (suffix, bytes, nth)) in points.iter().enumerate() {
        scenario.server.clear_log();
        scenario
            .server
            .fault(suffix, Fault::StallAfter { bytes: *bytes });
        let mut child = std::process::Command::new(&binary)
            .arg("--config")
            .arg(&scenario.config)
            .arg("--disk")
            .arg(&scenario.disk)
            .args(["-q", "update"])
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            let seen = scenario
                .server
                .log()
                .iter()
                .filter(|r| r.path.ends_with(suffix))
                .count();
            if seen >= *nth {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("point {index} ({suffix} at {bytes}): updog ended first: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "point {index} ({suffix}): never reached"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            child.try_wait().unwrap().is_none(),
            "point {index} ({suffix} at {bytes}): updog did not wait at the stall"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        scenario.server.clear_faults();

        assert_eq!(flags(&scenario.disk, 3), (1, 0, true), "point {index}");
        let (_, tries, successful) = flags(&scenario.disk, 8);
        assert_eq!((tries, successful), (0, false), "point {index}: B bootable");
        assert_eq!(next_set(&scenario.disk), Some(SetId::A), "point {index}");
        assert_sgdisk_clean(&scenario.disk);
    }

    scenario.updog().arg("update").assert().code(0);
    scenario.assert_set_b_holds(&release);
    assert_eq!(flags(&scenario.disk, 8), (2, 1, false));
    assert_eq!(next_set(&scenario.disk), Some(SetId::B));
    assert_sgdisk_clean(&scenario.disk);
}
