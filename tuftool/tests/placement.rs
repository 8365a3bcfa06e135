//! Where target files land: the spec's `dir/<sha256>.file` always, tough's `<sha256>.dir/file`
//! only with `--tough-placement`; hard links made straight at content-addressed names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Keys, ok, refs, s, strings, write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn publish(cmd: &str, keys: &Keys, input: &Path, repo: &Path, extra: &[&str]) {
    let mut args = strings(&[cmd, "-r", s(&keys.root), "-a", s(input), "-o", s(repo)]);
    if cmd == "update" {
        args.extend(strings(&["-m", s(&repo.join("metadata"))]));
    }
    args.extend(strings(&["--expires", "in 2 weeks"]));
    args.extend(keys.online());
    args.extend(extra.iter().map(|x| (*x).to_owned()));
    ok(&refs(&args));
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// Read `name` through tough's own client (`Repository::read_target`), as the reference tuftool
/// and other tough-based clients do.
fn tough_read(keys: &Keys, repo: &Path, name: &str) -> Result<Vec<u8>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures::TryStreamExt as _;
        let root = std::fs::read(&keys.root).unwrap();
        let meta = url::Url::from_directory_path(repo.join("metadata")).unwrap();
        let targets = url::Url::from_directory_path(repo.join("targets")).unwrap();
        let repository = tough::RepositoryLoader::new(&root, meta, targets)
            .load()
            .await
            .map_err(|e| e.to_string())?;
        let name = tough::TargetName::new(name).unwrap();
        let stream = repository
            .read_target(&name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such target")?;
        stream
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .map_err(|e| e.to_string())
    })
}

#[test]
fn spec_placement_by_default_tough_placement_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let input = tmp.path().join("input");
    write(&input.join("top.txt"), b"top\n");
    write(&input.join("dir/sub/b.txt"), b"b\n");
    let repo = tmp.path().join("repo");
    let targets = repo.join("targets");
    let (top, b) = (sha256_hex(b"top\n"), sha256_hex(b"b\n"));

    publish("create", &keys, &input, &repo, &["--link-mode", "hardlink"]);
    // Hard links go straight to the content-addressed names: same inode as the input.
    let linked = std::fs::metadata(targets.join(format!("dir/sub/{b}.b.txt"))).unwrap();
    let original = std::fs::metadata(input.join("dir/sub/b.txt")).unwrap();
    assert_eq!(linked.ino(), original.ino());
    assert!(targets.join(format!("{top}.top.txt")).is_file());
    // Only the spec's placement: no folder per target, no temporary names left.
    let mut entries: Vec<String> = std::fs::read_dir(&targets)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["dir".to_owned(), format!("{top}.top.txt")]);
    // Our download finds it; tough's client, which prefixes the whole path, does not.
    let dl = tmp.path().join("dl");
    ok(&[
        "download",
        s(&dl),
        "-r",
        s(&keys.root),
        "-m",
        s(&repo.join("metadata")),
        "-t",
        s(&targets),
    ]);
    assert_eq!(std::fs::read(dl.join("dir/sub/b.txt")).unwrap(), b"b\n");
    assert!(tough_read(&keys, &repo, "dir/sub/b.txt").is_err());
    assert_eq!(tough_read(&keys, &repo, "top.txt").unwrap(), b"top\n");

    // Publishing the same files again (the names exist already) works, and with
    // --tough-placement tough's client finds the folder target too.
    publish(
        "update",
        &keys,
        &input,
        &repo,
        &["--link-mode", "hardlink", "--tough-placement"],
    );
    assert!(targets.join(format!("{b}.dir/sub/b.txt")).is_file());
    assert_eq!(tough_read(&keys, &repo, "dir/sub/b.txt").unwrap(), b"b\n");

    // Symlink mode, into a fresh repository and then again over it.
    let repo2 = tmp.path().join("repo2");
    publish("create", &keys, &input, &repo2, &["--link-mode", "symlink"]);
    publish("update", &keys, &input, &repo2, &["--link-mode", "symlink"]);
    let link = repo2.join("targets").join(format!("dir/sub/{b}.b.txt"));
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(
        std::fs::canonicalize(&link).unwrap(),
        std::fs::canonicalize(input.join("dir/sub/b.txt")).unwrap()
    );
}
