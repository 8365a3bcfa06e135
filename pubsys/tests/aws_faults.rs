//! Faults injected by the loopback proxy: throttling and 5xx answers on 20% of all calls.
//! The publish must still complete, with exactly one AMI per region and every parameter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aws_common;

use aws_common::{FAST, World, images_named, json, sparse_image};
use std::path::PathBuf;
use test_support::proxy::{Action, Rule};

fn flaky() -> Vec<Rule> {
    vec![
        Rule::sometimes(0.10, Action::Throttle),
        Rule::sometimes(0.11, Action::ServerError),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn ami_and_ssm_complete_through_throttling_and_server_errors() {
    let world = World::with_rules(flaky());
    let image = world.path("os.img");
    sparse_image(
        &image,
        16 << 20,
        &[(0, 1), (3, 2), (9, 3), (20, 4), (31, 5)],
    );
    let out = world.path("amis.json");
    let regions = "us-west-2,us-east-1,eu-west-1,ap-northeast-1";
    let mut args = vec![
        "ami",
        "--os-image",
        image.to_str().unwrap(),
        "--name",
        "flaky",
        "--regions",
        regions,
        "--ami-output",
        out.to_str().unwrap(),
        "--poll-interval",
        "50ms",
        "--no-progress",
    ];
    args.extend(FAST);
    let output = world.run(&args);
    assert!(output.status.success());
    assert!(world.proxy.faults() > 0, "faults were injected");
    let amis = json(&out);
    assert_eq!(amis.as_object().unwrap().len(), 4);
    let aws = world.aws().await;
    for region in regions.split(',') {
        assert_eq!(
            images_named(&aws, region, "flaky").await.len(),
            1,
            "{region}"
        );
    }

    let infra = world.infra(
        &["us-west-2", "us-east-1", "eu-west-1", "ap-northeast-1"],
        "/flaky",
    );
    let params = world.path("ssm.json");
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ssm-defaults.toml");
    let faults_before = world.proxy.faults();
    let mut args = vec![
        "--infra-config",
        infra.to_str().unwrap(),
        "ssm",
        "--ami-input",
        out.to_str().unwrap(),
        "--arch",
        "x86_64",
        "--variant",
        "v",
        "--version",
        "1.0.0",
        "--template-path",
        templates.to_str().unwrap(),
        "--ssm-parameter-output",
        params.to_str().unwrap(),
        "--rate",
        "100",
    ];
    args.extend(FAST);
    let output = world.run(&args);
    assert!(output.status.success());
    assert!(world.proxy.faults() > faults_before);
    let written = json(&params);
    for region in regions.split(',') {
        assert_eq!(written[region].as_object().unwrap().len(), 2, "{region}");
    }
}
