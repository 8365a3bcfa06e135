//! `pubsys setup` fetching the root from `root_role_url` and `pubsys repo` extending a
//! published repository, both over HTTPS: a real TLS server on 127.0.0.1 whose test CA is
//! trusted through `SSL_CERT_FILE` (and not trusted without it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use std::path::Path;
use test_support::tls::{HttpsServer, TestCa};

mod repo_common;
use repo_common::s;

fn pubsys(args: &[&str], ca: Option<&TestCa>) -> std::process::Output {
    let mut command = Command::cargo_bin("pubsys").unwrap();
    command.arg("--json").args(args).env_remove("SSL_CERT_FILE");
    if let Some(ca) = ca {
        command.envs(ca.trust_env());
    }
    command.output().unwrap()
}

fn pubsys_ok(args: &[&str], ca: &TestCa) -> serde_json::Value {
    let out = pubsys(args, Some(ca));
    assert!(
        out.status.success(),
        "pubsys {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Copy every file below `from` into `to`, keeping the folders.
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `pubsys repo` for `version`, signed with the default key file `key`.
fn repo_args(d: &Path, version: &str, root: &Path, key: &Path, out: &Path) -> Vec<String> {
    let mut args = repo_common::repo_args(d, version, "default-waves", root, out);
    args.extend(["--default-key-path".to_owned(), s(key).to_owned()]);
    args
}

#[test]
fn setup_fetches_the_root_and_repo_extends_a_repository_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new(&d.join("ca"));
    let served = d.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let server = HttpsServer::start(&served, &ca);

    // A root made locally, published on the server with its SHA-512 in Infra.toml.
    let (root, key) = (d.join("local/root.json"), d.join("keys/key.pem"));
    let setup = [
        "setup",
        "--root-role-path",
        s(&root),
        "--default-key-path",
        s(&key),
    ];
    pubsys_ok(&setup, &ca);
    std::fs::copy(&root, served.join("root.json")).unwrap();
    let sha512 = {
        let bytes = std::fs::read(&root).unwrap();
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, &bytes).as_ref())
    };
    let infra = d.join("Infra.toml");
    std::fs::write(
        &infra,
        format!(
            "[repo.default]\nroot_role_url = \"{}\"\nroot_role_sha512 = \"{sha512}\"\n\
             metadata_base_url = \"{}\"\ntargets_url = \"{}\"\n",
            server.url("root.json"),
            server.url("repo/"),
            server.url("repo/targets/"),
        ),
    )
    .unwrap();

    // setup on another machine: the root comes from root_role_url, over HTTPS.
    let fetched = d.join("fetched/root.json");
    let setup = [
        "--infra-config",
        s(&infra),
        "setup",
        "--root-role-path",
        s(&fetched),
        "--default-key-path",
        s(&key),
    ];
    let untrusted = pubsys(&setup, None);
    assert_eq!(untrusted.status.code(), Some(1));
    let text = String::from_utf8_lossy(&untrusted.stderr).to_lowercase();
    assert!(text.contains("certificate"), "{text}");
    assert!(!fetched.exists(), "nothing written without trust");
    let report = pubsys_ok(&setup, &ca);
    assert_eq!(report["root"], "fetched");
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(&root).unwrap()
    );
    assert!(server.requests().iter().any(|r| r == "/root.json"));

    // 1.0.0, published on the server; then 1.1.0 extends it, read back over HTTPS.
    let out1 = d.join("out1");
    let args = repo_args(d, "1.0.0", &fetched, &key, &out1);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pubsys_ok(&args, &ca);
    let published = served.join("repo");
    std::fs::create_dir_all(&published).unwrap();
    copy_tree(&out1, &published);

    let out2 = d.join("out2");
    let mut args = vec!["--infra-config".to_owned(), s(&infra).to_owned()];
    args.extend(repo_args(d, "1.1.0", &fetched, &key, &out2));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let untrusted = pubsys(&args, None);
    assert_eq!(untrusted.status.code(), Some(1), "no trust, no extension");
    assert!(!out2.join("aws-dev").exists());
    let report = pubsys_ok(&args, &ca);
    assert!(
        report["extended"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{report}"
    );
    assert_eq!(report["manifest_updates"], 2);
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r == "/repo/aws-dev/x86_64/timestamp.json"),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/repo/targets/") && r.ends_with("manifest.json")),
        "{requests:?}"
    );
}
