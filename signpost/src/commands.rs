//! The commands: load the state, apply one change, write it back, and return what happened
//! as data ([`Outcome`]); the output module says how it prints.

use crate::Result;
use crate::ab::SetId;
use crate::cli::{Cli, Command};
use crate::disk::Access;
use crate::state::{DiskSource, State, Status};
use std::time::Duration;

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `status`: the state.
    Status(Status),
    /// A command that may change the state: the state afterwards, and whether the table was
    /// written (commands whose change is already in place write nothing, unless a copy of
    /// the table needs repair).
    Changed {
        /// The command.
        command: Command,
        /// The state after the command.
        status: Status,
        /// Whether the table was written.
        written: bool,
    },
    /// `has-boot-ever-succeeded`: bit 57 of the PRIVATE partition.
    BootEverSucceeded(bool),
    /// `select-boot`: the chosen set and the state afterwards.
    Selected {
        /// The set that boots.
        set: SetId,
        /// The state after spending the try.
        status: Status,
    },
}

impl Command {
    /// Whether the command may write the table (and so needs the exclusive lock).
    pub const fn writes(self) -> bool {
        !matches!(self, Command::Status | Command::HasBootEverSucceeded)
    }
}

/// Run the command line `cli` describes.
pub fn run(cli: &Cli) -> Result<Outcome> {
    let source = DiskSource::new(cli.disk.disk.as_deref(), cli.disk.active_set);
    execute(&source, cli.command, cli.disk.lock_timeout)
}

/// Run `command` on the disk `source` names, waiting up to `lock_timeout` for the lock.
pub fn execute(source: &DiskSource, command: Command, lock_timeout: Duration) -> Result<Outcome> {
    let access = if command.writes() {
        Access::Write
    } else {
        Access::Read
    };
    let mut state = State::load_with_timeout(source, access, lock_timeout)?;
    match command {
        Command::Status => return Ok(Outcome::Status(state.status())),
        Command::HasBootEverSucceeded => {
            return Ok(Outcome::BootEverSucceeded(state.has_boot_ever_succeeded()));
        }
        Command::SelectBoot => {
            let set = state.select_boot()?;
            if state.needs_write() {
                state.write()?;
            }
            tracing::info!(set = %set, flags = %state.flags(set), "selected the set to boot");
            return Ok(Outcome::Selected {
                set,
                status: state.status(),
            });
        }
        Command::RewriteTable => {
            state.write()?;
            return Ok(Outcome::Changed {
                command,
                status: state.status(),
                written: true,
            });
        }
        Command::MarkSuccessfulBoot => state.mark_successful_boot()?,
        Command::ClearInactive => state.clear_inactive()?,
        Command::MarkInactiveValid => state.mark_inactive_valid()?,
        Command::UpgradeToInactive => state.upgrade_to_inactive()?,
        Command::CancelUpgrade => state.cancel_upgrade()?,
        Command::RollbackToInactive => state.rollback_to_inactive()?,
    };
    let written = state.needs_write();
    if written {
        state.write()?;
    } else {
        tracing::info!("nothing to change; the table was left as it is");
    }
    Ok(Outcome::Changed {
        command,
        status: state.status(),
        written,
    })
}
