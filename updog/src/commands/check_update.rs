//! `check-update` (alias `whats`): is an update available for this host?
use crate::Outcome;
use crate::cli::CheckArgs;
use crate::error::Result;
use crate::session::{Inputs, Session};

/// Select the update (or list every applicable one with `--all`).
pub async fn run(inputs: Inputs, args: &CheckArgs) -> Result<Outcome> {
    let now = inputs.now;
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
    match &update {
        Some(u) => tracing::info!(version = %u.version, "update available"),
        None => tracing::info!("no update available"),
    }
    Ok(Outcome::Check(update))
}
