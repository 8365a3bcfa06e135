//! `update` and `update-image`: the write sequence.
//!
//! 1. Select the update (nothing → "no update required").
//! 2. Read the disk's table: the running and inactive sets, and the partitions' extents.
//! 3. Cache the migrations the update needs (and a rollback from it), remove stale cache files.
//!    A broken migration chain fails here, before any disk write.
//! 4. Check every image whose LZ4 header declares its decompressed size against its partition.
//! 5. **GPT write 1**: clear the inactive set's flags (priority, tries, successful = 0) and
//!    persist them. From here on a failure leaves the inactive set unbootable and the running
//!    set untouched.
//! 6. Write `root`, `boot`, `hash` into the inactive partitions, each synced and verified:
//!    by the delta path when the update has a delta (copy what the running set and the
//!    inactive set already hold, fetch the rest from the store, every fetched block checked
//!    against the signed index, the whole image against its signed SHA-256), else, or when
//!    the delta path fails for an image, by streaming the full image from TUF through the LZ4
//!    decoder (bounded by the partition's end; the length checked while streaming, every
//!    listed hash at the end).
//! 7. Record the written version's migration files (`.staged-update.json`) so later runs
//!    keep them until the host runs it. **GPT write 2** (one write): re-read the table, check the inactive set is still cleared,
//!    mark it valid (tries = 1) and, for `update`, flip the priorities (`upgrade_to_inactive`).
//! 8. `--reboot`: `shutdown -r now`.
use crate::Outcome;
use crate::cli::SelectArgs;
use crate::delta as delta_path;
use crate::error::{self, Result};
use crate::images::{self, IMAGES, ImageReport, PartitionTarget};
use crate::migrations;
use crate::progress::{Event, Progress};
use crate::session::{Inputs, Session, blocking};
use signpost::{Access, BootFlags, DiskSource, SetId, State};
use snafu::{ResultExt, ensure};
use std::time::Duration;
use update_metadata::Update;

/// What `update`/`update-image` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpdateReport {
    /// The update written, `None` when none was required.
    pub update: Option<Update>,
    /// Whether the boot order was flipped (`update`), or the set only staged (`update-image`).
    pub applied: bool,
    /// The set written to.
    pub set: Option<SetId>,
    /// The images written.
    pub images: Vec<ImageReport>,
    /// The migrations cached.
    pub migrations: Option<migrations::CacheReport>,
}

/// How far the write sequence goes once the inactive set is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `update-image`: mark the set valid, keep booting the running one.
    Stage,
    /// `update`: also flip the boot order to the written set.
    Apply,
    /// `update --reboot`: flip, then reboot into it.
    ApplyAndReboot,
}

impl Mode {
    /// Whether the boot order is flipped.
    pub const fn flips(self) -> bool {
        !matches!(self, Mode::Stage)
    }
}

/// Run the write sequence, as far as `mode` says.
pub async fn run(
    inputs: Inputs,
    args: &SelectArgs,
    mode: Mode,
    progress: &Progress,
) -> Result<Outcome> {
    let Inputs {
        settings,
        disk,
        now,
    } = inputs;
    let flip = mode.flips();
    let session = Session::open(settings, now).await?;
    let Some(update) = session.select(args, now) else {
        tracing::info!("No update required");
        return Ok(Outcome::Updated(UpdateReport {
            update: None,
            applied: false,
            set: None,
            images: Vec::new(),
            migrations: None,
        }));
    };
    tracing::info!(version = %update.version, "Starting update to {}", update.version);
    session
        .transport
        .set_param("target", &update.version.to_string());

    // 2. The disk: which set to write, and where its partitions are.
    let source = disk.source;
    let timeout = disk.lock_timeout;
    let (active, targets, running) = images::partitions(&source, timeout).await?;
    let inactive = active.other();
    progress.event(Event::Selected {
        version: &update.version.to_string(),
        variant: &update.variant,
        set: inactive.as_str(),
    });
    let names = [
        update.images.root.clone(),
        update.images.boot.clone(),
        update.images.hash.clone(),
    ];

    // 3. Migrations.
    progress.event(Event::Phase {
        phase: "cache_migrations",
    });
    let (needed, cache) = migrations::cache_for(&session, &update.version).await?;
    session.transport.set_param("migrations", &needed.join(","));

    // The delta index, if the update has one and it can be used.
    let delta = match update.delta.as_ref().filter(|_| !args.no_delta) {
        Some(names) => match delta_path::load(&session, names, true).await {
            Ok(loaded) => Some(loaded),
            Err(e) => {
                tracing::warn!(error = %error::chain(&e), "the delta index cannot be used; downloading the full images");
                None
            }
        },
        None => None,
    };

    // 4. Image sizes (from the signed index, else as declared in the LZ4 headers) against the
    //    partitions, before any write.
    for ((image, name), target) in IMAGES.iter().zip(&names).zip(&targets) {
        let size = match delta.as_ref().and_then(|d| d.index.image(image)) {
            Some(indexed) => Some(indexed.size),
            None => images::declared_size(&session.repo, name).await?,
        };
        if let Some(size) = size {
            ensure!(
                size <= target.capacity,
                error::ImageTooLargeSnafu {
                    image: *image,
                    name: name.as_str(),
                    number: target.number,
                    capacity: target.capacity,
                    size: Some(size),
                }
            );
        }
    }

    // The delta plans of step 6 start before GPT write 1 (they only read): the first image's
    // now, each next one on a thread of its own once the plan before is made; each next
    // image's fetch starts once the image before is fetched, while its copies are written.
    let datastore = &session.settings.paths.datastore;
    let resume = match &delta {
        Some(loaded) => {
            let resume = delta_path::resuming(datastore, loaded);
            delta_path::mark_started(datastore, loaded, resume);
            resume
        }
        None => {
            // A spool left by an interrupted delta run is of no use to the full images.
            delta_path::remove_spools(datastore);
            false
        }
    };
    let mut next = None;
    let started: Vec<_> = IMAGES
        .iter()
        .zip(&names)
        .zip(&targets)
        .enumerate()
        .map(|(i, ((image, name), target))| {
            delta.as_ref().map(|loaded| {
                let job = delta_path::Job {
                    role: image,
                    name,
                    dest: target,
                    seeds: delta_path::seeds(&running, i, datastore, resume),
                    resume,
                };
                let (started, after) = delta_path::start(&session, loaded, job, next.take());
                next = Some(after);
                started
            })
        })
        .collect();
    // 5. GPT write 1: the inactive set becomes unbootable before its data changes.
    progress.event(Event::Phase {
        phase: "clear_inactive",
    });
    {
        let source = source.clone();
        blocking(move || {
            let mut state = State::load_with_timeout(&source, Access::Write, timeout)
                .context(error::DiskSnafu)?;
            check_active(&state, active)?;
            state.clear_inactive().context(error::DiskSnafu)?;
            state.write().context(error::DiskSnafu)
        })
        .await?;
    }

    // 6. The images, each once the table says the set is not bootable: by the delta path
    //    when there is one, else (or when it fails) in full. Delta images are fetched one
    //    after the other, each while the image before is still written.
    let images = IMAGES.iter().zip(&names).zip(&targets);
    let reports = if let Some(loaded) = &delta {
        let session = &session;
        let writes = images.zip(started).map(|(((image, name), target), started)| async move {
            if let Some(planned) = started {
                match delta_path::write_image(session, loaded, planned, progress).await {
                    Ok(report) => return Ok(report),
                    Err(e) => {
                        tracing::warn!(image, error = %error::chain(&e), "the delta path failed; downloading the full image");
                        // (It may have failed on a full datastore: its spool goes first.)
                        delta_path::remove_spool(datastore, image);
                    }
                }
            }
            write_one(session, image, name, target, progress).await
        });
        let reports = futures::future::try_join_all(writes).await?;
        delta_path::remove_spools(datastore);
        reports
    } else {
        let mut reports = Vec::new();
        for ((image, name), target) in images {
            reports.push(write_one(&session, image, name, target, progress).await?);
        }
        reports
    };

    // The written set needs these migrations until the host runs it: recorded before it can
    // boot, so later runs keep them (a record without a flip only keeps a few files longer).
    migrations::record_staged(
        &session.settings.paths.migrations_cache,
        &update.version,
        &cache.files,
    )?;

    // 7. GPT write 2: valid (and flipped) in one write.
    progress.event(Event::Phase {
        phase: if flip { "flip" } else { "mark_valid" },
    });
    finish(source, timeout, active, flip).await?;
    progress.event(Event::Phase { phase: "done" });
    let downloaded: u64 = reports.iter().map(|r| r.downloaded).sum();
    let by_delta = reports.iter().filter(|r| r.via == "delta").count();
    tracing::info!(
        version = %update.version,
        set = %inactive,
        applied = flip,
        downloaded,
        images_by_delta = by_delta,
        "update written"
    );

    if mode == Mode::ApplyAndReboot {
        reboot().await?;
    }
    Ok(Outcome::Updated(UpdateReport {
        update: Some(update),
        applied: flip,
        set: Some(inactive),
        images: reports,
        migrations: Some(cache),
    }))
}

async fn write_one(
    session: &Session,
    image: &str,
    name: &str,
    target: &PartitionTarget,
    progress: &Progress,
) -> Result<ImageReport> {
    images::write_image(&session.repo, image, name, target, progress).await
}

/// The running set must be the one the update was planned for.
fn check_active(state: &State, planned: SetId) -> Result<()> {
    let active = state.active().context(error::DiskSnafu)?;
    ensure!(
        active == planned,
        error::TableChangedSnafu {
            path: state.disk_path(),
            why: format!("the running set is now {active}, was {planned}"),
        }
    );
    Ok(())
}

/// Re-read the table, check nobody touched the inactive set, mark it valid and optionally flip.
async fn finish(source: DiskSource, timeout: Duration, active: SetId, flip: bool) -> Result<()> {
    blocking(move || {
        let mut state =
            State::load_with_timeout(&source, Access::Write, timeout).context(error::DiskSnafu)?;
        check_active(&state, active)?;
        let flags = state.flags(active.other());
        ensure!(
            flags == BootFlags::default(),
            error::TableChangedSnafu {
                path: state.disk_path(),
                why: format!(
                    "set {} changed while its images were written (priority={}, tries_left={}, successful={})",
                    active.other(),
                    flags.priority,
                    flags.tries_left,
                    flags.successful
                ),
            }
        );
        state.mark_inactive_valid().context(error::DiskSnafu)?;
        if flip {
            state.upgrade_to_inactive().context(error::DiskSnafu)?;
        }
        state.write().context(error::DiskSnafu)
    })
    .await
}

/// Reboot the host: `shutdown -r now`, surviving the SIGTERM shutdown sends.
pub async fn reboot() -> Result<()> {
    // Holding a handler replaces the default action, so the shutdown's SIGTERM does not kill
    // updog before `shutdown` returns.
    let _sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context(error::RebootSnafu)?;
    tracing::info!("rebooting");
    let status = tokio::process::Command::new("shutdown")
        .args(["-r", "now"])
        .status()
        .await
        .context(error::RebootSnafu)?;
    ensure!(
        status.success(),
        error::RebootFailedSnafu {
            status: status.to_string()
        }
    );
    Ok(())
}
