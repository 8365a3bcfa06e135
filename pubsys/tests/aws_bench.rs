//! Benchmarks for BENCHMARKS.md (ignored by default; run with `--ignored --nocapture`):
//!
//! * publishing one image to 16 regions against 1 region, with 100 ms of latency injected on
//!   every AWS call by the proxy (goal: ≤ 1.5×);
//! * snapshot upload throughput of a 2 GiB sparse image (zero blocks are never sent).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod aws_common;

use aws_common::{FAST, World, sparse_image};
use std::time::{Duration, Instant};
use test_support::proxy::{Action, Rule};

const SIXTEEN: &str = "us-west-2,us-east-1,us-east-2,us-west-1,eu-west-1,eu-west-2,eu-west-3,eu-central-1,eu-north-1,ap-south-1,ap-northeast-1,ap-northeast-2,ap-southeast-1,ap-southeast-2,ca-central-1,sa-east-1";

fn publish(world: &World, image: &str, name: &str, regions: &str) -> Duration {
    let out = world.path(&format!("{name}.json"));
    let mut args = vec![
        "ami",
        "--os-image",
        image,
        "--name",
        name,
        "--regions",
        regions,
        "--ami-output",
        out.to_str().unwrap(),
        "--poll-interval",
        "100ms",
        "--copy-concurrency",
        "16",
        "--no-progress",
    ];
    args.extend(FAST);
    let start = Instant::now();
    let output = world.pubsys().args(&args).output().unwrap();
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

#[test]
#[ignore = "benchmark"]
fn bench_sixteen_regions_against_one_with_100ms_latency() {
    let world = World::with_rules(vec![Rule::always(Action::Delay(Duration::from_millis(
        100,
    )))]);
    let image = world.path("os.img");
    sparse_image(&image, 64 << 20, &[(0, 1), (64, 2), (127, 3)]);
    let image = image.to_str().unwrap();
    // Warm-up: moto builds an account's per-region backends on first use.
    publish(&world, image, "bench-warm", SIXTEEN);
    let one = publish(&world, image, "bench-one", "us-west-2");
    let sixteen = publish(&world, image, "bench-sixteen", SIXTEEN);
    println!(
        "1 region: {:.2} s; 16 regions: {:.2} s; ratio {:.2}",
        one.as_secs_f64(),
        sixteen.as_secs_f64(),
        sixteen.as_secs_f64() / one.as_secs_f64()
    );
}

#[test]
#[ignore = "benchmark"]
fn bench_snapshot_upload_of_a_2gib_sparse_image() {
    let world = World::new();
    let image = world.path("os.img");
    // 2 GiB, one 512 KiB block of data in every 32 (1/32 of the file: 64 MiB sent).
    let blocks: Vec<(u64, u8)> = (0..4096)
        .step_by(32)
        .map(|i| (i, (i % 251) as u8 + 1))
        .collect();
    sparse_image(&image, 2 << 30, &blocks);
    let elapsed = publish(&world, image.to_str().unwrap(), "bench-upload", "us-west-2");
    let sent = world.proxy.forwarded("PutSnapshotBlock").len();
    assert_eq!(sent, blocks.len());
    println!(
        "2 GiB image, {sent} non-zero blocks ({} MiB) sent: {:.2} s, {:.0} MiB/s of image, {:.1} MiB/s of data",
        sent / 2,
        elapsed.as_secs_f64(),
        2048.0 / elapsed.as_secs_f64(),
        (sent as f64 / 2.0) / elapsed.as_secs_f64()
    );
}
