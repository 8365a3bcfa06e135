//! The tuf-conformance client binary, driven through its CLI as the suite drives it, against
//! a repository made by python-tuf: init, refresh, download (delegated targets, the target
//! cache), a rolled-back timestamp and a tampered target.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use assert_cmd::Command;
use common::{copy_tree, dir_url, json_files, make_stages, s, version_of};

/// Run the client; return its exit code.
fn client(args: &[&str]) -> i32 {
    let out = Command::cargo_bin("tuf-conformance-client")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("client {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.code().unwrap()
}

#[test]
fn init_refresh_download_and_attacks() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let stages = t.join("stages");
    make_stages(&stages);
    let repo = t.join("repo");
    copy_tree(&stages.join("stage1"), &repo);
    let mdir = t.join("client");
    std::fs::create_dir_all(&mdir).unwrap();
    let tdir = t.join("targets-out");
    std::fs::create_dir_all(&tdir).unwrap();
    let murl = dir_url(&repo.join("metadata")).to_string();
    let turl = dir_url(&repo.join("targets")).to_string();

    assert_eq!(
        client(&[
            "--metadata-dir",
            s(&mdir),
            "init",
            s(&stages.join("initial_root.json"))
        ]),
        0
    );
    assert_eq!(json_files(&mdir), ["root.json"]);
    // Options after the command are accepted too.
    assert_eq!(
        client(&[
            "refresh",
            "--metadata-url",
            &murl,
            "--metadata-dir",
            s(&mdir)
        ]),
        0
    );
    assert_eq!(
        json_files(&mdir),
        [
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    let refresh = || {
        client(&[
            "--metadata-url",
            &murl,
            "--metadata-dir",
            s(&mdir),
            "refresh",
        ])
    };
    let download = |names: &[&str]| {
        let mut args = vec!["--metadata-url", &murl, "--metadata-dir", s(&mdir)];
        for n in names {
            args.extend(["--target-name", n]);
        }
        args.extend([
            "--target-dir",
            s(&tdir),
            "--target-base-url",
            &turl,
            "download",
        ]);
        client(&args)
    };
    assert_eq!(download(&["c/x.txt", "top.txt"]), 0);
    assert_eq!(std::fs::read(tdir.join("c%2Fx.txt")).unwrap(), b"x by C\n");
    assert_eq!(std::fs::read(tdir.join("top.txt")).unwrap(), b"top v1\n");
    assert!(mdir.join("C.json").exists());

    // The cache: with the served file gone, a second download still succeeds.
    let served = std::fs::read_dir(repo.join("targets/c"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let original = std::fs::read(&served).unwrap();
    std::fs::remove_file(&served).unwrap();
    assert_eq!(download(&["c/x.txt"]), 0);
    // Tampered: a fresh download is refused and nothing is written.
    std::fs::write(&served, b"x by Eve\n").unwrap();
    std::fs::remove_file(tdir.join("c%2Fx.txt")).unwrap();
    assert_eq!(download(&["c/x.txt"]), 1);
    assert!(!tdir.join("c%2Fx.txt").exists());
    std::fs::write(&served, &original).unwrap();
    // An unknown target fails; so does a list with one.
    assert_eq!(download(&["nope"]), 1);
    assert_eq!(download(&["top.txt", "nope"]), 1);

    // Root rotation, then a rolled-back timestamp: refused, the trusted copy kept.
    copy_tree(&stages.join("stage2"), &repo);
    assert_eq!(refresh(), 0);
    assert_eq!(version_of(&mdir.join("root.json")), 2);
    copy_tree(&stages.join("stage3"), &repo);
    assert_eq!(refresh(), 1);
    assert_eq!(version_of(&mdir.join("timestamp.json")), 2);
    // Missing arguments are failures, not panics.
    assert_eq!(client(&["--metadata-dir", s(&mdir), "refresh"]), 1);
}
