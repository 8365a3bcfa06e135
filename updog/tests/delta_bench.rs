//! Delta against full update on the same host and repository: bytes, wall time and peak RSS,
//! for a root of DELTA_BENCH_MIB (default 256) with 2 MiB changed in 32 places. Ignored by
//! default (slow; numbers only):
//! `DELTA_BENCH_MIB=256 UPDOG_BENCH_BIN=target-release/release/updog cargo test -p updog --test delta_bench -- --ignored --nocapture`
//! (2 GiB roots need `UPDOG_TEST_OS_IMAGE_GIB=8`). `UPDOG_BENCH_BIN` names the binary to
//! measure (build it on its own: `cargo build --release -p updog`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use common::{Release, Scenario};
use jiff::{SignedDuration, Timestamp};

/// Wall seconds and peak RSS (KiB) of one `updog update-image --now` (plus `extra` flags).
fn run(scenario: &Scenario, extra: &[&str]) -> (f64, u64) {
    let mut updog = scenario.bench_updog();
    updog
        .args(["update-image", "--now"])
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("DELTA_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .env("NO_PROXY", "127.0.0.1");
    let (secs, rss, stderr) = common::measure(&mut updog);
    if std::env::var_os("DELTA_BENCH_LOG").is_some() {
        println!("{stderr}");
    }
    (secs, rss)
}

/// Bytes the server sent for image and delta targets since the log was cleared.
fn served(scenario: &Scenario) -> u64 {
    scenario
        .server
        .log()
        .iter()
        .filter(|r| r.path.contains("/targets/") && !r.path.contains("migrate"))
        .map(|r| {
            let file = scenario.path("repo").join(r.path.trim_start_matches('/'));
            let len = std::fs::metadata(file).unwrap().len();
            match r.range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
                Some(range) => {
                    let (s, e) = range.split_once('-').unwrap();
                    let s: u64 = s.parse().unwrap();
                    let e: u64 = if e.is_empty() {
                        len - 1
                    } else {
                        e.parse().unwrap()
                    };
                    e.min(len - 1) - s + 1
                }
                None => len,
            }
        })
        .sum()
}

/// Set A holds `release`, set B other bytes (the disk copied afresh).
fn reset_disk(scenario: &Scenario, release: &Release) {
    std::fs::remove_file(&scenario.disk).unwrap();
    common::copy_base_disk(&scenario.disk);
    scenario.install_in_set_a(release);
}

#[test]
#[ignore = "benchmark: run explicitly"]
fn delta_against_full() {
    let mib = common::bench_root_mib("DELTA_BENCH_MIB");
    let mut old = Release::new("1.0.0", 61);
    old.root = common::mixed_data(mib << 20, 62);
    let mut new = Release::new("1.1.0", 61);
    new.root = old.root.clone();
    // 2 MiB changed, in 32 places spread over the image.
    let step = (mib << 20) / 32;
    for i in 0..32 {
        let at = i * step + 4096 * 3;
        new.root[at..at + (64 << 10)]
            .copy_from_slice(&common::mixed_data(64 << 10, 100 + i as u64));
    }
    new.delta = true;
    let scenario = Scenario::with_options(
        &new,
        Timestamp::now() - SignedDuration::from_hours(240),
        true,
    );
    // Full: the three images downloaded.
    reset_disk(&scenario, &old);
    scenario.server.clear_log();
    let (full_secs, full_rss) = run(&scenario, &["--no-delta"]);
    let full_bytes = served(&scenario);
    scenario.assert_set_b_holds(&new);
    // Delta: seeded from set A.
    reset_disk(&scenario, &old);
    scenario.server.clear_log();
    let (delta_secs, delta_rss) = run(&scenario, &[]);
    let delta_bytes = served(&scenario);
    scenario.assert_set_b_holds(&new);
    println!(
        "root {mib} MiB, 2 MiB changed in 32 places: full {full_bytes} B in {full_secs:.2} s, \
         peak RSS {} MiB; delta {delta_bytes} B ({:.2}% of full) in {delta_secs:.2} s \
         ({:.2}x full), peak RSS {} MiB",
        full_rss / 1024,
        delta_bytes as f64 * 100.0 / full_bytes as f64,
        delta_secs / full_secs,
        delta_rss / 1024
    );
}
