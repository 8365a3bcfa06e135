//! `pubsys ami`, `publish-ami` and `validate-ami` against the moto server.
//!
//! moto keeps only name and description from RegisterImage, so registration properties are
//! checked on the request pubsys sent (recorded by the proxy); uploaded content is checked
//! byte for byte with GetSnapshotBlock; idempotency by counting AMIs per region by name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aws_common;

use aws_common::{
    BLOCK, FAST, World, images_named, json, launch_permissions, recorded_permissions,
    snapshot_permissions, sparse_image,
};
use pubsys::aws::amis::LaunchPermission;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use test_support::proxy::{Action, Rule};

const REGIONS: &str = "us-west-2,us-east-1,eu-west-1";

fn ami_args<'a>(world: &'a World, image: &'a str, out: &'a str, name: &'a str) -> Vec<String> {
    ami_args_in(world, image, out, name, REGIONS)
}

/// `ami_args` for a comma-separated list of regions (the first is the base region).
fn ami_args_in(world: &World, image: &str, out: &str, name: &str, regions: &str) -> Vec<String> {
    let _ = world;
    let mut args: Vec<String> = [
        "ami",
        "--os-image",
        image,
        "--name",
        name,
        "--regions",
        regions,
        "--ami-output",
        out,
        "--poll-interval",
        "50ms",
        "--no-progress",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(FAST.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn ami_uploads_registers_copies_and_reruns_without_duplicates() {
    let world = World::new();
    let image = world.path("os.img");
    // 64 MiB, three non-zero blocks including a short tail-free last block.
    sparse_image(&image, 64 << 20, &[(0, 0xAA), (5, 0x01), (127, 0x7F)]);
    let out = world.path("amis.json");
    let name = "bottlerocket-aws-test-x86_64-v1.0.0-abc";
    let mut args = ami_args(&world, image.to_str().unwrap(), out.to_str().unwrap(), name);
    args.extend(
        [
            "--tag",
            "team=os",
            "--imdsv2",
            "--tpm",
            // No --boot-mode: an x86_64 image is registered uefi-preferred by default.
            "--volume-type",
            "gp3",
            "--os-volume-size",
            "4",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = world.run(&args);
    assert!(output.status.success());

    // amis.json: every region, same name, private.
    let amis = json(&out);
    let regions = amis.as_object().unwrap();
    assert_eq!(regions.len(), 3, "{amis}");
    for (_, image) in regions {
        assert_eq!(image["name"], name);
        assert_eq!(image["public"], false);
        assert!(image["id"].as_str().unwrap().starts_with("ami-"));
    }

    // What was sent: three blocks, each with its SHA-256; completion with the count and the
    // linear aggregate.
    assert_eq!(world.sent("StartSnapshot"), 1);
    let blocks = world.proxy.forwarded("PutSnapshotBlock");
    assert_eq!(blocks.len(), 3);
    let complete = &world.proxy.forwarded("CompleteSnapshot")[0];
    assert_eq!(complete.header("x-amz-ChangedBlocksCount"), Some("3"));
    assert_eq!(
        complete.header("x-amz-Checksum-Aggregation-Method"),
        Some("LINEAR")
    );
    let data = std::fs::read(&image).unwrap();
    let digests: Vec<[u8; 32]> = [0u64, 5, 127]
        .iter()
        .map(|&i| {
            pubsys::aws::snapshot::sha256(&data[(i * BLOCK) as usize..((i + 1) * BLOCK) as usize])
        })
        .collect();
    assert_eq!(
        complete.header("x-amz-Checksum"),
        Some(pubsys::aws::snapshot::base64(&pubsys::aws::snapshot::aggregate(&digests)).as_str())
    );
    for block in &blocks {
        let index: u64 = block.path.rsplit('/').next().unwrap().parse().unwrap();
        let expected = pubsys::aws::snapshot::base64(&pubsys::aws::snapshot::sha256(
            &data[(index * BLOCK) as usize..((index + 1) * BLOCK) as usize],
        ));
        assert_eq!(block.header("x-amz-Checksum"), Some(expected.as_str()));
        assert_eq!(block.header("x-amz-Checksum-Algorithm"), Some("SHA256"));
    }

    // The stored content, byte for byte.
    let aws = world.aws().await;
    let snapshot_id = blocks[0].path.split('/').nth(2).unwrap().to_owned();
    let ebs = aws.ebs("us-west-2").await.unwrap();
    let listed = ebs
        .list_snapshot_blocks()
        .snapshot_id(&snapshot_id)
        .send()
        .await
        .unwrap();
    for block in listed.blocks() {
        let index = block.block_index().unwrap() as u64;
        let got = ebs
            .get_snapshot_block()
            .snapshot_id(&snapshot_id)
            .block_index(index as i32)
            .block_token(block.block_token().unwrap())
            .send()
            .await
            .unwrap();
        let bytes = got.block_data.collect().await.unwrap().into_bytes();
        assert_eq!(
            &bytes[..],
            &data[(index * BLOCK) as usize..((index + 1) * BLOCK) as usize]
        );
    }

    // Registration properties, as sent.
    let register = &world.proxy.forwarded("RegisterImage")[0];
    for (key, value) in [
        ("Name", name),
        ("Architecture", "x86_64"),
        ("RootDeviceName", "/dev/xvda"),
        ("VirtualizationType", "hvm"),
        ("EnaSupport", "true"),
        ("SriovNetSupport", "simple"),
        ("BootMode", "uefi-preferred"),
        ("ImdsSupport", "v2.0"),
        ("TpmSupport", "v2.0"),
        ("BlockDeviceMapping.1.DeviceName", "/dev/xvda"),
        ("BlockDeviceMapping.1.Ebs.VolumeType", "gp3"),
        ("BlockDeviceMapping.1.Ebs.VolumeSize", "4"),
        ("BlockDeviceMapping.1.Ebs.SnapshotId", snapshot_id.as_str()),
        ("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true"),
    ] {
        assert_eq!(register.param(key).as_deref(), Some(value), "{key}");
    }
    let copies = world.proxy.forwarded("CopyImage");
    assert_eq!(copies.len(), 2);
    for copy in &copies {
        assert_eq!(copy.param("SourceRegion").as_deref(), Some("us-west-2"));
        assert!(copy.param("ClientToken").is_some());
    }
    // --deprecation-time and the role chain: see role_chain_and_deprecation_time.
    let tagged = world
        .proxy
        .forwarded("CreateTags")
        .iter()
        .filter(|r| r.body_text().contains("team"))
        .count();
    assert!(tagged >= 3, "tags applied in every region");

    // One AMI per region.
    for region in REGIONS.split(',') {
        assert_eq!(images_named(&aws, region, name).await.len(), 1, "{region}");
    }

    // A re-run finds everything by name: no upload, registration or copy.
    world.proxy.clear_log();
    let ids_before = amis.clone();
    let output = world.run(&args);
    assert!(output.status.success());
    assert_eq!(world.sent("StartSnapshot"), 0);
    assert_eq!(world.sent("RegisterImage"), 0);
    assert_eq!(world.sent("CopyImage"), 0);
    assert_eq!(json(&out), ids_before);
    for region in REGIONS.split(',') {
        assert_eq!(images_named(&aws, region, name).await.len(), 1, "{region}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_during_the_copies_is_finished_by_a_rerun() {
    // The second CopyImage hangs, so the run is killed with one copy done and one in flight.
    let world = World::with_rules(vec![
        Rule::always(Action::Delay(Duration::from_secs(120)))
            .operation("CopyImage")
            .after(1),
    ]);
    let image = world.path("os.img");
    sparse_image(&image, 8 << 20, &[(1, 0x11)]);
    let out = world.path("amis.json");
    let name = "crash-test";
    let mut args = ami_args(&world, image.to_str().unwrap(), out.to_str().unwrap(), name);
    args.extend(
        [
            "--copy-concurrency",
            "1",
            "--regions",
            "us-west-2,us-east-1,eu-west-1,ap-south-1",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = world.spawn(&args);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The base and the first copy are recorded; with --copy-concurrency 1 the second copy
        // starts next and its CopyImage hangs (the rule above). (The copy regions' lookups by
        // name run up front, while the base AMI is made, so they say nothing about progress.)
        let recorded = out.exists() && json(&out).as_object().map(|o| o.len()).unwrap_or(0) >= 2;
        if recorded {
            break;
        }
        assert!(Instant::now() < deadline, "the first copy never finished");
        assert!(child.try_wait().unwrap().is_none(), "pubsys ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(json(&out).as_object().unwrap().len() < 4);

    world.proxy.set_rules(Vec::new());
    world.proxy.clear_log();
    let output = world.run(&args);
    assert!(output.status.success());
    assert_eq!(world.sent("StartSnapshot"), 0, "the snapshot is reused");
    assert_eq!(world.sent("RegisterImage"), 0, "the AMI is reused");
    let amis = json(&out);
    assert_eq!(amis.as_object().unwrap().len(), 4, "{amis}");
    let aws = world.aws().await;
    for region in ["us-west-2", "us-east-1", "eu-west-1", "ap-south-1"] {
        let ids = images_named(&aws, region, name).await;
        assert_eq!(ids.len(), 1, "{region}: {ids:?}");
        assert_eq!(amis[region]["id"], ids[0].as_str());
    }
    // Exactly one snapshot carries the upload (moto's own snapshot behind the registered AMI
    // gets the name tag too, but not the upload's volume tag).
    let ec2 = aws.ec2("us-west-2").await.unwrap();
    let snapshots = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:pubsys:ami-name")
                .values(name)
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:pubsys:volume")
                .values("os")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(snapshots.snapshots().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuilt_image_under_an_old_name_gets_neither_the_old_snapshot_nor_the_old_ami() {
    // Run 1 is killed while its RegisterImage hangs: the snapshot of image A is complete and
    // tagged with the name, but no AMI exists.
    let world = World::with_rules(vec![
        Rule::always(Action::Delay(Duration::from_secs(120))).operation("RegisterImage"),
    ]);
    let image = world.path("os.img");
    sparse_image(&image, 8 << 20, &[(1, 0x11)]);
    let out = world.path("amis.json");
    let name = "rebuilt-test";
    let mut args = ami_args(&world, image.to_str().unwrap(), out.to_str().unwrap(), name);
    args.extend(["--regions", "us-west-2"].iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = world.spawn(&args);
    let deadline = Instant::now() + Duration::from_secs(60);
    // The snapshot is tagged complete just before RegisterImage (which then hangs).
    let complete = || {
        world
            .proxy
            .forwarded("CreateTags")
            .iter()
            .any(|r| r.body_text().contains("complete"))
    };
    while !complete() {
        assert!(Instant::now() < deadline, "the snapshot never completed");
        assert!(child.try_wait().unwrap().is_none(), "pubsys ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();

    // Image B under the same name: A's snapshot is not reused, B is uploaded and registered.
    sparse_image(&image, 8 << 20, &[(1, 0x22)]);
    world.proxy.set_rules(Vec::new());
    world.proxy.clear_log();
    assert!(world.run(&args).status.success());
    assert_eq!(
        world.sent("StartSnapshot"),
        1,
        "B is uploaded, not A's snapshot reused"
    );
    let block = &world.proxy.forwarded("PutSnapshotBlock")[0];
    let new_snapshot = block.path.split('/').nth(2).unwrap().to_owned();
    let register = &world.proxy.forwarded("RegisterImage")[0];
    assert_eq!(
        register
            .param("BlockDeviceMapping.1.Ebs.SnapshotId")
            .as_deref(),
        Some(new_snapshot.as_str())
    );

    // Image C under the same name: the AMI exists, made from B: refused, nothing registered.
    sparse_image(&image, 8 << 20, &[(1, 0x33)]);
    world.proxy.clear_log();
    let output = world.run(&args);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("made from other images"), "{stderr}");
    assert_eq!(world.sent("RegisterImage") + world.sent("StartSnapshot"), 0);

    // B again: the AMI holds exactly B, so it is reused as it is.
    sparse_image(&image, 8 << 20, &[(1, 0x22)]);
    world.proxy.clear_log();
    assert!(world.run(&args).status.success());
    assert_eq!(world.sent("RegisterImage") + world.sent("StartSnapshot"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_copy_under_the_name_is_not_reused_for_a_rebuilt_image() {
    // Image A is published to two regions.
    let world = World::new();
    let image = world.path("os.img");
    sparse_image(&image, 8 << 20, &[(1, 0x11)]);
    let out = world.path("amis.json");
    let name = "old-copy-test";
    let args = ami_args_in(
        &world,
        image.to_str().unwrap(),
        out.to_str().unwrap(),
        name,
        "us-west-2,us-east-1",
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(world.run(&args).status.success());
    let aws = world.aws().await;
    let old_copy = images_named(&aws, "us-east-1", name).await;
    assert_eq!(old_copy.len(), 1);

    // The operator deregisters the base AMI (as the reuse error says to) and rebuilds the image
    // under the same name: the base region registers B; the copy of A left in us-east-1 must
    // not be taken for B's copy.
    let base = images_named(&aws, "us-west-2", name).await;
    aws.ec2("us-west-2")
        .await
        .unwrap()
        .deregister_image()
        .image_id(&base[0])
        .send()
        .await
        .unwrap();
    sparse_image(&image, 8 << 20, &[(1, 0x22)]);
    world.proxy.clear_log();
    let output = world.run(&args);
    assert_eq!(output.status.code(), Some(1), "a region failed");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains(&old_copy[0]) && said.contains("made from other images"),
        "{said}"
    );
    assert_eq!(
        world.sent("RegisterImage"),
        1,
        "B is registered in the base region"
    );
    assert_eq!(
        world.sent("CopyImage"),
        0,
        "nothing copied over the old name"
    );
    let recorded = json(&out);
    assert_ne!(
        recorded["us-east-1"]["id"].as_str(),
        Some(old_copy[0].as_str()),
        "amis.json does not name A's copy as B's: {recorded}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_ami_grants_revokes_and_merges_and_validate_ami_checks() {
    let world = World::new();
    let image = world.path("os.img");
    sparse_image(&image, 4 << 20, &[(0, 1)]);
    let out = world.path("amis.json");
    let args = ami_args(
        &world,
        image.to_str().unwrap(),
        out.to_str().unwrap(),
        "perm-test",
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(world.run(&args).status.success());
    let out_s = out.to_str().unwrap();

    let mut grant = vec![
        "publish-ami",
        "--ami-input",
        out_s,
        "--grant",
        "--group-names",
        "all",
        "--user-ids",
        "111122223333",
        "--regions",
        "us-east-1",
        "--poll-interval",
        "50ms",
    ];
    grant.extend(FAST);
    assert!(world.run(&grant).status.success());
    let amis = json(&out);
    assert_eq!(amis.as_object().unwrap().len(), 3, "other regions kept");
    assert_eq!(amis["us-east-1"]["public"], true);
    let permissions = amis["us-east-1"]["launch_permissions"].as_array().unwrap();
    assert!(permissions.contains(&serde_json::json!({"group": "all"})));
    assert!(permissions.contains(&serde_json::json!({"userid": "111122223333"})));
    assert_eq!(amis["us-west-2"]["public"], false);
    // Snapshots shared in the flat form AWS and moto both honour.
    let shared = world.proxy.forwarded("ModifySnapshotAttribute");
    assert!(!shared.is_empty());
    assert_eq!(shared[0].param("UserId.1").as_deref(), Some("111122223333"));
    assert_eq!(shared[0].param("UserGroup.1").as_deref(), Some("all"));
    assert_eq!(shared[0].param("OperationType").as_deref(), Some("add"));

    // validate-ami agrees with the file.
    let mut validate = vec!["validate-ami", "--expected-amis-path", out_s, "--json"];
    validate.extend(FAST);
    let output = world.run(&validate);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["us-east-1"]["correct"], 1);
    assert_eq!(report["us-west-2"]["incorrect"], 0);

    // Revoke public: the file follows, still with every region.
    let mut revoke = grant.clone();
    revoke[3] = "--revoke";
    assert!(world.run(&revoke).status.success());
    let amis = json(&out);
    assert_eq!(amis.as_object().unwrap().len(), 3);
    assert_eq!(amis["us-east-1"]["public"], false);
    assert_eq!(
        amis["us-east-1"]["launch_permissions"],
        serde_json::json!([])
    );

    // A wrong expectation and a missing AMI: exit 3, results written.
    let mut expected = amis.clone();
    expected["us-east-1"]["public"] = serde_json::json!(true);
    expected["eu-west-1"]["id"] = serde_json::json!("ami-00000000000000000");
    let expected_path = world.path("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();
    let results = world.path("results.json");
    let mut validate = vec![
        "validate-ami",
        "--expected-amis-path",
        expected_path.to_str().unwrap(),
        "--write-results-path",
        results.to_str().unwrap(),
        "--write-results-filter",
        "Incorrect",
        "--write-results-filter",
        "Missing",
        "--json",
    ];
    validate.extend(FAST);
    let output = world.run(&validate);
    assert_eq!(output.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["us-east-1"]["incorrect"], 1);
    assert_eq!(report["eu-west-1"]["missing"], 1);
    assert_eq!(report["us-west-2"]["correct"], 1);
    let written = json(&results);
    assert_eq!(written.as_array().unwrap().len(), 2);
}

#[test]
fn bad_input_is_refused_before_any_call() {
    let world = World::new();
    let out = world.path("amis.json");
    std::fs::write(&out, "{}").unwrap();
    let output = world.run(&[
        "publish-ami",
        "--ami-input",
        out.to_str().unwrap(),
        "--grant",
        "--group-names",
        "all",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("lists no AMIs"));
    let output = world.run(&["ami", "--os-image", "/nonexistent", "--name", "x"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("No regions"));
    assert!(world.proxy.requests().is_empty());
}

/// What moto lacks: EnableImageDeprecation. The proxy answers it so the test can check what
/// pubsys sent.
const DEPRECATION_OK: &str = r#"<EnableImageDeprecationResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>proxy</requestId><return>true</return></EnableImageDeprecationResponse>"#;

/// GetCallerIdentity as answered to us-east-1's role: another account.
const OTHER_ACCOUNT_IDENTITY: &str = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>arn:aws:sts::222233334444:assumed-role/east-publisher/pubsys</Arn><UserId>AROAEXAMPLE:pubsys</UserId><Account>222233334444</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>proxy</RequestId></ResponseMetadata></GetCallerIdentityResponse>"#;

/// The access key that signed a request (SigV4 `Credential=KEY/date/region/service/...`).
fn signing_key(request: &test_support::proxy::Recorded) -> String {
    request
        .header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn role_chain_and_deprecation_time() {
    // moto files every call under the proxy's account, so the other account of us-east-1's
    // role is stood in for by the proxy answering that region's GetCallerIdentity.
    let world = World::with_rules(vec![
        Rule::always(Action::Answer(200, DEPRECATION_OK))
            .service("ec2")
            .operation("EnableImageDeprecation"),
        Rule::always(Action::Answer(200, OTHER_ACCOUNT_IDENTITY))
            .service("sts")
            .operation("GetCallerIdentity")
            .region("us-east-1"),
    ]);
    let image = world.path("os.img");
    sparse_image(&image, 4 * BLOCK, &[(0, 1), (3, 2)]);
    let global = format!("arn:aws:iam::{}:role/publisher", world.account);
    // us-east-1 publishes from another account: the base AMI must be shared with it first.
    let east = "arn:aws:iam::222233334444:role/east-publisher".to_owned();
    let infra = world.path("Infra.toml");
    std::fs::write(
        &infra,
        format!(
            "[aws]\nregions = [\"us-west-2\", \"us-east-1\"]\nrole = \"{global}\"\n\n[aws.region.us-east-1]\nrole = \"{east}\"\n"
        ),
    )
    .unwrap();
    let out = world.path("amis.json");
    let mut args = vec![
        "--infra-config",
        infra.to_str().unwrap(),
        "ami",
        "--os-image",
        image.to_str().unwrap(),
        "--name",
        "role-chain",
        "--ami-output",
        out.to_str().unwrap(),
        "--poll-interval",
        "50ms",
        "--no-progress",
        "--deprecation-time",
        "2030-01-01T00:00:00Z",
    ];
    args.extend(FAST);
    let output = world.run(&args);
    assert!(output.status.success());

    // STS in the base region: the global role assumed with the base credentials, the region's
    // role with the global role's credentials.
    let assumes = world.proxy.forwarded("AssumeRole");
    let by_role = |arn: &str| {
        assumes
            .iter()
            .find(|r| r.param("RoleArn").as_deref() == Some(arn))
            .unwrap_or_else(|| panic!("no AssumeRole for {arn}"))
    };
    assert!(
        assumes.iter().all(|r| r.region == "us-west-2"),
        "STS in the base region"
    );
    assert_eq!(signing_key(by_role(&global)), "testing");
    let global_key = signing_key(by_role(&east));
    assert_ne!(
        global_key, "testing",
        "the region role is assumed from the global role"
    );

    // EC2 and EBS: every call is signed with assumed-role credentials, never the base key, and
    // us-east-1 (its own role) never shares a key with the base region (the global role).
    // moto hands out a new key per AssumeRole, so keys are compared as sets.
    let requests = world.proxy.requests();
    let work = |region: &str| -> std::collections::BTreeSet<String> {
        requests
            .iter()
            .filter(|r| (r.service == "ec2" || r.service == "ebs") && r.region == region)
            .map(signing_key)
            .collect()
    };
    let (west, east_keys) = (work("us-west-2"), work("us-east-1"));
    assert!(!west.is_empty() && !east_keys.is_empty());
    assert!(!west.contains("testing") && !east_keys.contains("testing"));
    assert!(west.is_disjoint(&east_keys), "{west:?} vs {east_keys:?}");
    assert!(
        !east_keys.contains(&global_key),
        "us-east-1 works as its own role"
    );

    // The other account was given the base AMI and its snapshot (in the base region) before
    // its copy.
    for operation in ["ModifyImageAttribute", "ModifySnapshotAttribute"] {
        let grants: Vec<_> = requests
            .iter()
            .filter(|r| r.operation == operation && r.region == "us-west-2")
            .collect();
        assert_eq!(grants.len(), 1, "{operation}");
        assert!(
            grants[0].body_text().contains("222233334444"),
            "{operation}: {}",
            grants[0].body_text()
        );
    }

    // --deprecation-time: sent for the AMI in each region, with the time given.
    let deprecations: Vec<_> = requests
        .iter()
        .filter(|r| r.operation == "EnableImageDeprecation")
        .collect();
    let mut regions: Vec<&str> = deprecations.iter().map(|r| r.region.as_str()).collect();
    regions.sort_unstable();
    assert_eq!(regions, ["us-east-1", "us-west-2"]);
    for request in deprecations {
        assert_eq!(
            request.param("DeprecateAt").as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        assert!(request.param("ImageId").unwrap().starts_with("ami-"));
    }
    let amis = json(&out);
    assert!(
        amis["us-east-1"]["id"]
            .as_str()
            .unwrap()
            .starts_with("ami-")
    );

    // amis.json records the base AMI's grant to the other account, as EC2 has it, and
    // validate-ami agrees.
    let base_id = amis["us-west-2"]["id"].as_str().unwrap();
    let on_base = launch_permissions(&world.aws().await, "us-west-2", base_id).await;
    assert!(on_base.contains(&LaunchPermission::UserId("222233334444".into())));
    assert_eq!(recorded_permissions(&out, "us-west-2"), on_base, "{amis}");
    assert_eq!(amis["us-west-2"]["public"], false);
    assert!(amis["us-west-2"].get("pending").is_none(), "{amis}");
    validate_agrees(&world, &out, &["--infra-config", infra.to_str().unwrap()]);
}

/// An account the publish-ami tests share with.
const SHARED_ACCOUNT: &str = "111122223333";

/// An AMI called `name` in us-west-2 only; returns amis.json and the AMI ID.
fn one_region_ami(world: &World, name: &str) -> (std::path::PathBuf, String) {
    let image = world.path("os.img");
    sparse_image(&image, 4 << 20, &[(0, 1)]);
    let out = world.path("amis.json");
    let args = ami_args_in(
        world,
        image.to_str().unwrap(),
        out.to_str().unwrap(),
        name,
        "us-west-2",
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(world.run(&args).status.success());
    let id = json(&out)["us-west-2"]["id"].as_str().unwrap().to_owned();
    (out, id)
}

/// `publish-ami` in us-west-2 with `mode` (`--grant` or `--revoke`) and `principals`.
fn publish_args<'a>(out: &'a str, mode: &'a str, principals: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["publish-ami", "--ami-input", out, mode];
    args.extend(principals);
    args.extend(["--regions", "us-west-2", "--poll-interval", "50ms"]);
    args.extend(FAST);
    args
}

/// `validate-ami` on `out`: the exit code and the JSON report.
fn validate_ami(world: &World, out: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut validate = extra.to_vec();
    validate.extend([
        "validate-ami",
        "--expected-amis-path",
        out.to_str().unwrap(),
        "--json",
    ]);
    validate.extend(FAST);
    let output = world.run(&validate);
    let report = serde_json::from_slice(&output.stdout).unwrap();
    (output.status.code(), report)
}

/// `validate-ami` on `out`: exit 0 and the region's AMI correct.
fn validate_agrees(world: &World, out: &Path, extra: &[&str]) {
    let (code, report) = validate_ami(world, out, extra);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["us-west-2"]["correct"], 1, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_ami_stopped_at_any_step_never_shares_more_than_amis_json_records() {
    let world = World::new();
    let (out, image_id) = one_region_ami(&world, "stop-test");
    let out_s = out.to_str().unwrap();
    let aws = world.aws().await;
    let principals = ["--group-names", "all", "--user-ids", SHARED_ACCOUNT];
    let granted: BTreeSet<LaunchPermission> = [
        LaunchPermission::Group("all".into()),
        LaunchPermission::UserId(SHARED_ACCOUNT.into()),
    ]
    .into();
    // Each permission call in turn never returns (the process is killed while it waits), for
    // a grant and then for a revoke of what the re-run granted.
    for step in ["ModifyImageAttribute", "ModifySnapshotAttribute"] {
        for mode in ["--grant", "--revoke"] {
            let args = publish_args(out_s, mode, &principals);
            world.proxy.clear_log();
            world
                .proxy
                .set_rules(vec![Rule::always(Action::Hang).operation(step)]);
            let mut child = world.spawn(&args);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !world
                .proxy
                .requests()
                .iter()
                .any(|r| r.operation == step && r.fault == Some(Action::Hang))
            {
                assert!(Instant::now() < deadline, "{mode}: {step} never sent");
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "{mode}: pubsys ended before {step}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            child.kill().unwrap();
            child.wait().unwrap();

            // Stopped there: everything shared is in amis.json, the snapshots are never shared
            // beyond the AMI, and the record says a change is unfinished.
            let record = recorded_permissions(&out, "us-west-2");
            let on_image = launch_permissions(&aws, "us-west-2", &image_id).await;
            let on_snapshots = snapshot_permissions(&aws, "us-west-2", &image_id).await;
            let at = format!("{mode} stopped at {step}");
            assert!(
                on_image.is_subset(&record),
                "{at}: the AMI is shared with {on_image:?}, amis.json records {record:?}"
            );
            assert!(
                on_snapshots.is_subset(&record),
                "{at}: the snapshots are shared with {on_snapshots:?}, amis.json records \
                 {record:?}"
            );
            assert!(
                on_snapshots.is_subset(&on_image),
                "{at}: snapshots {on_snapshots:?}, AMI {on_image:?}"
            );
            assert_eq!(
                json(&out)["us-west-2"]["pending"]["operation"],
                mode.trim_start_matches('-'),
                "{at}"
            );
            let (code, report) = validate_ami(&world, &out, &[]);
            assert_eq!(code, Some(3), "{at}: {report}");
            assert_eq!(report["us-west-2"]["incorrect"], 1, "{at}: {report}");

            // A re-run of the same command finishes the change.
            world.proxy.set_rules(Vec::new());
            assert!(world.run(&args).status.success(), "{at}: re-run");
            let expected = if mode == "--grant" {
                granted.clone()
            } else {
                BTreeSet::new()
            };
            assert_eq!(
                launch_permissions(&aws, "us-west-2", &image_id).await,
                expected,
                "{at}"
            );
            assert_eq!(
                snapshot_permissions(&aws, "us-west-2", &image_id).await,
                expected,
                "{at}"
            );
            let amis = json(&out);
            assert_eq!(recorded_permissions(&out, "us-west-2"), expected, "{at}");
            assert_eq!(amis["us-west-2"]["public"], mode == "--grant", "{at}");
            assert!(amis["us-west-2"].get("pending").is_none(), "{at}: {amis}");
            validate_agrees(&world, &out, &[]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_ami_grants_and_revokes_organizations_and_organizational_units() {
    let world = World::new();
    let (out, image_id) = one_region_ami(&world, "org-test");
    let out_s = out.to_str().unwrap();
    let aws = world.aws().await;
    let org = "arn:aws:organizations::123456789012:organization/o-exampleorg1";
    let ou = "arn:aws:organizations::123456789012:ou/o-exampleorg1/ou-ab12-cdef3456";
    let principals = ["--organization-arns", org, "--organizational-unit-arns", ou];
    let shared: BTreeSet<LaunchPermission> = [
        LaunchPermission::OrganizationArn(org.into()),
        LaunchPermission::OrganizationalUnitArn(ou.into()),
    ]
    .into();

    for (mode, operation, expected) in [
        ("--grant", "add", shared.clone()),
        ("--revoke", "remove", BTreeSet::new()),
    ] {
        world.proxy.clear_log();
        assert!(
            world
                .run(&publish_args(out_s, mode, &principals))
                .status
                .success()
        );
        // Sent: one ModifyImageAttribute with both ARNs; snapshots take no org or OU.
        let sent = world.proxy.forwarded("ModifyImageAttribute");
        assert_eq!(sent.len(), 1, "{mode}");
        for (key, value) in [
            ("ImageId", image_id.as_str()),
            ("Attribute", "launchPermission"),
            ("OperationType", operation),
            ("OrganizationArn.1", org),
            ("OrganizationalUnitArn.1", ou),
        ] {
            assert_eq!(sent[0].param(key).as_deref(), Some(value), "{mode}: {key}");
        }
        assert!(sent[0].param("UserId.1").is_none() && sent[0].param("UserGroup.1").is_none());
        assert_eq!(world.sent("ModifySnapshotAttribute"), 0, "{mode}");
        // Stored, recorded, and validate-ami agrees.
        assert_eq!(
            launch_permissions(&aws, "us-west-2", &image_id).await,
            expected,
            "{mode}"
        );
        assert!(
            snapshot_permissions(&aws, "us-west-2", &image_id)
                .await
                .is_empty()
        );
        let amis = json(&out);
        assert_eq!(recorded_permissions(&out, "us-west-2"), expected, "{amis}");
        assert_eq!(amis["us-west-2"]["public"], false);
        validate_agrees(&world, &out, &[]);
    }
}
