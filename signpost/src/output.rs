//! Printing outcomes: text for people, or one JSON document with `--json`. The only place
//! that writes to stdout.

use crate::Result;
use crate::ab::SetId;
use crate::commands::Outcome;
use crate::error::PrintOutputSnafu;
use crate::gpt::CopyState;
use crate::state::Status;
use serde::Serialize;
use snafu::ResultExt;
use std::fmt::Write as _;

/// The JSON document of `select-boot`: the chosen set plus the status afterwards.
#[derive(Debug, Serialize)]
struct Selected<'a> {
    selected: SetId,
    #[serde(flatten)]
    status: &'a Status,
}

/// The JSON document of `has-boot-ever-succeeded`.
#[derive(Debug, Serialize)]
struct BootEverSucceeded {
    boot_ever_succeeded: bool,
}

/// Print `outcome` on stdout, as JSON if `json`.
pub fn print(outcome: &Outcome, json: bool) -> Result<()> {
    let printed = match (outcome, json) {
        (Outcome::Status(status) | Outcome::Changed { status, .. }, true) => {
            cli_support::print_json(status)
        }
        (Outcome::Status(status), false) => cli_support::print_text(&status_text(status)),
        // Like the reference, the changing commands print nothing; the log says what changed.
        (Outcome::Changed { .. }, false) => Ok(()),
        (Outcome::BootEverSucceeded(value), true) => cli_support::print_json(&BootEverSucceeded {
            boot_ever_succeeded: *value,
        }),
        // Non-empty output means "not the first boot" to the boot scripts; empty means never.
        (Outcome::BootEverSucceeded(value), false) => {
            if *value {
                cli_support::print_text("true")
            } else {
                Ok(())
            }
        }
        (Outcome::Selected { set, status }, true) => cli_support::print_json(&Selected {
            selected: *set,
            status,
        }),
        (Outcome::Selected { set, .. }, false) => cli_support::print_text(set.as_str()),
    };
    printed.context(PrintOutputSnafu)
}

fn set_name(set: Option<SetId>) -> String {
    match set {
        Some(set) => format!("Set {set}"),
        None => "None".to_owned(),
    }
}

fn copy_text(state: &CopyState) -> String {
    match state {
        CopyState::Valid => "valid".to_owned(),
        CopyState::Stale => {
            "stale (differs from the primary; repaired on the next write)".to_owned()
        }
        CopyState::Invalid(problem) => format!("damaged ({problem}; repaired on the next write)"),
    }
}

/// The reference's status text (`reference/signpost.md` §6), plus a line per damaged copy.
pub fn status_text(status: &Status) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(text, "OS disk: {}", status.disk.display());
    for id in SetId::BOTH {
        let set = status.set(id);
        let _ = writeln!(
            text,
            "Set {id}:   boot={} root={} hash={} priority={} tries_left={} successful={}",
            status.partition_label(set.partitions.boot),
            status.partition_label(set.partitions.root),
            status.partition_label(set.partitions.hash),
            set.priority,
            set.tries_left,
            set.successful
        );
    }
    let active = match status.active {
        Some(set) => format!("Set {set}"),
        None => "unknown (pass --active-set)".to_owned(),
    };
    let _ = writeln!(text, "Active:  {active}");
    let _ = writeln!(text, "Next:    {}", set_name(status.next));
    for (name, state) in [
        ("Primary", &status.table.primary),
        ("Backup", &status.table.backup),
    ] {
        if *state != CopyState::Valid {
            let _ = writeln!(text, "{name} table: {}", copy_text(state));
        }
    }
    text
}
