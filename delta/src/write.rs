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
use crate::fetched::{Arrived, Fetched};
use crate::index::{BLOCK_SIZE, short_hash};
use crate::io::{AlignedBuffer, DirectWriter};
use snafu::{ResultExt, ensure};
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Condvar, Mutex};

/// Runs of at least this many blocks of zeros are zeroed with one call
/// ([`DirectWriter::zero_at`]); shorter ones are written with the copies around them.
const ZERO_RUN_BLOCKS: usize = 16;
/// The walk goes past a stretch of at least this many blocks where blocks not fetched yet are
/// less than this far apart (4 MiB), and writes it later ([`Walker::walk`]). Measured on a
/// kernel release, whose new modules fill 5–30% of the root: the walk waited 0.2 s for them
/// with the device idle, while 250 MB of copies after them could have been written.
const HOLE_BLOCKS: usize = IO_BLOCKS;
/// How far past the end of a stretch it went past the walk goes before it writes it (waiting
/// for its blocks): 256 MiB of blocks whose hashes wait in memory for the digest, about 4 MB.
const MAX_AHEAD_BLOCKS: usize = 1 << 16;
/// Buffers of [`IO_CHUNK`] going round from the copying thread to the hashing threads, the
/// writing thread and back (at most).
const COPY_BUFFERS: usize = 4;
/// Buffers of [`IO_CHUNK`] the walks of all images hold at once, in the whole process: the
/// next image's fetch may start while the image before is still written (updog fetches the
/// next image then), and three walks of 4 buffers took a kernel release's update to 57 MiB
/// (50 MiB with 6 buffers shared, 46 MiB with 4, in the same time: the device is the limit).
/// So a walk may wait until another gives its buffers back; its fetching side does not.
const WALK_BUFFERS: usize = 4;
static WALK_BUDGET: Mutex<usize> = Mutex::new(WALK_BUFFERS);
static WALK_FREED: Condvar = Condvar::new();

/// A walk's share of [`WALK_BUFFERS`], given back when dropped.
struct Budget(usize);

impl Budget {
    /// Up to `max` buffers; waits until there is at least one, or until `stop` (then none).
    fn take(max: usize, stop: &AtomicBool) -> Budget {
        let mut left = WALK_BUDGET.lock().unwrap_or_else(|e| e.into_inner());
        while *left == 0 && !stop.load(Ordering::Relaxed) {
            let wait = std::time::Duration::from_millis(50);
            left = match WALK_FREED.wait_timeout(left, wait) {
                Ok((left, _)) => left,
                Err(e) => e.into_inner().0,
            };
        }
        let n = max.min(*left);
        *left -= n;
        Budget(n)
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        *WALK_BUDGET.lock().unwrap_or_else(|e| e.into_inner()) += self.0;
        WALK_FREED.notify_all();
    }
}

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
    /// `at`; a range's pieces in order, ranges in any order). Each fetched block is appended
    /// to the spool as soon as its frame is complete (a kill loses
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
        // Not bounded: the fetching side never waits for the walk (which may wait for its
        // share of buffers); what is queued is 16 bytes a block.
        let (fetched_tx, fetched_rx) = std::sync::mpsc::channel::<Arrived>();
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
            let copied = copier.join().unwrap_or_else(|_| {
                Err(panicked("the destination partition", "the copying thread"))
            });
            (copied, applied)
        });
        self.out = Some(out);
        self.spool = Some((spool, spool_end));
        applied?;
        // (A bad fetched block stops the fetching side too: its error comes first.)
        let (zeros, copied) = copied?;
        ensure!(
            fetch.remaining == 0,
            error::IncompleteSnafu {
                image: &self.image.role,
                missing: fetch.remaining,
            }
        );
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
        let budget = Budget::take(COPY_BUFFERS, stop);
        if budget.0 == 0 {
            // Stopped (the fetching side failed) before there was a buffer to walk with.
            return Ok((0, 0));
        }
        let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<AlignedBuffer>(COPY_BUFFERS);
        for _ in 0..budget.0 {
            let _ = free_tx.send(AlignedBuffer::reused(IO_CHUNK));
        }
        let (hash_tx, hash_rx) = std::sync::mpsc::sync_channel::<Job>(COPY_BUFFERS);
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
                        let job = hash_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(job) = job else { break };
                        let back = match self.hash_op(job, bad, failed, stop) {
                            Ok(op) => match write_tx.send(op) {
                                Ok(()) => None,
                                // The writer stopped (its error is reported).
                                Err(std::sync::mpsc::SendError(op)) => {
                                    stop.store(true, Ordering::Relaxed);
                                    match op {
                                        Op::Write { buf, .. } => Some(buf),
                                        Op::Zero { .. } => None,
                                    }
                                }
                            },
                            Err(buf) => Some(buf),
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
                scope.spawn(move || write_ops(out, write_rx, &free_tx, stop))
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
                short_hole: None,
                zero_blocks: 0,
                copied: 0,
            };
            let walked = walker.walk(&fetched, stop);
            let (zero_blocks, copied) = (walker.zero_blocks, walker.copied);
            drop(walker);
            let written = writer.join().unwrap_or_else(|_| {
                Err(panicked("the destination partition", "the writing thread"))
            });
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
        drop(budget);
        done
    }

    /// A job of a hashing thread: `Ok` with the write to make, else the buffer to give back
    /// (blocks only read back, or after an error: the walk stops then).
    fn hash_op(
        &self,
        job: Job,
        bad: &Mutex<Vec<usize>>,
        failed: &Mutex<Option<error::Error>>,
        stop: &AtomicBool,
    ) -> std::result::Result<Op, AlignedBuffer> {
        let Job {
            first,
            buf,
            len,
            at,
        } = job;
        if stop.load(Ordering::Relaxed) {
            return Err(buf);
        }
        let checked = self.hash_job(first, &buf.get()[..len], bad);
        match (checked, at) {
            (Ok(()), Some(at)) => Ok(Op::Write { buf, len, at }),
            // Blocks already in place (a wrong one went to `bad`; none was fetched).
            (Ok(()), None) => Err(buf),
            (Err(e), _) => {
                failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
                stop.store(true, Ordering::Relaxed);
                Err(buf)
            }
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

    /// Blocks from `i` (before `to`) that are copies, short runs of zeros or fetched blocks
    /// that arrived, at most [`IO_BLOCKS`]: one write.
    fn stretch(&self, i: usize, to: usize, arrived: &BTreeMap<usize, u32>) -> usize {
        let mut k = 0;
        while i + k < to && k < IO_BLOCKS {
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
        k.max(1).min(to - i)
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

/// A buffer for the hashing threads of [`Plan::copy_pass`]: `len` bytes, the blocks from
/// `first`; written at `at` once checked, or only hashed when `at` is `None` (blocks already in
/// place, read back).
struct Job {
    first: usize,
    buf: AlignedBuffer,
    len: usize,
    at: Option<u64>,
}

/// Work for the writing thread of [`Plan::copy_pass`].
enum Op {
    /// Write the buffer's `len` bytes at `at`.
    Write {
        buf: AlignedBuffer,
        len: usize,
        at: u64,
    },
    /// Zero `len` bytes at `at` (sent by the walk directly).
    Zero { at: u64, len: u64 },
}

/// The writing thread of [`Plan::copy_pass`]: each op in turn (each buffer then goes back to
/// `free`). After the first error it sets `stop` and only gives the buffers back until the
/// walk is over (the walk may be waiting for one), then returns that error.
fn write_ops(
    out: &DirectWriter,
    ops: Receiver<Op>,
    free: &SyncSender<AlignedBuffer>,
    stop: &AtomicBool,
) -> Result<()> {
    // A panic here stops the walk too (its buffers would never come back).
    struct StopOnPanic<'s>(&'s AtomicBool);
    impl Drop for StopOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.store(true, Ordering::Relaxed);
            }
        }
    }
    let _guard = StopOnPanic(stop);
    let mut failed = None;
    for op in ops {
        let written = match &op {
            _ if failed.is_some() => Ok(()),
            Op::Zero { at, len } => out.zero_at(*at, *len),
            Op::Write { buf, len, at } => out.write_at(&buf.get()[..*len], *at),
        };
        if let Err(source) = written {
            stop.store(true, Ordering::Relaxed);
            failed = Some(error::Error::Write {
                what: "the destination partition".to_owned(),
                source,
            });
        }
        if let Op::Write { buf, .. } = op {
            // The walk may be over.
            let _ = free.send(buf);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The copying thread's state in [`Plan::copy_pass`].
struct Walker<'p, 'a> {
    plan: &'p Plan<'a>,
    spool: &'p File,
    free_rx: &'p Receiver<AlignedBuffer>,
    hash_tx: SyncSender<Job>,
    write_tx: SyncSender<Op>,
    /// Fetched blocks in the spool, not written yet: block of the image, block of the spool.
    arrived: BTreeMap<usize, u32>,
    /// The block where the walk last found only a short stretch still to fetch.
    short_hole: Option<usize>,
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
    /// written in the same calls as the copies around them). A stretch where many blocks are
    /// not fetched yet is gone past and written later (see [`HOLE_BLOCKS`]), so that the
    /// device writes the copies after it meanwhile.
    fn walk(&mut self, fetched: &Receiver<Arrived>, stop: &AtomicBool) -> Result<()> {
        let end = self.plan.blocks.len();
        let mut later: VecDeque<Range<usize>> = VecDeque::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            // A stretch gone past, once the walk is at the end or far enough past it.
            if let Some(hole) = later
                .front()
                .filter(|hole| i >= end || i - hole.end >= MAX_AHEAD_BLOCKS)
                .cloned()
            {
                later.pop_front();
                let mut j = hole.start;
                while j < hole.end && !stop.load(Ordering::Relaxed) {
                    match self.step(j, hole.end, None, fetched)? {
                        Some(k) => j += k,
                        None => return Ok(()),
                    }
                }
                continue;
            }
            if i >= end {
                break;
            }
            match self.step(i, end, Some(&mut later), fetched)? {
                Some(k) => i += k,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// One step of the walk at block `i` (of the blocks before `to`): the blocks it is past
    /// (written, or added to `later` when given: see [`Walker::walk`]), 0 after waiting for
    /// fetched blocks; `None` when the walk is over (the fetching side ended without the
    /// block, which the caller reports, or the threads after the walk are gone).
    fn step(
        &mut self,
        i: usize,
        to: usize,
        later: Option<&mut VecDeque<Range<usize>>>,
        fetched: &Receiver<Arrived>,
    ) -> Result<Option<usize>> {
        let plan = self.plan;
        self.take_arrived(fetched);
        let kind = plan.blocks[i];
        let k = match kind {
            // Written in an earlier round.
            Block::Written => return Ok(Some(plan.run(i).min(to - i))),
            // Not fetched yet: go past a long stretch of such blocks, else wait for it (the
            // fetching side never waits for the walk, and fetches in about block order).
            Block::Missing if !self.arrived.contains_key(&i) => {
                // (A stretch found short stays short: blocks only arrive.)
                if let Some(later) = later.filter(|_| self.short_hole != Some(i)) {
                    let hole = self.hole(i, to);
                    if hole.len() >= HOLE_BLOCKS {
                        let past = hole.len();
                        later.push_back(hole);
                        return Ok(Some(past));
                    }
                    self.short_hole = Some(i);
                }
                return Ok(fetched.recv().ok().map(|blocks| {
                    self.arrived.extend(blocks);
                    0
                }));
            }
            // A run already in place (resuming) is only read, for its SHA-256; a long run
            // of zeros is zeroed; a stretch of copies, short runs of zeros and fetched
            // blocks is gathered into one buffer and written with one call.
            Block::Done => plan.run(i),
            Block::Zero if plan.run(i) >= ZERO_RUN_BLOCKS => plan.run(i),
            _ => plan.stretch(i, to, &self.arrived),
        }
        .min(to - i);
        Ok(self.put(i, k, kind)?.then_some(k))
    }

    /// The stretch from `i` (a block not fetched yet) to the last block not fetched yet that
    /// is less than [`HOLE_BLOCKS`] after another (at most `to`, and at most 8 ×
    /// [`HOLE_BLOCKS`] long: what follows is another stretch).
    fn hole(&self, i: usize, to: usize) -> Range<usize> {
        let blocks = &self.plan.blocks;
        let to = to.min(i + 8 * HOLE_BLOCKS);
        let mut last = i;
        let mut j = i + 1;
        while j < to && j - last < HOLE_BLOCKS {
            if blocks[j] == Block::Missing && !self.arrived.contains_key(&j) {
                last = j;
            }
            j += 1;
        }
        i..last + 1
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
        let write_at = if kind == Block::Done {
            plan.dest
                .file
                .read_exact_at(&mut buf.get_mut()[..len], at)
                .context(error::ReadSnafu {
                    what: "the written partition",
                })?;
            None
        } else {
            self.gather(i, k, &mut buf.get_mut()[..len])?;
            Some(at)
        };
        let job = Job {
            first: i,
            buf,
            len,
            at: write_at,
        };
        Ok(self.hash_tx.send(job).is_ok())
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

/// Lower this thread's priority (nice 10), so that the fetching side spools fetched bytes as
/// soon as they arrive: what it has not read yet, a kill loses. (Measured before the spool:
/// without it, a kill early in a patch update lost 1.5 MB of 2.4 MB fetched. A failure only
/// leaves the priority as it was.) For the threads that copy, and for plans made while an
/// image is fetched.
pub fn yield_to_fetching() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

/// The error of a thread of [`Plan::write`] (or of a caller's) that panicked.
pub fn panicked(what: &str, which: &str) -> error::Error {
    error::Error::Write {
        what: format!("{what} ({which} panicked)"),
        source: std::io::Error::other("panic"),
    }
}
