//! `pubsys setup` and `pubsys repo` through the binary, with real image-builder artifacts.
//! Each repository version is loaded with tough (the path updog uses) and refreshed with
//! python-tuf's ngclient (installed in .venv by scripts/setup).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken invariants

use assert_cmd::Command;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use update_metadata::Manifest;

mod repo_common;
use repo_common::{build, s, workspace};
use test_support::block_on;

/// Run pubsys; panic with its stderr unless it succeeds. Returns stdout parsed as JSON.
fn pubsys_ok(args: &[&str]) -> serde_json::Value {
    let out = Command::cargo_bin("pubsys")
        .unwrap()
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pubsys {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn pubsys_fails(args: &[&str]) -> String {
    let out = Command::cargo_bin("pubsys")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "pubsys {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// The repository as hosts see it: metadata of one variant/arch plus the shared targets.
fn host_view(dir: &Path, published: &Path) -> PathBuf {
    let view = dir.join(format!("view-{}", rand_suffix()));
    std::fs::create_dir_all(&view).unwrap();
    std::os::unix::fs::symlink(published.join("aws-dev/x86_64"), view.join("metadata")).unwrap();
    std::os::unix::fs::symlink(published.join("targets"), view.join("targets")).unwrap();
    view
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Load the host view with tough exactly as updog does and return the verified manifest.
fn load_manifest(view: &Path, root: &Path) -> Manifest {
    let metadata = url::Url::from_directory_path(view.join("metadata")).unwrap();
    let targets = url::Url::from_directory_path(view.join("targets")).unwrap();
    block_on(repo_common::load_manifest(metadata, targets, root, None))
}

/// Refresh with python-tuf's ngclient and download the named targets, comparing bytes.
fn ngclient(
    view: &Path,
    client: &Path,
    root: &Path,
    expected: &Path,
    names: &[&str],
) -> serde_json::Value {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    let out = std::process::Command::new(python)
        .arg(workspace().join("tuftool/tests/python/ngclient_check.py"))
        .args([s(view), s(client), s(root), s(expected)])
        .args(names)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ngclient failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Copy a `pubsys repo` output over the published folder, targets first (what an upload does).
fn publish(output: &Path, published: &Path) {
    let copy_dir = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    };
    copy_dir(&output.join("targets"), &published.join("targets"));
    copy_dir(
        &output.join("aws-dev/x86_64"),
        &published.join("aws-dev/x86_64"),
    );
}

struct Setup {
    dir: tempfile::TempDir,
    root: PathBuf,
    key: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("roles/root.json");
    let key = dir.path().join("keys/default-key.pem");
    let report = pubsys_ok(&[
        "setup",
        "--root-role-path",
        s(&root),
        "--default-key-path",
        s(&key),
    ]);
    assert_eq!(report["root"], "created");
    assert_eq!(report["key"], "generated");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600,
        "private key is 0600"
    );
    assert_eq!(
        std::fs::metadata(&root).unwrap().permissions().mode() & 0o777,
        0o644
    );
    Setup { dir, root, key }
}

#[test]
fn setup_is_idempotent() {
    let Setup {
        dir: _dir,
        root,
        key,
    } = setup();
    let (root_before, key_before) = (std::fs::read(&root).unwrap(), std::fs::read(&key).unwrap());
    let report = pubsys_ok(&[
        "setup",
        "--root-role-path",
        s(&root),
        "--default-key-path",
        s(&key),
    ]);
    assert_eq!(
        (report["root"].as_str(), report["key"].as_str()),
        (Some("existing"), Some("existing"))
    );
    assert_eq!(std::fs::read(&root).unwrap(), root_before);
    assert_eq!(std::fs::read(&key).unwrap(), key_before);
    // A root without a key is refused unless allowed.
    let missing = _dir.path().join("nokey.pem");
    let error = pubsys_fails(&[
        "setup",
        "--root-role-path",
        s(&root),
        "--default-key-path",
        s(&missing),
    ]);
    assert!(error.contains("No signing key"), "{error}");
    assert!(!missing.exists());
}

#[test]
fn release_then_extend_with_waves_and_migrations() {
    let Setup { dir, root, key } = setup();
    let d = dir.path();
    let expiration = workspace().join("pubsys/tests/data/repo-expiration-2w-2w-1w.toml");
    let waves = workspace().join("waves/default-waves.toml");
    let published = d.join("published");

    // v1.0.0: a new repository.
    let report_v1 = build(d, "1.0.0");
    let out1 = d.join("out1");
    let common = |out: &Path, report: &Path| -> Vec<String> {
        [
            "repo",
            "--build-report",
            s(report),
            "--repo-expiration-policy-path",
            s(&expiration),
            "--wave-policy-path",
            s(&waves),
            "--root-role-path",
            s(&root),
            "--default-key-path",
            s(&key),
            "--outdir",
            s(out),
            "--release-start-time",
            "in 0 minutes",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let args: Vec<String> = common(&out1, &report_v1);
    let r1 = pubsys_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r1["extended"].is_null());
    assert!(
        out1.join("aws-dev/x86_64/1.root.json").exists(),
        "root chain published"
    );
    assert!(out1.join("aws-dev/x86_64/timestamp.json").exists());
    publish(&out1, &published);
    let view = host_view(d, &published);
    let manifest = load_manifest(&view, &root);
    assert_eq!(manifest.updates.len(), 1);
    let update = &manifest.updates[0];
    assert_eq!(
        (
            update.variant.as_str(),
            update.arch.as_str(),
            update.version.to_string()
        ),
        ("aws-dev", "x86_64", "1.0.0".into())
    );
    assert_eq!(
        update.waves.0.keys().copied().collect::<Vec<_>>(),
        [0, 20, 102, 307, 819, 1228, 1843]
    );
    assert!(
        update.images.root.ends_with("-root.ext4.lz4"),
        "{}",
        update.images.root
    );
    let client = d.join("client");
    let images = d.join("images/1.0.0-abcdef0");
    let v1 = ngclient(
        &view,
        &client,
        &root,
        &images,
        &[
            &update.images.boot,
            &update.images.root,
            &update.images.hash,
        ],
    );

    // v1.1.0: extend the published repository, with migrations.
    let infra = d.join("Infra.toml");
    std::fs::write(
        &infra,
        format!(
            "[repo.default]\nmetadata_base_url = \"file://{}/\"\ntargets_url = \"file://{}/targets/\"\n",
            published.display(),
            published.display()
        ),
    )
    .unwrap();
    let release = d.join("Release.toml");
    std::fs::write(
        &release,
        "version = \"1.1.0\"\n[migrations]\n\"(1.0.0, 1.1.0)\" = []\n",
    )
    .unwrap();
    let report_v2 = build(d, "1.1.0");
    let out2 = d.join("out2");
    let mut args = common(&out2, &report_v2);
    args.extend([
        "--infra-config".into(),
        s(&infra).into(),
        "--release-config-path".into(),
        s(&release).into(),
    ]);
    let r2 = pubsys_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r2["extended"].as_str().unwrap().starts_with("file://"));
    assert_eq!(r2["manifest_updates"], 2);
    publish(&out2, &published);
    let manifest = load_manifest(&view, &root);
    let versions: Vec<String> = manifest
        .updates
        .iter()
        .map(|u| u.version.to_string())
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    assert!(
        manifest
            .updates
            .iter()
            .all(|u| u.max_version.to_string() == "1.1.0")
    );
    assert_eq!(
        manifest
            .migration_path(&"1.0.0".parse().unwrap(), &"1.1.0".parse().unwrap())
            .unwrap(),
        Vec::<String>::new()
    );
    let new = manifest
        .updates
        .iter()
        .find(|u| u.version.to_string() == "1.1.0")
        .unwrap();
    let images2 = d.join("images/1.1.0-abcdef0");
    let v2 = ngclient(&view, &client, &root, &images2, &[&new.images.root]);
    assert!(
        v2["versions"]["targets"].as_u64() > v1["versions"]["targets"].as_u64(),
        "versions increase: {v1} → {v2}"
    );

    // Re-running 1.1.0 against the published repository replaces it: still one entry.
    let out3 = d.join("out3");
    let mut args = common(&out3, &report_v2);
    args.extend(["--infra-config".into(), s(&infra).into()]);
    let r3 = pubsys_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r3["manifest_updates"], 2);
    publish(&out3, &published);
    let manifest = load_manifest(&view, &root);
    assert_eq!(
        manifest
            .updates
            .iter()
            .filter(|u| u.version.to_string() == "1.1.0")
            .count(),
        1
    );
    ngclient(&view, &client, &root, &images2, &[&new.images.hash]);

    // An existing output folder is never overwritten.
    let args = common(&out3, &report_v2);
    let error = pubsys_fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(error.contains("already exists"), "{error}");
}

/// A root whose targets, snapshot and timestamp roles need two signatures.
fn two_key_root(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use tuftool::keys::{KeySource, KeyType};
    use tuftool::root::TopRole;
    let root = dir.join("root.json");
    let (k1, k2) = (dir.join("k1.pem"), dir.join("k2.pem"));
    block_on(async {
        let init = tuftool::root::RootInit {
            version: std::num::NonZeroU64::MIN,
            consistent_snapshot: true,
            expires: jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30),
        };
        tuftool::root::init_root(&root, &init).unwrap();
        for key in [&k1, &k2] {
            let source = KeySource::File { path: key.clone() };
            let generated = tuftool::keys::gen_key(KeyType::Ed25519, &source)
                .await
                .unwrap();
            tuftool::root::add_key(&root, &generated.keyid, &generated.public, &TopRole::ALL)
                .unwrap();
        }
        for role in [TopRole::Targets, TopRole::Snapshot, TopRole::Timestamp] {
            tuftool::root::set_threshold(&root, role, std::num::NonZeroU64::new(2).unwrap())
                .unwrap();
        }
        let both = [
            KeySource::File { path: k1.clone() },
            KeySource::File { path: k2.clone() },
        ];
        tuftool::root::sign_root(&root, &both, None, false)
            .await
            .unwrap();
    });
    (root, k1, k2)
}

fn repo_args(dir: &Path, root: &Path, outdir: &Path, keys: &[&Path]) -> Vec<String> {
    let mut args = repo_common::repo_args(dir, "1.0.0", "ohno", root, outdir);
    for key in keys {
        args.extend(["--signing-key".to_owned(), s(key).to_owned()]);
    }
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn two_keys_meet_a_threshold_of_two() {
    let dir = tempfile::tempdir().unwrap();
    let (root, k1, k2) = two_key_root(dir.path());
    let one = dir.path().join("one");
    let error = pubsys_fails(&strs(&repo_args(dir.path(), &root, &one, &[&k1])));
    assert!(
        error.contains("threshold") || error.contains("Threshold"),
        "{error}"
    );
    assert!(
        !one.join("aws-dev").exists(),
        "nothing published below the threshold"
    );

    let both = dir.path().join("both");
    pubsys_ok(&strs(&repo_args(dir.path(), &root, &both, &[&k1, &k2])));
    let view = host_view(dir.path(), &both);
    let manifest = load_manifest(&view, &root);
    assert_eq!(manifest.updates[0].waves.0.len(), 5, "ohno waves");
    let timestamp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(both.join("aws-dev/x86_64/timestamp.json")).unwrap())
            .unwrap();
    assert_eq!(timestamp["signatures"].as_array().unwrap().len(), 2);
}

#[test]
fn validate_check_and_refresh_an_expired_repository() {
    let Setup { dir, root, key } = setup();
    let d = dir.path();
    let published = d.join("published");
    // A repository signed with expiries already past, through the tuftool library (pubsys
    // itself refuses to sign expired metadata).
    let inputs = d.join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::write(
        inputs.join("manifest.json"),
        "{\"updates\": [], \"migrations\": {}}\n",
    )
    .unwrap();
    std::fs::write(inputs.join("image.lz4"), vec![7u8; 100_000]).unwrap();
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let schedule_at = |expires| tuftool::repo::RoleSchedule {
        version: None,
        expires: Some(expires),
    };
    let options = tuftool::repo::PublishOptions {
        keys: vec![tuftool::keys::KeySource::File { path: key.clone() }],
        add_targets: vec![inputs.clone()],
        follow_links: false,
        place: tuftool::repo::Place::default(),
        schedule: tuftool::repo::Schedule {
            targets: schedule_at(past),
            snapshot: schedule_at(past),
            timestamp: schedule_at(past),
        },
        outdir: d.join("tuf"),
    };
    block_on(tuftool::repo::create_repo(
        &root,
        &options,
        jiff::Timestamp::now(),
    ))
    .unwrap();
    std::fs::create_dir_all(published.join("aws-dev")).unwrap();
    std::fs::rename(d.join("tuf/metadata"), published.join("aws-dev/x86_64")).unwrap();
    std::fs::rename(d.join("tuf/targets"), published.join("targets")).unwrap();

    let location = [
        "--variant",
        "aws-dev",
        "--arch",
        "x86_64",
        "--root-role-path",
        s(&root),
        "--metadata-base-url",
        &format!("file://{}/", published.display()),
        "--targets-url",
        &format!("file://{}/targets/", published.display()),
    ]
    .map(str::to_owned);
    let with = |command: &str, extra: &[&str]| -> Vec<String> {
        let mut v = vec![command.to_owned()];
        v.extend(location.iter().cloned());
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let run = |args: &[String]| {
        Command::cargo_bin("pubsys")
            .unwrap()
            .arg("--json")
            .args(args)
            .output()
            .unwrap()
    };

    let check = run(&with("check-repo-expirations", &[]));
    assert_eq!(check.status.code(), Some(3), "expired roles are flagged");
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(
        report["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "expired"),
        "{report}"
    );
    assert_eq!(
        run(&with("validate-repo", &[])).status.code(),
        Some(3),
        "an expired repository is invalid"
    );

    let policy = workspace().join("pubsys/tests/data/repo-expiration-2w-2w-1w.toml");
    let refresh = |outdir: &Path, extra: &[&str]| {
        let mut args = with(
            "refresh-repo",
            &[
                "--default-key-path",
                s(&key),
                "--repo-expiration-policy-path",
                s(&policy),
                "--outdir",
                s(outdir),
            ],
        );
        args.extend(extra.iter().map(|x| x.to_string()));
        run(&args)
    };
    let refused = refresh(&d.join("r1"), &[]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "loading an expired repository needs --unsafe-refresh"
    );
    let revived = refresh(&d.join("r2"), &["--unsafe-refresh"]);
    assert!(
        revived.status.success(),
        "{}",
        String::from_utf8_lossy(&revived.stderr)
    );
    for entry in std::fs::read_dir(d.join("r2/aws-dev/x86_64")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            published.join("aws-dev/x86_64").join(entry.file_name()),
        )
        .unwrap();
    }
    let check = run(&with("check-repo-expirations", &[]));
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let valid = run(&with("validate-repo", &["--validate-targets"]));
    assert_eq!(
        valid.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&valid.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&valid.stdout).unwrap();
    assert_eq!(report["targets_verified"], 2);

    // One flipped byte in a target is caught by --validate-targets.
    let target = std::fs::read_dir(published.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("image.lz4"))
        .unwrap();
    let mut bytes = std::fs::read(&target).unwrap();
    bytes[500] ^= 1;
    std::fs::write(&target, bytes).unwrap();
    let tampered = run(&with("validate-repo", &["--validate-targets"]));
    assert_eq!(tampered.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&tampered.stdout).unwrap();
    assert!(
        report["problems"][0]
            .as_str()
            .unwrap()
            .contains("image.lz4"),
        "{report}"
    );
}

/// A server on 127.0.0.1 that answers every request with `status` and an empty body; returns
/// its base URL.
fn answer_everything_with(status: &'static str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    format!("http://127.0.0.1:{port}/")
}

/// A 403 for timestamp.json is a denied read, not "no repository yet": `pubsys repo` must fail
/// and not start a version-1 repository that would lose every earlier update.
#[test]
fn a_forbidden_timestamp_is_an_error_not_a_new_repository() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, k1, k2) = two_key_root(d);
    let infra = d.join("Infra.toml");
    let serve_from = |base: &str| {
        let text = format!(
            "[repo.default]\nmetadata_base_url = \"{base}\"\ntargets_url = \"{base}targets/\"\n"
        );
        std::fs::write(&infra, text).unwrap();
    };
    serve_from(&answer_everything_with("403 Forbidden"));
    let out = d.join("out");
    let mut args = vec!["--infra-config".to_owned(), s(&infra).to_owned()];
    args.extend(repo_args(d, &root, &out, &[&k1, &k2]));
    let stderr = pubsys_fails(&strs(&args));
    assert!(stderr.contains("timestamp.json"), "{stderr}");
    assert!(
        !out.exists(),
        "a new repository was written to {}",
        out.display()
    );
    // A real "not found" still means "not published yet": a new repository.
    serve_from(&answer_everything_with("404 Not Found"));
    let report = pubsys_ok(&strs(&args));
    assert_eq!(report["extended"], serde_json::Value::Null, "{report}");
    assert!(out.join("aws-dev/x86_64/timestamp.json").exists());
}

/// An artifact changed since the build (one byte) is refused before anything is signed; the
/// untouched build signs.
#[test]
fn artifacts_are_checked_against_the_build_report_before_signing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, k1, k2) = two_key_root(d);
    let report = build(d, "1.0.0");
    let args = |out: &Path| -> Vec<String> {
        [
            "repo",
            "--build-report",
            s(&report),
            "--wave-policy-path",
            s(&workspace().join("waves/default-waves.toml")),
            "--repo-expiration-policy-path",
            s(&workspace().join("pubsys/tests/data/repo-expiration-2w-2w-1w.toml")),
            "--root-role-path",
            s(&root),
            "--signing-key",
            s(&k1),
            "--signing-key",
            s(&k2),
            "--outdir",
            s(out),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let root_artifact = json["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "root")
        .unwrap()["file_name"]
        .as_str()
        .unwrap()
        .to_owned();
    let artifact = report.parent().unwrap().join(root_artifact);
    let original = std::fs::read(&artifact).unwrap();
    let mut changed = original.clone();
    let middle = changed.len() / 2;
    changed[middle] ^= 0x01;
    std::fs::write(&artifact, &changed).unwrap();
    let out = d.join("out-changed");
    let stderr = pubsys_fails(&strs(&args(&out)));
    assert!(
        stderr.contains("does not match the build report"),
        "{stderr}"
    );
    assert!(!out.exists(), "something was signed into {}", out.display());
    std::fs::write(&artifact, &original).unwrap();
    pubsys_ok(&strs(&args(&d.join("out-intact"))));
}
