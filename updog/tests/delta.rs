//! The delta path end to end: `updog update` against a repository published with the delta
//! index and store, on a host whose running set holds the previous release. Only what
//! changed is fetched (as byte ranges of the store), every fault ends in the full images or a
//! refusal, and set B always ends holding exactly the new release.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Release, Scenario, flags, partition_range};
use jiff::{SignedDuration, Timestamp};
use std::os::unix::fs::{FileExt, PermissionsExt};

fn past() -> Timestamp {
    Timestamp::now() - SignedDuration::from_hours(24 * 10)
}

/// The previous release (running in set A) and the new one: the same images with 64 KiB of
/// the root changed and 8 KiB of the boot image changed.
fn releases() -> (Release, Release) {
    let old = Release::new("1.0.0", 31);
    let mut new = Release::new("1.1.0", 31);
    new.root[(1 << 20)..(1 << 20) + (64 << 10)].copy_from_slice(&common::mixed_data(64 << 10, 99));
    new.boot[4096..12288].fill(0x5a);
    new.delta = true;
    (old, new)
}

/// Bytes of the store asked for in the server's log (by Range header), and the number of
/// requests for it.
fn store_fetched(scenario: &Scenario) -> (u64, usize) {
    let log = scenario.server.log();
    let requests: Vec<_> = log
        .iter()
        .filter(|r| r.path.ends_with("-delta.store"))
        .collect();
    let bytes = requests
        .iter()
        .map(|r| {
            let range = r
                .range
                .as_deref()
                .expect("every store request is a range request");
            let (s, e) = range
                .strip_prefix("bytes=")
                .unwrap()
                .split_once('-')
                .unwrap();
            e.parse::<u64>().unwrap() - s.parse::<u64>().unwrap() + 1
        })
        .sum();
    (bytes, requests.len())
}

/// The full images requested (each once, whatever the number of requests).
fn full_images_fetched(scenario: &Scenario) -> Vec<String> {
    let mut paths: Vec<String> = scenario
        .server
        .log()
        .iter()
        .filter(|r| r.path.ends_with(".lz4") && !r.path.contains("migrate"))
        .map(|r| r.path.clone())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

fn update(scenario: &Scenario) -> String {
    let out = scenario
        .updog()
        .args(["update", "--now", "--json"])
        .env("RUST_LOG", "updog=info")
        .assert()
        .code(0);
    assert_eq!(flags(&scenario.disk, 8), (2, 1, false));
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

#[test]
fn a_patch_release_fetches_only_what_changed_and_a_rerun_fetches_nothing() {
    let (old, new) = releases();
    let scenario = Scenario::new(&new, past());
    scenario.install_in_set_a(&old);
    // check-update says what each path would download, reading the disk.
    let out = scenario
        .updog()
        .args(["check-update", "--now", "--json"])
        .assert()
        .code(100);
    let checked: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let full: u64 = new
        .names()
        .iter()
        .map(|n| std::fs::metadata(scenario.served_target(n)).unwrap().len())
        .sum();
    assert_eq!(checked["download"]["full_bytes"], full);
    let estimated = checked["download"]["delta_bytes"].as_u64().unwrap();
    assert!(estimated < full / 10, "{checked}");
    scenario.server.clear_log();
    // Set B starts with other bytes (an older release): they are overwritten.
    let stderr = update(&scenario);
    scenario.assert_set_b_holds(&new);
    let (bytes, requests) = store_fetched(&scenario);
    // 64 KiB of incompressible root and 8 KiB of one repeated byte in the boot image
    // changed: 64 KiB and a little of store.
    assert!(
        (64 << 10..68 << 10).contains(&bytes),
        "fetched {bytes} bytes of store in {requests} requests\n{stderr}"
    );
    // (Coalesced: 16 frames, in ranges that shrink towards the end of the fetch.)
    assert!(requests <= 8, "{requests} requests");
    // The progress events count the bytes actually fetched: each image's `image_done` says
    // what came over the wire for it, and they add up to the store bytes served.
    let done: u64 = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "image_done")
        .map(|e| e["downloaded"].as_u64().unwrap())
        .sum();
    assert_eq!(done, bytes, "{stderr}");
    // The estimate was the store bytes plus the index (fetched by check-update, then cached).
    let index_len =
        std::fs::metadata(scenario.served_target(&delta::target_names(&new.names()[0]).0))
            .unwrap()
            .len();
    assert_eq!(estimated, bytes + index_len);
    assert!(
        full_images_fetched(&scenario).is_empty(),
        "{:?}",
        full_images_fetched(&scenario)
    );
    assert!(
        stderr.contains("image written by the delta path"),
        "{stderr}"
    );
}

#[test]
fn a_run_killed_while_fetching_is_resumed_keeping_what_it_fetched() {
    use std::io::BufRead;
    // 40 single changed blocks spread over the root: 40 store frames, fetched as separate
    // ranges (the unchanged blocks' frames lie between them).
    let old = Release::new("1.0.0", 31);
    let mut new = Release::new("1.1.0", 31);
    let changed: Vec<usize> = (0..40).map(|j| 10 + j * 17).collect();
    for (j, b) in changed.iter().enumerate() {
        new.root[b * 4096..(b + 1) * 4096]
            .copy_from_slice(&common::mixed_data(4096, 1000 + 2 * j as u64));
    }
    new.delta = true;
    let scenario = Scenario::new(&new, past());
    scenario.install_in_set_a(&old);
    let (index_name, store_name) = delta::target_names(&new.names()[0]);
    let index =
        delta::Index::decode(&std::fs::read(scenario.served_target(&index_name)).unwrap()).unwrap();
    let root = index.image("root").unwrap();
    let frames: Vec<delta::Frame> = changed.iter().map(|b| root.frames[*b]).collect();
    assert!(
        frames.windows(2).all(|w| w[0].offset < w[1].offset),
        "40 distinct frames in order: {frames:?}"
    );
    let total: u64 = frames.iter().map(|f| u64::from(f.len)).sum();
    // The store is served up to the 20th changed block's frame, then stalls: the first run
    // writes what it got and hangs; it is killed there (as a reboot or an OOM kill would).
    let stall_at = frames[20].offset;
    scenario
        .server
        .fault(&store_name, common::Fault::StallAfter { bytes: stall_at });
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("updog"))
        .arg("--config")
        .arg(&scenario.config)
        .arg("--disk")
        .arg(&scenario.disk)
        .args(["update", "--now"])
        .env("RUST_LOG", "updog=info")
        .env("NO_PROXY", "127.0.0.1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().contains("delta plan") {
            break;
        }
    }
    // Wait until a request reaching the stall point went out, then give the ranges before it
    // time to be written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !scenario.server.log().iter().any(|r| {
        r.range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').nth(1))
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|end| end >= stall_at)
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "no request reached the stall at {stall_at}: {:?}",
            scenario
                .server
                .log()
                .iter()
                .filter_map(|r| r.range.clone())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        flags(&scenario.disk, 8),
        (0, 0, false),
        "the set stays unbootable"
    );
    // Every block fetched before the stall was spooled before it was written.
    let spool = scenario.path("datastore").join("delta-spool-root");
    let spooled = std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(0);
    assert!(spooled >= 20 * 4096, "spool of {spooled} bytes");
    assert_eq!(
        std::fs::metadata(&spool).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Set B's root loses what the killed run wrote: the fetched blocks are only in the spool
    // now (the copies come from set A again).
    let (offset, len) = partition_range(9);
    let disk = std::fs::OpenOptions::new()
        .write(true)
        .open(&scenario.disk)
        .unwrap();
    disk.write_all_at(&vec![0; len as usize], offset).unwrap();
    drop(disk);

    let first_run: Vec<String> = scenario
        .server
        .log()
        .iter()
        .filter_map(|r| r.range.clone())
        .collect();
    scenario.server.clear_faults();
    scenario.server.clear_log();
    update(&scenario);
    scenario.assert_set_b_holds(&new);
    assert!(
        !spool.exists(),
        "the spool is removed once the update is written"
    );
    // The re-run took the killed run's fetched blocks from the spool: it fetches what was
    // still missing (the frames from the stall on, the boot image's change, and the few
    // ranges that were in flight), not all 40.
    let (bytes, _) = store_fetched(&scenario);
    let before_stall: u64 = frames[..20].iter().map(|f| u64::from(f.len)).sum();
    let after_stall = total - before_stall;
    assert!(
        bytes >= after_stall && bytes <= after_stall + 4 * 4200 + 4096,
        "re-run fetched {bytes}; {after_stall} of the root's {total} were past the stall; \
         first run {first_run:?}"
    );
    assert!(full_images_fetched(&scenario).is_empty());
    assert!(
        !scenario
            .server
            .log()
            .iter()
            .any(|r| r.path.ends_with("-delta.index")),
        "the verified index is cached"
    );
}

#[test]
fn a_flipped_store_byte_ends_in_the_full_image() {
    let (old, new) = releases();
    let scenario = Scenario::new(&new, past());
    scenario.install_in_set_a(&old);
    let store = scenario.served_target(&delta::target_names(&new.names()[0]).1);
    let mut bytes = std::fs::read(&store).unwrap();
    // Flip a byte of every frame region: the first stored bytes belong to the root.
    for at in (0..bytes.len()).step_by(97) {
        bytes[at] ^= 0x01;
    }
    std::fs::write(&store, &bytes).unwrap();
    let stderr = update(&scenario);
    scenario.assert_set_b_holds(&new);
    assert!(stderr.contains("the delta path failed"), "{stderr}");
    assert!(!full_images_fetched(&scenario).is_empty());
}

#[test]
fn a_flipped_index_byte_ends_in_the_full_images() {
    let (old, new) = releases();
    let scenario = Scenario::new(&new, past());
    scenario.install_in_set_a(&old);
    let index = scenario.served_target(&delta::target_names(&new.names()[0]).0);
    let mut bytes = std::fs::read(&index).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&index, &bytes).unwrap();
    let stderr = update(&scenario);
    scenario.assert_set_b_holds(&new);
    assert!(
        stderr.contains("the delta index cannot be used"),
        "{stderr}"
    );
    assert_eq!(full_images_fetched(&scenario).len(), 3);
    assert_eq!(store_fetched(&scenario).0, 0);
}

/// A hash image holding a real dm-verity tree of `root` (`veritysetup format`: format 1,
/// SHA-256, 4 KiB blocks, a fixed salt, as image-builder writes them), padded to `len`.
fn verity_tree(root: &[u8], len: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (data, hash) = (dir.path().join("root"), dir.path().join("hash"));
    std::fs::write(&data, root).unwrap();
    let status = std::process::Command::new("veritysetup")
        .arg("format")
        .arg(&data)
        .arg(&hash)
        .arg(format!("--salt={}", "5a".repeat(32)))
        .arg("--uuid=6a0c1b7e-29a5-4c3e-9a2b-3d5e7f901234")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("veritysetup (cryptsetup-bin, scripts/apt-packages.txt)");
    assert!(status.success());
    let mut tree = std::fs::read(&hash).unwrap();
    assert!(tree.len() <= len);
    tree.resize(len, 0);
    tree
}

/// Flip the byte at 2 MiB of the running root (partition 4): a block the new root reuses.
fn flip_running_root_byte(scenario: &Scenario, old: &Release) {
    let (offset, _) = partition_range(4);
    let disk = std::fs::OpenOptions::new()
        .write(true)
        .open(&scenario.disk)
        .unwrap();
    disk.write_all_at(&[old.root[2 << 20] ^ 0xff], offset + (2 << 20))
        .unwrap();
}

#[test]
fn the_running_root_is_found_through_its_tree_and_a_lying_leaf_costs_one_fetch() {
    let (mut old, mut new) = releases();
    old.hash = verity_tree(&old.root, old.hash.len());
    new.hash = verity_tree(&new.root, new.hash.len());
    let scenario = Scenario::new(&new, past());
    scenario.install_in_set_a(&old);
    // A flipped byte in the running root, in a block the new root reuses: the running tree
    // still lists the block's old hash, so the plan copies it; the copy is hashed as it is
    // written, is not what the index lists, and is fetched in a second round.
    flip_running_root_byte(&scenario, &old);
    let stderr = update(&scenario);
    scenario.assert_set_b_holds(&new);
    // The root's blocks were found through the tree, not by reading the root.
    let found: u64 = stderr
        .lines()
        .find(|l| l.contains("delta plan") && l.contains("image=\"root\""))
        .and_then(|l| l.split("found_by_tree=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no root plan line\n{stderr}"));
    // (mixed_data is about half zeros: 368 of its 768 blocks are not.)
    assert!(found > 300, "found_by_tree={found}\n{stderr}");
    let (bytes, requests) = store_fetched(&scenario);
    assert!(bytes >= 68 << 10, "fetched {bytes}");
    assert!(bytes < 200 << 10, "fetched {bytes}");
    assert!(requests >= 2, "the second round is a request of its own");
    assert!(full_images_fetched(&scenario).is_empty());
}

#[test]
fn a_flipped_seed_byte_is_fetched_instead() {
    let (old, new) = releases();
    let scenario = Scenario::new(&new, past());
    scenario.install_in_set_a(&old);
    // A flipped byte in the running root (partition 4), in a block the new root reuses.
    flip_running_root_byte(&scenario, &old);
    update(&scenario);
    scenario.assert_set_b_holds(&new);
    let (bytes, _) = store_fetched(&scenario);
    // The changed 64 KiB, plus the one random block the seed no longer has (4 KiB that do
    // not compress), more than the undamaged seed's run fetches (under 68 KiB, above).
    assert!(bytes >= 68 << 10, "fetched {bytes}");
    assert!(full_images_fetched(&scenario).is_empty());
}
