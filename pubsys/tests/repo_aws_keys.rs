//! `pubsys repo` signing with the keys Infra.toml names in AWS, against a moto server: the
//! targets key in KMS, in another region than the run's base region (its `available_keys`
//! entry says where), the snapshot key in an SSM SecureString, the timestamp key in a file.
//! The clients come from pubsys's one AWS factory; python-tuf must accept the result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod repo_common;

use assert_cmd::Command;
use repo_common::s;
use std::sync::Arc;
use test_support::block_on;
use test_support::{MotoServer, aws_env};
use tuftool::keys::{KeySource, KeyType};
use tuftool::root::{RootInit, TopRole};

const BASE: &str = "us-west-2";
const KMS_REGION: &str = "us-east-2";

#[test]
fn infra_kms_and_ssm_keys_sign_a_repository_python_tuf_accepts() {
    let moto = MotoServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unique = test_support::unique_account_id();
    let alias = format!("alias/targets-{unique}");
    let parameter = format!("/tuf/{unique}/snapshot");
    test_support::moto_kms_signing_key(moto, KMS_REGION, &alias);

    // The root, made with tuftool's library; AWS clients from a factory on the moto endpoint.
    let aws = Arc::new(block_on(
        aws_context::AwsContext::builder(BASE)
            .endpoint_url(Some(moto.url()))
            .static_credentials("testing", "testing")
            .build(),
    ));
    let root = d.join("root.json");
    let root_key = KeySource::File {
        path: d.join("root.pem"),
    };
    let timestamp_key = d.join("timestamp.pem");
    let kms: KeySource = format!("aws-kms:///{alias}?region={KMS_REGION}")
        .parse()
        .unwrap();
    let ssm: KeySource = format!("aws-ssm://{parameter}").parse().unwrap();
    block_on(async {
        let init = RootInit {
            version: std::num::NonZeroU64::MIN,
            consistent_snapshot: true,
            expires: jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30),
        };
        tuftool::root::init_root(&root, &init).unwrap();
        let (root_path, ed) = (Some(root.as_path()), KeyType::Ed25519);
        tuftool::root::gen_key(root_path, ed, &root_key, &[TopRole::Root])
            .await
            .unwrap();
        let timestamp = KeySource::File {
            path: timestamp_key.clone(),
        };
        tuftool::root::gen_key(root_path, ed, &timestamp, &[TopRole::Timestamp])
            .await
            .unwrap();
        let ssm = ssm.clone().with_aws(&aws);
        tuftool::root::gen_key(root_path, ed, &ssm, &[TopRole::Snapshot])
            .await
            .unwrap();
        let (keyid, public) = kms.clone().with_aws(&aws).public_key().await.unwrap();
        tuftool::root::add_key(&root, &keyid, &public, &[TopRole::Targets]).unwrap();
        tuftool::root::sign_root(&root, std::slice::from_ref(&root_key), None, false)
            .await
            .unwrap();
    });

    let infra = d.join("Infra.toml");
    std::fs::write(
        &infra,
        format!(
            "[aws]\nregions = [\"{BASE}\"]\n\n[repo.default]\nsigning_keys = [\n  \
             {{ kms = {{ available_keys = {{ \"{alias}\" = \"{KMS_REGION}\" }} }} }},\n  \
             {{ ssm = {{ parameter = \"{parameter}\" }} }},\n  \
             {{ file = {{ path = \"{}\" }} }},\n]\n",
            timestamp_key.display()
        ),
    )
    .unwrap();
    let mut args = vec!["--infra-config".to_owned(), s(&infra).to_owned()];
    let images = d.join("images");
    std::fs::create_dir_all(&images).unwrap();
    args.extend(repo_common::repo_args(
        &images,
        "1.0.0",
        "default-waves",
        &root,
        &d.join("out"),
    ));
    let out = Command::cargo_bin("pubsys")
        .unwrap()
        .args(&args)
        .envs(aws_env(&moto.url(), BASE))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pubsys repo failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // python-tuf: refresh the host view and download the manifest.
    let view = d.join("view");
    std::fs::create_dir_all(&view).unwrap();
    std::os::unix::fs::symlink(d.join("out/aws-dev/x86_64"), view.join("metadata")).unwrap();
    std::os::unix::fs::symlink(d.join("out/targets"), view.join("targets")).unwrap();
    let expected = d.join("expected");
    std::fs::create_dir_all(&expected).unwrap();
    let manifest = std::fs::read_dir(d.join("out/targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".manifest.json"))
        .unwrap();
    std::fs::copy(&manifest, expected.join("manifest.json")).unwrap();
    test_support::python_tuf_accepts(
        &view,
        &d.join("client"),
        &root,
        &expected,
        &["manifest.json"],
    );
}
