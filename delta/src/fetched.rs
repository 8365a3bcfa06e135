//! The fetching side of [`Plan::write`]: the store's bytes of each range, as they arrive,
//! decompressed frame by frame and appended to the spool, for the walk (see `write.rs`).
use crate::apply::{Plan, StoreRange};
use crate::error::{self, Result};
use crate::index::BLOCK_SIZE;
use snafu::{ResultExt, ensure};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Fetched blocks of one piece now in the spool: (block of the image, block of the spool).
pub(crate) type Arrived = Vec<(usize, u32)>;

/// The fetching side of [`Plan::write`]: which missing blocks each store frame holds.
pub(crate) struct Fetched {
    /// (frame offset, block), sorted: every block still to fetch.
    pending: Vec<(u64, u32)>,
    /// Which of `pending` are spooled.
    done: Vec<bool>,
    /// Blocks of `pending` not spooled yet.
    pub(crate) remaining: usize,
    /// Blocks spooled from fetched frames.
    pub(crate) blocks: u64,
    decompressor: zstd::bulk::Decompressor<'static>,
    /// A frame's bytes, decompressed (one block).
    raw: Box<[u8; BLOCK_SIZE]>,
    /// A piece's blocks, for the spool (kept: allocations that come and go per piece grow the
    /// heap of a long update).
    spooled: Vec<u8>,
    /// The bytes so far of each range that arrived in pieces and is not complete yet.
    partial: std::collections::HashMap<u64, Vec<u8>>,
}

impl Fetched {
    pub(crate) fn new(plan: &Plan<'_>) -> Result<Fetched> {
        let mut pending: Vec<(u64, u32)> = plan
            .missing()
            .map(|i| (plan.image.frames[i].offset, i as u32))
            .collect();
        pending.sort_unstable();
        let decompressor = zstd::bulk::Decompressor::new().context(error::WriteSnafu {
            what: "a zstd decompressor",
        })?;
        Ok(Fetched {
            done: vec![false; pending.len()],
            remaining: pending.len(),
            pending,
            blocks: 0,
            decompressor,
            raw: Box::new([0; BLOCK_SIZE]),
            spooled: Vec::new(),
            partial: std::collections::HashMap::new(),
        })
    }

    /// A piece of a fetched range (`bytes`, the range's from `at`): the frames it completes
    /// are decompressed and spooled ([`Fetched::apply`]); the bytes of the range so far are kept
    /// until it is complete.
    pub(crate) fn piece(
        &mut self,
        plan: &Plan<'_>,
        (range, at, bytes): (StoreRange, u64, &[u8]),
        spool: (&File, &mut u32),
    ) -> Result<Arrived> {
        let short = || error::Error::ShortRange {
            offset: range.offset,
            len: range.len,
            got: at + bytes.len() as u64,
        };
        if at + bytes.len() as u64 > range.len {
            return Err(short());
        }
        // A whole range in one piece: nothing to keep.
        if at == 0 && bytes.len() as u64 == range.len {
            return self.apply(plan, range, bytes, spool);
        }
        let mut so_far = self.partial.remove(&range.offset).unwrap_or_default();
        if so_far.len() as u64 != at {
            return Err(short());
        }
        so_far.extend_from_slice(bytes);
        let received = StoreRange {
            offset: range.offset,
            len: so_far.len() as u64,
        };
        let arrived = self.apply(plan, received, &so_far, spool)?;
        if received.len < range.len {
            self.partial.insert(range.offset, so_far);
        }
        Ok(arrived)
    }

    /// Every missing block whose frame lies in `range` and is not spooled yet, from `bytes`
    /// (the store's bytes of `range`, all of them: see [`Fetched::piece`]), decompressed and
    /// appended to the spool (`spool`, at block `spool_end`, which moves on).
    fn apply(
        &mut self,
        plan: &Plan<'_>,
        range: StoreRange,
        bytes: &[u8],
        (spool, spool_end): (&File, &mut u32),
    ) -> Result<Arrived> {
        debug_assert_eq!(bytes.len() as u64, range.len, "a whole range");
        let end = range.offset + range.len;
        let mut k = self
            .pending
            .partition_point(|(offset, _)| *offset < range.offset);
        let mut raw_len = 0;
        let mut raw_offset = None;
        let mut arrived: Arrived = Vec::new();
        self.spooled.clear();
        while k < self.pending.len() && self.pending[k].0 < end {
            let (offset, block) = self.pending[k];
            let i = block as usize;
            let frame = plan.image.frames[i];
            let frame_end = offset + u64::from(frame.len);
            if self.done[k] || frame_end > end {
                k += 1;
                continue;
            }
            if raw_offset != Some(offset) {
                let start = (offset - range.offset) as usize;
                raw_len = self
                    .decompressor
                    .decompress_to_buffer(
                        &bytes[start..start + frame.len as usize],
                        &mut self.raw[..],
                    )
                    .map_err(|e| error::Error::BadPiece {
                        image: plan.image.role.clone(),
                        offset,
                        end: frame_end,
                        reason: format!("not a zstd frame ({e})"),
                    })?;
                raw_offset = Some(offset);
            }
            // Blocks sharing a frame have the same bytes; the image's last block may be short.
            // (Their hashes are checked before they are written: see `Plan::hash_job`.)
            let len = plan.image.block_len(i);
            let raw = &self.raw[..raw_len];
            ensure!(
                raw.len() >= len,
                error::BadPieceSnafu {
                    image: &plan.image.role,
                    offset,
                    end: frame_end,
                    reason: format!("block {i}: {} bytes, not {len}", raw.len()),
                }
            );
            let at = self.spooled.len();
            self.spooled.extend_from_slice(&raw[..len]);
            self.spooled.resize(at + BLOCK_SIZE, 0);
            arrived.push((i, *spool_end + arrived.len() as u32));
            self.done[k] = true;
            k += 1;
        }
        spool
            .write_all_at(&self.spooled, u64::from(*spool_end) * BLOCK_SIZE as u64)
            .context(error::WriteSnafu {
                what: "the spool of fetched blocks",
            })?;
        *spool_end += arrived.len() as u32;
        self.remaining -= arrived.len();
        self.blocks += arrived.len() as u64;
        Ok(arrived)
    }
}
