//! `pubsys build --variant-config` through the binary: a variant definition builds the images
//! (with our GRUB), the report feeds `pubsys repo --build-report`, flags override the file,
//! and a bad definition is a clear error that writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod repo_common;

use assert_cmd::Command;
use repo_common::{s, workspace};
use std::path::{Path, PathBuf};

/// Our GRUB build (`bootloader/build`: cached by the hash of its inputs, built when missing).
fn bootloader_dir() -> PathBuf {
    let output = std::process::Command::new(workspace().join("bootloader/build"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "bootloader/build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

fn pubsys(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("pubsys")
        .unwrap()
        .args(args)
        .output()
        .unwrap()
}

/// A variant folder: `variant.toml` and a small root tree with a kernel under boot/.
fn variant(dir: &Path, extra: &str) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(root.join("boot/vmlinuz"), "kernel\n".repeat(10_000)).unwrap();
    std::fs::write(
        root.join("usr/lib/os-release"),
        "NAME=Bottlerocket\nVERSION_ID=1.0.0\nVARIANT_ID=aws-dev\n",
    )
    .unwrap();
    let config = dir.join("variant.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"aws-dev\"\narch = \"x86_64\"\nversion = \"1.0.0\"\nroot_dir = \"rootfs\"\n\
             {extra}\n[image]\nos_image_size_gib = 1\nkernel_parameters = [\"console=ttyS0\"]\n\
             source_date_epoch = 1700000000\n"
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_variant_definition_builds_images_that_pubsys_repo_signs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = variant(d, "");
    let out = d.join("images");
    let bootloader = bootloader_dir();
    let output = pubsys(&[
        "--json",
        "build",
        "--variant-config",
        s(&config),
        "--version",
        "1.2.3",
        "--build-id",
        "cafe123",
        "--out-dir",
        s(&out),
        "--bootloader",
        s(&bootloader),
    ]);
    assert!(
        output.status.success(),
        "pubsys build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let report = PathBuf::from(outcome["build_report"].as_str().unwrap());
    assert_eq!(report, out.join("1.2.3-cafe123/build-report.json"));
    // The flags won over the file; the file's settings reached image-builder.
    let built = &outcome["report"];
    assert_eq!(built["version"], "1.2.3");
    assert_eq!(built["build_id"], "cafe123");
    assert_eq!(built["layout"]["settings"]["os_image_size_gib"], 1);
    assert_eq!(built["source_date_epoch"], 1_700_000_000);
    assert!(built["bootloader"].is_object(), "{built}");
    let prefix = "bottlerocket-aws-dev-x86_64-1.2.3-cafe123";
    for suffix in [
        "-boot.ext4.lz4",
        "-root.ext4.lz4",
        "-root.verity.lz4",
        ".img.lz4",
    ] {
        assert!(
            out.join("1.2.3-cafe123")
                .join(format!("{prefix}{suffix}"))
                .is_file(),
            "{prefix}{suffix}"
        );
    }

    // The report is what `pubsys repo` takes.
    let root = d.join("root.json");
    let key = d.join("key.pem");
    let setup = pubsys(&[
        "setup",
        "--root-role-path",
        s(&root),
        "--default-key-path",
        s(&key),
    ]);
    assert!(setup.status.success());
    let repo = d.join("repo");
    let mut args = vec!["--json".to_owned()];
    args.extend(repo_common::report_repo_args(&report, &root, &key, &repo));
    let output = pubsys(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        output.status.success(),
        "pubsys repo failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let signed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(signed.to_string().contains("1.2.3"), "{signed}");
    assert!(repo.join("aws-dev/x86_64/timestamp.json").is_file());
}

#[test]
fn a_bad_variant_definition_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("images");
    for (extra, needle) in [
        ("colour = \"blue\"", "colour"),
        ("boot_dir = \"missing\"", "missing"),
    ] {
        let case = d.join(needle);
        std::fs::create_dir_all(&case).unwrap();
        let config = variant(&case, extra);
        let output = pubsys(&[
            "build",
            "--variant-config",
            s(&config),
            "--out-dir",
            s(&out),
            "--bootloader",
            "none",
        ]);
        assert_eq!(output.status.code(), Some(1), "{extra}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{extra}: {stderr}");
        assert!(!out.exists(), "{extra}: wrote {}", out.display());
    }
}
