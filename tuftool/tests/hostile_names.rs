//! Signed but hostile target names (issue: `tuftool clone` wrote outside `--targets-dir`). A
//! repository signed with the real keys names its targets `/<absolute path>` and `../../x`;
//! `clone` and `download` must refuse before writing anything, anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Keys, fails, s, write};
use std::num::NonZeroU64;
use std::path::Path;
use tough::editor::RepositoryEditor;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::Target;

/// Sign a repository (consistent snapshots, as `Keys` makes the root) holding one target under
/// each of `names`, all with `content`; the files are placed where a client fetches them.
fn hostile_repo(keys: &Keys, repo: &Path, names: &[&str], content: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let source = repo.join("source");
        write(&source, content);
        let target = Target::from_path(&source).await.unwrap();
        let digest = hex::encode(&target.hashes.sha256);
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 7);
        let one = NonZeroU64::new(1).unwrap();
        let mut editor = RepositoryEditor::new(&keys.root).await.unwrap();
        editor
            .targets_version(one)
            .unwrap()
            .targets_expires(expires)
            .unwrap()
            .snapshot_version(one)
            .snapshot_expires(expires)
            .timestamp_version(one)
            .timestamp_expires(expires);
        for name in names {
            editor.add_target(*name, target.clone()).unwrap();
            // Where a naive client would fetch it: the spec placement by the last component,
            // and for an absolute name also tough's `<sha256>.<name>` (the URL the unchecked
            // client asked for: with it served, that client wrote through the absolute name).
            let base = name.rsplit('/').next().unwrap();
            write(
                &repo.join("targets").join(format!("{digest}.{base}")),
                content,
            );
            if name.starts_with('/') {
                write(
                    &repo.join("targets").join(format!("{digest}.{name}")),
                    content,
                );
            }
        }
        let signers: Vec<Box<dyn KeySource>> =
            [&keys.targets_key, &keys.snapshot_key, &keys.timestamp_key]
                .iter()
                .map(|path| {
                    Box::new(LocalKeySource {
                        path: path.to_path_buf(),
                    }) as Box<dyn KeySource>
                })
                .collect();
        let signed = editor.sign(&signers).await.unwrap();
        signed.write(repo.join("metadata")).await.unwrap();
    });
}

/// Every file below `dir`.
fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[test]
fn clone_and_download_refuse_absolute_and_climbing_names_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let keys = Keys::new(&t.join("keys"));
    // An absolute name inside this test's folder, so that a write through it can be seen.
    let outside = t.join("outside/evil.bin");
    let absolute = outside.to_str().unwrap().to_owned();
    for (label, name) in [("absolute", absolute.as_str()), ("climbing", "../../x.bin")] {
        let repo = t.join(format!("repo-{label}"));
        hostile_repo(&keys, &repo, &[name], b"not for you\n");
        let before = files_below(t).len();
        let out = t.join(format!("clone-{label}"));
        let metadata_url = url::Url::from_directory_path(repo.join("metadata")).unwrap();
        let targets_url = url::Url::from_directory_path(repo.join("targets")).unwrap();
        let refused = |args: &[&str]| {
            let stderr = fails(args);
            assert!(
                stderr.contains("refusing the target name"),
                "{label} {}: {stderr}",
                args[0]
            );
        };
        refused(&[
            "clone",
            "-r",
            s(&keys.root),
            "-m",
            metadata_url.as_str(),
            "--metadata-dir",
            s(&out.join("metadata")),
            "--targets-dir",
            s(&out.join("targets")),
            "-t",
            targets_url.as_str(),
        ]);
        refused(&[
            "download",
            "-r",
            s(&keys.root),
            "-m",
            metadata_url.as_str(),
            "-t",
            targets_url.as_str(),
            s(&out.join("download")),
        ]);
        assert!(!outside.exists(), "{label}: wrote {}", outside.display());
        assert!(!out.exists(), "{label}: left {}", out.display());
        assert_eq!(files_below(t).len(), before, "{label}: files appeared");
        assert!(!t.join("x.bin").exists() && !Path::new("/x.bin").exists());
    }
}
