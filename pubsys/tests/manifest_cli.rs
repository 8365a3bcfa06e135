//! `pubsys manifest …` through the binary: the publisher's editing workflow, checked by reading
//! the file back with the `update-metadata` library.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken invariants

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use update_metadata::Manifest;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pubsys(args: &[&str], file: &Path) -> std::process::Output {
    Command::cargo_bin("pubsys")
        .unwrap()
        .args(&args[..2])
        .arg(file)
        .args(&args[2..])
        .output()
        .unwrap()
}

fn ok(args: &[&str], file: &Path) {
    let out = pubsys(args, file);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn publisher_workflow_round_trips_through_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifest.json");
    let release = root().join("update-metadata/tests/data/bottlerocket/manifests/release.toml");
    let waves = root().join("waves/default-waves.toml");
    ok(&["manifest", "init"], &file);
    let add = |version: &str| {
        [
            "manifest",
            "add-update",
            "--variant",
            "aws-dev",
            "--arch",
            "x86_64",
            "--version",
            version,
            "--boot-image",
            "b",
            "--root-image",
            "r",
            "--hash-image",
            "h",
        ]
        .map(str::to_owned)
    };
    for version in ["1.0.0", "1.1.0", "1.1.0"] {
        let args = add(version);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), &file);
    }
    ok(
        &[
            "manifest",
            "set-waves",
            "--variant",
            "aws-dev",
            "--arch",
            "x86_64",
            "--version",
            "1.1.0",
            "--wave-policy-path",
            waves.to_str().unwrap(),
            "--release-start-time",
            "2026-01-01T00:00:00Z",
        ],
        &file,
    );
    ok(
        &[
            "manifest",
            "set-migrations",
            "--release-config-path",
            release.to_str().unwrap(),
        ],
        &file,
    );

    let manifest = Manifest::load(&file).unwrap();
    assert_eq!(manifest.updates.len(), 2, "re-adding 1.1.0 replaced it");
    assert!(
        manifest
            .updates
            .iter()
            .all(|u| u.max_version.to_string() == "1.1.0")
    );
    let latest = manifest
        .updates
        .iter()
        .find(|u| u.version.to_string() == "1.1.0")
        .unwrap();
    assert_eq!(
        latest.waves.0.keys().copied().collect::<Vec<_>>(),
        [0, 20, 102, 307, 819, 1228, 1843]
    );
    assert_eq!(manifest.migrations.0.len(), 3);

    ok(
        &[
            "manifest",
            "set-max-version",
            "--variant",
            "aws-dev",
            "--arch",
            "x86_64",
            "--max-version",
            "1.0.0",
        ],
        &file,
    );
    let out = pubsys(&["manifest", "validate", "--json"], &file);
    assert_eq!(out.status.code(), Some(3), "1.1.0 is now above its ceiling");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["problems"][0]
            .as_str()
            .unwrap()
            .contains("above its max_version")
    );

    ok(
        &[
            "manifest",
            "remove-update",
            "--variant",
            "aws-dev",
            "--arch",
            "x86_64",
            "--version",
            "1.1.0",
        ],
        &file,
    );
    assert_eq!(Manifest::load(&file).unwrap().updates.len(), 1);
}

#[test]
fn refusals_leave_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifest.json");
    ok(&["manifest", "init"], &file);
    let before = std::fs::read(&file).unwrap();
    let cases: [&[&str]; 3] = [
        &["manifest", "init"],
        &[
            "manifest",
            "remove-update",
            "--variant",
            "x",
            "--arch",
            "x86_64",
            "--version",
            "1.0.0",
        ],
        &[
            "manifest",
            "set-waves",
            "--variant",
            "x",
            "--arch",
            "x86_64",
            "--version",
            "1.0.0",
            "--wave-policy-path",
            "/nonexistent.toml",
        ],
    ];
    for args in cases {
        let out = pubsys(args, &file);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(!out.stderr.is_empty());
        assert_eq!(
            std::fs::read(&file).unwrap(),
            before,
            "{args:?} changed the file"
        );
    }
    let out = pubsys(
        &[
            "manifest",
            "add-update",
            "--variant",
            "x",
            "--arch",
            "riscv",
            "--version",
            "1.0.0",
        ],
        &file,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "usage error for an unknown arch"
    );
}
