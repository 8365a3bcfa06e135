//! `update-apply` and `update-revert`: flip the boot order of a staged update. Both work
//! offline (no configuration, network or metadata needed), under the run lock.
use crate::Outcome;
use crate::cli::RebootArgs;
use crate::config::Paths;
use crate::error::{self, Result};
use crate::lock::RunLock;
use crate::session::{Disk, blocking};
use signpost::{Access, State};
use snafu::ResultExt;

/// `update-apply`: boot the staged inactive set next.
pub async fn apply(disk: Disk, paths: &Paths, reboot: RebootArgs) -> Result<Outcome> {
    let outcome = change(disk, paths, "applied", |state| {
        state.upgrade_to_inactive().map(|_| ())
    })
    .await?;
    if reboot.reboot {
        crate::commands::update::reboot().await?;
    }
    Ok(outcome)
}

/// `update-revert`: the running set boots next again.
pub async fn revert(disk: Disk, paths: &Paths) -> Result<Outcome> {
    change(disk, paths, "reverted", |state| {
        state.cancel_upgrade().map(|_| ())
    })
    .await
}

/// Under the run lock, load the disk, apply `edit`, write if anything changed.
async fn change(
    disk: Disk,
    paths: &Paths,
    action: &'static str,
    edit: fn(&mut State) -> signpost::Result<()>,
) -> Result<Outcome> {
    let _lock = RunLock::acquire(&paths.lock_file)?;
    let Disk {
        source,
        lock_timeout: timeout,
    } = disk;
    let status = blocking(move || {
        let mut state =
            State::load_with_timeout(&source, Access::Write, timeout).context(error::DiskSnafu)?;
        edit(&mut state).context(error::DiskSnafu)?;
        if state.needs_write() {
            state.write().context(error::DiskSnafu)?;
        }
        Ok(state.status())
    })
    .await?;
    Ok(Outcome::Flipped {
        action,
        status: Box::new(status),
    })
}
