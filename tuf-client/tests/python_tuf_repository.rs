//! The library against a repository made by python-tuf (tests/python/make_stages.py), served
//! from disk through `file://`: the top-level workflow, lazy delegations, verified target
//! streams and downloads, root and timestamp-key rotation, rollbacks and expiry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{copy_tree, dir_url, json_files, make_stages, version_of};
use futures::StreamExt;
use std::path::Path;
use std::sync::Arc;
use tuf_client::{Downloaded, Error, FixedClock, RepositoryLoader};

struct Served {
    _tmp: tempfile::TempDir,
    stages: std::path::PathBuf,
    repo: std::path::PathBuf,
    store: std::path::PathBuf,
}

impl Served {
    /// Stage 1 served; an empty metadata store.
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let stages = tmp.path().join("stages");
        make_stages(&stages);
        let repo = tmp.path().join("repo");
        copy_tree(&stages.join("stage1"), &repo);
        let store = tmp.path().join("store");
        Served {
            _tmp: tmp,
            stages,
            repo,
            store,
        }
    }

    fn stage(&self, n: u32) {
        copy_tree(&self.stages.join(format!("stage{n}")), &self.repo);
    }

    fn loader(&self) -> RepositoryLoader {
        RepositoryLoader::new(
            &self.store,
            &dir_url(&self.repo.join("metadata")),
            &dir_url(&self.repo.join("targets")),
        )
        .trusted_root(std::fs::read(self.stages.join("initial_root.json")).unwrap())
    }

    fn served(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.repo.join("metadata").join(file)).unwrap()
    }

    fn trusted(&self, role: &str) -> Vec<u8> {
        std::fs::read(self.store.join(format!("{role}.json"))).unwrap()
    }
}

async fn read_all(repo: &tuf_client::Repository, name: &str) -> Result<Vec<u8>, Error> {
    let mut stream = repo.fetch_target_by_name(name).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test]
async fn top_level_workflow_lazy_delegations_and_verified_targets() {
    let t = Served::new();
    let repo = t.loader().load().await.unwrap();
    assert_eq!(repo.root().version, 1);
    assert_eq!(repo.timestamp().version, 1);
    assert_eq!(repo.snapshot().version, 1);
    assert_eq!(repo.targets().version, 1);
    assert!(repo.consistent_snapshot());
    // Top-level metadata persisted byte for byte; no delegated role yet (lazy).
    assert_eq!(
        json_files(&t.store),
        [
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    assert_eq!(t.trusted("timestamp"), t.served("timestamp.json"));
    assert_eq!(t.trusted("snapshot"), t.served("1.snapshot.json"));
    assert_eq!(repo.targets().bytes, t.served("1.targets.json"));
    assert_eq!(
        repo.root_chain(),
        [(
            1,
            std::fs::read(t.stages.join("initial_root.json")).unwrap()
        )]
    );

    // Top-level target, both hashes listed and checked.
    let top = repo.find_target("top.txt").await.unwrap().unwrap();
    assert_eq!(top.role, "targets");
    assert_eq!(top.length, 7);
    assert_eq!(top.hashes.len(), 2);
    assert_eq!(read_all(&repo, "top.txt").await.unwrap(), b"top v1\n");
    assert_eq!(
        read_all(&repo, "only512.bin").await.unwrap(),
        b"\x00\x01sha512 only"
    );
    assert!(repo.delegated_role("A").is_none());

    // a/one.txt: found in A; B (terminating) is not needed.
    let one = repo.find_target("a/one.txt").await.unwrap().unwrap();
    assert_eq!(one.role, "A");
    assert_eq!(
        repo.delegated_role("A").unwrap().bytes,
        t.served("1.A.json")
    );
    assert!(repo.delegated_role("B").is_none());
    assert_eq!(
        repo.delegated_roles()
            .iter()
            .map(|r| r.role.as_str())
            .collect::<Vec<_>>(),
        ["A"]
    );

    // c/x.txt: through B (paths) to C (path_hash_prefixes).
    let x = repo.find_target("c/x.txt").await.unwrap().unwrap();
    assert_eq!(x.role, "C");
    assert_eq!(read_all(&repo, "c/x.txt").await.unwrap(), b"x by C\n");
    assert_eq!(
        json_files(&t.store),
        [
            "A.json",
            "B.json",
            "C.json",
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );

    // Not listed anywhere; a path no delegation covers; `*` does not cross `/`.
    assert!(repo.find_target("a/missing.txt").await.unwrap().is_none());
    assert!(repo.find_target("elsewhere/y").await.unwrap().is_none());
    assert!(repo.find_target("a/b/one.txt").await.unwrap().is_none());
    assert!(matches!(
        read_all(&repo, "nope").await,
        Err(Error::TargetNotFound { .. })
    ));

    // Downloads: written once, then served from the cache (checked by hashes).
    let out = t.store.parent().unwrap().join("out");
    let path = out.join("b-two.txt");
    let two = repo.find_target("b/two.txt").await.unwrap().unwrap();
    assert_eq!(
        repo.download_target(&two, &path).await.unwrap(),
        Downloaded::Fetched
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
    assert_eq!(
        repo.download_target(&two, &path).await.unwrap(),
        Downloaded::Cached
    );
    // A changed local file is downloaded again.
    std::fs::write(&path, b"owt\n").unwrap();
    assert_eq!(
        repo.download_target(&two, &path).await.unwrap(),
        Downloaded::Fetched
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"two\n");

    // Tampered target on the server: refused, nothing written.
    let served = t
        .repo
        .join("targets/a")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".one.txt"))
        .unwrap();
    std::fs::write(&served, b"eno\n").unwrap();
    let err = repo
        .download_target(&one, &out.join("one"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err:?}");
    std::fs::write(&served, b"one, longer\n").unwrap();
    let err = read_all(&repo, "a/one.txt").await.unwrap_err();
    assert!(matches!(err, Error::LengthMismatch { .. }), "{err:?}");
    assert!(!out.join("one").exists());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);

    // A second load uses the stored copies: nothing changes.
    let again = t.loader().load().await.unwrap();
    assert_eq!(again.timestamp().bytes, t.served("timestamp.json"));
}

#[tokio::test]
async fn rotation_rollbacks_and_expiry() {
    let t = Served::new();
    t.loader().load().await.unwrap();

    // Root v2 (root and timestamp keys rotated), new timestamp/snapshot/targets.
    t.stage(2);
    let repo = t.loader().load().await.unwrap();
    assert_eq!(repo.root().version, 2);
    assert_eq!(repo.roots_fetched().len(), 1);
    assert_eq!(repo.timestamp().version, 2);
    assert_eq!(repo.targets().version, 2);
    assert_eq!(t.trusted("root"), t.served("2.root.json"));
    assert_eq!(read_all(&repo, "top.txt").await.unwrap(), b"top v2\n");

    // The root chain: the first-use root and every root verified since, exact bytes, kept
    // across loads (a load that fetches no new root still has it).
    let initial = std::fs::read(t.stages.join("initial_root.json")).unwrap();
    let chain = vec![(1, initial.clone()), (2, t.served("2.root.json"))];
    assert_eq!(repo.root_chain(), chain.as_slice());
    let again = t.loader().load().await.unwrap();
    assert!(again.roots_fetched().is_empty());
    assert_eq!(again.root_chain(), chain.as_slice());
    let history = t.store.join("root-history");
    assert_eq!(std::fs::read(history.join("1.root.json")).unwrap(), initial);
    // A history entry that is not the root that signed the next one ends the chain there.
    std::fs::write(history.join("1.root.json"), t.served("2.root.json")).unwrap();
    assert_eq!(t.loader().load().await.unwrap().root_chain(), &chain[1..]);
    // A folder without a history (older client, `init`): the trusted root starts it.
    std::fs::remove_dir_all(&history).unwrap();
    assert_eq!(t.loader().load().await.unwrap().root_chain(), &chain[1..]);
    assert_eq!(
        std::fs::read(history.join("2.root.json")).unwrap(),
        chain[1].1
    );

    // A timestamp rolled back to v1: refused, v2 stays trusted.
    t.stage(3);
    let err = t.loader().load().await.unwrap_err();
    assert!(matches!(err, Error::Rollback { .. }), "{err:?}");
    assert_eq!(version_of(&t.store.join("timestamp.json")), 2);

    // Snapshot v3 listing targets v1: refused; timestamp v3 was fine and is kept.
    t.stage(4);
    let err = t.loader().load().await.unwrap_err();
    assert!(matches!(err, Error::Rollback { .. }), "{err:?}");
    assert_eq!(version_of(&t.store.join("snapshot.json")), 2);
    assert_eq!(version_of(&t.store.join("targets.json")), 2);
    assert_eq!(version_of(&t.store.join("timestamp.json")), 3);

    // Expired: the root (365 days) has expired in 400 days.
    t.stage(2);
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 400);
    let err = t
        .loader()
        .clock(Arc::new(FixedClock(later)))
        .load()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Expired { ref role, .. } if role == "root"),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_roots_and_missing_files() {
    let t = Served::new();
    // No root anywhere.
    let err = RepositoryLoader::new(
        &t.store,
        &dir_url(&t.repo.join("metadata")),
        &dir_url(&t.repo.join("targets")),
    )
    .load()
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoTrustedRoot { .. }), "{err:?}");

    // A root whose signature does not verify.
    let mut root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.stages.join("initial_root.json")).unwrap())
            .unwrap();
    root["signed"]["version"] = 7.into();
    let err = RepositoryLoader::new(
        &t.store,
        &dir_url(&t.repo.join("metadata")),
        &dir_url(&t.repo.join("targets")),
    )
    .trusted_root(serde_json::to_vec(&root).unwrap())
    .load()
    .await
    .unwrap_err();
    assert!(matches!(err, Error::VerifySignatures { .. }), "{err:?}");
    assert!(!t.store.join("root.json").exists());

    // timestamp.json missing on the server: "not found", distinguishable.
    std::fs::remove_file(t.repo.join("metadata/timestamp.json")).unwrap();
    let err = t.loader().load().await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    // The trusted root was persisted before the failure.
    assert!(Path::new(&t.store.join("root.json")).exists());
}
