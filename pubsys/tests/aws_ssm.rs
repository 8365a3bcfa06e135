//! `pubsys ssm`, `promote-ssm` and `validate-ssm` against the moto server, with the
//! reference default templates (`tests/data/ssm-defaults.toml`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aws_common;

use aws_common::{FAST, World, json};
use std::path::PathBuf;
use test_support::proxy::{Action, Rule};

const PREFIX: &str = "/test/pubsys";

fn templates() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ssm-defaults.toml")
}

/// An amis.json naming two made-up AMIs (SSM does not check them outside /aws/).
fn fake_amis(world: &World, east: &str) -> PathBuf {
    let path = world.path("amis.json");
    std::fs::write(
        &path,
        serde_json::json!({
            "us-west-2": {"id": "ami-0aaaaaaaaaaaaaaaa", "name": "br-1", "public": false, "launch_permissions": []},
            "us-east-1": {"id": east, "name": "br-1"}
        })
        .to_string(),
    )
    .unwrap();
    path
}

fn ssm_args<'a>(infra: &'a str, amis: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--infra-config",
        infra,
        "ssm",
        "--ami-input",
        amis,
        "--arch",
        "amd64",
        "--variant",
        "aws-dev",
        "--version",
        "1.0.0-abc",
        "--template-path",
        templates_str(),
        "--ssm-parameter-output",
        out,
        "--rate",
        "200",
    ];
    args.extend_from_slice(extra);
    args.extend(FAST);
    args
}

fn templates_str() -> &'static str {
    Box::leak(templates().to_str().unwrap().to_owned().into_boxed_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn ssm_sets_guards_clobbering_promotes_and_validates() {
    let world = World::new();
    let infra = world.infra(&["us-west-2", "us-east-1"], PREFIX);
    let infra = infra.to_str().unwrap();
    let amis = fake_amis(&world, "ami-0bbbbbbbbbbbbbbbb");
    let amis_s = amis.to_str().unwrap();
    let out = world.path("ssm.json");
    let out_s = out.to_str().unwrap();

    let output = world.run(&ssm_args(infra, amis_s, out_s, &["--json"]));
    assert!(output.status.success());
    assert_eq!(world.sent("PutParameter"), 4);
    let written = json(&out);
    let id_name = format!("{PREFIX}/aws-dev/x86_64/1.0.0-abc/image_id");
    let version_name = format!("{PREFIX}/aws-dev/x86_64/1.0.0-abc/image_version");
    assert_eq!(written["us-west-2"][&id_name], "ami-0aaaaaaaaaaaaaaaa");
    assert_eq!(written["us-east-1"][&id_name], "ami-0bbbbbbbbbbbbbbbb");
    assert_eq!(written["us-east-1"][&version_name], "1.0.0-abc");
    // What was sent: text parameters, no data type unless asked.
    for put in world.proxy.forwarded("PutParameter") {
        let body: serde_json::Value = serde_json::from_slice(&put.body).unwrap();
        assert_eq!(body["Type"], "String");
        assert!(body.get("DataType").is_none());
    }
    // And what moto holds.
    let aws = world.aws().await;
    let ssm = aws.ssm("us-east-1").await.unwrap();
    let got = ssm.get_parameter().name(&id_name).send().await.unwrap();
    assert_eq!(
        got.parameter().unwrap().value(),
        Some("ami-0bbbbbbbbbbbbbbbb")
    );

    // Re-run: nothing to do.
    world.proxy.clear_log();
    assert!(
        world
            .run(&ssm_args(infra, amis_s, out_s, &[]))
            .status
            .success()
    );
    assert_eq!(world.sent("PutParameter"), 0);

    // A changed AMI is refused without --allow-clobber, before any write.
    let amis = fake_amis(&world, "ami-0cccccccccccccccc");
    let amis_s = amis.to_str().unwrap();
    world.proxy.clear_log();
    let output = world.run(&ssm_args(infra, amis_s, out_s, &[]));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--allow-clobber"));
    assert_eq!(world.sent("PutParameter"), 0);
    let output = world.run(&ssm_args(infra, amis_s, out_s, &["--allow-clobber"]));
    assert!(output.status.success());
    assert_eq!(world.sent("PutParameter"), 1);
    assert_eq!(json(&out)["us-east-1"][&id_name], "ami-0cccccccccccccccc");

    // Promote to latest; the output file is merged.
    let mut promote = vec![
        "--infra-config",
        infra,
        "promote-ssm",
        "--arch",
        "x86_64",
        "--variant",
        "aws-dev",
        "--source",
        "1.0.0-abc",
        "--target",
        "latest",
        "--template-path",
        templates_str(),
        "--ssm-parameter-output",
        out_s,
        "--rate",
        "200",
    ];
    promote.extend(FAST);
    assert!(world.run(&promote).status.success());
    let written = json(&out);
    let latest = format!("{PREFIX}/aws-dev/x86_64/latest/image_id");
    assert_eq!(written["us-east-1"][&latest], "ami-0cccccccccccccccc");
    assert_eq!(written["us-east-1"][&id_name], "ami-0cccccccccccccccc");
    assert_eq!(written["us-west-2"].as_object().unwrap().len(), 4);

    // validate-ssm: all correct, then a tampered value and a stray parameter.
    let mut validate = vec![
        "--infra-config",
        infra,
        "validate-ssm",
        "--expected-parameters-path",
        out_s,
        "--check-unexpected",
        "--json",
    ];
    validate.extend(FAST);
    let output = world.run(&validate);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["us-west-2"]["correct"], 4);
    assert_eq!(report["us-west-2"]["unexpected"], 0);

    let ssm = aws.ssm("us-west-2").await.unwrap();
    ssm.put_parameter()
        .name(&latest)
        .value("ami-0ddddddddddddddd")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    ssm.put_parameter()
        .name(format!("{PREFIX}/stray"))
        .value("x")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let output = world.run(&validate);
    assert_eq!(output.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["us-west-2"]["incorrect"], 1);
    assert_eq!(report["us-west-2"]["unexpected"], 1);
    assert_eq!(report["us-east-1"]["correct"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn private_amis_never_reach_the_public_namespace() {
    let world = World::new();
    let infra = world.infra(&["us-west-2"], "/aws/service/pubsys-test");
    let aws = world.aws().await;
    let ec2 = aws.ec2("us-west-2").await.unwrap();
    let image_id = ec2
        .register_image()
        .name("private-one")
        .root_device_name("/dev/xvda")
        .send()
        .await
        .unwrap()
        .image_id()
        .unwrap()
        .to_owned();
    let amis = world.path("amis.json");
    std::fs::write(
        &amis,
        serde_json::json!({"us-west-2": {"id": image_id, "name": "private-one"}}).to_string(),
    )
    .unwrap();
    let out = world.path("ssm.json");
    let args = ssm_args(
        infra.to_str().unwrap(),
        amis.to_str().unwrap(),
        out.to_str().unwrap(),
        &["--ec2-image-data-type"],
    );
    let output = world.run(&args);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Cowardly refusing"));
    assert_eq!(world.sent("PutParameter"), 0);
    assert!(!out.exists());

    // Public now: the guard lets it through. moto, like AWS, reserves /aws/ for AWS itself, so
    // the write is refused by the server; what pubsys sent is what matters here: the image ID
    // typed as aws:ec2:image, the version as plain text.
    ec2.modify_image_attribute()
        .image_id(&image_id)
        .attribute("launchPermission")
        .operation_type(aws_sdk_ec2::types::OperationType::Add)
        .user_groups("all")
        .send()
        .await
        .unwrap();
    let output = world.run(&args);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(!all.contains("Cowardly refusing"), "{all}");
    assert!(all.contains("reserved parameter name"), "{all}");
    let typed: Vec<String> = world
        .proxy
        .forwarded("PutParameter")
        .iter()
        .map(|p| p.body_text())
        .filter(|b| b.contains("\"DataType\":\"aws:ec2:image\""))
        .collect();
    // (Each refused put is retried, so count by content, not calls.)
    assert!(!typed.is_empty());
    assert!(
        typed
            .iter()
            .all(|b| b.contains(&image_id) && b.contains("/image_id")),
        "only the image_id parameter is typed: {typed:?}"
    );
}

#[test]
fn a_lost_put_response_is_checked_not_failed() {
    // moto creates the parameter, the answer is lost, the SDK retries and gets
    // ParameterAlreadyExists: pubsys reads it back and carries on.
    let world = World::with_rules(vec![
        Rule::always(Action::DropResponse)
            .operation("PutParameter")
            .limit(1),
    ]);
    let infra = world.infra(&["us-west-2", "us-east-1"], PREFIX);
    let amis = fake_amis(&world, "ami-0bbbbbbbbbbbbbbbb");
    let out = world.path("ssm.json");
    let output = world.run(&ssm_args(
        infra.to_str().unwrap(),
        amis.to_str().unwrap(),
        out.to_str().unwrap(),
        &[],
    ));
    assert!(output.status.success());
    assert_eq!(world.proxy.faults(), 1);
    assert_eq!(json(&out)["us-east-1"].as_object().unwrap().len(), 2);
}

#[test]
fn nothing_for_this_variant_is_not_an_error() {
    let world = World::new();
    let templates = world.path("templates.toml");
    std::fs::write(
        &templates,
        "[[parameter]]\nvariant = [\"other\"]\nname = \"x/{variant}\"\nvalue = \"{image_id}\"\n",
    )
    .unwrap();
    let amis = fake_amis(&world, "ami-0bbbbbbbbbbbbbbbb");
    let output = world.run(&[
        "ssm",
        "--ami-input",
        amis.to_str().unwrap(),
        "--arch",
        "x86_64",
        "--variant",
        "aws-dev",
        "--version",
        "1",
        "--template-path",
        templates.to_str().unwrap(),
        "--regions",
        "us-west-2",
    ]);
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("No parameters for this arch/variant")
    );
    assert!(world.proxy.requests().is_empty());
}
