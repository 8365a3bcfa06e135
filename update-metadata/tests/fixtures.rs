//! Every manifest and wave fixture from the reference, with the outcome the reference doc
//! (`update-metadata.md` §7) gives for it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken invariants

use jiff::{SignedDuration, Timestamp};
use semver::Version;
use std::collections::BTreeMap;
use std::path::PathBuf;
use update_metadata::{
    Arch, Host, Manifest, Policy, Release, Seed, VersionLock, WaveSchedule, Waves,
};

fn data(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/bottlerocket")
        .join(relative)
}

fn manifest(name: &str) -> Manifest {
    Manifest::load(&data(&format!("manifests/{name}")))
        .unwrap_or_else(|e| panic!("{name}: {}", snafu::Report::from_error(e)))
}

fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

fn t(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A host well after every fixture's waves, with an arbitrary mid-fleet seed.
fn host(variant: &str, arch: Arch, version: &str) -> Host {
    Host {
        variant: variant.into(),
        arch,
        version: v(version),
        seed: Seed::new(1000).unwrap(),
    }
}

const NOW: &str = "2026-01-01T00:00:00Z";
const VALID: [&str; 9] = [
    "example.json",
    "example_2.json",
    "example_3_aarch64.json",
    "example_3_x86_64.json",
    "migrations-shortcut.json",
    "multiple_aarch64.json",
    "multiple_x86_64.json",
    "regret.json",
    "single_wave.json",
];

#[test]
fn valid_manifests_round_trip_canonically() {
    for name in VALID {
        let first = manifest(name);
        let text = first.to_json().unwrap();
        let second = Manifest::from_slice(text.as_bytes(), name).unwrap();
        assert_eq!(
            first, second,
            "{name}: read → write → read changed the model"
        );
        assert_eq!(
            second.to_json().unwrap(),
            text,
            "{name}: canonical form is not stable"
        );
        assert!(
            text.contains("\n  \"updates\": ["),
            "{name}: two-space pretty JSON expected"
        );
    }
}

#[test]
fn invalid_manifests_fail_naming_the_bad_key() {
    let bad = Manifest::load(&data("manifests/bad-bound.json")).unwrap_err();
    let report = snafu::Report::from_error(bad).to_string();
    assert!(report.contains("Bad bound field: 234ab32"), "{report}");
    assert!(report.contains("bad-bound.json"), "{report}");

    let duplicate = Manifest::load(&data("manifests/duplicate-bound.json")).unwrap_err();
    let report = snafu::Report::from_error(duplicate).to_string();
    assert!(report.contains("Duplicate key ID: 0"), "{report}");

    // The same document without the bad key loads; 2342352 alone is a valid (ignored) key.
    let text = std::fs::read_to_string(data("manifests/bad-bound.json")).unwrap();
    let fixed = text.replace(",\n        \"234ab32\":\"2019-10-08T15:00:00Z\"", "");
    let loaded = Manifest::from_slice(fixed.as_bytes(), "fixed").unwrap();
    assert!(loaded.updates[0].waves.0.contains_key(&2_342_352));
}

#[test]
fn missing_fields_are_named() {
    let error = Manifest::from_slice(br#"{"updates": []}"#, "inline").unwrap_err();
    assert!(
        snafu::Report::from_error(error)
            .to_string()
            .contains("missing field `migrations`")
    );
    let text = std::fs::read_to_string(data("manifests/example.json")).unwrap();
    let without_waves = text.replace("\"waves\"", "\"no_waves\"");
    let error = Manifest::from_slice(without_waves.as_bytes(), "inline").unwrap_err();
    assert!(
        snafu::Report::from_error(error)
            .to_string()
            .contains("missing field `waves`")
    );
}

#[test]
fn example_loads_with_status_and_migrations() {
    let m = manifest("example.json");
    assert_eq!(m.updates[0].extra["status"], "Ready");
    assert!(
        m.to_json().unwrap().contains("\"status\": \"Ready\""),
        "unknown fields survive"
    );
    assert_eq!(
        m.migration_path(&v("1.11.0"), &v("1.12.0")).unwrap(),
        names(&["migrate_1.12.0_foo"])
    );
    let up = names(&[
        "migrate_1.12.0_foo",
        "migrate_1.13.0_foo",
        "migrate_1.13.0_bar",
    ]);
    assert_eq!(m.migration_path(&v("1.11.0"), &v("1.13.0")).unwrap(), up);
    let mut down = up.clone();
    down.reverse();
    assert_eq!(m.migration_path(&v("1.13.0"), &v("1.11.0")).unwrap(), down);
}

#[test]
fn example_2_normalises_lenient_dates() {
    let m = manifest("example_2.json");
    let text = m.to_json().unwrap();
    assert!(text.contains("\"0\": \"2019-08-06T15:00:00Z\""), "{text}");
    assert!(!text.contains("2019-8-"), "{text}");
    assert!(m.migrations.0.is_empty());
    assert!(text.contains("\"migrations\": {}"));
}

#[test]
fn example_3_regret_rule_for_both_arches() {
    for (file, arch) in [
        ("example_3_x86_64.json", Arch::X86_64),
        ("example_3_aarch64.json", Arch::Aarch64),
    ] {
        let m = manifest(file);
        // Equal wave times load: no ordering check on load.
        assert!(m.check_wave_order().is_err());
        let chosen = |running: &str| {
            m.select_update(
                &host("aws-k8s-1.15", arch, running),
                t(NOW),
                &Policy::default(),
            )
            .map(|u| u.version.to_string())
        };
        assert_eq!(
            chosen("0.1.3").as_deref(),
            Some("0.1.2"),
            "{file}: downgrade from above the ceiling"
        );
        assert_eq!(chosen("0.1.1").as_deref(), Some("0.1.2"), "{file}");
        assert_eq!(chosen("0.1.2"), None, "{file}");
    }
}

#[test]
fn multiple_filters_arch_and_ceiling() {
    for (file, arch) in [
        ("multiple_x86_64.json", Arch::X86_64),
        ("multiple_aarch64.json", Arch::Aarch64),
    ] {
        let m = manifest(file);
        let h = host("bottlerocket-aws-eks", arch, "1.10.0");
        let pick = |policy: Policy| {
            m.select_update(&h, t(NOW), &policy)
                .map(|u| u.version.to_string())
        };
        assert_eq!(pick(Policy::default()).as_deref(), Some("1.15.0"), "{file}");
        let forced = |version: &str| Policy {
            forced: Some(v(version)),
            ..Policy::default()
        };
        assert_eq!(pick(forced("1.13.0")).as_deref(), Some("1.13.0"), "{file}");
        assert_eq!(pick(forced("1.25.0")), None, "{file}: above the ceiling");
        let all: Vec<String> = m
            .applicable_updates(&h, t(NOW), false)
            .iter()
            .map(|u| u.version.to_string())
            .collect();
        assert_eq!(all, ["1.15.0", "1.13.0"], "{file}");
        // Key 858993459 is ignored: every seed gates on key 0 alone.
        let update = &m.updates[0];
        assert!(update.waves.0.contains_key(&858_993_459));
        assert!(update.waves.is_ready(Seed::MAX, t("2019-10-06T15:00:00Z")));
        assert!(!update.waves.is_ready(Seed::MAX, t("2019-10-06T14:59:59Z")));
    }
}

#[test]
fn version_lock_pins_and_downgrades() {
    let m = manifest("multiple_x86_64.json");
    let h = host("bottlerocket-aws-eks", Arch::X86_64, "1.15.0");
    let lock = |text: &str| Policy {
        lock: text.parse::<VersionLock>().unwrap(),
        ..Policy::default()
    };
    assert_eq!(
        m.select_update(&h, t(NOW), &lock("v1.13.0"))
            .map(|u| u.version.to_string())
            .as_deref(),
        Some("1.13.0")
    );
    assert!(
        m.select_update(&h, t(NOW), &lock("1.15.0")).is_none(),
        "already running the locked version"
    );
    assert!(
        m.select_update(&h, t(NOW), &lock("1.25.0")).is_none(),
        "locked version above the ceiling"
    );
    // A forced version bypasses the lock.
    let forced = Policy {
        forced: Some(v("1.13.0")),
        ..lock("1.15.0")
    };
    assert_eq!(
        m.select_update(&h, t(NOW), &forced)
            .map(|u| u.version.to_string())
            .as_deref(),
        Some("1.13.0")
    );
}

#[test]
fn selection_respects_variant_and_waves() {
    let m = manifest("example.json");
    let before = t("2019-10-06T00:00:00Z");
    let h = host("bottlerocket-aws-eks", Arch::X86_64, "1.0.0");
    assert!(
        m.select_update(&h, before, &Policy::default()).is_none(),
        "waves not started"
    );
    let now = Policy {
        ignore_waves: true,
        ..Policy::default()
    };
    assert!(
        m.select_update(&h, before, &now).is_some(),
        "--now ignores waves"
    );
    let other = host("aws-k8s-1.28", Arch::X86_64, "1.0.0");
    assert!(
        m.select_update(&other, t(NOW), &now).is_none(),
        "other variant"
    );
}

#[test]
fn regret_offers_nothing_from_any_version() {
    let m = manifest("regret.json");
    for running in ["0.0.1", "1.13.0", "1.20.0", "1.25.0", "2.0.0"] {
        let h = host("bottlerocket-aws-eks", Arch::X86_64, running);
        assert!(
            m.select_update(&h, t(NOW), &Policy::default()).is_none(),
            "running {running}"
        );
    }
}

#[test]
fn single_wave_with_the_old_default_schedule() {
    let mut m = manifest("single_wave.json");
    assert!(
        m.to_json().unwrap().contains("\"datastore_versions\": {}"),
        "legacy field survives"
    );
    let schedule = WaveSchedule::load(&data("manifests/default_waves.toml")).unwrap();
    let start = t("2024-01-01T00:00:00Z");
    m.set_waves(
        "bottlerocket-aws-eks",
        "x86_64",
        &v("1.13.0"),
        &schedule,
        start,
    )
    .unwrap();
    let h = |n: i64| start + SignedDuration::from_hours(n);
    let expected = BTreeMap::from([(0, h(12)), (20, h(24)), (204, h(72)), (512, h(144))]);
    assert_eq!(m.updates[0].waves, Waves(expected));
}

#[test]
fn release_toml_replaces_migrations_and_paths_follow() {
    let release = Release::load(&data("manifests/release.toml")).unwrap();
    assert_eq!(release.version, v("0.2.2"));
    for name in ["example.json", "example_2.json"] {
        let mut m = manifest(name);
        m.set_migrations(&release);
        assert_eq!(m.migrations, release.migrations, "{name}");
        let path = m.migration_path(&v("0.0.0"), &v("0.0.3")).unwrap();
        assert_eq!(
            path,
            names(&[
                "migrate_0.0.1_foo",
                "migrate_0.0.1_baz",
                "migrate_0.0.2_bar",
                "migrate_0.0.3_foobar"
            ])
        );
        let first = m.migration_path(&v("0.0.0"), &v("0.0.1")).unwrap();
        assert_eq!(first, names(&["migrate_0.0.1_foo", "migrate_0.0.1_baz"]));
    }
    let mut blank = Manifest::default();
    blank.set_migrations(&release);
    assert_eq!(blank.migrations.0.len(), 3);
}

#[test]
fn migrations_shortcut_takes_the_short_path() {
    let m = manifest("migrations-shortcut.json");
    let up = names(&[
        "migration_1.1.0_a",
        "migration_1.1.0_b",
        "migration_1.5.0_shortcut",
    ]);
    assert_eq!(m.migration_path(&v("1.0.0"), &v("1.5.0")).unwrap(), up);
    let mut down = up.clone();
    down.reverse();
    assert_eq!(m.migration_path(&v("1.5.0"), &v("1.0.0")).unwrap(), down);
}

#[test]
fn standard_schedules_give_the_reference_keys() {
    let start = t("2024-01-01T00:00:00Z");
    let h = |n: i64| start + SignedDuration::from_hours(n);
    let m = |n: i64| start + SignedDuration::from_mins(n);
    let d = |n: i64| start + SignedDuration::from_hours(24 * n);
    let cases = [
        (
            "default-waves.toml",
            vec![
                (0, h(1)),
                (20, h(4)),
                (102, d(1)),
                (307, d(2)),
                (819, d(4)),
                (1228, d(5)),
                (1843, d(6)),
            ],
        ),
        (
            "accelerated-waves.toml",
            vec![
                (0, h(1)),
                (61, h(4)),
                (245, h(8)),
                (819, h(16)),
                (1638, d(1)),
            ],
        ),
        (
            "slow-roll.toml",
            vec![
                (0, h(1)),
                (20, d(1)),
                (102, d(3)),
                (307, d(7)),
                (819, d(9)),
                (1228, d(12)),
                (1843, d(13)),
            ],
        ),
        (
            "ohno.toml",
            vec![
                (0, m(30)),
                (102, m(60)),
                (512, m(120)),
                (1024, m(150)),
                (1843, m(180)),
            ],
        ),
    ];
    for (file, expected) in cases {
        let schedule = WaveSchedule::load(&data(&format!("waves/{file}"))).unwrap();
        let waves = schedule.resolve(start).unwrap();
        assert_eq!(waves, Waves(expected.into_iter().collect()), "{file}");
        // The project's own copies in waves/ have the same timing.
        let ours = WaveSchedule::load(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../waves")
                .join(file),
        )
        .unwrap();
        assert_eq!(ours.resolve(start).unwrap(), waves, "waves/{file}");
    }
}
