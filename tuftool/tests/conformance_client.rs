//! The tuf-conformance client binary, driven through its CLI as the suite drives it: init,
//! refresh and download against repositories made by python-tuf and by tuftool, plus a
//! rolled-back timestamp, expired metadata, a tampered target and a rotated root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use assert_cmd::Command;
use common::{Keys, ok, refs, s, strings, venv_python, write};
use std::path::Path;

/// Run the client; return success.
fn client(args: &[&str]) -> bool {
    let out = Command::cargo_bin("tuf-conformance-client")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("client {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

fn url(p: &Path) -> String {
    url::Url::from_directory_path(p).unwrap().to_string()
}

/// The top-level .json files of a metadata folder, sorted.
fn json_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    v.sort();
    v
}

#[test]
fn python_tuf_repository_refresh_and_download() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let input = t.join("input");
    write(&input.join("a.txt"), b"alpha\n");
    write(&input.join("dir/sub/b.txt"), b"beta\n");
    write(&input.join("delegated/d.txt"), b"delta\n");
    let repo = t.join("pyrepo");
    let status = std::process::Command::new(venv_python())
        .arg(common::script("make_repo.py"))
        .args([s(&repo), s(&input)])
        .status()
        .unwrap();
    assert!(status.success());
    let served = repo.join("metadata");
    let mdir = t.join("client");
    std::fs::create_dir_all(&mdir).unwrap();
    assert!(client(&[
        "--metadata-dir",
        s(&mdir),
        "init",
        s(&served.join("1.root.json"))
    ]));
    // Options after the command are accepted too.
    assert!(client(&[
        "refresh",
        "--metadata-url",
        &url(&served),
        "--metadata-dir",
        s(&mdir)
    ]));
    assert_eq!(
        json_files(&mdir),
        [
            "people.json",
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    // Rotated root stored byte for byte; every role as served.
    for (local, remote) in [
        ("root.json", "2.root.json"),
        ("timestamp.json", "timestamp.json"),
        ("snapshot.json", "1.snapshot.json"),
        ("targets.json", "1.targets.json"),
        ("people.json", "1.people.json"),
    ] {
        assert_eq!(
            std::fs::read(mdir.join(local)).unwrap(),
            std::fs::read(served.join(remote)).unwrap(),
            "{local}"
        );
    }
    let tdir = t.join("targets-out");
    std::fs::create_dir_all(&tdir).unwrap();
    assert!(client(&[
        "--metadata-url",
        &url(&served),
        "--metadata-dir",
        s(&mdir),
        "--target-name",
        "dir/sub/b.txt",
        "--target-name",
        "delegated/d.txt",
        "--target-dir",
        s(&tdir),
        "--target-base-url",
        &url(&repo.join("targets")),
        "download",
    ]));
    assert_eq!(
        std::fs::read(tdir.join("dir%2Fsub%2Fb.txt")).unwrap(),
        b"beta\n"
    );
    assert_eq!(
        std::fs::read(tdir.join("delegated%2Fd.txt")).unwrap(),
        b"delta\n"
    );
    // An unknown target fails.
    assert!(!client(&[
        "--metadata-url",
        &url(&served),
        "--metadata-dir",
        s(&mdir),
        "--target-name",
        "nope",
        "--target-dir",
        s(&tdir),
        "--target-base-url",
        &url(&repo.join("targets")),
        "download",
    ]));
}

#[test]
fn tuftool_repository_rollback_tamper_and_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let keys = Keys::new(&t.join("keys"));
    let input = t.join("input");
    write(&input.join("f/x.txt"), b"x\n");
    let repo = t.join("repo");
    let served = repo.join("metadata");
    let mut args = strings(&[
        "create",
        "-r",
        s(&keys.root),
        "-a",
        s(&input),
        "-o",
        s(&repo),
        "--expires",
        "in 1 week",
    ]);
    args.extend(keys.online());
    ok(&refs(&args));
    let mdir = t.join("client");
    std::fs::create_dir_all(&mdir).unwrap();
    let refresh = [
        "--metadata-url",
        &url(&served),
        "--metadata-dir",
        s(&mdir),
        "refresh",
    ];
    assert!(client(&["--metadata-dir", s(&mdir), "init", s(&keys.root)]));
    assert!(client(&refresh));
    let ts1 = std::fs::read(served.join("timestamp.json")).unwrap();
    assert_eq!(std::fs::read(mdir.join("timestamp.json")).unwrap(), ts1);

    // Version 2, refreshed.
    ok(&[
        "refresh",
        "-r",
        s(&keys.root),
        "-m",
        s(&served),
        "-o",
        s(&repo),
        "-k",
        s(&keys.timestamp_key),
        "--expires",
        "in 1 day",
    ]);
    assert!(client(&refresh));
    let ts2 = std::fs::read(mdir.join("timestamp.json")).unwrap();
    assert_ne!(ts2, ts1);

    // Rolled-back timestamp: refused, trusted copy kept.
    std::fs::write(served.join("timestamp.json"), &ts1).unwrap();
    assert!(!client(&refresh));
    assert_eq!(std::fs::read(mdir.join("timestamp.json")).unwrap(), ts2);
    std::fs::write(served.join("timestamp.json"), &ts2).unwrap();

    // Tampered target: refused, nothing written.
    let tdir = t.join("out");
    std::fs::create_dir_all(&tdir).unwrap();
    let target = walkdir::WalkDir::new(repo.join("targets"))
        .into_iter()
        .map(Result::unwrap)
        .find(|e| e.file_type().is_file() && e.file_name().to_string_lossy().ends_with(".x.txt"))
        .unwrap();
    std::fs::write(target.path(), b"y\n").unwrap();
    let download = [
        "--metadata-url",
        &url(&served),
        "--metadata-dir",
        s(&mdir),
        "--target-name",
        "f/x.txt",
        "--target-dir",
        s(&tdir),
        "--target-base-url",
        &url(&repo.join("targets")),
        "download",
    ];
    assert!(!client(&download));
    assert_eq!(std::fs::read_dir(&tdir).unwrap().count(), 0);
    std::fs::write(target.path(), b"x\n").unwrap();
    assert!(client(&download));
    assert_eq!(std::fs::read(tdir.join("f%2Fx.txt")).unwrap(), b"x\n");

    // Expired timestamp: refused.
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2)).to_string();
    ok(&[
        "refresh",
        "-r",
        s(&keys.root),
        "-m",
        s(&served),
        "-o",
        s(&repo),
        "-k",
        s(&keys.timestamp_key),
        "--expires",
        &soon,
    ]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!client(&refresh));
    // Unsupported fake time is an error, not silently ignored.
    assert!(!client(&[
        "--days-in-future",
        "3",
        "--metadata-url",
        &url(&served),
        "--metadata-dir",
        s(&mdir),
        "refresh"
    ]));
}
