//! Writing a planned image ([`Plan::write`]): the caller's thread decompresses each fetched
//! block as its frame arrives and appends it to the spool (see [`Plan::with_spool`]); one walk
//! in block order gathers the copies, the fetched blocks (from the spool, waiting for each as
//! it reaches it) and short runs of zeros into 4 MiB buffers; hashing threads check every
//! block of a buffer against the index (each block is hashed once), then a writing thread
//! writes it with direct I/O (long runs of zeros by `fallocate`), and the image's digest is
//! folded in block order. A fetched block that is not the indexed one stops the write; a copy
//! that is not (a seed that changed since the plan, or a tree leaf that lied) is fetched in a
//! second round.
use crate::apply::{Block, IO_BLOCKS, IO_CHUNK, Plan, Stats, StoreRange, is_zero};
use crate::error::{self, Result};
use crate::index::{BLOCK_SIZE, short_hash};
use crate::io::{AlignedBuffer, DirectWriter};
use snafu::{ResultExt, ensure};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

/// Runs of at least this many blocks of zeros are zeroed with one call
/// ([`DirectWriter::zero_at`]); shorter ones are written with the copies around them.
const ZERO_RUN_BLOCKS: usize = 16;
/// Fetched blocks of one piece now in the spool: (block of the image, block of the spool).
type Arrived = Vec<(usize, u32)>;
/// Pieces spooled, for the copying thread (it takes all there are
/// between two of its writes).
const FETCHED_QUEUE: usize = 64;
/// Buffers of [`IO_CHUNK`] going round from the copying thread to the hashing threads, the
/// writing thread and back.
const COPY_BUFFERS: usize = 4;

/// What a round of [`Plan::write`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The image is written and its digest checked.
    Done(Stats),
    /// Some blocks copied from the host were not what the index lists (a seed changed, or a
    /// tree leaf lied): fetch [`Plan::ranges`] again and call [`Plan::write`] once more.
    Again,
}

impl<'a> Plan<'a> {
    /// Write the image (one round): the blocks found in a seed and the zeros (on threads of
    /// their own), and the missing blocks from `fetched`: the store's bytes of each range
    /// [`Plan::ranges`] listed, as pieces `(range, at, bytes)` (`bytes` are the range's from
    /// `at`; a range's pieces in order, ranges in any order). Each block is checked against
    /// Each block is appended to the spool as soon as its frame is complete (a kill loses
    /// only the frames still incomplete), then checked against its hash in the index and
    /// written. Every block's salted SHA-256 is computed once, before it is written.
    ///
    /// Copied blocks that are not what the index lists (a seed that changed since the plan,
    /// or a tree leaf that lied) end the round with [`Written::Again`]: fetch
    /// [`Plan::ranges`] and call this again (once; a second such round is an error).
    /// Otherwise the destination is synced and the image's digest over every block's SHA-256
    /// checked: [`Written::Done`].
    ///
    /// A bad fetched block (not a zstd frame, or not the indexed bytes) stops everything with
    /// [`error::Error::BadPiece`] before it is written; when
    /// `fetched` ends with blocks still missing (a range failed), the copying stops too and
    /// the result is [`error::Error::Incomplete`]; a digest that differs is
    /// [`error::Error::Digest`]. After any error the caller writes the full image instead.
    pub fn write<B: AsRef<[u8]>>(
        &mut self,
        fetched: impl IntoIterator<Item = (StoreRange, u64, B)>,
    ) -> Result<Written> {
        let out = match self.out.take() {
            Some(out) => out,
            None => DirectWriter::new(
                self.dest.file.try_clone().context(error::WriteSnafu {
                    what: "the destination partition",
                })?,
                self.direct.take(),
            ),
        };
        let (spool, mut spool_end) = match self.spool.take() {
            Some(spool) => spool,
            None => (
                tempfile::tempfile().context(error::WriteSnafu {
                    what: "the spool of fetched blocks",
                })?,
                0,
            ),
        };
        let bad = Mutex::new(Vec::new());
        let stop = AtomicBool::new(false);
        let mut fetch = Fetched::new(self)?;
        let started = std::time::Instant::now();
        let this = &*self;
        let (fetched_tx, fetched_rx) = std::sync::mpsc::sync_channel::<Arrived>(FETCHED_QUEUE);
        let (copied, applied) = std::thread::scope(|scope| {
            let copier = scope.spawn(|| {
                yield_to_fetching();
                let copied = this.copy_pass(&out, &spool, &bad, fetched_rx, &stop);
                tracing::debug!(image = %this.image.role, secs = started.elapsed().as_secs_f64(), "copies, zeros and fetched blocks written");
                copied
            });
            let mut applied = Ok(());
            for (range, at, bytes) in fetched {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match fetch.piece(this, (range, at, bytes.as_ref()), (&spool, &mut spool_end)) {
                    // The copying thread writes them (it is gone only after an error).
                    Ok(arrived) => {
                        if fetched_tx.send(arrived).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        applied = Err(e);
                        break;
                    }
                }
            }
            drop(fetched_tx);
            tracing::debug!(image = %this.image.role, secs = started.elapsed().as_secs_f64(), "fetched blocks spooled");
            if applied.is_err() || fetch.remaining > 0 {
                stop.store(true, Ordering::Relaxed);
            }
            let copied = copier
                .join()
                .unwrap_or_else(|_| Err(panicked("the copying thread")));
            (copied, applied)
        });
        self.out = Some(out);
        self.spool = Some((spool, spool_end));
        applied?;
        ensure!(
            fetch.remaining == 0,
            error::IncompleteSnafu {
                image: &self.image.role,
                missing: fetch.remaining,
            }
        );
        let (zeros, copied) = copied?;
        self.stats.zeros += zeros;
        self.stats.copied += copied;
        self.stats.fetched_blocks += fetch.blocks;
        self.blocks.fill(Block::Written);
        // Blocks that were not what the plan found (a seed that changed, or a tree leaf that
        // lied): fetched in another round.
        let bad = bad.into_inner().unwrap_or_else(|e| e.into_inner());
        if !bad.is_empty() {
            ensure!(
                self.stats.refetched == 0,
                error::IncompleteSnafu {
                    image: &self.image.role,
                    missing: bad.len(),
                }
            );
            tracing::warn!(image = %self.image.role, blocks = bad.len(), "blocks copied from this host were not what the index lists; fetching them");
            for i in &bad {
                self.blocks[*i] = Block::Missing;
            }
            self.stats.refetched = bad.len() as u64;
            self.stats.copied -= (bad.len() as u64).min(self.stats.copied);
            return Ok(Written::Again);
        }
        let out = self.out.as_ref().map_or(Ok(()), DirectWriter::sync);
        out.context(error::WriteSnafu {
            what: "the destination partition",
        })?;
        tracing::debug!(image = %self.image.role, secs = started.elapsed().as_secs_f64(), "delta image written");
        let digest = self.digest.get_mut().unwrap_or_else(|e| e.into_inner());
        ensure!(
            digest.next == self.blocks.len(),
            error::IncompleteSnafu {
                image: &self.image.role,
                missing: self.blocks.len() - digest.next,
            }
        );
        let actual = digest.finish();
        ensure!(
            actual == self.image.digest,
            error::DigestSnafu {
                image: &self.image.role,
                expected: hex::encode(self.image.digest),
                actual: hex::encode(actual),
            }
        );
        Ok(Written::Done(self.stats))
    }

    /// The copying side of [`Plan::write`]: every block found in a seed or already in place,
    /// the zeros and the fetched blocks, in order, until done or `stop`. The reads run here,
    /// the SHA-256 of each block on as many threads as there are cores, and the writes on a
    /// thread of their own.
    /// Returns the blocks of zeros and the blocks copied.
    fn copy_pass(
        &self,
        out: &DirectWriter,
        spool: &File,
        bad: &Mutex<Vec<usize>>,
        fetched: Receiver<Arrived>,
        stop: &AtomicBool,
    ) -> Result<(u64, u64)> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<AlignedBuffer>(COPY_BUFFERS);
        for _ in 0..COPY_BUFFERS {
            let _ = free_tx.send(AlignedBuffer::reused(IO_CHUNK));
        }
        let (hash_tx, hash_rx) = std::sync::mpsc::sync_channel::<Op>(COPY_BUFFERS);
        let hash_rx = std::sync::Arc::new(Mutex::new(hash_rx));
        let (write_tx, write_rx) = std::sync::mpsc::sync_channel::<Op>(COPY_BUFFERS);
        // The first error of a hashing thread (a bad fetched block).
        let failed = Mutex::new(None);
        let done = std::thread::scope(|scope| {
            for _ in 0..threads {
                let (free_tx, write_tx, hash_rx) =
                    (free_tx.clone(), write_tx.clone(), hash_rx.clone());
                let failed = &failed;
                scope.spawn(move || {
                    yield_to_fetching();
                    loop {
                        let op = hash_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(op) = op else { break };
                        let op = self.hash_op(op, bad, failed, stop);
                        let back = match op {
                            Ok(op) => match write_tx.send(op) {
                                Ok(()) => None,
                                // The writer stopped (its error is reported).
                                Err(std::sync::mpsc::SendError(op)) => {
                                    stop.store(true, Ordering::Relaxed);
                                    op.into_buffer()
                                }
                            },
                            Err(buf) => buf,
                        };
                        if let Some(buf) = back {
                            // The walk may be over.
                            let _ = free_tx.send(buf);
                        }
                    }
                });
            }
            drop(hash_rx);
            let writer = {
                let free_tx = free_tx.clone();
                scope.spawn(move || write_ops(out, write_rx, &free_tx))
            };
            drop(free_tx);
            // One walk, in block order, on this thread (the digest takes blocks in order: two
            // walkers over two halves held the second half's hashes in memory, and were not
            // faster).
            let mut walker = Walker {
                plan: self,
                spool,
                free_rx: &free_rx,
                hash_tx,
                write_tx,
                arrived: BTreeMap::new(),
                zero_blocks: 0,
                copied: 0,
            };
            let walked = walker.walk(&fetched, stop);
            let (zero_blocks, copied) = (walker.zero_blocks, walker.copied);
            drop(walker);
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(panicked("the writing thread")));
            // A bad fetched block first, then the writer's error: the walk only saw that
            // the threads after it were gone.
            let failed = failed.lock().unwrap_or_else(|e| e.into_inner()).take();
            let done = failed.map_or(Ok(()), Err).and(written).and(walked);
            if done.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            done.map(|()| (zero_blocks, copied))
        });
        // The buffers, for the next image.
        for buf in free_rx.try_iter() {
            buf.give_back();
        }
        done
    }

    /// One op of a hashing thread: `Ok` with the op to write, else the buffer to give back
    /// (blocks only read back, or after an error: the walk stops then).
    fn hash_op(
        &self,
        op: Op,
        bad: &Mutex<Vec<usize>>,
        failed: &Mutex<Option<error::Error>>,
        stop: &AtomicBool,
    ) -> std::result::Result<Op, Option<AlignedBuffer>> {
        if stop.load(Ordering::Relaxed) {
            return Err(op.into_buffer());
        }
        match op {
            Op::Write {
                first,
                ref buf,
                len,
                ..
            } => match self.hash_job(first, &buf.get()[..len], bad) {
                Ok(()) => Ok(op),
                Err(e) => {
                    failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                    stop.store(true, Ordering::Relaxed);
                    Err(op.into_buffer())
                }
            },
            // Blocks already in place (a wrong one goes to `bad`; none was fetched).
            Op::Hash {
                first,
                ref buf,
                len,
            } => {
                let checked = self.hash_job(first, &buf.get()[..len], bad);
                debug_assert!(checked.is_ok(), "blocks in place are not fetched");
                Err(op.into_buffer())
            }
            Op::Zero { .. } => Ok(op),
        }
    }

    /// Hash the blocks of `bytes` (from block `first`) and fold the right ones into the
    /// digest. A fetched block that is not the indexed one is an error; the others (copies, or
    /// blocks already in place) go to `bad`, fetched in another round.
    fn hash_job(&self, first: usize, bytes: &[u8], bad: &Mutex<Vec<usize>>) -> Result<()> {
        let zero_sha = self.image.zero_sha();
        let (right, wrong): (Vec<_>, Vec<_>) = bytes
            .chunks(BLOCK_SIZE)
            .enumerate()
            .map(|(b, block)| {
                // The SHA-256 of zeros is known (a compare is much cheaper than hashing them).
                let sha = if is_zero(block) {
                    zero_sha
                } else {
                    self.image.sha(block)
                };
                (first + b, sha)
            })
            .partition(|(i, sha)| short_hash(sha) == self.image.blocks[*i]);
        if let Some((i, _)) = wrong
            .iter()
            .find(|(i, _)| self.blocks[*i] == Block::Missing)
        {
            let frame = self.image.frames[*i];
            return error::BadPieceSnafu {
                image: &self.image.role,
                offset: frame.offset,
                end: frame.offset + u64::from(frame.len),
                reason: format!("block {i}: not the bytes the index lists"),
            }
            .fail();
        }
        if !wrong.is_empty() {
            bad.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(wrong.into_iter().map(|(i, _)| i));
        }
        self.fold(right);
        Ok(())
    }

    /// Blocks from `i` that are copies, short runs of zeros or fetched blocks that arrived,
    /// at most [`IO_BLOCKS`]: one write.
    fn stretch(&self, i: usize, arrived: &BTreeMap<usize, u32>) -> usize {
        let n = self.blocks.len();
        let mut k = 0;
        while i + k < n && k < IO_BLOCKS {
            match self.blocks[i + k] {
                Block::Copy { .. } => k += 1,
                Block::Missing if arrived.contains_key(&(i + k)) => k += 1,
                Block::Zero => {
                    let zeros = self.run(i + k);
                    if zeros >= ZERO_RUN_BLOCKS && k > 0 {
                        break;
                    }
                    k = (k + zeros).min(IO_BLOCKS);
                }
                _ => break,
            }
        }
        k.max(1)
    }

    /// Add written blocks' salted SHA-256 to the image's digest: the digest takes them in
    /// block order, so a block written early waits (in a small map) until the blocks before it
    /// are in; blocks of zeros need no hashing. Memory stays that of the blocks written out of
    /// order, whatever the image's size.
    fn fold(&self, shas: impl IntoIterator<Item = (usize, [u8; 32])>) {
        let mut digest = self.digest.lock().unwrap_or_else(|e| e.into_inner());
        // Blocks of zeros are folded without waiting for them.
        let next = digest.next;
        let frames = &self.image.frames;
        let shas: Vec<_> = shas
            .into_iter()
            .filter(|(i, _)| *i >= next && !frames[*i].is_zero())
            .collect();
        digest.ahead.extend(shas);
        let zero = self.image.zero_sha();
        while digest.next < self.blocks.len() {
            let next = digest.next;
            let sha = match digest.ahead.remove(&next) {
                Some(sha) => sha,
                None if self.image.frames[next].is_zero() => zero,
                None => break,
            };
            digest.push(&sha);
        }
    }
}

/// Work for the hashing and writing threads of [`Plan::copy_pass`].
enum Op {
    /// Hash the buffer's `len` bytes (from block `first`), then write them at `at`.
    Write {
        first: usize,
        buf: AlignedBuffer,
        len: usize,
        at: u64,
    },
    /// Only hash them (blocks already in place, read back).
    Hash {
        first: usize,
        buf: AlignedBuffer,
        len: usize,
    },
    /// Zero `len` bytes at `at` (sent to the writer directly).
    Zero { at: u64, len: u64 },
}

impl Op {
    fn into_buffer(self) -> Option<AlignedBuffer> {
        match self {
            Op::Write { buf, .. } | Op::Hash { buf, .. } => Some(buf),
            Op::Zero { .. } => None,
        }
    }
}

/// The writing thread of [`Plan::copy_pass`]: each op in turn (each buffer then goes back to
/// `free`); stops at the first error.
fn write_ops(
    out: &DirectWriter,
    ops: Receiver<Op>,
    free: &SyncSender<AlignedBuffer>,
) -> Result<()> {
    let write_error = || error::WriteSnafu {
        what: "the destination partition",
    };
    for op in ops {
        match op {
            Op::Zero { at, len } => out.zero_at(at, len).context(write_error())?,
            Op::Write { buf, len, at, .. } => {
                out.write_at(&buf.get()[..len], at).context(write_error())?;
                // The walk may be over.
                let _ = free.send(buf);
            }
            Op::Hash { buf, .. } => {
                let _ = free.send(buf);
            }
        }
    }
    Ok(())
}

/// The copying thread's state in [`Plan::copy_pass`].
struct Walker<'p, 'a> {
    plan: &'p Plan<'a>,
    spool: &'p File,
    free_rx: &'p Receiver<AlignedBuffer>,
    hash_tx: SyncSender<Op>,
    write_tx: SyncSender<Op>,
    /// Fetched blocks in the spool, not written yet: block of the image, block of the spool.
    arrived: BTreeMap<usize, u32>,
    zero_blocks: u64,
    copied: u64,
}

impl Walker<'_, '_> {
    /// Take the fetched blocks that arrived (without waiting).
    fn take_arrived(&mut self, fetched: &Receiver<Arrived>) {
        while let Ok(blocks) = fetched.try_recv() {
            self.arrived.extend(blocks);
        }
    }

    /// The walk: every block in order, each fetched block as soon as it arrived (the fetched
    /// blocks are in the spool: waiting for them does not slow the fetching, and they are
    /// written in the same calls as the copies around them).
    fn walk(&mut self, fetched: &Receiver<Arrived>, stop: &AtomicBool) -> Result<()> {
        let plan = self.plan;
        let end = plan.blocks.len();
        let mut i = 0;
        while i < end && !stop.load(Ordering::Relaxed) {
            self.take_arrived(fetched);
            let kind = plan.blocks[i];
            let k = match kind {
                // Written in an earlier round.
                Block::Written => {
                    i += plan.run(i).min(end - i);
                    continue;
                }
                // Not fetched yet: wait for it (the fetching side waits for the walk only
                // when 64 pieces are queued, and fetches in about block order; the end of
                // the fetching side without it is reported by the caller).
                Block::Missing if !self.arrived.contains_key(&i) => {
                    match fetched.recv() {
                        Ok(blocks) => self.arrived.extend(blocks),
                        Err(_) => return Ok(()),
                    }
                    continue;
                }
                // A run already in place (resuming) is only read, for its SHA-256; a long run
                // of zeros is zeroed; a stretch of copies, short runs of zeros and fetched
                // blocks is gathered into one buffer and written with one call.
                Block::Done => plan.run(i),
                Block::Zero if plan.run(i) >= ZERO_RUN_BLOCKS => plan.run(i),
                _ => plan.stretch(i, &self.arrived),
            }
            .min(end - i);
            if !self.put(i, k, kind)? {
                break;
            }
            i += k;
        }
        Ok(())
    }

    /// Have the `k` blocks from `i` (of `kind` for the first; see [`Walker::walk`]) hashed
    /// and written. `false` when the writing or hashing threads are gone (after an error,
    /// which the caller reports).
    fn put(&mut self, i: usize, k: usize, kind: Block) -> Result<bool> {
        let plan = self.plan;
        let len = plan.run_len(i, k);
        let at = plan.dest.offset + (i * BLOCK_SIZE) as u64;
        if plan.blocks[i..i + k].iter().all(|b| *b == Block::Zero) {
            self.zero_blocks += k as u64;
            let op = Op::Zero {
                at,
                len: len as u64,
            };
            return Ok(self.write_tx.send(op).is_ok());
        }
        let Ok(mut buf) = self.free_rx.recv() else {
            return Ok(false);
        };
        let op = if kind == Block::Done {
            plan.dest
                .file
                .read_exact_at(&mut buf.get_mut()[..len], at)
                .context(error::ReadSnafu {
                    what: "the written partition",
                })?;
            Op::Hash { first: i, buf, len }
        } else {
            self.gather(i, k, &mut buf.get_mut()[..len])?;
            Op::Write {
                first: i,
                buf,
                len,
                at,
            }
        };
        Ok(self.hash_tx.send(op).is_ok())
    }

    /// Fill `buf` with the `k` blocks from `i` (copies, zeros, and fetched blocks from the
    /// spool), reading each run of consecutive blocks of a seed or of the spool with one
    /// call. Only the bytes of a seed that were hashed when planned are read (the rest of a
    /// short last block is zeros, as it was hashed).
    fn gather(&mut self, i: usize, k: usize, buf: &mut [u8]) -> Result<()> {
        let plan = self.plan;
        let mut j = i;
        while j < i + k {
            let (run, source) = match plan.blocks[j] {
                Block::Copy { source, block } => {
                    let run = plan.run(j).min(i + k - j);
                    self.copied += run as u64;
                    let (extent, hashed) = plan.source(source);
                    (
                        run,
                        Some((extent.file, extent.offset, u64::from(block), hashed)),
                    )
                }
                Block::Missing => {
                    // Blocks consecutive in the spool too.
                    let first = self.arrived.remove(&j);
                    // stretch() takes only fetched blocks that arrived.
                    debug_assert!(first.is_some(), "block {j} has not arrived");
                    let first = first.unwrap_or_default();
                    let mut run = 1;
                    while j + run < i + k
                        && self.arrived.get(&(j + run)) == Some(&(first + run as u32))
                    {
                        self.arrived.remove(&(j + run));
                        run += 1;
                    }
                    (run, Some((self.spool, 0, u64::from(first), u64::MAX)))
                }
                _ => {
                    let run = plan.run(j).min(i + k - j);
                    self.zero_blocks += run as u64;
                    (run, None)
                }
            };
            let start = (j - i) * BLOCK_SIZE;
            let part = &mut buf[start..start + plan.run_len(j, run)];
            match source {
                Some((file, offset, block, hashed)) => {
                    let from = block * BLOCK_SIZE as u64;
                    let avail = part.len().min(hashed.saturating_sub(from) as usize);
                    file.read_exact_at(&mut part[..avail], offset + from)
                        .context(error::ReadSnafu {
                            what: "a seed partition or the spool",
                        })?;
                    part[avail..].fill(0);
                }
                None => part.fill(0),
            }
            j += run;
        }
        Ok(())
    }
}

/// The fetching side of [`Plan::write`]: which missing blocks each store frame holds.
struct Fetched {
    /// (frame offset, block), sorted: every block still to fetch.
    pending: Vec<(u64, u32)>,
    /// Which of `pending` are spooled.
    done: Vec<bool>,
    /// Blocks of `pending` not spooled yet.
    remaining: usize,
    /// Blocks spooled from fetched frames.
    blocks: u64,
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
    fn new(plan: &Plan<'_>) -> Result<Fetched> {
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
    fn piece(
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

/// Lower this thread's priority (nice 10), so that the fetching side checks and spools
/// fetched bytes as soon as they arrive: what it has not read yet, a kill loses. (Measured
/// before the spool: without it, a kill early in a patch update lost 1.5 MB of 2.4 MB
/// fetched. A failure only leaves the priority as it was.)
fn yield_to_fetching() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

/// The error of a thread of [`Plan::write`] that panicked.
fn panicked(which: &str) -> error::Error {
    error::Error::Write {
        what: format!("the destination partition ({which} panicked)"),
        source: std::io::Error::other("panic"),
    }
}
