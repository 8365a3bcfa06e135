//! What outcomes print: text, or one JSON document with `--json`, and their exit codes (the
//! shared runner in cli-support writes it; nothing else writes to stdout).
use crate::Outcome;
use crate::commands::explain::{WavePosition, local};
use std::fmt::Write;
use update_metadata::Update;

fn line(update: &Update) -> String {
    format!("{} {}", update.variant, update.version)
}

/// `downloaded: 5069455 bytes (root 4.4 MB by the delta path, boot 1.3 kB by the delta
/// path, hash 711.4 kB by the delta path)`.
fn fetched_line(images: &[crate::images::ImageReport]) -> String {
    let total: u64 = images.iter().map(|i| i.downloaded).sum();
    let parts: Vec<String> = images
        .iter()
        .map(|i| {
            format!(
                "{} {} {}",
                i.image,
                human(i.downloaded),
                if i.via == "delta" {
                    "by the delta path"
                } else {
                    "in full"
                }
            )
        })
        .collect();
    format!("downloaded: {total} bytes ({})", parts.join(", "))
}

/// Bytes for people: `812 B`, `2.1 kB`, `6.2 MB`, `1.4 GB` (decimal units).
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}

/// `download: 6.2 MB by the delta path (full images 158.8 MB)`.
fn download_line(download: &crate::delta::Download) -> String {
    match download.delta_bytes {
        Some(delta) => format!(
            "download: {} by the delta path (full images {})",
            human(delta),
            human(download.full_bytes)
        ),
        None => format!("download: {} (full images)", human(download.full_bytes)),
    }
}

/// The text form of an outcome (without a trailing newline), or `None` to print nothing.
pub fn text(outcome: &Outcome) -> Option<String> {
    match outcome {
        // One line, as the reference prints it (scripts read it); the bytes are in --json and
        // in `explain`.
        Outcome::Check(Some(checked)) => Some(line(&checked.update)),
        // "No update" is said on stderr (a log line) and by the exit code.
        Outcome::Check(None) => None,
        Outcome::CheckAll(updates) => {
            Some(updates.iter().map(line).collect::<Vec<_>>().join("\n")).filter(|s| !s.is_empty())
        }
        Outcome::Updated(report) => match (&report.update, report.applied) {
            (None, _) => None,
            (Some(u), true) => Some(format!(
                "Update applied: {}\n{}",
                line(u),
                fetched_line(&report.images)
            )),
            (Some(u), false) => Some(format!(
                "Update staged: {}\n{}",
                line(u),
                fetched_line(&report.images)
            )),
        },
        Outcome::Flipped { action, status } => Some(format!(
            "Update {action}: set {} boots next",
            status
                .next
                .map(|s| s.to_string())
                .unwrap_or_else(|| "none".to_owned())
        )),
        Outcome::Prepared { update, cache } => Some(match (update, cache) {
            (Some(u), Some(c)) => format!(
                "Prepared {}: {} target(s) cached, {} downloaded, {} stale file(s) removed",
                line(u),
                c.targets.len(),
                c.downloaded,
                c.removed.len()
            ),
            _ => "No update required".to_owned(),
        }),
        Outcome::Explained(report) => {
            let mut out = format!(
                "Seed {} (of 0..=2047), running {} {}\n",
                report.seed, report.variant, report.version
            );
            if report.updates.is_empty() {
                out.push_str("No updates published for this variant and architecture.");
            }
            for u in &report.updates {
                let wave = match u.wave {
                    WavePosition::NoWaves => "no waves: every host at any time".to_owned(),
                    WavePosition::First { upper } => {
                        format!(
                            "first wave (seed <= {}, starts {})",
                            upper.key,
                            local(upper.time)
                        )
                    }
                    WavePosition::Between { lower, upper } => format!(
                        "wave {} < seed <= {} ({} to {})",
                        lower.key,
                        upper.key,
                        local(lower.time),
                        local(upper.time)
                    ),
                    WavePosition::AfterLast { lower } => format!(
                        "after the last wave (seed > {}, from {})",
                        lower.key,
                        local(lower.time)
                    ),
                };
                let when = match u.eligible_at {
                    None => "eligible at any time".to_owned(),
                    Some(t) => format!("eligible at {}", local(t)),
                };
                let state = match (u.ready, u.selected) {
                    (_, true) => "ready; update would take it now",
                    (true, false) => "ready",
                    (false, _) => "not yet",
                };
                let _ = writeln!(
                    out,
                    "Update {} (max {}): {wave}; {when}; {state}",
                    u.version, u.max_version
                );
                if let Some(download) = &u.download {
                    let _ = writeln!(out, "  {}", download_line(download));
                }
            }
            Some(out.trim_end().to_owned())
        }
    }
}

/// How the binary prints an outcome and which exit code it means (100 when `check-update`
/// found an update).
impl cli_support::Report for Outcome {
    fn json(&self) -> serde_json::Result<serde_json::Value> {
        match self {
            // The reference's Update object (or null), so the update API can parse it.
            Outcome::Check(update) => serde_json::to_value(update),
            Outcome::CheckAll(updates) => serde_json::to_value(updates),
            Outcome::Updated(report) => serde_json::to_value(&report.update),
            Outcome::Flipped { status, .. } => serde_json::to_value(status),
            Outcome::Prepared { update, cache } => Ok(serde_json::json!({
                "update": update,
                "migrations": cache,
            })),
            Outcome::Explained(report) => serde_json::to_value(report),
        }
    }

    fn text(&self) -> Option<String> {
        text(self)
    }

    fn exit_code(&self) -> u8 {
        match self {
            Outcome::Check(Some(_)) => cli_support::exit::UPDATE_AVAILABLE,
            _ => cli_support::exit::SUCCESS,
        }
    }
}
