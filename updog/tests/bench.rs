//! Throughput and memory of `update` against a loopback HTTP server, compared with
//! `curl | lz4 -d > file` on the same data. Ignored by default (slow; numbers only):
//! `UPDOG_BENCH_MIB=400 UPDOG_BENCH_BIN=target-release/release/updog cargo test -p updog --test bench -- --ignored --nocapture`
//! (images over 460 MiB need a larger test disk: `UPDOG_TEST_OS_IMAGE_GIB=4` for 1 GiB,
//! `8` for 2 GiB).
//!
//! Two pipelines are timed on the same served file: `curl | lz4 -d > file` (the issue's
//! yardstick; the data is left dirty in the page cache) and `curl | lz4 -d | dd` into the same
//! ROOT partition with `fdatasync` (the same durable work `updog` must do before it can mark
//! the partition set bootable).
//!
//! `UPDOG_BENCH_BIN` names the binary to measure: build it on its own (`cargo build --release
//! -p updog`), as hosts get it. The binary this test target builds is compiled with the
//! features its dev-dependencies unify in, which is not what ships.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use common::{Release, Scenario};
use jiff::{SignedDuration, Timestamp};
use std::process::Command;

#[test]
#[ignore = "benchmark: run explicitly"]
fn throughput_and_memory() {
    let mib = common::bench_root_mib("UPDOG_BENCH_MIB");
    let (root_offset, _) = common::partition_range(9);
    let mut release = Release::new("1.1.0", 51);
    release.root = common::mixed_data(mib << 20, 52);
    let scenario = Scenario::with_options(
        &release,
        Timestamp::now() - SignedDuration::from_hours(240),
        false,
    );
    let served = scenario.served_target(&release.names()[0]);
    let url = scenario.server.url(&format!(
        "targets/{}",
        served.file_name().unwrap().to_string_lossy()
    ));

    let out = scenario.path("pipeline.out");
    let mut pipeline = Command::new("/usr/bin/time");
    pipeline.args(["-f", "maxrss=%M", "sh", "-c"]).arg(format!(
        "curl -sf '{url}' | lz4 -d -c > '{}'",
        out.display()
    ));
    let (pipeline_secs, _, _) = common::measure(&mut pipeline);
    std::fs::remove_file(&out).unwrap();
    let mut durable = Command::new("/usr/bin/time");
    durable.args(["-f", "maxrss=%M", "sh", "-c"]).arg(format!(
        "curl -sf '{url}' | lz4 -d -c | dd of='{}' bs=4M iflag=fullblock seek={root_offset} \
         oflag=seek_bytes conv=notrunc,fdatasync status=none",
        scenario.disk.display()
    ));
    let (durable_secs, _, _) = common::measure(&mut durable);

    let mut updog = scenario.bench_updog();
    updog.args(["-q", "update"]);
    let (updog_secs, rss, _) = common::measure(&mut updog);
    scenario.assert_set_b_holds(&release);
    let compressed = std::fs::metadata(&served).unwrap().len();
    println!(
        "root image {mib} MiB ({} MiB compressed): curl | lz4 -d > file {pipeline_secs:.2} s; \
         curl | lz4 -d | dd into ROOT with fdatasync {durable_secs:.2} s; \
         updog update (root+boot+hash, migrations, GPT, fdatasync) {updog_secs:.2} s = \
         {:.2}x the first, {:.2}x the second; updog peak RSS {} MiB",
        compressed >> 20,
        pipeline_secs / updog_secs,
        durable_secs / updog_secs,
        rss / 1024
    );
}
