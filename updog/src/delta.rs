//! The delta path (see the `delta` crate): write an image by copying what the host already
//! has (the running set's partitions, and whatever the inactive set already holds) and fetching
//! only the rest from the store, as byte ranges. The index is a TUF target (verified whole,
//! then cached in the datastore so a re-run does not fetch it again); every fetched block is
//! checked against it before it is written, and the whole written image against its SHA-256
//! before the set can be marked valid. Any failure is reported to the caller, which writes the
//! full image instead.
use crate::error::{self, Result};
use crate::images::{ImageReport, PartitionTarget, open_direct, open_partition};
use crate::progress::{Event, Progress};
use crate::repo::{read_small_target, target_info};
use crate::session::Session;
use futures::{StreamExt, TryStreamExt};
use snafu::{OptionExt, ResultExt, ensure};
use std::path::PathBuf;
use std::sync::Arc;
use tuf_client::TransportError;
use url::Url;

mod tail;
use tail::{ends_update, for_fetch, tail_permits};

/// Store frames less than this far apart are fetched in one request (measured in
/// BENCHMARKS.md: 1 KiB adds 0.7% of bytes and saves 13% of requests on a patch release).
const GAP: u64 = 1 << 10;
/// Largest single request. (A kill loses only the frames still incomplete: each range's bytes
/// are spooled frame by frame as they arrive. Before, whole ranges were: a kill
/// on a patch release lost up to 1.2 MB with 8 MiB requests, 0.2 MB with 128 KiB.)
const MAX_RANGE: u64 = 128 << 10;
/// Requests in flight at once.
const PARALLEL: usize = 4;

/// Where the root and the hash images are in the lists of images and partitions
/// ([`crate::images::IMAGES`]).
const ROOT: usize = 0;
const HASH: usize = 2;
/// The cached index's file name in the datastore.
const CACHE_FILE: &str = "delta-index";
/// The file that says a delta write of an index (its SHA-256) into the inactive set started:
/// the next run of the same update reads the inactive set first and keeps what is already
/// written (after a kill or a reboot, or when a staged update is staged or applied again).
const STARTED_FILE: &str = "delta-started";

/// The files in the datastore where fetched blocks land before they are written (see
/// `delta::Plan::with_spool`), one per image (`delta-spool-root`, ...: the next image's fetch
/// runs while the image before is still written): a kill loses none of them, and the next run
/// of the same update takes each as a seed. Removed once the update is written.
const SPOOL_PREFIX: &str = "delta-spool-";

/// Image `role`'s spool in `datastore` (see [`SPOOL_PREFIX`]).
fn spool_path(datastore: &std::path::Path, role: &str) -> PathBuf {
    datastore.join(format!("{SPOOL_PREFIX}{role}"))
}

/// Whether an earlier run started writing this delta into the inactive set (and maybe
/// finished): then the inactive set is read first, and what is already right is kept. Every
/// block kept is checked against the index like any other, so a stale record (the set was
/// written since by other means) only costs that read.
pub fn resuming(datastore: &std::path::Path, loaded: &Loaded) -> bool {
    std::fs::read_to_string(datastore.join(STARTED_FILE))
        .is_ok_and(|text| !loaded.index_sha256.is_empty() && text.trim() == loaded.index_sha256)
}

/// Record that a delta write of `loaded` into the inactive set starts. The record is only a
/// hint for a later run (it saves refetching what this run writes), so failing to write it is
/// a warning. A spool left by a run of another update is removed.
pub fn mark_started(datastore: &std::path::Path, loaded: &Loaded, resume: bool) {
    if !resume {
        remove_spools(datastore);
    }
    let path = datastore.join(STARTED_FILE);
    if let Err(e) = update_metadata::fs::write_atomic(&path, loaded.index_sha256.as_bytes(), 0o600)
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot record the delta write; an interrupted run will fetch it all again");
    }
}

/// Remove the spools (the update is written, or another one starts), and the single spool
/// `delta-spool` that updog used before there was one per image.
pub fn remove_spools(datastore: &std::path::Path) {
    for role in crate::images::IMAGES {
        remove_spool(datastore, role);
    }
    remove_spool_file(&datastore.join("delta-spool"));
}

/// Remove image `role`'s spool.
pub fn remove_spool(datastore: &std::path::Path, role: &str) {
    remove_spool_file(&spool_path(datastore, role));
}

/// A spool that cannot be removed only takes room until the next update.
fn remove_spool_file(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a delta spool");
        }
        _ => {}
    }
}

/// The spool of `role` an interrupted run of this update left, as a seed (its blocks are
/// found by their hashes, like any seed's).
fn spool_seed(datastore: &std::path::Path, role: &str) -> Option<SeedPartition> {
    let path = spool_path(datastore, role);
    let len = std::fs::metadata(&path).ok()?.len();
    (len > 0).then(|| SeedPartition {
        name: "the spool of an interrupted run".to_owned(),
        partition: PartitionTarget {
            number: 0,
            path,
            offset: 0,
            capacity: len,
        },
        tree: None,
    })
}

/// Open `role`'s spool for this run's fetched blocks (created `0o600`; kept as it is when
/// resuming, since its blocks are then also a seed).
fn open_spool(datastore: &std::path::Path, role: &str) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = spool_path(datastore, role);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .context(error::ReadPartitionSnafu { path })
}

/// An update's delta, ready to use.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The verified index.
    pub index: Arc<delta::Index>,
    /// Where the store is served.
    pub store_url: Url,
    /// Bytes fetched for the index in this run (0 when it came from the cache).
    pub index_fetched: u64,
    /// The index's signed length.
    pub index_len: u64,
    /// The index's signed SHA-256 (hex).
    pub index_sha256: String,
}

/// Load the delta of `names`: the index from the datastore's cache when it holds exactly the
/// signed bytes, else fetched (verified by TUF) and, when `cache`, cached (a cache that cannot
/// be written is only a warning: the verified bytes are used from memory).
pub async fn load(
    session: &Session,
    names: &update_metadata::Delta,
    cache_it: bool,
) -> Result<Loaded> {
    let info = target_info(&session.repo, &names.index).await?;
    let store = target_info(&session.repo, &names.store).await?;
    let store_url = session
        .repo
        .target_url(&store)
        .map_err(|source| crate::repo::read_error(&names.store, source))?;
    let cache = session.settings.paths.datastore.join(CACHE_FILE);
    let expected = info.hash("sha256").map(str::to_owned);
    let cached = std::fs::read(&cache).ok().filter(|bytes| {
        bytes.len() as u64 == info.length
            && expected.as_deref() == Some(hex::encode(delta::sha256(bytes)).as_str())
    });
    let (bytes, index_fetched) = match cached {
        Some(bytes) => (bytes, 0),
        None => {
            let bytes = read_small_target(&session.repo, &names.index).await?;
            if cache_it && let Err(e) = update_metadata::fs::write_atomic(&cache, &bytes, 0o600) {
                tracing::warn!(path = %cache.display(), error = %e, "cannot cache the delta index; a re-run fetches it again");
            }
            let len = bytes.len() as u64;
            (bytes, len)
        }
    };
    let index = tokio::task::spawn_blocking(move || delta::Index::decode(&bytes))
        .await
        .context(error::JoinSnafu)?
        .context(error::DeltaSnafu { image: "index" })?;
    ensure!(
        index.store_len == store.length,
        error::DeltaMismatchSnafu {
            why: format!(
                "the index describes a store of {} bytes; the signed store is {}",
                index.store_len, store.length
            ),
        }
    );
    Ok(Loaded {
        index: Arc::new(index),
        store_url,
        index_fetched,
        index_len: info.length,
        index_sha256: expected.unwrap_or_default(),
    })
}

/// Bytes of a store range as they arrive: the range, where in it they start, the bytes.
type Piece = (delta::StoreRange, u64, bytes::Bytes);

/// A partition to read from or write to: a file or device and a byte range of it.
fn extent_of<'a>(file: &'a std::fs::File, target: &PartitionTarget) -> delta::Extent<'a> {
    delta::Extent {
        file,
        offset: target.offset,
        len: target.capacity,
    }
}

/// The seeds for writing image `i` (root, boot, hash): the running set's partition of the
/// same image. (Measured: the other partitions almost never hold a block of another image,
/// and reading them cost a third of a patch update's time. The inactive set's partition is
/// read when resuming, by the plan itself.) The running root comes with the running set's
/// hash partition, whose dm-verity tree lists its blocks.
///
/// When `resume`, the spool of the interrupted run follows.
pub fn seeds(
    running: &[PartitionTarget],
    i: usize,
    datastore: &std::path::Path,
    resume: bool,
) -> Vec<SeedPartition> {
    running
        .get(i)
        .map(|partition| SeedPartition {
            name: format!("partition {}", partition.number),
            partition: partition.clone(),
            tree: if i == ROOT {
                running.get(HASH).cloned()
            } else {
                None
            },
        })
        .into_iter()
        .chain(
            crate::images::IMAGES
                .get(i)
                .filter(|_| resume)
                .and_then(|role| spool_seed(datastore, role)),
        )
        .collect()
}

/// A partition to copy blocks from.
#[derive(Debug, Clone)]
pub struct SeedPartition {
    /// What it is, for logs.
    pub name: String,
    /// The partition.
    pub partition: PartitionTarget,
    /// A hash partition whose dm-verity tree may list its blocks (see [`delta::verity`]).
    pub tree: Option<PartitionTarget>,
}

/// How much a delta write of `role` would fetch, without writing: the plan only.
pub async fn plan_bytes(
    loaded: &Loaded,
    role: &str,
    dest: &PartitionTarget,
    seeds: &[SeedPartition],
    resume: bool,
) -> Result<u64> {
    let index = loaded.index.clone();
    let role = role.to_owned();
    let dest = dest.clone();
    let seeds = seeds.to_vec();
    crate::session::blocking(move || {
        let image = index.image(&role).context(error::DeltaMismatchSnafu {
            why: format!("the index has no {role} image"),
        })?;
        let dest_file = std::fs::File::open(&dest.path)
            .context(error::ReadPartitionSnafu { path: &dest.path })?;
        let seed_files = open_seeds(&seeds)?;
        let plan = delta::Plan::new(
            image,
            extent_of(&dest_file, &dest),
            seed_list(image, &seeds, &seed_files),
            resume,
        )
        .context(error::DeltaSnafu { image: &role })?;
        Ok(for_fetch(plan, &role).fetch_bytes(GAP, MAX_RANGE))
    })
    .await
}

fn open_seeds(seeds: &[SeedPartition]) -> Result<Vec<std::fs::File>> {
    seeds
        .iter()
        .map(|s| {
            let path = &s.partition.path;
            std::fs::File::open(path).context(error::ReadPartitionSnafu { path })
        })
        .collect()
}

/// The seeds of `image`: each partition, with its blocks' hashes when its tree lists them
/// with the salt the index uses (else the plan reads and hashes the partition).
fn seed_list<'a>(
    image: &delta::ImageIndex,
    seeds: &[SeedPartition],
    files: &'a [std::fs::File],
) -> Vec<delta::Seed<'a>> {
    seeds
        .iter()
        .zip(files)
        .map(|(s, f)| delta::Seed {
            extent: extent_of(f, &s.partition),
            name: s.name.clone(),
            hashes: s.tree.as_ref().and_then(|tree| tree_hashes(image, tree)),
        })
        .collect()
}

/// The block hashes the dm-verity tree in `tree` lists, if its salt is `image`'s.
fn tree_hashes(image: &delta::ImageIndex, tree: &PartitionTarget) -> Option<Vec<u64>> {
    if image.salt.is_empty() {
        return None;
    }
    let file = std::fs::File::open(&tree.path).ok()?;
    let (superblock, hashes) = delta::verity::read_leaves(extent_of(&file, tree))?;
    if superblock.salt != image.salt {
        tracing::debug!(image = %image.role, "the running tree has another salt; reading the partition instead");
        return None;
    }
    Some(hashes)
}

/// One image to write by the delta path.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// `root`, `boot` or `hash`.
    pub role: &'a str,
    /// Its full image's target name (for reports).
    pub name: &'a str,
    /// The inactive set's partition.
    pub dest: &'a PartitionTarget,
    /// The partitions to copy from, in order of preference (see [`seeds`]).
    pub seeds: Vec<SeedPartition>,
    /// Whether an interrupted run may have written part of it already (see [`resuming`]).
    pub resume: bool,
}

/// A delta write whose plan is being made (or is made) on a thread of its own: see [`start`].
#[derive(Debug)]
pub struct Started<'a> {
    role: &'a str,
    name: &'a str,
    dest: &'a PartitionTarget,
    /// Lets the worker write once the plan is made (dropped: it stops).
    go: tokio::sync::oneshot::Sender<()>,
    ranges_rx: tokio::sync::mpsc::UnboundedReceiver<(Vec<delta::StoreRange>, delta::Stats, u64)>,
    bytes_tx: tokio::sync::mpsc::Sender<Option<Piece>>,
    worker: tokio::task::JoinHandle<Result<delta::Stats>>,
    /// Sent (or dropped) once this image's first round is fetched: see [`Next`].
    fetched: tokio::sync::oneshot::Sender<()>,
    /// The image before's [`Next::fetched`]: this image's fetch waits for it.
    after_fetched: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// What the next image's [`start`] waits for (each is sent, or dropped after an error).
#[derive(Debug)]
pub struct Next {
    /// This image's plan is made: the next image's plan starts then.
    planned: tokio::sync::oneshot::Receiver<()>,
    /// This image's first round is fetched: the next image's fetch starts then
    /// ([`write_image`]), while this image's copies are still written.
    fetched: tokio::sync::oneshot::Receiver<()>,
}

/// Start `job`'s delta write: its plan is made on a thread of its own (reading the
/// partitions only) once the plan of the image before it is made (`after`, what [`start`]
/// returned for it; its fetch waits for that image's fetch), so that it is
/// ready when that image is fetched; [`write_image`] then writes it. The plans of the images
/// after the first run at nice 10, while the first image is fetched: they take only the CPU
/// its fetching side leaves (a plan made at full priority there took the CPU the fetching
/// side needed, and a kill then lost the ranges waiting in the sockets, up to 0.45 MB; made
/// once the image before was fetched, each plan left the network idle for 15–30 ms). The
/// [`Next`] returned says when this image is planned and fetched.
pub fn start<'a>(
    session: &Session,
    loaded: &Loaded,
    job: Job<'a>,
    after: Option<Next>,
) -> (Started<'a>, Next) {
    let (after_planned, after_fetched) = after.map(|n| (n.planned, n.fetched)).unzip();
    let Job {
        role,
        name,
        dest,
        seeds,
        resume,
    } = job;
    // The worker plans, waits for `go`, then writes in rounds: it sends each round's ranges,
    // and receives their bytes until a `None` ends the round (a second round only when
    // copied blocks were not what the index lists).
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (planned_tx, planned_rx) = tokio::sync::oneshot::channel::<()>();
    let (fetched, fetched_rx) = tokio::sync::oneshot::channel::<()>();
    let (ranges_tx, ranges_rx) =
        tokio::sync::mpsc::unbounded_channel::<(Vec<delta::StoreRange>, delta::Stats, u64)>();
    let (bytes_tx, mut bytes_rx) = tokio::sync::mpsc::channel::<Option<Piece>>(1);
    let worker = {
        let spool = session.settings.paths.datastore.clone();
        let index = loaded.index.clone();
        let role = role.to_owned();
        let dest = dest.clone();
        tokio::task::spawn_blocking(move || -> Result<delta::Stats> {
            let image = index.image(&role).context(error::DeltaMismatchSnafu {
                why: format!("the index has no {role} image"),
            })?;
            let dest_file = open_partition(&dest).context(error::OpenPartitionSnafu {
                path: &dest.path,
                number: dest.number,
            })?;
            let seed_files = open_seeds(&seeds)?;
            let delta_err = || error::DeltaSnafu {
                image: role.clone(),
            };
            let first = after_planned.is_none();
            if let Some(after) = after_planned {
                // Dropped (an error) or sent: either way the image before is planned.
                let _ = after.blocking_recv();
            }
            let started = std::time::Instant::now();
            let make = || {
                delta::Plan::new(
                    image,
                    extent_of(&dest_file, &dest),
                    seed_list(image, &seeds, &seed_files),
                    resume,
                )
            };
            let plan = if first {
                make()
            } else {
                // On a thread of its own: this one fetches at full priority afterwards.
                std::thread::scope(|scope| {
                    scope
                        .spawn(|| {
                            delta::yield_to_fetching();
                            make()
                        })
                        .join()
                        .unwrap_or_else(|_| Err(delta::panicked("the delta plan", "its thread")))
                })
            };
            let mut plan = for_fetch(plan.context(delta_err())?, &role);
            if let Ok(direct) = open_direct(&dest) {
                plan = plan.with_direct(direct);
            }
            let planned_secs = started.elapsed().as_secs_f64();
            tracing::debug!(image = %role, plan_secs = planned_secs, "delta planned");
            let _ = planned_tx.send(());
            if go_rx.blocking_recv().is_err() {
                return Err(error::Error::DeltaMismatch {
                    why: "the update stopped before this image".to_owned(),
                });
            }
            let started = std::time::Instant::now();
            plan = plan
                .with_spool(open_spool(&spool, &role)?)
                .context(delta_err())?;
            loop {
                let ranges = plan.ranges(GAP, MAX_RANGE);
                if ranges_tx.send((ranges, plan.stats(), image.size)).is_err() {
                    // The fetching side stopped: its error is reported.
                    return Err(error::Error::DeltaMismatch {
                        why: "the download stopped".to_owned(),
                    });
                }
                // The copying runs while the ranges arrive.
                let written = plan
                    .write(std::iter::from_fn(|| bytes_rx.blocking_recv().flatten()))
                    .context(delta_err())?;
                if let delta::Written::Done(stats) = written {
                    tracing::debug!(image = %role, write_secs = started.elapsed().as_secs_f64(), "delta written");
                    return Ok(stats);
                }
            }
        })
    };
    (
        Started {
            role,
            name,
            dest,
            go,
            ranges_rx,
            bytes_tx,
            worker,
            fetched,
            after_fetched,
        },
        Next {
            planned: planned_rx,
            fetched: fetched_rx,
        },
    )
}

/// Write a [`start`]ed image into its partition by the delta path. Its fetch starts once the
/// image before is fetched (see [`Next`]): one image's ranges at a time.
pub async fn write_image(
    session: &Session,
    loaded: &Loaded,
    started: Started<'_>,
    progress: &Progress,
) -> Result<ImageReport> {
    let Started {
        role,
        name,
        dest,
        go,
        mut ranges_rx,
        bytes_tx,
        worker,
        fetched,
        after_fetched,
    } = started;
    let mut fetched = Some(fetched);
    if let Some(after) = after_fetched {
        // Dropped (an error) or sent: either way the image before is fetched.
        let _ = after.await;
    }
    // The worker is gone only after an error, which its result reports.
    let _ = go.send(());
    let transport = &session.transport;
    let url = &loaded.store_url;
    let mut downloaded = 0_u64;
    let mut total = 0_u64;
    let mut size = 0_u64;
    let mut fetch_error = None;
    let mut first = true;
    'rounds: while let Some((ranges, planned, image_size)) = ranges_rx.recv().await {
        let bytes: u64 = ranges.iter().map(|r| r.len).sum();
        total += bytes;
        size = image_size;
        if first {
            tracing::info!(
                image = role,
                blocks = planned.blocks,
                already_there = planned.already_there,
                missing = planned.missing,
                found_by_tree = planned.found_by_tree,
                fetch_bytes = bytes,
                requests = ranges.len(),
                "delta plan"
            );
            progress.event(Event::ImageStart {
                image: role,
                target: name,
                total,
                partition: dest.number,
            });
            first = false;
        }
        // Each range's bytes go to the worker as they arrive (it spools every frame they
        // complete: a kill loses only what is still incomplete, so nothing else holds them on
        // the way).
        let so_far = std::cell::Cell::new(downloaded);
        let permits = tail_permits(&ranges, ends_update(role));
        let in_flight = tokio::sync::Semaphore::new(PARALLEL);
        let pump = futures::stream::iter(ranges.into_iter().zip(permits))
            .map(|(range, permits)| {
                let (bytes_tx, so_far, in_flight) = (&bytes_tx, &so_far, &in_flight);
                async move {
                    // (Never closed.)
                    let _permits = in_flight.acquire_many(permits).await;
                    let mut body = transport.fetch_range(url, range.offset, range.len);
                    let mut at = 0_u64;
                    while let Some(chunk) = body.next().await? {
                        let n = chunk.len() as u64;
                        so_far.set(so_far.get() + n);
                        progress.event(Event::ImageProgress {
                            image: role,
                            downloaded: so_far.get(),
                            total,
                        });
                        if bytes_tx.send(Some((range, at, chunk))).await.is_err() {
                            // The worker is gone (its result says why): no more ranges.
                            return Ok(false);
                        }
                        at += n;
                    }
                    Ok::<bool, TransportError>(true)
                }
            })
            .buffer_unordered(PARALLEL)
            .try_take_while(|more| std::future::ready(Ok(*more)))
            .try_for_each(|_| std::future::ready(Ok(())));
        let pumped = pump.await;
        downloaded = so_far.get();
        if let Err(source) = pumped {
            fetch_error = Some(source);
            break 'rounds;
        }
        // (A worker that is gone also fails the end-of-round marker below.)
        if let Some(fetched) = fetched.take() {
            let _ = fetched.send(());
        }
        if bytes_tx.send(None).await.is_err() {
            break;
        }
    }
    drop(bytes_tx);
    drop(ranges_rx);
    let finished = worker.await.context(error::JoinSnafu)?;
    if let Some(source) = fetch_error {
        return Err(error::Error::FetchStore {
            url: url.to_string(),
            source: Box::new(source),
        });
    }
    let stats = finished?;
    progress.event(Event::ImageDone {
        image: role,
        downloaded,
        written: size,
    });
    tracing::info!(
        image = role,
        fetched_bytes = downloaded,
        fetched_blocks = stats.fetched_blocks,
        copied = stats.copied,
        "image written by the delta path and verified"
    );
    Ok(ImageReport {
        image: role.to_owned(),
        target: name.to_owned(),
        partition: dest.number,
        downloaded,
        written: size,
        via: "delta",
    })
}

/// What an update costs to download, by each path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Download {
    /// The full boot, root and hash images (their signed lengths).
    pub full_bytes: u64,
    /// The delta path on this host now: the index (unless cached) and the store ranges the
    /// plan fetches; `null` when the update has no delta or it cannot be used here (e.g. the
    /// disk is not readable).
    pub delta_bytes: Option<u64>,
}

/// How many bytes `update` would download on this host, by each path; `None` (with a
/// warning) when it cannot be told. The delta figure reads the disk (the same plan `update`
/// makes, without writing anything).
pub async fn estimate(
    session: &Session,
    update: &update_metadata::Update,
    disk: &crate::session::Disk,
    use_delta: bool,
) -> Option<Download> {
    match estimate_bytes(session, update, disk, use_delta).await {
        Ok(download) => Some(download),
        Err(e) => {
            tracing::warn!(error = %error::chain(&e), "cannot tell what the update downloads");
            None
        }
    }
}

async fn estimate_bytes(
    session: &Session,
    update: &update_metadata::Update,
    disk: &crate::session::Disk,
    use_delta: bool,
) -> Result<Download> {
    let mut full_bytes = 0;
    for name in [
        &update.images.root,
        &update.images.boot,
        &update.images.hash,
    ] {
        full_bytes += target_info(&session.repo, name).await?.length;
    }
    let delta_bytes = match update.delta.as_ref().filter(|_| use_delta) {
        None => None,
        Some(names) => match delta_estimate(session, names, disk).await {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(error = %error::chain(&e), "cannot tell what the delta path would fetch");
                None
            }
        },
    };
    Ok(Download {
        full_bytes,
        delta_bytes,
    })
}

async fn delta_estimate(
    session: &Session,
    names: &update_metadata::Delta,
    disk: &crate::session::Disk,
) -> Result<u64> {
    // Read-only: the index is not cached by an estimate.
    let loaded = load(session, names, false).await?;
    let resume = resuming(&session.settings.paths.datastore, &loaded);
    // The index counts unless an earlier run had cached it.
    let mut bytes = loaded.index_fetched;
    let (_, targets, running) = crate::images::partitions(&disk.source, disk.lock_timeout).await?;
    let datastore = &session.settings.paths.datastore;
    for (i, (role, target)) in crate::images::IMAGES.iter().zip(&targets).enumerate() {
        let seeds = seeds(&running, i, datastore, resume);
        bytes += plan_bytes(&loaded, role, target, &seeds, resume).await?;
    }
    Ok(bytes)
}

/// The datastore path of the cached index (for tests and clean-up).
pub fn cache_path(datastore: &std::path::Path) -> PathBuf {
    datastore.join(CACHE_FILE)
}
