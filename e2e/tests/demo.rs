//! `scripts/demo --aws`, the README's first command (with its AWS half on a moto server it
//! starts itself), runs to the end: both releases built and published, the host updated and
//! flipped to set B, and the AWS half published and validated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn the_demo_runs_to_the_end() {
    let out = tempfile::tempdir().unwrap();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = std::process::Command::new(workspace.join("scripts/demo"))
        .arg("--aws")
        .env("DEMO_OUT", out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "scripts/demo --aws failed:\n{stdout}\n{stderr}"
    );
    let text = format!("{stdout}{stderr}");
    for step in [
        "image-builder: sample variant 2.0.0",
        "pubsys repo: release 2.0.0, extending the served repository",
        "updog update without --now: the host waits for its wave",
        "updog update --now: write 2.0.0 to set B and flip",
        "pubsys upload-repo",
        "pubsys ami: EBS snapshot",
        "pubsys validate-ami and validate-ssm",
    ] {
        assert!(text.contains(step), "the demo skipped {step:?}:\n{text}");
    }
    assert!(
        text.contains(r#"host now boots set b: {"active": "b", "next": "b"}"#),
        "{text}"
    );
    assert!(out.path().join("host/disk.img").is_file());
}
