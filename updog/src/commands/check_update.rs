//! `check-update` (alias `whats`): is an update available for this host, and how many bytes
//! would it download (full images, and by the delta path on this disk)?
use crate::cli::CheckArgs;
use crate::delta;
use crate::error::Result;
use crate::session::{Inputs, Session};
use crate::{Checked, Outcome};

/// Select the update (or list every applicable one with `--all`).
pub async fn run(inputs: Inputs, args: &CheckArgs, json: bool) -> Result<Outcome> {
    let now = inputs.now;
    let disk = inputs.disk.clone();
    let session = Session::open(inputs.settings, now).await?;
    let host = session.host();
    let policy = session.policy(&args.select);
    if args.all {
        let updates = session
            .manifest
            .applicable_updates(&host, now, policy.ignore_waves)
            .into_iter()
            .cloned()
            .collect();
        return Ok(Outcome::CheckAll(updates));
    }
    let update = session.manifest.select_update(&host, now, &policy).cloned();
    let Some(update) = update else {
        tracing::info!("no update available");
        return Ok(Outcome::Check(None));
    };
    tracing::info!(version = %update.version, "update available");
    // Only for --json (the text form is the reference's one line): the estimate reads the disk.
    let download = if json {
        delta::estimate(&session, &update, &disk, !args.select.no_delta).await
    } else {
        None
    };
    Ok(Outcome::Check(Some(Checked { update, download })))
}
