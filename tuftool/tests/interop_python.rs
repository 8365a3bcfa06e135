//! Interoperability with python-tuf, both directions.
//!
//! 1. A repository created and updated several times by tuftool (targets in sub-folders, a
//!    delegated role, a root rotation cross-signed by old and new keys, a timestamp-only
//!    refresh) is refreshed and its targets downloaded by python-tuf's ngclient after every
//!    version, with one persistent client state.
//! 2. A repository built by python-tuf's Metadata API in the reference layout (consistent
//!    snapshots, N.root.json with a rotation, dir/<hash>.name targets, a delegated role) is
//!    verified and downloaded by `tuftool download`, and cloned by `tuftool clone`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Keys, ok, refs, s, strings, venv_python, write};
use std::path::Path;
use std::process::Command;

/// Run the ngclient check; return its JSON report.
fn ngclient(
    repo: &Path,
    client: &Path,
    trusted_root: &Path,
    expected: &Path,
    names: &[&str],
) -> serde_json::Value {
    let out = Command::new(venv_python())
        .arg(common::script("ngclient_check.py"))
        .args([s(repo), s(client), s(trusted_root), s(expected)])
        .args(names)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python-tuf ngclient failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn versions(report: &serde_json::Value) -> (u64, u64, u64, u64) {
    let v = &report["versions"];
    (
        v["root"].as_u64().unwrap(),
        v["targets"].as_u64().unwrap(),
        v["snapshot"].as_u64().unwrap(),
        v["timestamp"].as_u64().unwrap(),
    )
}

#[test]
fn python_tuf_follows_a_tuftool_repository_through_every_version() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let keys = Keys::new(&t.join("keys"));
    let input = t.join("input");
    write(&input.join("top.txt"), b"top level\n");
    write(&input.join("dir/a.txt"), b"in a folder\n");
    write(&input.join("dir/sub/b.bin"), &[0u8, 1, 2, 3, 255]);
    let repo = t.join("repo");
    let meta = repo.join("metadata");
    let client = t.join("client");

    // v1: create.
    let mut args = vec![
        "create".to_owned(),
        "-r".into(),
        s(&keys.root).into(),
        "-a".into(),
        s(&input).into(),
    ];
    args.extend(keys.online());
    args.extend([
        "-o".into(),
        s(&repo).into(),
        "--expires".into(),
        "in 2 weeks".into(),
    ]);
    ok(&refs(&args));
    let report = ngclient(
        &repo,
        &client,
        &keys.root,
        &input,
        &["top.txt", "dir/a.txt", "dir/sub/b.bin"],
    );
    assert_eq!(versions(&report), (1, 1, 1, 1));

    let update = |extra: &[&str], key_args: &[String]| {
        let mut args = strings(&[
            "update",
            "-r",
            s(&keys.root),
            "-m",
            s(&meta),
            "-o",
            s(&repo),
            "--expires",
            "in 2 weeks",
        ]);
        args.extend(key_args.iter().cloned());
        args.extend(extra.iter().map(|x| (*x).to_owned()));
        ok(&refs(&args));
    };

    // v2: add a target in a new sub-folder, replace one, remove one.
    let input2 = t.join("input2");
    write(&input2.join("dir/new.txt"), b"new\n");
    write(&input2.join("top.txt"), b"top level, second edition\n");
    update(
        &[
            "-a",
            s(&input2),
            "--replace-targets",
            "--remove-target",
            "dir/sub/b.bin",
        ],
        &keys.online(),
    );
    let report = ngclient(
        &repo,
        &client,
        &keys.root,
        &input2,
        &["top.txt", "dir/new.txt"],
    );
    assert_eq!(versions(&report), (1, 2, 2, 2));

    // v3: delegate "delegated/*" to a new role whose key tuftool generates.
    let role_key = keys.dir.join("people.der");
    ok(&["gen-key", s(&role_key), "--type", "ed25519"]);
    let mut args = strings(&[
        "delegation",
        "--signing-role",
        "targets",
        "add-role",
        "--delegated-role",
        "people",
        "--delegated-key",
        s(&role_key),
        "-p",
        "delegated/*/*",
        "-r",
        s(&keys.root),
        "-m",
        s(&meta),
        "-o",
        s(&repo),
        "--expires",
        "in 2 weeks",
        "-k",
        s(&role_key),
    ]);
    args.extend(keys.online());
    ok(&refs(&args));
    let report = ngclient(&repo, &client, &keys.root, &input2, &["dir/new.txt"]);
    assert_eq!(versions(&report), (1, 3, 3, 3));

    // v4: the delegated role publishes a target in a sub-folder, with only its own key plus
    // snapshot and timestamp keys (no targets key).
    let input3 = t.join("input3");
    write(&input3.join("delegated/deep/d.txt"), b"delegated content\n");
    let mut args = strings(&[
        "delegation",
        "--signing-role",
        "people",
        "update-delegated-targets",
        "-a",
        s(&input3),
        "-r",
        s(&keys.root),
        "-m",
        s(&meta),
        "-o",
        s(&repo),
        "--expires",
        "in 2 weeks",
        "-k",
        s(&role_key),
        "-k",
        s(&keys.snapshot_key),
        "-k",
        s(&keys.timestamp_key),
    ]);
    args.push("--link-mode".into());
    args.push("hardlink".into());
    ok(&refs(&args));
    let report = ngclient(
        &repo,
        &client,
        &keys.root,
        &input3,
        &["delegated/deep/d.txt"],
    );
    assert_eq!(
        versions(&report),
        (1, 3, 4, 4),
        "targets untouched, snapshot and timestamp re-signed"
    );

    // v5: root rotation. Root 2 replaces the root key; signed by the new key and cross-signed
    // by the old one. Published with the next update.
    let root2 = keys.dir.join("2.root.json");
    std::fs::copy(&keys.root, &root2).unwrap();
    ok(&["root", "bump-version", s(&root2)]);
    let new_root_key = keys.dir.join("root2.pem");
    let keyid = ok(&[
        "root",
        "gen-key",
        s(&root2),
        s(&new_root_key),
        "--type",
        "rsa3072",
        "-R",
        "root",
    ]);
    let old_keyid = {
        let root1: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&keys.root).unwrap()).unwrap();
        root1["signed"]["roles"]["root"]["keyids"][0]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(keyid.trim(), old_keyid);
    ok(&["root", "remove-key", s(&root2), &old_keyid, "root"]);
    // Signing with the new key alone is not enough for a rotation.
    common::fails(&[
        "root",
        "sign",
        s(&root2),
        "-k",
        s(&new_root_key),
        "-c",
        s(&keys.root),
    ]);
    ok(&[
        "root",
        "sign",
        s(&root2),
        "-k",
        s(&new_root_key),
        "-k",
        s(&keys.root_key),
        "-c",
        s(&keys.root),
    ]);
    let input4 = t.join("input4");
    write(&input4.join("after-rotation/r.txt"), b"rotated\n");
    update(&["-a", s(&input4), "--new-root", s(&root2)], &keys.online());
    assert!(meta.join("2.root.json").exists());
    let report = ngclient(
        &repo,
        &client,
        &keys.root,
        &input4,
        &["after-rotation/r.txt"],
    );
    assert_eq!(versions(&report), (2, 4, 5, 5));

    // v6: timestamp-only refresh with only the timestamp key.
    let before_snapshot = std::fs::read(meta.join("5.snapshot.json")).unwrap();
    ok(&[
        "refresh",
        "-r",
        s(&keys.root),
        "-m",
        s(&meta),
        "-o",
        s(&repo),
        "-k",
        s(&keys.timestamp_key),
        "--expires",
        "in 1 day",
    ]);
    let report = ngclient(
        &repo,
        &client,
        &keys.root,
        &input4,
        &["after-rotation/r.txt"],
    );
    assert_eq!(versions(&report), (2, 4, 5, 6));
    assert_eq!(
        std::fs::read(meta.join("5.snapshot.json")).unwrap(),
        before_snapshot
    );

    // v7: snapshot + timestamp refresh without the targets key.
    ok(&[
        "refresh",
        "-r",
        s(&keys.root),
        "-m",
        s(&meta),
        "-o",
        s(&repo),
        "--snapshot",
        "-k",
        s(&keys.snapshot_key),
        "-k",
        s(&keys.timestamp_key),
        "--expires",
        "in 1 day",
    ]);
    let report = ngclient(
        &repo,
        &client,
        &keys.root,
        &input3,
        &["delegated/deep/d.txt"],
    );
    assert_eq!(versions(&report), (2, 4, 6, 7));

    // Our own download reads it back too, every target including the delegated one.
    let out = t.join("download");
    ok(&[
        "download",
        s(&out),
        "-r",
        s(&keys.root),
        "-m",
        s(&meta),
        "-t",
        s(&repo.join("targets")),
    ]);
    assert_eq!(
        std::fs::read(out.join("delegated/deep/d.txt")).unwrap(),
        b"delegated content\n"
    );
    assert_eq!(
        std::fs::read(out.join("top.txt")).unwrap(),
        b"top level, second edition\n"
    );
    assert!(
        !out.join("dir/sub/b.bin").exists(),
        "removed target stays removed"
    );
}

#[test]
fn tuftool_downloads_and_clones_a_python_tuf_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let input = t.join("input");
    write(&input.join("a.txt"), b"alpha\n");
    write(&input.join("dir/sub/b.txt"), b"beta\n");
    write(&input.join("delegated/d.txt"), b"delta\n");
    let repo = t.join("pyrepo");
    let out = Command::new(venv_python())
        .arg(common::script("make_repo.py"))
        .args([s(&repo), s(&input)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_repo.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = repo.join("metadata");
    let trusted = meta.join("1.root.json");

    let dl = t.join("dl");
    let stdout = ok(&[
        "download",
        s(&dl),
        "-r",
        s(&trusted),
        "-m",
        s(&meta),
        "-t",
        s(&repo.join("targets")),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["result"], "download");
    assert_eq!(report["targets"].as_array().unwrap().len(), 3);
    for name in ["a.txt", "dir/sub/b.txt", "delegated/d.txt"] {
        assert_eq!(
            std::fs::read(dl.join(name)).unwrap(),
            std::fs::read(input.join(name)).unwrap(),
            "{name}"
        );
    }

    // Only one named target.
    let one = t.join("one");
    ok(&[
        "download",
        s(&one),
        "-r",
        s(&trusted),
        "-m",
        s(&meta),
        "-t",
        s(&repo.join("targets")),
        "-n",
        "dir/sub/b.txt",
    ]);
    assert!(one.join("dir/sub/b.txt").exists());
    assert!(!one.join("a.txt").exists());

    // Clone: the whole root chain and every metadata file, byte for byte.
    let clone_meta = t.join("clone/metadata");
    let clone_targets = t.join("clone/targets");
    ok(&[
        "clone",
        "-r",
        s(&trusted),
        "-m",
        s(&meta),
        "--metadata-dir",
        s(&clone_meta),
        "--targets-dir",
        s(&clone_targets),
        "-t",
        s(&repo.join("targets")),
    ]);
    for f in [
        "1.root.json",
        "2.root.json",
        "1.targets.json",
        "1.people.json",
        "1.snapshot.json",
        "timestamp.json",
    ] {
        assert_eq!(
            std::fs::read(clone_meta.join(f)).unwrap(),
            std::fs::read(meta.join(f)).unwrap(),
            "{f}"
        );
    }
    // The clone is itself a servable repository.
    let dl2 = t.join("dl2");
    ok(&[
        "download",
        s(&dl2),
        "-r",
        s(&trusted),
        "-m",
        s(&clone_meta),
        "-t",
        s(&clone_targets),
    ]);
    assert!(dl2.join("delegated/d.txt").exists());
}
