//! What a delta costs for real images, for a few zstd levels: index bytes, store bytes and the
//! store bytes a host holding the old images fetches.
//!
//! `cargo run --release -p delta --example measure -- LEVEL[,…] OLD_DIR NEW_DIR`
//! where each folder holds the raw `root`, `boot` and `hash` images as files of those names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use delta::{BuildOptions, Extent, Index, Plan, Seed, Source};
use std::fs::File;
use std::path::Path;
use std::time::Instant;

/// Gap between frames fetched in one request.
const GAP: u64 = 4 << 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let levels: Vec<i32> = args[0].split(',').map(|g| g.parse().unwrap()).collect();
    let (old, new) = (Path::new(&args[1]), Path::new(&args[2]));
    let roles = ["root", "boot", "hash"];
    for level in levels {
        let started = Instant::now();
        let mut store = Vec::new();
        let sources = roles
            .iter()
            .map(|r| Source {
                role: (*r).to_owned(),
                reader: std::io::BufReader::new(File::open(new.join(r)).unwrap()),
                salt: Vec::new(),
            })
            .collect();
        let options = BuildOptions {
            level,
            ..BuildOptions::default()
        };
        let built = delta::build(sources, &mut store, options).unwrap();
        let build_secs = started.elapsed().as_secs_f64();
        let encoded = built.index.encode().unwrap();
        let index = Index::decode(&encoded).unwrap();
        let seeds_files: Vec<File> = roles
            .iter()
            .map(|r| File::open(old.join(r)).unwrap())
            .collect();
        let scratch = tempfile::tempfile().unwrap();
        let mut fetched = 0;
        let started = Instant::now();
        for role in roles {
            let image = index.image(role).unwrap();
            scratch.set_len(0).unwrap();
            scratch.set_len(image.size).unwrap();
            let seeds = roles
                .iter()
                .zip(&seeds_files)
                .map(|(r, f)| Seed {
                    extent: Extent {
                        file: f,
                        offset: 0,
                        len: f.metadata().unwrap().len(),
                    },
                    name: (*r).to_owned(),
                    hashes: None,
                })
                .collect();
            let dest = Extent {
                file: &scratch,
                offset: 0,
                len: image.size,
            };
            let plan = Plan::new(image, dest, seeds, false).unwrap();
            let bytes = plan.fetch_bytes(GAP, 8 << 20);
            for gap in [0, 1 << 10, 4 << 10, 16 << 10] {
                println!(
                    "  {role}: gap {gap}: {} B in {} ranges",
                    plan.fetch_bytes(gap, 8 << 20),
                    plan.ranges(gap, 8 << 20).len()
                );
            }
            println!(
                "  {role}: {bytes} store bytes to fetch, {} ranges, {:?}",
                plan.ranges(GAP, 8 << 20).len(),
                plan.stats()
            );
            fetched += bytes;
        }
        println!(
            "level={level}: index {} B, store {} B, fetch {} B (+index {} B), build {build_secs:.1} s, plan {:.2} s",
            encoded.len(),
            store.len(),
            fetched,
            fetched + encoded.len() as u64,
            started.elapsed().as_secs_f64()
        );
    }
}
