//! `prepare`: refresh the metadata and cache the migrations the chosen update needs, without
//! touching any partition (the reference's `prepare` does nothing).
use crate::Outcome;
use crate::cli::SelectArgs;
use crate::error::Result;
use crate::migrations;
use crate::session::{Inputs, Session};

/// Select and cache.
pub async fn run(inputs: Inputs, args: &SelectArgs) -> Result<Outcome> {
    let now = inputs.now;
    let session = Session::open(inputs.settings, now).await?;
    let Some(update) = session.select(args, now) else {
        tracing::info!("no update required; nothing to prepare");
        return Ok(Outcome::Prepared {
            update: None,
            cache: None,
        });
    };
    session
        .transport
        .set_param("target", &update.version.to_string());
    let (_, cache) = migrations::cache_for(&session, &update.version).await?;
    Ok(Outcome::Prepared {
        update: Some(update),
        cache: Some(cache),
    })
}
