//! Writing a planned image ([`Plan::write`]): the caller's thread checks each fetched range
//! as it arrives; one copying thread writes everything in block order (the copies gathered
//! into 4 MiB direct writes, long runs of zeros by `fallocate`, and between two stretches the
//! fetched blocks that arrived); hashing threads hash every block as it is written, and the
//! image's digest is folded in block order. A copy that is not the indexed block (a seed that
//! changed since the plan, or a tree leaf that lied) is fetched in a second round.
use crate::apply::{Block, IO_BLOCKS, IO_CHUNK, Plan, Stats, StoreRange, is_zero};
use crate::error::{self, Result};
use crate::index::{BLOCK_SIZE, short_hash};
use crate::io::{AlignedBuffer, DirectWriter};
use snafu::{ResultExt, ensure};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs of at least this many blocks of zeros are zeroed with one call
/// ([`DirectWriter::zero_at`]); shorter ones are written with the copies around them.
const ZERO_RUN_BLOCKS: usize = 16;
/// Checked fetched blocks (block, bytes) of one range, for the copying thread to write.
type Verified = Vec<(usize, Vec<u8>)>;
/// Fetched ranges checked and waiting to be written (the copying thread takes all there are
/// between two of its writes; with 2, the fetching side waited on it and took 0.9 s).
const FETCHED_QUEUE: usize = 64;
/// At most this many checked bytes wait to be written: a kill loses them (with 8 ranges and no
/// byte limit, a kill in a patch update lost 0.4 MB).
const FETCHED_BACKLOG: usize = 128 << 10;

/// Checked fetched bytes waiting to be written, bounded by [`FETCHED_BACKLOG`].
#[derive(Debug, Default)]
struct Backlog {
    bytes: Mutex<usize>,
    room: std::sync::Condvar,
}

impl Backlog {
    /// Wait until there is room (or `stop`), then count `n` more bytes.
    fn add(&self, n: usize, stop: &AtomicBool) {
        let mut bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        while *bytes > 0 && *bytes + n > FETCHED_BACKLOG && !stop.load(Ordering::Relaxed) {
            bytes = self
                .room
                .wait_timeout(bytes, std::time::Duration::from_millis(10))
                .map_or_else(|e| e.into_inner().0, |(b, _)| b);
        }
        *bytes += n;
    }

    /// `n` bytes were written.
    fn written(&self, n: usize) {
        let mut bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        *bytes = bytes.saturating_sub(n);
        self.room.notify_all();
    }
}
/// Buffers of [`IO_CHUNK`] going round between the copying thread and the hashing threads.
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
    /// their own), and the missing blocks from `fetched` (the store's bytes of each range
    /// [`Plan::ranges`] listed, in any order), each checked against its hash in the index
    /// before it is written. Every block's salted SHA-256 is computed as it is written.
    ///
    /// Copied blocks that are not what the index lists (a seed that changed since the plan,
    /// or a tree leaf that lied) end the round with [`Written::Again`]: fetch
    /// [`Plan::ranges`] and call this again (once; a second such round is an error).
    /// Otherwise the destination is synced and the image's digest over every block's SHA-256
    /// checked: [`Written::Done`].
    ///
    /// A bad fetched block stops everything at once with [`error::Error::BadPiece`]; when
    /// `fetched` ends with blocks still missing (a range failed), the copying stops too and
    /// the result is [`error::Error::Incomplete`]; a digest that differs is
    /// [`error::Error::Digest`]. After any error the caller writes the full image instead.
    pub fn write<B: AsRef<[u8]>>(
        &mut self,
        fetched: impl IntoIterator<Item = (StoreRange, B)>,
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
        let bad = Mutex::new(Vec::new());
        let stop = AtomicBool::new(false);
        let mut fetch = Fetched::new(self)?;
        let started = std::time::Instant::now();
        let this = &*self;
        let (fetched_tx, fetched_rx) = std::sync::mpsc::sync_channel::<Verified>(FETCHED_QUEUE);
        let backlog = Backlog::default();
        let (copied, applied) = std::thread::scope(|scope| {
            let copier = scope.spawn(|| {
                let fetched_rx = fetched_rx;
                yield_to_fetching();
                let copied = this.copy_pass(&out, &bad, (fetched_rx, &backlog), &stop);
                tracing::debug!(image = %this.image.role, secs = started.elapsed().as_secs_f64(), "copies and zeros written");
                copied
            });
            let mut applied = Ok(());
            for (range, bytes) in fetched {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match fetch.apply(this, range, bytes.as_ref()) {
                    Ok(verified) => {
                        // The copying thread writes them (it is gone only after an error).
                        backlog.add(verified_len(&verified), &stop);
                        if fetched_tx.send(verified).is_err() {
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
            tracing::debug!(image = %this.image.role, secs = started.elapsed().as_secs_f64(), "fetched blocks checked");
            if applied.is_err() || fetch.remaining > 0 {
                stop.store(true, Ordering::Relaxed);
            }
            let copied = copier.join().unwrap_or_else(|_| {
                Err(error::Error::Write {
                    what: "the destination partition (the copying thread panicked)".to_owned(),
                    source: std::io::Error::other("panic"),
                })
            });
            (copied, applied)
        });
        self.out = Some(out);
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
        // Copies that were not what the plan found (a seed that changed, or a tree leaf that
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
    /// and the zeros, in order, until done or `stop`. The reads and writes run here; the
    /// SHA-256 of each block read runs on as many threads as there are cores. Returns the
    /// blocks of zeros and the blocks copied.
    fn copy_pass(
        &self,
        out: &DirectWriter,
        bad: &Mutex<Vec<usize>>,
        (fetched, backlog): (std::sync::mpsc::Receiver<Verified>, &Backlog),
        stop: &AtomicBool,
    ) -> Result<(u64, u64)> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<AlignedBuffer>(COPY_BUFFERS);
        for _ in 0..COPY_BUFFERS {
            let _ = free_tx.send(AlignedBuffer::new(IO_CHUNK));
        }
        let (job_tx, job_rx) =
            std::sync::mpsc::sync_channel::<(usize, AlignedBuffer, usize)>(COPY_BUFFERS);
        let job_rx = Mutex::new(job_rx);
        let zeros = AlignedBuffer::new(IO_CHUNK);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let free_tx = free_tx.clone();
                let job_rx = &job_rx;
                let zero_sha = self.image.zero_sha();
                scope.spawn(move || {
                    yield_to_fetching();
                    loop {
                        let job = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((first, buf, len)) = job else { break };
                        let shas: Vec<[u8; 32]> = buf.get()[..len]
                            .chunks(BLOCK_SIZE)
                            .map(|block| {
                                // The SHA-256 of zeros is known (a compare is much
                                // cheaper than hashing them).
                                if is_zero(block) {
                                    zero_sha
                                } else {
                                    self.image.sha(block)
                                }
                            })
                            .collect();
                        // A block that is not the indexed one is fetched in another round;
                        // its hash is not part of the digest.
                        let (right, wrong): (Vec<_>, Vec<_>) = shas
                            .into_iter()
                            .enumerate()
                            .map(|(b, sha)| (first + b, sha))
                            .partition(|(i, sha)| short_hash(sha) == self.image.blocks[*i]);
                        if !wrong.is_empty() {
                            bad.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .extend(wrong.into_iter().map(|(i, _)| i));
                        }
                        self.fold(right);
                        if free_tx.send(buf).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(free_tx);
            // One walk, in block order, on this thread (the digest takes blocks in order: two
            // walkers over two halves held the second half's hashes in memory, and were not
            // faster).
            let walked = self.walk(
                0..self.blocks.len(),
                out,
                &free_rx,
                &job_tx,
                &zeros,
                (&fetched, backlog),
                stop,
            );
            drop(job_tx);
            // The fetched blocks still to come (the fetching side ends the channel).
            let drained = match walked {
                Err(e) => Err(e),
                Ok(counts) => loop {
                    let Ok(blocks) = fetched.recv() else {
                        break Ok(counts);
                    };
                    let n = verified_len(&blocks);
                    let written = write_blocks(out, self.dest.offset, blocks);
                    backlog.written(n);
                    if let Err(e) = written {
                        break Err(e);
                    }
                },
            };
            if drained.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            drained
        })
    }

    /// A walk of [`Plan::copy_pass`]: the blocks in `blocks`, in order; between stretches, the
    /// fetched blocks that arrived are written too. (The copying threads write everything: on
    /// a file system, a write waits for the file's lock, which each direct write holds until
    /// the device is done, and a fetching side that wrote its own blocks, blocked there,
    /// finished 0.25 s after the copies on a patch release instead of 0.25 s before.)
    /// Returns the blocks of zeros and the blocks copied.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        blocks: std::ops::Range<usize>,
        out: &DirectWriter,
        free_rx: &std::sync::mpsc::Receiver<AlignedBuffer>,
        job_tx: &std::sync::mpsc::SyncSender<(usize, AlignedBuffer, usize)>,
        zeros: &AlignedBuffer,
        (fetched, backlog): (&std::sync::mpsc::Receiver<Verified>, &Backlog),
        stop: &AtomicBool,
    ) -> Result<(u64, u64)> {
        let mut zero_blocks = 0_u64;
        let mut copied = 0_u64;
        let (mut i, end) = (blocks.start, blocks.end);
        while i < end && !stop.load(Ordering::Relaxed) {
            while let Ok(blocks) = fetched.try_recv() {
                let n = verified_len(&blocks);
                let written = write_blocks(out, self.dest.offset, blocks);
                backlog.written(n);
                written?;
            }
            let kind = self.blocks[i];
            // Written by the fetching side, or in an earlier round.
            if matches!(kind, Block::Missing | Block::Written) {
                i += self.run(i).min(end - i);
                continue;
            }
            // A run already in place (resuming) is only read, for its SHA-256; a long run of
            // zeros is zeroed; a stretch of copies and short runs of zeros is gathered into one
            // buffer and written with one call.
            let k = match kind {
                Block::Done => self.run(i),
                Block::Zero if self.run(i) >= ZERO_RUN_BLOCKS => self.run(i),
                _ => self.stretch(i),
            }
            .min(end - i);
            let len = self.run_len(i, k);
            let at = self.dest.offset + (i * BLOCK_SIZE) as u64;
            let step = if self.blocks[i..i + k].iter().all(|b| *b == Block::Zero) {
                zero_blocks += k as u64;
                out.zero_at(at, len as u64, zeros.get())
                    .context(error::WriteSnafu {
                        what: "the destination partition",
                    })
            } else {
                let Ok(mut buf) = free_rx.recv() else {
                    // The hashing threads are gone: the digest will not match.
                    break;
                };
                let filled = if kind == Block::Done {
                    self.dest
                        .file
                        .read_exact_at(&mut buf.get_mut()[..len], at)
                        .context(error::ReadSnafu {
                            what: "the written partition",
                        })
                } else {
                    self.gather(i, k, &mut buf.get_mut()[..len])
                        .and_then(|(z, c)| {
                            zero_blocks += z;
                            copied += c;
                            out.write_at(&buf.get()[..len], at)
                                .context(error::WriteSnafu {
                                    what: "the destination partition",
                                })
                        })
                };
                filled.and_then(|()| {
                    job_tx.send((i, buf, len)).map_err(|_| error::Error::Write {
                        what: "the destination partition (the hashing threads stopped)".to_owned(),
                        source: std::io::Error::other("stopped"),
                    })
                })
            };
            if let Err(e) = step {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
            i += k;
        }
        Ok((zero_blocks, copied))
    }

    /// Fill `buf` with the `k` blocks from `i` (copies and zeros), reading each run of
    /// consecutive seed blocks with one call. Only the bytes of a seed that were hashed when
    /// planned are read (the rest of a short last block is zeros, as it was hashed).
    fn gather(&self, i: usize, k: usize, buf: &mut [u8]) -> Result<(u64, u64)> {
        let (mut zeros, mut copied) = (0, 0);
        let mut j = i;
        while j < i + k {
            let run = self.run(j).min(i + k - j);
            let start = (j - i) * BLOCK_SIZE;
            let part = &mut buf[start..start + self.run_len(j, run)];
            match self.blocks[j] {
                Block::Copy { source, block } => {
                    let (extent, hashed) = self.source(source);
                    let from = u64::from(block) * BLOCK_SIZE as u64;
                    let avail = part.len().min(hashed.saturating_sub(from) as usize);
                    extent
                        .file
                        .read_exact_at(&mut part[..avail], extent.offset + from)
                        .context(error::ReadSnafu {
                            what: "a seed partition",
                        })?;
                    part[avail..].fill(0);
                    copied += run as u64;
                }
                _ => {
                    part.fill(0);
                    zeros += run as u64;
                }
            }
            j += run;
        }
        Ok((zeros, copied))
    }

    /// Blocks from `i` that are copies or short runs of zeros, at most [`IO_BLOCKS`]: one
    /// write.
    fn stretch(&self, i: usize) -> usize {
        let n = self.blocks.len();
        let mut k = 0;
        while i + k < n && k < IO_BLOCKS {
            match self.blocks[i + k] {
                Block::Copy { .. } => k += 1,
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

/// The fetching side of [`Plan::write`]: which missing blocks each store frame holds.
struct Fetched {
    /// (frame offset, block), sorted: every block still to fetch.
    pending: Vec<(u64, u32)>,
    /// Which of `pending` are written.
    done: Vec<bool>,
    /// Blocks of `pending` not written yet.
    remaining: usize,
    /// Blocks written from fetched frames.
    blocks: u64,
    decompressor: zstd::bulk::Decompressor<'static>,
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
        })
    }

    /// Every missing block whose frame lies in `range`, from `bytes` (the store's bytes of
    /// `range`), each checked against its hash in the index, to be written.
    fn apply(&mut self, plan: &Plan<'_>, range: StoreRange, bytes: &[u8]) -> Result<Verified> {
        ensure!(
            bytes.len() as u64 == range.len,
            error::ShortRangeSnafu {
                offset: range.offset,
                len: range.len,
                got: bytes.len() as u64,
            }
        );
        let end = range.offset + range.len;
        let mut k = self
            .pending
            .partition_point(|(offset, _)| *offset < range.offset);
        let mut raw: Vec<u8> = Vec::new();
        let mut raw_offset = None;
        let mut verified: Verified = Vec::new();
        let mut shas = Vec::new();
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
                raw = self
                    .decompressor
                    .decompress(&bytes[start..start + frame.len as usize], BLOCK_SIZE)
                    .map_err(|e| error::Error::BadPiece {
                        image: plan.image.role.clone(),
                        offset,
                        end: frame_end,
                        reason: format!("not a zstd frame ({e})"),
                    })?;
                raw_offset = Some(offset);
            }
            // Blocks sharing a frame have the same bytes; the image's last block may be short.
            let len = plan.image.block_len(i);
            let sha = (raw.len() >= len)
                .then(|| plan.image.sha(&raw[..len]))
                .filter(|sha| short_hash(sha) == plan.image.blocks[i]);
            let Some(sha) = sha else {
                return error::BadPieceSnafu {
                    image: &plan.image.role,
                    offset,
                    end: frame_end,
                    reason: format!("block {i}: not the bytes the index lists"),
                }
                .fail();
            };
            verified.push((i, raw[..len].to_vec()));
            shas.push((i, sha));
            self.done[k] = true;
            k += 1;
        }
        plan.fold(shas);
        self.remaining -= verified.len();
        self.blocks += verified.len() as u64;
        Ok(verified)
    }
}

/// Bytes of checked fetched blocks.
fn verified_len(blocks: &Verified) -> usize {
    blocks.iter().map(|(_, b)| b.len()).sum()
}

/// Write checked fetched blocks into the partition at `base`: consecutive blocks with one call
/// (direct I/O when aligned: a new kernel's blocks arrive in long runs), single blocks through
/// the page cache.
fn write_blocks(out: &DirectWriter, base: u64, mut blocks: Verified) -> Result<()> {
    blocks.sort_unstable_by_key(|(i, _)| *i);
    let mut from = 0;
    while from < blocks.len() {
        let mut to = from + 1;
        while to < blocks.len() && blocks[to].0 == blocks[to - 1].0 + 1 {
            to += 1;
        }
        let at = base + (blocks[from].0 * BLOCK_SIZE) as u64;
        let written = if to - from == 1 {
            out.write_at(&blocks[from].1, at)
        } else {
            let len: usize = blocks[from..to].iter().map(|(_, b)| b.len()).sum();
            let mut run = AlignedBuffer::new(len);
            let mut put = 0;
            for (_, block) in &blocks[from..to] {
                run.get_mut()[put..put + block.len()].copy_from_slice(block);
                put += block.len();
            }
            out.write_at(run.get(), at)
        };
        written.context(error::WriteSnafu {
            what: "the destination partition",
        })?;
        from = to;
    }
    Ok(())
}

/// Lower this thread's priority (nice 10), so that the thread writing fetched blocks runs as
/// soon as they arrive. Otherwise the copying threads keep both cores busy, fetched ranges wait
/// in memory, and a kill loses them: measured, a kill early in a patch update lost 1.5 MB of
/// 2.4 MB fetched. (A failure only leaves the priority as it was.)
fn yield_to_fetching() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}
