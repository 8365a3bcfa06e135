//! Build an index and a store from real files, then write a new image into a destination
//! seeded from an old one, fetching only the missing groups from the store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use delta::{BLOCK_SIZE, BuildOptions, Extent, Index, Plan, Seed, Source, StoreRange, Written};
use std::fs::{File, OpenOptions};
use std::io::Write;

/// Deterministic, moderately compressible bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| {
            if i % 3 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            (x >> (i % 3 * 8)) as u8 & 0x7f
        })
        .collect()
}

struct Published {
    index: Index,
    store: Vec<u8>,
}

fn publish(images: &[(&str, &[u8])]) -> Published {
    let mut store = Vec::new();
    let sources = images
        .iter()
        .map(|(role, bytes)| Source {
            role: (*role).to_owned(),
            reader: *bytes,
            salt: Vec::new(),
        })
        .collect();
    let built = delta::build(sources, &mut store, BuildOptions::default()).unwrap();
    // Through the published form.
    let index = Index::decode(&built.index.encode().unwrap()).unwrap();
    assert_eq!(index, built.index);
    assert_eq!(index.store_len, store.len() as u64);
    Published { index, store }
}

fn file_with(bytes: &[u8], dir: &tempfile::TempDir, name: &str) -> File {
    let path = dir.path().join(name);
    let mut f = File::create(&path).unwrap();
    f.write_all(bytes).unwrap();
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap()
}

/// The whole of `file` (`len` bytes) as a partition.
fn whole(file: &File, len: u64) -> Extent<'_> {
    Extent {
        file,
        offset: 0,
        len,
    }
}

/// `file` as the one seed, named "active".
fn active(file: &File, len: u64) -> Vec<Seed<'_>> {
    vec![Seed {
        extent: whole(file, len),
        name: "active".to_owned(),
        hashes: None,
    }]
}

/// The plan of `published`'s root over the first `len` bytes of `dest`, `seed` the one seed.
fn root_plan<'a>(published: &'a Published, dest: &'a File, seed: &'a File, len: u64) -> Plan<'a> {
    let image = published.index.image("root").unwrap();
    Plan::new(image, whole(dest, len), active(seed, len), false).unwrap()
}

/// Write `image` of `published` into `dest` (starting at `offset`) seeded by `seed`; returns
/// the store bytes fetched.
fn update(
    published: &Published,
    role: &str,
    dest: &File,
    capacity: u64,
    seed: &File,
    resume: bool,
) -> delta::Result<(u64, delta::Stats)> {
    let image = published.index.image(role).unwrap();
    let seeds = vec![Seed {
        extent: Extent {
            file: seed,
            offset: 0,
            len: seed.metadata().unwrap().len(),
        },
        name: "seed".to_owned(),
        hashes: None,
    }];
    let dest = Extent {
        file: dest,
        offset: 0,
        len: capacity,
    };
    let mut plan = Plan::new(image, dest, seeds, resume)?;
    let mut fetched = 0;
    loop {
        let (bytes, written) = round(published, &mut plan)?;
        fetched += bytes;
        if let Written::Done(stats) = written {
            return Ok((fetched, stats));
        }
    }
}

/// One round of `plan.write`, fetching what it lists from `published`'s store; returns the
/// bytes fetched.
fn round(published: &Published, plan: &mut Plan<'_>) -> delta::Result<(u64, Written)> {
    let ranges = plan.ranges(64 << 10, 8 << 20);
    let fetched = ranges.iter().map(|r| r.len).sum();
    // Each range in pieces of 5,000 bytes (frames straddle them), as a download delivers it.
    let written = plan.write(ranges.into_iter().flat_map(|range| {
        let StoreRange { offset, len } = range;
        let bytes = &published.store[offset as usize..(offset + len) as usize];
        bytes
            .chunks(5000)
            .enumerate()
            .map(move |(j, piece)| (range, (j * 5000) as u64, piece))
    }))?;
    Ok((fetched, written))
}

#[test]
fn a_changed_file_moves_and_only_its_blocks_are_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = data(8 << 20, 1);
    old[(3 << 20)..(4 << 20)].fill(0);
    // The new image: the old one with 1 MiB shifted by 5 blocks and 64 KiB changed.
    let mut new = old.clone();
    new.copy_within((1 << 20)..(2 << 20), (1 << 20) + 5 * BLOCK_SIZE);
    new[(6 << 20)..(6 << 20) + (64 << 10)].copy_from_slice(&data(64 << 10, 9));
    let published = publish(&[("root", &new)]);
    let seed = file_with(&old, &dir, "active");
    // The destination holds unrelated bytes.
    let dest = file_with(&data(10 << 20, 3), &dir, "inactive");
    let (fetched, stats) = update(&published, "root", &dest, 10 << 20, &seed, false).unwrap();
    let written = std::fs::read(dir.path().join("inactive")).unwrap();
    assert!(
        written[..new.len()] == new[..],
        "the image is not what was published"
    );
    // Only the changed 64 KiB (16 blocks) is fetched; the shifted MiB came from the seed.
    assert!(stats.copied > 1500, "{stats:?}");
    assert_eq!(stats.fetched_blocks, 16, "{stats:?}");
    let stored_per_block =
        published.store.len() as u64 / published.index.images[0].frames.len() as u64;
    assert!(fetched <= 16 * 2 * stored_per_block, "fetched {fetched}");

    // A second run over the written destination (as after an interruption) fetches nothing
    // and writes nothing.
    let (fetched, stats) = update(&published, "root", &dest, 10 << 20, &seed, true).unwrap();
    assert_eq!(fetched, 0);
    assert_eq!(stats.already_there, stats.blocks);
}

#[test]
fn a_flipped_store_byte_is_refused_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let new = data(1 << 20, 5);
    let mut published = publish(&[("boot", &new)]);
    let last = published.store.len() / 2;
    published.store[last] ^= 0x40;
    let seed = file_with(&[0_u8; 4096], &dir, "active");
    let dest = file_with(&vec![0xaa_u8; 2 << 20], &dir, "inactive");
    let err = update(&published, "boot", &dest, 2 << 20, &seed, false).unwrap_err();
    assert!(
        matches!(err, delta::Error::BadPiece { .. }),
        "unexpected error: {err}"
    );
}

#[test]
fn a_seed_that_changes_under_the_plan_is_fetched_instead() {
    let dir = tempfile::tempdir().unwrap();
    let new = data(2 << 20, 7);
    let published = publish(&[("root", &new)]);
    let seed = file_with(&new, &dir, "active");
    let dest = file_with(&vec![0_u8; 2 << 20], &dir, "inactive");
    let image = published.index.image("root").unwrap();
    let seeds = active(&seed, 2 << 20);
    let dest_extent = whole(&dest, 2 << 20);
    let mut plan = Plan::new(image, dest_extent, seeds, false).unwrap();
    assert_eq!(plan.fetch_bytes(0, 8 << 20), 0, "all of it is in the seed");
    // A flipped byte in the seed after planning: the copied block is not the one the index
    // lists, so the round asks for it to be fetched, and the next round writes it.
    use std::os::unix::fs::FileExt;
    seed.write_all_at(&[0xff], 100_000).unwrap();
    let (fetched, written) = round(&published, &mut plan).unwrap();
    assert_eq!((fetched, written), (0, Written::Again));
    let (fetched, written) = round(&published, &mut plan).unwrap();
    let Written::Done(stats) = written else {
        panic!("a third round")
    };
    assert_eq!(stats.refetched, 1, "{stats:?}");
    assert!(fetched > 0 && fetched < 8192, "fetched {fetched}");
    assert!(std::fs::read(dir.path().join("inactive")).unwrap() == new);
}

#[test]
fn a_bad_index_is_an_error_not_a_panic() {
    let published = publish(&[("root", &data(300_000, 2))]);
    let encoded = published.index.encode().unwrap();
    for cut in [0, 1, 10, encoded.len() / 2, encoded.len() - 1] {
        assert!(Index::decode(&encoded[..cut]).is_err(), "cut at {cut}");
    }
    assert!(Index::decode(b"not an index").is_err());
    // Frames running past the store.
    let mut index = published.index.clone();
    index.store_len -= 1;
    assert!(Index::decode(&index.encode().unwrap()).is_err());
}

#[test]
fn short_last_blocks_and_repeated_blocks_within_and_across_images() {
    let dir = tempfile::tempdir().unwrap();
    // 300 000 bytes: 73 blocks, the last one 1 010 bytes long. Block 5 repeats block 0, and
    // the "hash" image repeats two root blocks.
    let mut root = data(300_000, 11);
    let first = root[..4096].to_vec();
    root[5 * 4096..6 * 4096].copy_from_slice(&first);
    let mut hash = data(10_000, 12);
    hash[..4096].copy_from_slice(&first);
    hash[4096..8192].copy_from_slice(&root[9 * 4096..10 * 4096]);
    let published = publish(&[("root", &root), ("hash", &hash)]);
    let image = published.index.image("root").unwrap();
    assert_eq!(
        image.frames[0], image.frames[5],
        "a repeat shares its frame"
    );
    let hash_image = published.index.image("hash").unwrap();
    assert_eq!(hash_image.frames[0], image.frames[0]);
    // The seed holds the old root with a different tail (the last block's bytes past the
    // image end are not zeros there), so the short last block is fetched, not copied wrong.
    let mut old = root.clone();
    old[150_000..160_000].fill(7);
    old.extend_from_slice(&[9_u8; 5000]);
    let seed = file_with(&old, &dir, "active");
    let dest = file_with(&vec![0x33_u8; 400_000], &dir, "inactive");
    let (fetched, _) = update(&published, "root", &dest, 400_000, &seed, false).unwrap();
    assert!(fetched > 0);
    let written = std::fs::read(dir.path().join("inactive")).unwrap();
    assert!(written[..root.len()] == root[..]);
    // Past the image, the partition is untouched.
    assert!(written[root.len()..].iter().all(|b| *b == 0x33));
    let dest = file_with(&vec![0_u8; 20_000], &dir, "inactive-hash");
    update(&published, "hash", &dest, 20_000, &seed, false).unwrap();
    let written = std::fs::read(dir.path().join("inactive-hash")).unwrap();
    assert!(written[..hash.len()] == hash[..]);
}

#[test]
fn a_missing_range_stops_the_copying_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut new = data(1 << 20, 21);
    new[(512 << 10)..(520 << 10)].copy_from_slice(&data(8 << 10, 22));
    let old = data(1 << 20, 21);
    let published = publish(&[("root", &new)]);
    let seed = file_with(&old, &dir, "active");
    let dest = file_with(&vec![0x44_u8; 1 << 20], &dir, "inactive");
    let image = published.index.image("root").unwrap();
    let seeds = active(&seed, 1 << 20);
    let extent = whole(&dest, 1 << 20);
    let mut plan = Plan::new(image, extent, seeds, false).unwrap();
    assert!(!plan.ranges(0, 8 << 20).is_empty());
    // The fetch failed: nothing arrives. The copying (which started with the fetch) stops,
    // and the image is refused as incomplete.
    let err = plan
        .write(Vec::<(StoreRange, u64, Vec<u8>)>::new())
        .unwrap_err();
    assert!(matches!(err, delta::Error::Incomplete { .. }), "{err}");
    // The missing blocks were never written.
    let written = std::fs::read(dir.path().join("inactive")).unwrap();
    assert!(written[(512 << 10)..(520 << 10)].iter().all(|b| *b == 0x44));
}

#[test]
fn an_image_whose_digest_is_not_the_index_s_is_refused_after_it_is_written() {
    // Every block matches its (short) hash, but the image's digest in the index differs: the
    // last check refuses the image (updog then writes the full one).
    let dir = tempfile::tempdir().unwrap();
    let new = data(1 << 20, 31);
    let mut published = publish(&[("root", &new)]);
    let seed = file_with(&new[..(512 << 10)], &dir, "active");
    let dest = file_with(&vec![0_u8; 1 << 20], &dir, "inactive");
    let (_, stats) = update(&published, "root", &dest, 1 << 20, &seed, false).unwrap();
    assert!(stats.copied > 0 && stats.fetched_blocks > 0, "{stats:?}");
    published.index.images[0].digest[0] ^= 1;
    let err = update(&published, "root", &dest, 1 << 20, &seed, false).unwrap_err();
    assert!(
        matches!(err, delta::Error::Digest { .. }),
        "unexpected error: {err}"
    );
}

#[test]
fn ranges_shrink_towards_the_end_of_the_fetch() {
    let dir = tempfile::tempdir().unwrap();
    // 4 MiB that the host does not have: one run of frames, all fetched.
    let new = data(4 << 20, 31);
    let published = publish(&[("root", &new)]);
    let seed = file_with(&data(4 << 20, 32), &dir, "active");
    let dest = file_with(&vec![0_u8; 4 << 20], &dir, "inactive");
    let plan = root_plan(&published, &dest, &seed, 4 << 20);
    let ranges = plan.ranges(1 << 10, 128 << 10);
    let total: u64 = ranges.iter().map(|r| r.len).sum();
    // No range is over 1/64 of what is left from its start, nor under the floor (but the
    // last ones, where what is left is less).
    let mut left = total;
    for r in &ranges {
        assert!(
            r.len <= (128 << 10).min((left / 64).max(16 << 10)) + 5000,
            "{r:?}, {left} left"
        );
        left -= r.len;
    }
    assert!(
        ranges.first().unwrap().len > 2 * ranges.last().unwrap().len,
        "{ranges:?}"
    );
    assert!(ranges.last().unwrap().len <= (16 << 10) + 5000);
    // A lower floor (the image whose fetch ends the update) cuts the tail finer: more ranges,
    // the same bytes.
    let finer = plan.with_tail_floor(4 << 10).ranges(1 << 10, 128 << 10);
    assert!(
        finer.len() > ranges.len() + 10,
        "{} vs {}",
        finer.len(),
        ranges.len()
    );
    assert_eq!(finer.iter().map(|r| r.len).sum::<u64>(), total);
    assert!(finer.last().unwrap().len <= (4 << 10) + 5000);
}

#[test]
fn the_copies_after_a_long_stretch_still_to_fetch_are_written_first() {
    let dir = tempfile::tempdir().unwrap();
    // 8 MiB changed, then 16 MiB the seed holds at the same place.
    let same = data(16 << 20, 22);
    let mut new = data(8 << 20, 21);
    new.extend_from_slice(&same);
    let mut old = data(8 << 20, 20);
    old.extend_from_slice(&same);
    let published = publish(&[("root", &new)]);
    let seed = file_with(&old, &dir, "active");
    let dest = file_with(&vec![0_u8; 24 << 20], &dir, "inactive");
    let mut plan = root_plan(&published, &dest, &seed, 24 << 20);
    let ranges = plan.ranges(64 << 10, 8 << 20);
    // No fetched byte arrives until the copies after the changed stretch are written: a walk
    // that waited for the stretch would wait for ever.
    let reader = dest.try_clone().unwrap();
    let mut waited = false;
    let pieces = ranges.into_iter().map(|range| {
        if !waited {
            use std::os::unix::fs::FileExt;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let mut tail = vec![0_u8; 16 << 20];
            loop {
                reader.read_exact_at(&mut tail, 8 << 20).unwrap();
                if tail == same {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the copies were not written before the fetched blocks arrived"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            waited = true;
        }
        let StoreRange { offset, len } = range;
        (
            range,
            0,
            &published.store[offset as usize..(offset + len) as usize],
        )
    });
    let Written::Done(stats) = plan.write(pieces).unwrap() else {
        panic!("a second round")
    };
    assert_eq!(stats.copied, 4096, "{stats:?}");
    assert!(std::fs::read(dir.path().join("inactive")).unwrap() == new);
}

#[test]
fn a_destination_that_refuses_writes_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    // 32 MiB the seed holds (8 buffers of copies), and a changed stretch to fetch.
    let same = data(32 << 20, 31);
    let mut new = same.clone();
    new[(16 << 20)..(16 << 20) + 100_000].copy_from_slice(&data(100_000, 32));
    let published = publish(&[("root", &new)]);
    let seed = file_with(&same, &dir, "active");
    drop(file_with(&vec![0_u8; 32 << 20], &dir, "inactive"));
    // Opened read-only: every write fails (EBADF).
    let dest = File::open(dir.path().join("inactive")).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut plan = root_plan(&published, &dest, &seed, 32 << 20);
            let _ = done_tx.send(round(&published, &mut plan).map(|_| ()));
        });
        let result = done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("Plan::write hung after the destination refused a write");
        assert!(
            matches!(result, Err(delta::Error::Write { .. })),
            "unexpected result: {result:?}"
        );
    });
}
