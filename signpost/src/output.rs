//! Printing outcomes: text for people, or one JSON document with `--json`. The only place
//! that decides what goes to stdout (the shared runner writes it).

use crate::ab::SetId;
use crate::commands::Outcome;
use crate::gpt::CopyState;
use crate::state::Status;
use serde::Serialize;
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

/// How the binary prints an outcome: one JSON document with `--json`, else text.
impl cli_support::Report for Outcome {
    fn json(&self) -> serde_json::Result<serde_json::Value> {
        match self {
            Outcome::Status(status) | Outcome::Changed { status, .. } => {
                serde_json::to_value(status)
            }
            Outcome::BootEverSucceeded(value) => serde_json::to_value(BootEverSucceeded {
                boot_ever_succeeded: *value,
            }),
            Outcome::Selected { set, status } => serde_json::to_value(Selected {
                selected: *set,
                status,
            }),
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Outcome::Status(status) => Some(status_text(status)),
            // Like the reference, the changing commands print nothing; the log says what
            // changed.
            Outcome::Changed { .. } => None,
            // Non-empty output means "not the first boot" to the boot scripts; empty means
            // never.
            Outcome::BootEverSucceeded(value) => value.then(|| "true".to_owned()),
            Outcome::Selected { set, .. } => Some(set.as_str().to_owned()),
        }
    }
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
