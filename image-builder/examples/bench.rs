//! Benchmark helper for `BENCHMARKS.md`: run one step of the build on a file and time it.
//!
//! * `bench verity DATA HASH_OUT [THREADS]`: the dm-verity hash image of DATA, like
//!   `veritysetup format --format 1 --hash sha256 --data-block-size 4096 --hash-block-size 4096`
//!   with the salt `5a…5a` (32 bytes) and the UUID `11111111-1111-1111-1111-111111111111`.
//! * `bench lz4 INPUT OUTPUT [THREADS]`: the LZ4 artifact compression of INPUT.
#![allow(clippy::print_stdout)]

use image_builder::NoProgress;
use image_builder::compress::compress_file;
use image_builder::verity::{VerityParams, build_hash_image, hash_image_bytes};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, step, input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: bench verity|lz4 INPUT OUTPUT [THREADS]".into());
    };
    let threads = match rest.first() {
        Some(n) => n.parse()?,
        None => std::thread::available_parallelism()?.get(),
    };
    let start = Instant::now();
    let result = match step.as_str() {
        "verity" => {
            let blocks = std::fs::metadata(input)?.len() / 4096;
            let params = VerityParams {
                salt: &[0x5a; 32],
                uuid: [0x11; 16],
                partition_bytes: hash_image_bytes(blocks),
                threads,
            };
            let info = build_hash_image(input.as_ref(), output.as_ref(), params, &NoProgress)?;
            format!(
                "root hash {} ({} data blocks)",
                info.root_hash, info.data_blocks
            )
        }
        "lz4" => {
            let written = compress_file(input.as_ref(), output.as_ref(), threads, &NoProgress)?;
            format!("{} bytes, sha256 {}", written.size, written.sha256)
        }
        other => return Err(format!("unknown step {other}").into()),
    };
    let seconds = start.elapsed().as_secs_f64();
    println!("{step}: {result}; {threads} threads: {seconds:.3} s");
    Ok(())
}
