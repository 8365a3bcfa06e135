//! The whole flow against a real TUF repository (signed by `pubsys repo`) served over HTTP on
//! 127.0.0.1 and a copy of a disk image built by image-builder: check-update exit codes, wave
//! gating, update with and without --now, the signpost flip, the partitions' contents, the
//! migrator's cache (exactly the verified metadata bytes), a datastore left by tough.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Fault, Release, Scenario, assert_sgdisk_clean, flags, next_set};
use jiff::{SignedDuration, Timestamp};
use signpost::SetId;

fn future() -> Timestamp {
    Timestamp::now() + SignedDuration::from_hours(24)
}

fn past() -> Timestamp {
    Timestamp::now() - SignedDuration::from_hours(24 * 10)
}

#[test]
fn check_update_exit_codes_and_wave_gating() {
    let release = Release::new("1.1.0", 1);
    let scenario = Scenario::new(&release, future());

    // Waves start tomorrow: nothing for this host yet, exit 0, nothing on stdout.
    let out = scenario.updog().arg("check-update").assert().code(0);
    assert!(out.get_output().stdout.is_empty());

    // --now ignores the waves: exit 100 and "<variant> <version>".
    let out = scenario
        .updog()
        .args(["check-update", "--now"])
        .assert()
        .code(100);
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout).trim(),
        "test-variant 1.1.0"
    );

    // The alias and --json: the reference's Update object, keys in the reference order, and
    // then what it costs to download (this repository has no delta).
    let out = scenario
        .updog()
        .args(["whats", "--ignore-waves", "--json"])
        .assert()
        .code(100);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let update: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(update["version"], "1.1.0");
    assert_eq!(update["arch"], std::env::consts::ARCH);
    let keys: Vec<&str> = update
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "variant",
            "arch",
            "version",
            "max_version",
            "waves",
            "images",
            "download"
        ]
    );
    assert!(update["download"]["full_bytes"].as_u64().unwrap() > 0);
    assert!(update["download"]["delta_bytes"].is_null());

    // --all --json: an array, empty while the waves are closed.
    let out = scenario
        .updog()
        .args(["check-update", "--all", "--json"])
        .assert()
        .code(0);
    let all: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(all, serde_json::json!([]));

    // No update with --json: null, exit 0.
    let out = scenario
        .updog()
        .args(["check-update", "--json"])
        .assert()
        .code(0);
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout).trim(),
        "null"
    );

    // explain: the seed, its wave and when it opens.
    let out = scenario
        .updog()
        .args(["explain", "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["seed"], 1500);
    let timing = &report["updates"][0];
    assert_eq!(timing["version"], "1.1.0");
    assert_eq!(timing["wave"]["kind"], "between");
    assert_eq!(timing["wave"]["lower"]["key"], 1024);
    // The scenarios' wave schedule: 50% → key 1024, 75% → key 1536 (see common::WAVES).
    assert_eq!(timing["wave"]["upper"]["key"], 1536);
    assert_eq!(timing["ready"], false);
    let eligible: Timestamp = timing["eligible_at"].as_str().unwrap().parse().unwrap();
    assert!(eligible > Timestamp::now());
    let out = scenario.updog().arg("explain").assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains("Seed 1500") && text.contains("1024 < seed <= 1536"),
        "{text}"
    );
    assert!(text.contains("not yet"), "{text}");
    assert!(
        text.contains("download: ") && text.contains("(full images)"),
        "{text}"
    );
}

#[test]
fn update_writes_the_inactive_set_and_flips_it() {
    let release = Release::new("1.1.0", 7);
    let scenario = Scenario::new(&release, future());

    // Without --now the waves keep the host where it is: nothing written.
    let before = std::fs::read(&scenario.disk).map(|d| d.len()).unwrap();
    scenario.updog().arg("update").assert().code(0);
    assert_eq!(flags(&scenario.disk, 8), (0, 0, false));
    assert_eq!(flags(&scenario.disk, 3), (1, 0, true));
    assert_eq!(before, 1 << 30);

    // With --now: the images land in set B, which boots next.
    let out = scenario
        .updog()
        .args(["update", "--now", "--json"])
        .assert()
        .code(0);
    let update: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(update["version"], "1.1.0");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"selected") && kinds.contains(&"image_done"),
        "{kinds:?}"
    );
    assert_eq!(events.last().unwrap()["phase"], "done");

    assert_eq!(flags(&scenario.disk, 3), (1, 0, true));
    assert_eq!(flags(&scenario.disk, 8), (2, 1, false));
    assert_eq!(next_set(&scenario.disk), Some(SetId::B));
    assert_sgdisk_clean(&scenario.disk);
    scenario.assert_set_b_holds(&release);

    // The migrator's cache: the migration and the manifest under their digests, the record of
    // what the staged set needs, and metadata.
    let mut cached: Vec<String> = std::fs::read_dir(scenario.path("migrations-cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cached.sort();
    assert_eq!(cached.len(), 3, "{cached:?}");
    assert_eq!(cached[0], ".staged-update.json");
    assert!(cached.iter().any(|n| n.ends_with(".migrate_1.1.0_foo.lz4")));
    assert!(cached.iter().any(|n| n.ends_with(".manifest.json")));
    assert!(scenario.path("metadata-cache/timestamp.json").exists());
    assert!(scenario.path("metadata-cache/1.root.json").exists());

    // Every request carried the reference's query parameters; images also target/migrations.
    let log = scenario.server.log();
    let image = log
        .iter()
        .find(|r| r.path.ends_with("-root.ext4.lz4"))
        .unwrap();
    assert_eq!(
        image.query,
        "migrations=migrate_1.1.0_foo.lz4%2Cmanifest.json&seed=1500&target=1.1.0&version=1.0.0"
    );
    assert!(log.iter().all(|r| r.query.contains("seed=1500&")));

    // update-revert and update-apply flip back and forth without the network.
    scenario.updog().arg("update-revert").assert().success();
    assert_eq!(flags(&scenario.disk, 3), (2, 0, true));
    assert_eq!(flags(&scenario.disk, 8), (0, 1, false));
    scenario.updog().arg("update-apply").assert().success();
    assert_eq!(flags(&scenario.disk, 8), (2, 1, false));
    assert_eq!(flags(&scenario.disk, 3), (1, 0, true));
    assert_sgdisk_clean(&scenario.disk);
}

#[test]
fn update_image_stages_without_flipping_and_open_waves_need_no_now() {
    let release = Release::new("1.1.0", 11);
    let scenario = Scenario::new(&release, past());
    let out = scenario.updog().arg("update-image").assert().code(0);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "Update staged: test-variant 1.1.0", "{stdout}");
    // No delta in this repository: every image in full, the bytes counted.
    assert!(
        lines[1].starts_with("downloaded: ") && lines[1].matches("in full").count() == 3,
        "{stdout}"
    );
    // Staged: valid (one try) but not chosen to boot.
    assert_eq!(flags(&scenario.disk, 8), (0, 1, false));
    assert_eq!(next_set(&scenario.disk), Some(SetId::A));
    scenario.assert_set_b_holds(&release);
    scenario.updog().arg("update-apply").assert().success();
    assert_eq!(next_set(&scenario.disk), Some(SetId::B));
    // Applying twice is refused by signpost's rules.
    scenario.updog().arg("update-apply").assert().code(1);
}

#[test]
fn prepare_caches_and_prunes_without_touching_the_disk() {
    let release = Release::new("1.1.0", 13);
    let scenario = Scenario::new(&release, past());
    let cache = scenario.path("migrations-cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("deadbeef.migrate_0.9.0_old.lz4"), b"stale").unwrap();
    scenario.updog().arg("prepare").assert().success();
    let names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.iter().any(|n| n.contains("0.9.0")));
    assert_eq!(flags(&scenario.disk, 8), (0, 0, false));
}

#[test]
fn file_urls_work() {
    let release = Release::new("1.1.0", 17);
    let scenario = Scenario::new(&release, past());
    let repo = scenario.path("repo");
    let text = std::fs::read_to_string(&scenario.config).unwrap();
    let text = text
        .replace(
            &scenario.server.url("metadata/"),
            &format!("file://{}/metadata/", repo.display()),
        )
        .replace(
            &scenario.server.url("targets/"),
            &format!("file://{}/targets/", repo.display()),
        );
    std::fs::write(&scenario.config, text).unwrap();
    scenario.updog().arg("update").assert().code(0);
    scenario.assert_set_b_holds(&release);
    assert_eq!(next_set(&scenario.disk), Some(SetId::B));
    assert!(scenario.server.log().is_empty());
}

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn metadata_cache_holds_the_verified_bytes_and_nothing_is_fetched_again() {
    let release = Release::new("1.1.0", 19);
    let scenario = Scenario::new(&release, past());
    let served = scenario.path("repo/metadata");
    // A mirror whose metadata changes after the first fetch (the root at once), keeping each
    // file's length (an indenting space becomes a tab): the cache must hold what updog
    // verified, not what a second fetch would bring.
    let files = [
        ("timestamp.json", 1),
        ("1.snapshot.json", 1),
        ("1.targets.json", 1),
        ("1.root.json", 0),
    ];
    for (file, requests) in files {
        let mut body = read(&served.join(file));
        let indent = body.windows(2).position(|w| w == b"\n ").unwrap();
        body[indent + 1] = b'\t';
        scenario.server.fault(
            &format!("/metadata/{file}"),
            Fault::ChangeAfter { requests, body },
        );
    }
    scenario.updog().arg("prepare").assert().success();

    let cache = scenario.path("metadata-cache");
    for (file, _) in files {
        assert!(
            read(&cache.join(file)) == read(&served.join(file)),
            "cached {file} is not the file updog verified"
        );
    }
    assert_eq!(
        file_names(&cache),
        [
            "1.root.json",
            "1.snapshot.json",
            "1.targets.json",
            "timestamp.json"
        ]
    );
    assert_eq!(
        read(&cache.join("1.root.json")),
        read(&scenario.keys.root_path)
    );
    // The datastore holds the same verified bytes.
    let datastore = scenario.path("datastore");
    assert_eq!(
        read(&datastore.join("timestamp.json")),
        read(&served.join("timestamp.json"))
    );
    assert_eq!(
        read(&datastore.join("root-history/1.root.json")),
        read(&scenario.keys.root_path)
    );
    // No metadata is requested once the first target has been.
    let log = scenario.server.log();
    let first_target = log
        .iter()
        .position(|r| r.path.starts_with("/targets/"))
        .unwrap();
    let late: Vec<&str> = log[first_target..]
        .iter()
        .map(|r| r.path.as_str())
        .filter(|p| p.starts_with("/metadata/"))
        .collect();
    assert!(late.is_empty(), "metadata fetched after the load: {late:?}");
}

#[test]
fn a_datastore_left_by_a_tough_based_updog_starts_afresh() {
    let release = Release::new("1.1.0", 23);
    let scenario = Scenario::new(&release, past());
    let served = scenario.path("repo/metadata");
    // tough's datastore: the current metadata re-serialised (compact JSON, still validly
    // signed, but not the bytes timestamp and snapshot list hashes of) and its clock file.
    let datastore = scenario.path("datastore");
    std::fs::create_dir_all(&datastore).unwrap();
    for (stored, file) in [
        ("root.json", "1.root.json"),
        ("timestamp.json", "timestamp.json"),
        ("snapshot.json", "1.snapshot.json"),
        ("targets.json", "1.targets.json"),
    ] {
        let value: serde_json::Value = serde_json::from_slice(&read(&served.join(file))).unwrap();
        std::fs::write(datastore.join(stored), serde_json::to_vec(&value).unwrap()).unwrap();
    }
    std::fs::write(
        datastore.join("latest_known_time.json"),
        b"\"2026-01-01T00:00:00Z\"",
    )
    .unwrap();

    scenario.updog().arg("prepare").assert().success();
    let cache = scenario.path("metadata-cache");
    for file in [
        "timestamp.json",
        "1.snapshot.json",
        "1.targets.json",
        "1.root.json",
    ] {
        assert!(
            read(&cache.join(file)) == read(&served.join(file)),
            "cached {file} is tough's re-serialised copy"
        );
    }
    assert_eq!(
        read(&datastore.join("root.json")),
        read(&scenario.keys.root_path)
    );
    assert!(!datastore.join("latest_known_time.json").exists());
}

#[test]
fn a_staged_updates_migrations_are_kept_until_the_host_runs_it() {
    let release = Release::new("1.1.0", 19);
    let scenario = Scenario::new(&release, past());
    scenario.updog().arg("update").assert().code(0);
    let cache = scenario.path("migrations-cache");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join(".staged-update.json")).unwrap()).unwrap();
    assert_eq!(record["version"], "1.1.0");
    let files: Vec<&str> = record["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with(".migrate_1.1.0_foo.lz4")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.ends_with(".manifest.json")),
        "{files:?}"
    );
    for file in &files {
        assert!(cache.join(file).is_file(), "{file}");
    }

    // Say the set holds 1.2.0, staged by a run whose version this repository no longer
    // offers: a later run that caches for another version must not delete its migration.
    let staged = "deadbeef.migrate_1.2.0_bar.lz4";
    std::fs::write(cache.join(staged), b"bar").unwrap();
    std::fs::write(
        cache.join(".staged-update.json"),
        format!("{{\"version\": \"1.2.0\", \"files\": [\"{staged}\"]}}"),
    )
    .unwrap();
    std::fs::write(cache.join("cafe.migrate_0.9.0_old.lz4"), b"old").unwrap();
    scenario.updog().arg("prepare").assert().success();
    assert!(
        cache.join(staged).is_file(),
        "the staged update's migration was removed"
    );
    assert!(
        !cache.join("cafe.migrate_0.9.0_old.lz4").exists(),
        "stale files still go"
    );

    // Once the host runs the recorded version, the record protects nothing.
    std::fs::write(
        cache.join(".staged-update.json"),
        format!("{{\"version\": \"1.0.0\", \"files\": [\"{staged}\"]}}"),
    )
    .unwrap();
    scenario.updog().arg("prepare").assert().success();
    assert!(!cache.join(staged).exists());
}
