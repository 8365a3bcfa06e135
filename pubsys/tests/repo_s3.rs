//! The S3 round trip against the moto server on 127.0.0.1 (started by the test): publish a
//! release with `pubsys repo --upload s3://…`, extend it from `s3://`, validate, check
//! expirations and refresh over `s3://`, extend again from plain HTTP; a publish that fails
//! part-way leaves the published
//! repository valid, and `pubsys upload-repo` finishes it under injected S3 faults.
//! Every published version is loaded with tough (the library updog uses) over S3 and over
//! plain HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken invariants

mod aws_common;
mod repo_common;

use aws_common::World;
use repo_common::{build, s, workspace};
use std::path::{Path, PathBuf};
use test_support::block_on;
use test_support::proxy::{Action, Rule};
use update_metadata::Manifest;

fn json_ok(world: &World, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = world.run(&all);
    assert!(output.status.success(), "pubsys {args:?} failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The bucket of this test (bucket names are global, across moto's accounts too).
fn bucket(world: &World) -> String {
    format!("updates-{}", world.account)
}

/// Where this test publishes.
fn dest(world: &World) -> String {
    format!("s3://{}/repo", bucket(world))
}

fn s3_client(world: &World) -> aws_sdk_s3::Client {
    block_on(async { world.aws().await.s3("us-west-2").await.unwrap() })
}

/// The manifest as a host sees it through S3.
fn manifest_over_s3(world: &World, root: &Path) -> Manifest {
    let client = s3_client(world);
    block_on(repo_common::load_manifest(
        format!("{}/aws-dev/x86_64/", dest(world)).parse().unwrap(),
        format!("{}/targets/", dest(world)).parse().unwrap(),
        root,
        Some(pubsys::s3::S3Transport::new(client)),
    ))
}

/// The manifest as a host sees it over HTTP (path-style bucket URLs through the proxy).
fn manifest_over_http(world: &World, root: &Path) -> Manifest {
    let base = format!("{}/{}/repo", world.proxy.url(), bucket(world));
    block_on(repo_common::load_manifest(
        format!("{base}/aws-dev/x86_64/").parse().unwrap(),
        format!("{base}/targets/").parse().unwrap(),
        root,
        None,
    ))
}

fn versions(manifest: &Manifest) -> Vec<String> {
    manifest
        .updates
        .iter()
        .map(|u| u.version.to_string())
        .collect()
}

/// The object keys PUT through the proxy, in order.
fn puts(world: &World) -> Vec<String> {
    world
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.service == "s3" && r.method == "PUT" && r.fault.is_none() && r.status == 200)
        .map(|r| r.path.split('?').next().unwrap_or_default().to_owned())
        .collect()
}

struct Release {
    world: World,
    root: PathBuf,
    key: PathBuf,
    infra: PathBuf,
}

impl Release {
    fn new() -> Release {
        let world = World::new();
        let client = s3_client(&world);
        block_on(async {
            use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
            client
                .create_bucket()
                .bucket(bucket(&world))
                .create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::UsWest2)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            // Hosts read the repository anonymously over HTTP(S), as from a public bucket.
            let policy = format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{}/*"}}]}}"#,
                bucket(&world)
            );
            client
                .put_bucket_policy()
                .bucket(bucket(&world))
                .policy(policy)
                .send()
                .await
                .unwrap();
        });
        let root = world.path("roles/root.json");
        let key = world.path("keys/default-key.pem");
        json_ok(
            &world,
            &[
                "setup",
                "--root-role-path",
                s(&root),
                "--default-key-path",
                s(&key),
            ],
        );
        let infra = world.path("Infra.toml");
        std::fs::write(
            &infra,
            format!(
                "[aws]\nregions = [\"us-west-2\"]\n\n[repo.default]\nmetadata_base_url = \"{dest}/\"\ntargets_url = \"{dest}/targets/\"\n",
                dest = dest(&world)
            ),
        )
        .unwrap();
        Release {
            world,
            root,
            key,
            infra,
        }
    }

    fn repo_args(&self, version: &str, outdir: &Path) -> Vec<String> {
        let report = build(self.world.dir.path(), version);
        let mut args = vec!["--infra-config".to_owned(), s(&self.infra).to_owned()];
        args.extend(repo_common::report_repo_args(
            &report, &self.root, &self.key, outdir,
        ));
        args.extend(["--upload".to_owned(), dest(&self.world)]);
        args
    }

    /// `upload-repo` of the signed folder `outdir` to this test's bucket.
    fn upload_args(&self, outdir: &Path) -> Vec<String> {
        [
            "--infra-config",
            s(&self.infra),
            "upload-repo",
            "--variant",
            "aws-dev",
            "--arch",
            "x86_64",
            "--outdir",
            s(outdir),
            "--to",
            &dest(&self.world),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn location_args(&self) -> Vec<String> {
        [
            "--variant",
            "aws-dev",
            "--arch",
            "x86_64",
            "--root-role-path",
            s(&self.root),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn publish_to_s3_then_extend_validate_and_refresh_from_s3() {
    let release = Release::new();
    let world = &release.world;

    // v1.0.0: nothing published yet, so a new repository, uploaded in the safe order.
    let out1 = world.path("out1");
    let r1 = json_ok(world, &strs(&release.repo_args("1.0.0", &out1)));
    assert!(r1["extended"].is_null(), "{r1}");
    let files = r1["upload"]["files"].as_array().unwrap();
    let kinds: Vec<&str> = files.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    let first_metadata = kinds.iter().position(|k| *k != "target").unwrap();
    assert_eq!(
        first_metadata, 6,
        "boot, root, hash, the delta index and store, and the manifest first: {files:?}"
    );
    for suffix in ["-delta.index", "-delta.store"] {
        assert!(
            files[..first_metadata]
                .iter()
                .any(|f| f.to_string().contains(suffix)),
            "{suffix} uploaded with the targets: {files:?}"
        );
    }
    assert!(kinds[first_metadata..].iter().all(|k| *k != "target"));
    assert_eq!(kinds.last(), Some(&"timestamp"));
    let put = puts(world);
    assert_eq!(put.len(), files.len(), "{put:?}");
    assert!(
        put.last()
            .unwrap()
            .ends_with("/repo/aws-dev/x86_64/timestamp.json")
    );
    assert!(
        put[..6].iter().all(|p| p.contains("/repo/targets/")),
        "{put:?}"
    );
    assert!(
        put[6].ends_with("/1.root.json"),
        "root chain before targets.json: {put:?}"
    );
    assert_eq!(versions(&manifest_over_s3(world, &release.root)), ["1.0.0"]);
    assert_eq!(
        versions(&manifest_over_http(world, &release.root)),
        ["1.0.0"]
    );

    // v1.1.0: extended from s3://; the published root is already there and is skipped.
    let out2 = world.path("out2");
    world.proxy.clear_log();
    let r2 = json_ok(world, &strs(&release.repo_args("1.1.0", &out2)));
    assert_eq!(r2["extended"], format!("{}/aws-dev/x86_64/", dest(world)));
    assert_eq!(r2["manifest_updates"], 2);
    let root_entry = r2["upload"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["url"].as_str().unwrap().ends_with("/1.root.json"))
        .unwrap();
    assert_eq!(root_entry["outcome"], "present");
    assert!(!puts(world).iter().any(|p| p.ends_with("1.root.json")));
    assert_eq!(
        versions(&manifest_over_s3(world, &release.root)),
        ["1.0.0", "1.1.0"]
    );

    // validate-repo (every target downloaded and checked) and check-repo-expirations over S3.
    let mut validate = vec!["--infra-config".to_owned(), s(&release.infra).to_owned()];
    validate.push("validate-repo".into());
    validate.extend(release.location_args());
    validate.push("--validate-targets".into());
    let report = json_ok(world, &strs(&validate));
    assert_eq!(
        report["problems"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    let mut check = vec!["--infra-config".to_owned(), s(&release.infra).to_owned()];
    check.push("check-repo-expirations".into());
    check.extend(release.location_args());
    check.extend(["--expiration-limit".into(), "2 days".into()]);
    let output = world.run(&strs(&check));
    assert_eq!(output.status.code(), Some(0));

    // The online refresh: a new timestamp only, published back to S3.
    let mut refresh = vec!["--infra-config".to_owned(), s(&release.infra).to_owned()];
    refresh.push("refresh-repo".into());
    refresh.extend(release.location_args());
    refresh.extend(
        [
            "--roles",
            "timestamp",
            "--default-key-path",
            s(&release.key),
            "--repo-expiration-policy-path",
            s(&workspace().join("pubsys/tests/data/repo-expiration-2w-2w-1w.toml")),
            "--outdir",
            s(&world.path("refreshed")),
            "--upload",
            &dest(world),
        ]
        .map(str::to_owned),
    );
    world.proxy.clear_log();
    let refreshed = json_ok(world, &strs(&refresh));
    assert_eq!(refreshed["signed"].as_array().unwrap().len(), 1);
    let put = puts(world);
    assert!(put.last().unwrap().ends_with("/timestamp.json"), "{put:?}");
    assert_eq!(
        versions(&manifest_over_s3(world, &release.root)),
        ["1.0.0", "1.1.0"]
    );

    // v1.2.0 extends the repository read over plain HTTP (what a CDN in front of the bucket
    // serves hosts) and publishes back to S3.
    let base = format!("{}/{}/repo", world.proxy.url(), bucket(world));
    let http_infra = world.path("Infra-http.toml");
    std::fs::write(
        &http_infra,
        format!(
            "[aws]\nregions = [\"us-west-2\"]\n\n[repo.default]\nmetadata_base_url = \"{base}/\"\ntargets_url = \"{base}/targets/\"\n"
        ),
    )
    .unwrap();
    let mut args = release.repo_args("1.2.0", &world.path("out3"));
    assert_eq!(args[0], "--infra-config");
    args[1] = s(&http_infra).to_owned();
    let r3 = json_ok(world, &strs(&args));
    assert_eq!(r3["extended"], format!("{base}/aws-dev/x86_64/"));
    assert_eq!(
        versions(&manifest_over_s3(world, &release.root)),
        ["1.0.0", "1.1.0", "1.2.0"]
    );
}

#[test]
fn a_publish_that_fails_part_way_leaves_the_repository_valid_and_can_be_finished() {
    let release = Release::new();
    let world = &release.world;
    let out1 = world.path("out1");
    json_ok(world, &strs(&release.repo_args("1.0.0", &out1)));

    // Somebody else's snapshot sits where v1.1.0's must go: the upload stops there, after the
    // targets, root and targets metadata, before snapshot and timestamp.
    let client = s3_client(world);
    let conflict = "repo/aws-dev/x86_64/2.snapshot.json";
    block_on(async {
        client
            .put_object()
            .bucket(bucket(world))
            .key(conflict)
            .body(b"{\"not\": \"ours\"}".to_vec().into())
            .send()
            .await
            .unwrap();
    });
    let out2 = world.path("out2");
    let args = release.repo_args("1.1.0", &out2);
    let output = world.run(&strs(&args));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("2.snapshot.json") && stderr.contains("different content"),
        "{stderr}"
    );
    // Hosts still see a complete, valid v1.0.0 repository.
    assert_eq!(versions(&manifest_over_s3(world, &release.root)), ["1.0.0"]);
    assert_eq!(
        versions(&manifest_over_http(world, &release.root)),
        ["1.0.0"]
    );

    // Clear the conflict and finish the upload from the signed folder, with S3 answering
    // one request in four with 503 SlowDown: the SDK retries, skipped objects stay skipped.
    block_on(async {
        client
            .delete_object()
            .bucket(bucket(world))
            .key(conflict)
            .send()
            .await
            .unwrap();
    });
    world.proxy.clear_log();
    world.proxy.set_rules(vec![
        Rule::sometimes(0.25, Action::ServerError).service("s3"),
    ]);
    let upload = release.upload_args(&out2);
    let upload = strs(&upload);
    let finished = json_ok(world, &upload);
    assert!(world.proxy.faults() > 0, "faults were injected");
    let files = finished["files"].as_array().unwrap();
    let outcome = |suffix: &str| {
        files
            .iter()
            .find(|f| f["url"].as_str().unwrap().ends_with(suffix))
            .map(|f| f["outcome"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(
        outcome("manifest.json"),
        "present",
        "targets were already up"
    );
    assert_eq!(outcome("2.snapshot.json"), "uploaded");
    assert_eq!(outcome("timestamp.json"), "uploaded");
    world.proxy.set_rules(Vec::new());
    assert_eq!(
        versions(&manifest_over_s3(world, &release.root)),
        ["1.0.0", "1.1.0"]
    );

    // Running it again sends nothing.
    let again = json_ok(world, &upload);
    assert_eq!(again["uploaded_bytes"], 0, "{again}");
    assert!(
        again["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["outcome"] == "present")
    );

    // An upload of a folder with nothing signed is refused clearly.
    let empty = world.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = world.run(&[
        "upload-repo",
        "--variant",
        "aws-dev",
        "--arch",
        "x86_64",
        "--outdir",
        s(&empty),
        "--to",
        &dest(world),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no timestamp.json"));
}

#[test]
fn upload_checks_target_bytes_against_their_names_locally_and_in_the_bucket() {
    let release = Release::new();
    let world = &release.world;
    let out = world.path("out");
    // Sign without uploading (the last two arguments are `--upload DEST`).
    let mut args = release.repo_args("1.0.0", &out);
    args.truncate(args.len() - 2);
    json_ok(world, &strs(&args));
    let manifest = std::fs::read_dir(out.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".manifest.json"))
        .unwrap();
    let name = manifest.file_name().unwrap().to_str().unwrap().to_owned();
    let good = std::fs::read(&manifest).unwrap();
    let upload = release.upload_args(&out);
    let upload = strs(&upload);
    let client = s3_client(world);
    let exists = |key: &str| {
        block_on(async {
            client
                .head_object()
                .bucket(bucket(world))
                .key(key)
                .send()
                .await
                .is_ok()
        })
    };

    // An object put by another tool (without our sha256 metadata) under the manifest's key.
    let put_foreign = |bytes: Vec<u8>| {
        block_on(async {
            client
                .put_object()
                .bucket(bucket(world))
                .key(format!("repo/targets/{name}"))
                .body(bytes.into())
                .send()
                .await
                .unwrap();
        });
    };

    // The signed folder changed since: the upload refuses before any metadata goes up.
    let mut tampered = good.clone();
    tampered[0] ^= 0x20;
    std::fs::write(&manifest, &tampered).unwrap();
    let output = world.run(&upload);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not hold what its name says"),
        "{stderr}"
    );
    assert!(!exists("repo/aws-dev/x86_64/timestamp.json"));
    assert!(!exists(&format!("repo/targets/{name}")));
    std::fs::write(&manifest, &good).unwrap();

    // In the bucket, another tool's object of the same size (no sha256 metadata of ours)
    // under the content-addressed key: read back and refused, not believed by its name.
    put_foreign(tampered.clone());
    let output = world.run(&upload);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("different content"), "{stderr}");
    assert!(!exists("repo/aws-dev/x86_64/timestamp.json"));

    // The same bytes uploaded by another tool are recognised as present.
    put_foreign(good.clone());
    let report = json_ok(world, &upload);
    let files = report["files"].as_array().unwrap();
    let manifest_file = files
        .iter()
        .find(|f| f["url"].as_str().unwrap().ends_with(&name))
        .unwrap();
    assert_eq!(manifest_file["outcome"], "present");
    assert_eq!(versions(&manifest_over_s3(world, &release.root)), ["1.0.0"]);
}
