//! The host side: plan what to copy from the host's own partitions and what to fetch, write
//! it into the inactive partition, and check the result against the signed index.
//!
//! 1. [`Plan::new`] reads the destination partition (the inactive set's) over the image's
//!    length: blocks already right are done (a re-run after a kill or a reboot keeps them).
//!    Then it reads the seed partitions (the running set's, read-only; then the destination's
//!    blocks that are already right) and finds every other block of the new image there by
//!    its hash. What is found nowhere is missing, and fetched.
//! 2. [`Plan::ranges`] lists the store byte ranges that hold the missing blocks, neighbours
//!    coalesced into one request.
//! 3. [`Plan::write`] (in `write.rs`) writes the image and checks its digest.
use crate::error::{self, Result};
use crate::index::{BLOCK_SIZE, ImageIndex, short_hash};
use crate::io::{DirectWriter, Extent};
use snafu::{ResultExt, ensure};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// Bytes read or written per system call.
pub(crate) const IO_CHUNK: usize = 4 << 20;
/// Blocks per I/O call.
pub(crate) const IO_BLOCKS: usize = IO_CHUNK / BLOCK_SIZE;
/// No store range is larger than this share of the bytes left to fetch from its start (see
/// [`Plan::ranges`]; a patch release: a kill lost up to 0.5 MB with 1.6 MB left without it).
const TAIL_SHARE: u64 = 64;
/// ... but ranges may always grow to this (each range is a request), unless
/// [`Plan::with_tail_floor`] says otherwise.
const MIN_TAIL_RANGE: u64 = 16 << 10;
/// Source number of the destination itself (its blocks that are already right).
const FROM_DEST: u16 = u16::MAX;

/// A seed: a partition that may hold blocks of the new image.
#[derive(Debug, Clone)]
pub struct Seed<'a> {
    /// Where it is.
    pub extent: Extent<'a>,
    /// The block hash of each of its blocks, when known without reading it (the leaves of
    /// the dm-verity tree of a running root, [`crate::verity::read_leaves`], when its salt is
    /// the index's). They are a hint: every block copied is hashed again as it is written.
    pub hashes: Option<Vec<u64>>,
    /// Its name, for logs.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    /// Holds the right bytes.
    Done,
    /// Zeros, to write.
    Zero,
    /// Found in a seed: source number and block there.
    Copy { source: u16, block: u32 },
    /// To fetch.
    Missing,
    /// Written (and hashed) by an earlier round of [`Plan::write`].
    Written,
}

/// A byte range of the store to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRange {
    /// First byte.
    pub offset: u64,
    /// Length.
    pub len: u64,
}

/// What a plan found and did, in blocks and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Blocks of the image.
    pub blocks: u64,
    /// Blocks that already held the right bytes.
    pub already_there: u64,
    /// Blocks of zeros written.
    pub zeros: u64,
    /// Blocks copied from a seed.
    pub copied: u64,
    /// Blocks written from fetched frames.
    pub fetched_blocks: u64,
    /// Blocks found nowhere on the host when planned (fetched).
    pub missing: u64,
    /// Blocks copied from the host that were not what the index lists, fetched again.
    pub refetched: u64,
    /// Blocks found through a seed's dm-verity tree (without reading the seed).
    pub found_by_tree: u64,
}

/// The plan for writing one image.
#[derive(Debug)]
pub struct Plan<'a> {
    pub(crate) image: &'a ImageIndex,
    pub(crate) dest: Extent<'a>,
    /// The destination opened with `O_DIRECT`, if the caller has it.
    pub(crate) direct: Option<File>,
    pub(crate) seeds: Vec<Seed<'a>>,
    /// Bytes of each seed that were hashed (what a copy may read).
    pub(crate) seed_lens: Vec<u64>,
    pub(crate) blocks: Vec<Block>,
    pub(crate) stats: Stats,
    /// The image's digest so far, folded in block order as blocks are written.
    pub(crate) digest: Mutex<crate::index::Digest>,
    /// The destination's writer, once [`Plan::write`] opened it.
    pub(crate) out: Option<DirectWriter>,
    /// Where fetched blocks land before they are copied in order (see [`Plan::with_spool`]),
    /// and its length in blocks.
    pub(crate) spool: Option<(File, u32)>,
    /// The smallest a range near the end of the fetch is cut to (see [`Plan::ranges`]).
    tail_floor: u64,
}

impl<'a> Plan<'a> {
    /// Read the destination and the seeds, and decide for every block where it comes from.
    ///
    /// `resume` says the destination may already hold part of this image (an earlier run of
    /// the same update was interrupted): it is then read first, and what is right stays. A
    /// first run skips that read (the destination holds an older release, whose blocks the
    /// running set almost always has too) and writes every block.
    pub fn new(
        image: &'a ImageIndex,
        dest: Extent<'a>,
        seeds: Vec<Seed<'a>>,
        resume: bool,
    ) -> Result<Plan<'a>> {
        ensure!(
            image.size <= dest.len,
            error::TooLargeSnafu {
                image: &image.role,
                size: image.size,
                capacity: dest.len,
            }
        );
        let zero = short_hash(&image.zero_sha());
        let n = image.blocks.len();
        let mut blocks = vec![Block::Missing; n];
        // 1. The destination: what is already right stays (and can seed other blocks).
        let mut dest_ready: Vec<(u64, u32)> = Vec::new();
        let mut at = 0_usize;
        let started = std::time::Instant::now();
        let dest_len = if resume { image.size } else { 0 };
        for (at, hash) in image
            .blocks
            .iter()
            .enumerate()
            .skip(dest_len.div_ceil(BLOCK_SIZE as u64) as usize)
        {
            if *hash == zero {
                blocks[at] = Block::Zero;
            }
        }
        for_each_block(image, dest, dest_len, "the destination partition", |hash| {
            if hash == image.blocks[at] {
                blocks[at] = Block::Done;
                if hash != zero {
                    dest_ready.push((hash, at as u32));
                }
            } else if image.blocks[at] == zero {
                blocks[at] = Block::Zero;
            }
            at += 1;
            true
        })?;
        tracing::debug!(image = %image.role, secs = started.elapsed().as_secs_f64(), "destination read");
        // 2. What is still needed, by hash.
        let mut needed: Vec<(u64, u32)> = (0..n)
            .filter(|&i| blocks[i] == Block::Missing)
            .map(|i| (image.blocks[i], i as u32))
            .collect();
        needed.sort_unstable();
        let mut unresolved = needed.len();
        let mut seed_lens = Vec::with_capacity(seeds.len());
        let mut found_by_tree = 0;
        // 3. The seeds, in order of preference, then the destination's ready blocks.
        for (number, seed) in seeds.iter().enumerate() {
            if unresolved == 0 {
                break;
            }
            let mut j = 0_u32;
            let source = u16::try_from(number).unwrap_or(FROM_DEST - 1);
            let len = used_len(seed.extent);
            seed_lens.push(len);
            let before = unresolved;
            let mut find = |hash| {
                if hash != zero {
                    resolve(&needed, &mut blocks, &mut unresolved, hash, source, j);
                }
                j = j.saturating_add(1);
                // Nothing left to find: the rest of the seeds need not be read.
                unresolved > 0
            };
            match &seed.hashes {
                Some(hashes) => {
                    let known = (len / BLOCK_SIZE as u64).min(hashes.len() as u64) as usize;
                    for hash in &hashes[..known] {
                        if !find(*hash) {
                            break;
                        }
                    }
                    found_by_tree += (before - unresolved) as u64;
                }
                None => for_each_block(image, seed.extent, len, &seed.name, find)?,
            }
            tracing::debug!(image = %image.role, seed = %seed.name, unresolved, secs = started.elapsed().as_secs_f64(), "seed read");
        }
        for (hash, j) in dest_ready {
            if unresolved == 0 {
                break;
            }
            resolve(&needed, &mut blocks, &mut unresolved, hash, FROM_DEST, j);
        }
        let mut stats = Stats {
            blocks: n as u64,
            found_by_tree,
            ..Stats::default()
        };
        stats.already_there = blocks.iter().filter(|b| **b == Block::Done).count() as u64;
        stats.missing = unresolved as u64;
        Ok(Plan {
            image,
            dest,
            direct: None,
            seeds,
            seed_lens,
            blocks,
            stats,
            digest: Mutex::new(crate::index::Digest::new()),
            out: None,
            spool: None,
            tail_floor: MIN_TAIL_RANGE,
        })
    }

    /// Let the ranges at the very end of the fetch shrink to `floor` bytes (4 KiB: single
    /// frames) instead of 16 KiB: for the image whose fetch ends the update, where what a
    /// kill loses (the ranges in flight) is compared with what is left of the whole update.
    /// Each range is a request: about 60 more for a patch release's hash image.
    #[must_use]
    pub fn with_tail_floor(mut self, floor: u64) -> Self {
        self.tail_floor = floor;
        self
    }

    /// Append the fetched blocks to `spool` (opened for reading and writing) as they arrive
    /// (they are checked as the walk takes them), so that a kill loses none of them (give it to the next run's plan as a
    /// seed). The walk in block order copies them from there into the destination, in the
    /// same writes as the copies around them. Without a spool, [`Plan::write`] uses an
    /// unnamed temporary file.
    pub fn with_spool(mut self, spool: File) -> Result<Self> {
        let len = spool.metadata().context(error::ReadSnafu {
            what: "the spool of fetched blocks",
        })?;
        let blocks = u32::try_from(len.len().div_ceil(BLOCK_SIZE as u64)).map_err(|_| {
            error::Error::Write {
                what: "the spool of fetched blocks (too large)".to_owned(),
                source: std::io::Error::other("more than 2^32 blocks"),
            }
        })?;
        self.spool = Some((spool, blocks));
        Ok(self)
    }

    /// Write the copies and zeros through `direct`, the destination's file opened with
    /// `O_DIRECT` (see [`crate::io`]).
    #[must_use]
    pub fn with_direct(mut self, direct: File) -> Self {
        self.direct = Some(direct);
        self
    }

    /// Counts so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The store ranges holding every missing block: each needed frame once, neighbours less
    /// than `gap` bytes apart joined, no range over `max_len`, nor over 1/64 of the frame
    /// bytes left from its start (or the floor, 16 KiB unless [`Plan::with_tail_floor`] says
    /// otherwise; unless one frame is). The ranges near the end of
    /// a fetch are small, so that what a kill loses (the ranges in flight, sent but not yet
    /// read) stays a small share of what is left to fetch.
    pub fn ranges(&self, gap: u64, max_len: u64) -> Vec<StoreRange> {
        let mut frames: Vec<(u64, u64)> = self
            .missing()
            .map(|i| {
                let frame = &self.image.frames[i];
                (frame.offset, u64::from(frame.len))
            })
            .collect();
        frames.sort_unstable();
        frames.dedup();
        let mut left: u64 = frames.iter().map(|(_, len)| len).sum();
        let mut out: Vec<StoreRange> = Vec::new();
        // The largest the range being built may grow.
        let mut cap = 0;
        for (offset, len) in frames {
            match out.last_mut() {
                Some(last)
                    if offset <= last.offset.saturating_add(last.len).saturating_add(gap)
                        && offset.saturating_add(len) - last.offset <= cap =>
                {
                    last.len = (offset + len).max(last.offset + last.len) - last.offset;
                }
                _ => {
                    cap = max_len.min((left / TAIL_SHARE).max(self.tail_floor));
                    out.push(StoreRange { offset, len });
                }
            }
            left -= len;
        }
        out
    }

    /// Bytes [`Plan::ranges`] would fetch.
    pub fn fetch_bytes(&self, gap: u64, max_len: u64) -> u64 {
        self.ranges(gap, max_len).iter().map(|r| r.len).sum()
    }

    /// Blocks still missing.
    pub(crate) fn missing(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.blocks.len()).filter(|&i| self.blocks[i] == Block::Missing)
    }

    /// Blocks from `i` that [`Plan::write`] handles as one run: of the same kind, at most
    /// [`IO_BLOCKS`], and for copies consecutive in the same seed.
    pub(crate) fn run(&self, i: usize) -> usize {
        let n = self.blocks.len();
        let mut k = 1;
        while i + k < n && k < IO_BLOCKS {
            let next = self.blocks[i + k];
            let same = match self.blocks[i] {
                Block::Copy { source, block } => block
                    .checked_add(k as u32)
                    .is_some_and(|b| next == Block::Copy { source, block: b }),
                kind => next == kind,
            };
            if !same {
                break;
            }
            k += 1;
        }
        k
    }

    /// Seed `source` and how many of its bytes were hashed.
    pub(crate) fn source(&self, source: u16) -> (Extent<'a>, u64) {
        if source == FROM_DEST {
            (self.dest, self.image.size)
        } else {
            let i = source as usize;
            (
                self.seeds[i].extent,
                self.seed_lens.get(i).copied().unwrap_or(0),
            )
        }
    }

    /// Bytes of `k` blocks from block `i` (the image's last block may be short).
    pub(crate) fn run_len(&self, i: usize, k: usize) -> usize {
        (i..i + k).map(|b| self.image.block_len(b)).sum()
    }
}

/// Point every still-missing block with `hash` at `block` of seed `source`.
fn resolve(
    needed: &[(u64, u32)],
    blocks: &mut [Block],
    unresolved: &mut usize,
    hash: u64,
    source: u16,
    block: u32,
) {
    let start = needed.partition_point(|(h, _)| *h < hash);
    for (h, i) in &needed[start..] {
        if *h != hash {
            break;
        }
        let slot = &mut blocks[*i as usize];
        if *slot == Block::Missing {
            *slot = Block::Copy { source, block };
            *unresolved -= 1;
        }
    }
}

/// Call `f` with the hash of every block of the first `len` bytes of `extent`, in order,
/// until it returns `false`. Blocks of zeros are not hashed (their hash is known), and the
/// others are hashed on every core.
fn for_each_block(
    image: &ImageIndex,
    extent: Extent<'_>,
    len: u64,
    what: &str,
    mut f: impl FnMut(u64) -> bool,
) -> Result<()> {
    let zero = short_hash(&image.zero_sha());
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut hashes = Vec::with_capacity(IO_BLOCKS);
    let mut go_on = true;
    read_extent(extent, len.min(extent.len), what, |chunk| {
        if !go_on {
            return false;
        }
        hashes.clear();
        hashes.resize(chunk.len().div_ceil(BLOCK_SIZE), 0_u64);
        let per = hashes.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (out, part) in hashes.chunks_mut(per).zip(chunk.chunks(per * BLOCK_SIZE)) {
                scope.spawn(move || {
                    for (slot, block) in out.iter_mut().zip(part.chunks(BLOCK_SIZE)) {
                        *slot = if is_zero(block) {
                            zero
                        } else {
                            short_hash(&image.sha(block))
                        };
                    }
                });
            }
        });
        for hash in &hashes {
            if !f(*hash) {
                go_on = false;
                break;
            }
        }
        go_on
    })
}

/// The bytes of `extent` worth reading as a seed: an ext4 file system's size when it holds one
/// (the rest of the partition is left over from older, larger images at best), else all of
/// it.
fn used_len(extent: Extent<'_>) -> u64 {
    let mut sb = [0_u8; 1024];
    if extent.len < 2048
        || extent
            .file
            .read_exact_at(&mut sb, extent.offset + 1024)
            .is_err()
    {
        return extent.len;
    }
    let le32 = |at: usize| u32::from_le_bytes([sb[at], sb[at + 1], sb[at + 2], sb[at + 3]]);
    // Magic 0xEF53 at 0x38; block count at 0x04 (low) and 0x150 (high, with the 64bit
    // feature, bit 0x80 of the incompatible features at 0x60); block size 1024 << (0x18).
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
        return extent.len;
    }
    let high = if le32(0x60) & 0x80 != 0 {
        u64::from(le32(0x150))
    } else {
        0
    };
    let blocks = (high << 32) | u64::from(le32(0x04));
    let shift = le32(0x18);
    if shift > 6 {
        return extent.len;
    }
    blocks.saturating_mul(1024 << shift).min(extent.len)
}

/// Whether `block` is all zeros (a memory compare, much faster than hashing it).
pub(crate) fn is_zero(block: &[u8]) -> bool {
    static ZEROS: [u8; BLOCK_SIZE] = [0; BLOCK_SIZE];
    block == &ZEROS[..block.len()]
}

/// Call `f` with every chunk of the first `len` bytes of `extent`, in order, until it returns
/// `false`.
fn read_extent(
    extent: Extent<'_>,
    len: u64,
    what: &str,
    mut f: impl FnMut(&[u8]) -> bool,
) -> Result<()> {
    let mut buf = crate::io::AlignedBuffer::reused(IO_CHUNK);
    let mut at = 0_u64;
    let mut read = Ok(());
    while at < len {
        let n = (len - at).min(IO_CHUNK as u64) as usize;
        read = extent
            .file
            .read_exact_at(&mut buf.get_mut()[..n], extent.offset + at)
            .context(error::ReadSnafu { what });
        if read.is_err() || !f(&buf.get()[..n]) {
            break;
        }
        at += n as u64;
    }
    buf.give_back();
    read
}
