//! Shared pieces of the AWS integration tests: one moto server per test binary, a proxy per
//! test (own account, request log, faults), the CLI with a loopback environment, and direct
//! SDK clients to check moto's state.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Output;
use test_support::proxy::{Proxy, Rule};
use test_support::{MotoServer, aws_env, unique_account_id};

pub const BLOCK: u64 = 512 * 1024;

/// One test's world: its own account on the shared moto server, behind its own proxy.
pub struct World {
    pub proxy: Proxy,
    pub account: String,
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        World::with_rules(Vec::new())
    }

    pub fn with_rules(rules: Vec<Rule>) -> World {
        let moto = MotoServer::shared();
        let account = unique_account_id();
        let mut builder = Proxy::builder(moto.addr()).account(&account);
        for rule in rules {
            builder = builder.rule(rule);
        }
        World {
            proxy: builder.start(),
            account,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write an Infra.toml with these regions and SSM prefix.
    pub fn infra(&self, regions: &[&str], prefix: &str) -> PathBuf {
        let path = self.path("Infra.toml");
        let list: Vec<String> = regions.iter().map(|r| format!("\"{r}\"")).collect();
        std::fs::write(
            &path,
            format!(
                "[aws]\nregions = [{}]\nssm_prefix = \"{prefix}\"\n",
                list.join(", ")
            ),
        )
        .unwrap();
        path
    }

    /// The pubsys CLI pointed at this world's proxy.
    pub fn pubsys(&self) -> std::process::Command {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("pubsys"));
        for (key, value) in aws_env(&self.proxy.url(), "us-west-2") {
            command.env(key, value);
        }
        command
            .env_remove("RUST_LOG")
            .env_remove("PUBSYS_INFRA_CONFIG");
        command
    }

    /// Start pubsys with `args` in the background, its output discarded (for runs the test
    /// kills part-way).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.pubsys()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Run pubsys with `args`; returns the output (never panics on failure).
    pub fn run(&self, args: &[&str]) -> Output {
        let output = self.pubsys().args(args).output().unwrap();
        eprintln!(
            "$ pubsys {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// An SDK client factory straight to moto with this world's account header.
    pub async fn aws(&self) -> aws_context::AwsContext {
        aws_context::AwsContext::builder("us-west-2")
            .endpoint_url(Some(MotoServer::shared().url()))
            .header("x-moto-account-id", &self.account)
            .static_credentials("testing", "testing")
            .retry(aws_context::RetrySettings {
                max_attempts: 2,
                initial_backoff: std::time::Duration::from_millis(10),
            })
            .build()
            .await
    }

    /// Count of forwarded (not faulted) requests for an operation.
    pub fn sent(&self, operation: &str) -> usize {
        self.proxy.forwarded(operation).len()
    }
}

/// A sparse raw image of `size` bytes with `fill` written over each listed block.
pub fn sparse_image(path: &Path, size: u64, blocks: &[(u64, u8)]) {
    let mut file = std::fs::File::create(path).unwrap();
    file.set_len(size).unwrap();
    for (index, fill) in blocks {
        file.seek(SeekFrom::Start(index * BLOCK)).unwrap();
        let len = BLOCK.min(size - index * BLOCK) as usize;
        file.write_all(&vec![*fill; len]).unwrap();
    }
}

/// Read a JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Our AMIs called `name` in `region`.
pub async fn images_named(aws: &aws_context::AwsContext, region: &str, name: &str) -> Vec<String> {
    let ec2 = aws.ec2(region).await.unwrap();
    let output = ec2
        .describe_images()
        .owners("self")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("name")
                .values(name)
                .build(),
        )
        .send()
        .await
        .unwrap();
    output
        .images()
        .iter()
        .filter_map(|i| i.image_id().map(str::to_owned))
        .collect()
}

/// Fast-retry flags for every AWS command in tests.
pub const FAST: [&str; 4] = ["--max-attempts", "10", "--retry-backoff-ms", "5"];

/// Who may launch `image_id` in `region`, as moto has it.
pub async fn launch_permissions(
    aws: &aws_context::AwsContext,
    region: &str,
    image_id: &str,
) -> std::collections::BTreeSet<pubsys::aws::amis::LaunchPermission> {
    let ec2 = aws.ec2(region).await.unwrap();
    pubsys::aws::ec2::launch_permissions(&ec2, region, image_id)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Who may create volumes from any snapshot of `image_id` in `region`, as moto has it, in
/// amis.json's terms (a group or an account).
pub async fn snapshot_permissions(
    aws: &aws_context::AwsContext,
    region: &str,
    image_id: &str,
) -> std::collections::BTreeSet<pubsys::aws::amis::LaunchPermission> {
    use pubsys::aws::amis::LaunchPermission;
    let ec2 = aws.ec2(region).await.unwrap();
    let images = ec2
        .describe_images()
        .image_ids(image_id)
        .send()
        .await
        .unwrap();
    let snapshots = pubsys::aws::ec2::snapshot_ids(&images.images()[0]);
    assert!(!snapshots.is_empty(), "{image_id} has no snapshots");
    let mut permissions = std::collections::BTreeSet::new();
    for snapshot_id in snapshots {
        let output = ec2
            .describe_snapshot_attribute()
            .snapshot_id(&snapshot_id)
            .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .unwrap();
        for permission in output.create_volume_permissions() {
            if let Some(group) = permission.group() {
                permissions.insert(LaunchPermission::Group(group.as_str().to_owned()));
            }
            if let Some(user) = permission.user_id() {
                permissions.insert(LaunchPermission::UserId(user.to_owned()));
            }
        }
    }
    permissions
}

/// The launch permissions amis.json records for `region`.
pub fn recorded_permissions(
    amis: &Path,
    region: &str,
) -> std::collections::BTreeSet<pubsys::aws::amis::LaunchPermission> {
    serde_json::from_value(json(amis)[region]["launch_permissions"].clone()).unwrap()
}
