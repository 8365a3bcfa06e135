//! `update-apply` and `update-revert`: flip the boot order of a staged update. Both work
//! offline (no configuration, network or metadata needed), under the run lock.
use crate::Outcome;
use crate::cli::{Cli, RebootArgs};
use crate::config;
use crate::error::{self, Result};
use crate::lock::RunLock;
use crate::session::{blocking, disk_source};
use signpost::{Access, State};
use snafu::ResultExt;

/// `update-apply`: boot the staged inactive set next.
pub async fn apply(cli: &Cli, reboot: RebootArgs) -> Result<Outcome> {
    let outcome = change(cli, "applied", |state| {
        state.upgrade_to_inactive().map(|_| ())
    })
    .await?;
    if reboot.reboot {
        crate::commands::update::reboot().await?;
    }
    Ok(outcome)
}

/// `update-revert`: the running set boots next again.
pub async fn revert(cli: &Cli) -> Result<Outcome> {
    change(cli, "reverted", |state| state.cancel_upgrade().map(|_| ())).await
}

/// Under the run lock, load the disk, apply `edit`, write if anything changed.
async fn change(
    cli: &Cli,
    action: &'static str,
    edit: fn(&mut State) -> signpost::Result<()>,
) -> Result<Outcome> {
    let paths = lock_paths(cli);
    let _lock = RunLock::acquire(&paths.lock_file)?;
    let source = disk_source(&cli.disk);
    let timeout = cli.disk.lock_timeout;
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

/// Paths for the offline commands: the configuration file's values if it can be read, else
/// the flags and defaults.
fn lock_paths(cli: &Cli) -> config::Paths {
    match config::load_settings(&cli.paths) {
        Ok(settings) => settings.paths,
        Err(e) => {
            tracing::debug!(error = %e, "configuration not used");
            config::offline_paths(&cli.paths)
        }
    }
}
