//! `pubsys waves show` through the binary, as a release engineer runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken invariants

use assert_cmd::Command;
use std::path::PathBuf;

fn schedule(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../waves")
        .join(name)
}

fn pubsys() -> Command {
    Command::cargo_bin("pubsys").unwrap()
}

#[test]
fn ohno_schedule_as_json() {
    let output = pubsys()
        .args(["waves", "show", "--start", "2026-01-01T00:00:00Z", "--json"])
        .arg(schedule("ohno.toml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys: Vec<u64> = report["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["seed_key"].as_u64().unwrap())
        .collect();
    assert_eq!(keys, [0, 102, 512, 1024, 1843]);
    let starts: Vec<&str> = report["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["starts_at"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2026-01-01T00:30:00Z",
            "2026-01-01T01:00:00Z",
            "2026-01-01T02:00:00Z",
            "2026-01-01T02:30:00Z",
            "2026-01-01T03:00:00Z"
        ]
    );
    let full = &report["milestones"][3];
    assert_eq!(full["percent"], 100);
    assert_eq!(full["seed"], 2047);
    assert_eq!(full["eligible_at"], "2026-01-01T03:00:00Z");
}

#[test]
fn text_table_names_every_wave_and_milestone() {
    let output = pubsys()
        .args(["waves", "show", "--start", "2026-01-01T00:00:00Z"])
        .arg(schedule("default-waves.toml"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("  100%   2047   +6d 00h 00m  2026-01-07T00:00:00Z"),
        "{text}"
    );
    assert!(
        text.contains("   10%    204   +1d 11h 56m  2026-01-02T11:56:29Z"),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.ends_with('Z') && l.contains('%'))
            .count(),
        7 + 4,
        "{text}"
    );
}

#[test]
fn invalid_schedule_is_a_clear_error_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[waves]]\nstart_after = '1 hour'\nfleet_percentage = 10\n\n[[waves]]\nstart_after = '2 hours'\nfleet_percentage = 10\n").unwrap();
    let output = pubsys()
        .args(["waves", "show"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "nothing on stdout for an error");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("wave 1 (10%) is followed by wave 2 (10%)"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.toml"), "{stderr}");
}
