//! tuftool over `https://`: a real TLS server on 127.0.0.1 whose test CA is trusted through
//! `SSL_CERT_FILE` (refused without it), directly and through a forward proxy (tinyproxy) with
//! `HTTPS_PROXY`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use assert_cmd::Command;
use common::{Keys, refs, s, strings, write};
use test_support::tls::{ForwardProxy, HttpsServer, TestCa};

fn tuftool(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut command = Command::cargo_bin("tuftool").unwrap();
    command
        .args(args)
        .env_remove("SSL_CERT_FILE")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn succeeds(args: &[&str], env: &[(&str, String)]) {
    let out = tuftool(args, env);
    assert!(
        out.status.success(),
        "tuftool {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn download_clone_and_update_over_https_and_through_a_proxy() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let keys = Keys::new(&t.join("keys"));
    let input = t.join("input");
    write(&input.join("a.txt"), b"alpha\n");
    write(&input.join("dir/b.txt"), b"beta\n");
    let repo = t.join("repo");
    common::create_repo(&keys, &input, &repo);

    let ca = TestCa::new(&t.join("ca"));
    let server = HttpsServer::start(&repo, &ca);
    let trust = ("SSL_CERT_FILE", ca.ca_cert.display().to_string());
    let (metadata, targets) = (server.url("metadata/"), server.url("targets/"));
    let download = |out: &str| {
        vec![
            "download".to_owned(),
            s(&t.join(out)).to_owned(),
            "-r".to_owned(),
            s(&keys.root).to_owned(),
            "-m".to_owned(),
            metadata.clone(),
            "-t".to_owned(),
            targets.clone(),
        ]
    };

    // Untrusted CA: refused, nothing written.
    let out = tuftool(&refs(&download("untrusted")), &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(text.contains("certificate"), "{text}");
    assert!(!t.join("untrusted").exists());

    succeeds(&refs(&download("direct")), std::slice::from_ref(&trust));
    assert_eq!(
        std::fs::read(t.join("direct/dir/b.txt")).unwrap(),
        b"beta\n"
    );

    // Through the proxy: tinyproxy logs the tunnel to the server.
    let proxy = ForwardProxy::start(&t.join("proxy"));
    succeeds(
        &refs(&download("proxied")),
        &[trust.clone(), ("HTTPS_PROXY", proxy.url())],
    );
    assert_eq!(std::fs::read(t.join("proxied/a.txt")).unwrap(), b"alpha\n");
    let tunnel = format!("CONNECT 127.0.0.1:{}", server.port);
    let connects = proxy.connects();
    assert!(
        connects.iter().any(|c| c.starts_with(&tunnel)),
        "{connects:?}"
    );

    // clone: metadata and targets mirrored from the HTTPS repository.
    let clone = t.join("clone");
    succeeds(
        &[
            "clone",
            "-r",
            s(&keys.root),
            "-m",
            &metadata,
            "-t",
            &targets,
            "--metadata-dir",
            s(&clone.join("metadata")),
            "--targets-dir",
            s(&clone.join("targets")),
        ],
        std::slice::from_ref(&trust),
    );
    assert!(clone.join("metadata/timestamp.json").is_file());

    // update: the published HTTPS repository extended with one more target.
    write(&t.join("more/c.txt"), b"gamma\n");
    let updated = t.join("updated");
    let mut args = strings(&[
        "update",
        "-r",
        s(&keys.root),
        "-m",
        &metadata,
        "-a",
        s(&t.join("more")),
        "-o",
        s(&updated),
        "--expires",
        "in 2 weeks",
    ]);
    args.extend(keys.online());
    succeeds(&refs(&args), &[trust]);
    let targets_json = std::fs::read_to_string(updated.join("metadata/2.targets.json"))
        .or_else(|_| std::fs::read_to_string(updated.join("metadata/targets.json")))
        .unwrap();
    assert!(targets_json.contains("c.txt") && targets_json.contains("a.txt"));
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r == "/metadata/timestamp.json")
    );
}
