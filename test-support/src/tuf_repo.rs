//! Signed TUF repositories for tests, made with the tuftool library and local key files only
//! (tuftool without its `aws` feature: a test that links this links no AWS SDK).
//!
//! * [`Keys::create`]: a new Ed25519 key (mode 0600) and a root that trusts it for every role,
//!   with consistent snapshots, as `pubsys setup` makes them.
//! * [`Keys::sign_new`]: every file of a folder signed into a new repository laid out as hosts
//!   fetch it (`metadata/`, `targets/`).
//! * [`Keys::resign`]: re-sign an existing repository's targets, snapshot and timestamp with a
//!   chosen version and expiry (including expired or rolled-back metadata, which the release
//!   tools rightly refuse to sign).

use crate::block_on;
use jiff::Timestamp;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tuftool::keys::{KeySource, KeyType};
use tuftool::repo::{Place, PublishOptions, RepoLocation, RoleSchedule, Schedule, UpdateOptions};
use tuftool::root::{RootInit, TopRole};

/// A signing key and the root that trusts it for every top-level role.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The private key (PKCS#8 PEM).
    pub key_path: PathBuf,
    /// The signed root, version 1.
    pub root_path: PathBuf,
}

/// `t` to the whole second (TUF metadata carries whole seconds).
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).expect("a whole second of a valid time is valid")
}

impl Keys {
    /// A new key `signing-key.pem` and root `root.json` in `dir`, the root expiring in a year.
    pub fn create(dir: &Path) -> Keys {
        let keys = Keys {
            key_path: dir.join("signing-key.pem"),
            root_path: dir.join("root.json"),
        };
        std::fs::create_dir_all(dir).unwrap();
        let source = keys.sources().remove(0);
        block_on(async {
            tuftool::keys::gen_key(KeyType::Ed25519, &source)
                .await
                .unwrap();
            let init = RootInit {
                version: NonZeroU64::MIN,
                consistent_snapshot: true,
                expires: whole_seconds(
                    Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365),
                ),
            };
            tuftool::root::init_root(&keys.root_path, &init).unwrap();
            let (keyid, public) = source.public_key().await.unwrap();
            tuftool::root::add_key(&keys.root_path, &keyid, &public, &TopRole::ALL).unwrap();
            tuftool::root::sign_root(&keys.root_path, &keys.sources(), None, false)
                .await
                .unwrap();
        });
        keys
    }

    /// The key as tuftool's key sources.
    pub fn sources(&self) -> Vec<KeySource> {
        vec![KeySource::File {
            path: self.key_path.clone(),
        }]
    }

    fn options(
        &self,
        add_targets: Vec<PathBuf>,
        role: RoleSchedule,
        outdir: &Path,
    ) -> PublishOptions {
        PublishOptions {
            keys: self.sources(),
            add_targets,
            follow_links: true,
            place: Place::default(),
            schedule: Schedule {
                targets: role,
                snapshot: role,
                timestamp: role,
            },
            outdir: outdir.to_owned(),
        }
    }

    /// Sign every file in `inputs` (target name = file name) into a new repository at `repo`
    /// (`repo/metadata`, `repo/targets`), every role version 1 and expiring at `expires`.
    pub fn sign_new(&self, inputs: &Path, expires: Timestamp, repo: &Path) {
        let role = RoleSchedule {
            version: None,
            expires: Some(whole_seconds(expires)),
        };
        let options = self.options(vec![inputs.to_owned()], role, repo);
        block_on(tuftool::repo::create_repo(
            &self.root_path,
            &options,
            whole_seconds(Timestamp::now()),
        ))
        .unwrap();
    }

    /// Re-sign the repository at `repo` (targets unchanged) as `version`, expiring at
    /// `expires`.
    pub fn resign(&self, repo: &Path, version: u64, expires: Timestamp) {
        let role = RoleSchedule {
            version: Some(NonZeroU64::new(version).expect("versions start at 1")),
            expires: Some(whole_seconds(expires)),
        };
        let options = self.options(Vec::new(), role, repo);
        let location = RepoLocation::new(
            self.root_path.clone(),
            url::Url::from_directory_path(repo.join("metadata")).unwrap(),
            None,
            false,
        );
        block_on(tuftool::repo::update_repo(
            &location,
            &options,
            &UpdateOptions::default(),
            Timestamp::now(),
        ))
        .unwrap();
    }
}
