//! `pubsys validate-repo`: load a published repository with full verification (root chain,
//! signatures, expiry) and, with `--validate-targets`, download every target, letting tough
//! check each one's length and SHA-256 while the bytes are discarded (bounded memory: one
//! buffer per download, a bounded number of downloads at once). Problems exit 3.

use crate::Context;
use crate::error::Result;
use crate::repo::{self as shared, LocationArgs};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::fmt;

/// Arguments of `pubsys validate-repo`.
#[derive(Debug, Args)]
pub struct ValidateRepoArgs {
    #[command(flatten)]
    location: LocationArgs,

    /// Also download and verify every target
    #[arg(long)]
    validate_targets: bool,

    /// Targets downloaded at once with --validate-targets
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
}

/// What `validate-repo` found.
#[derive(Debug, Serialize)]
pub struct ValidateRepoReport {
    /// Metadata URL checked.
    pub metadata_url: String,
    /// Number of targets listed.
    pub targets: usize,
    /// Number of targets downloaded and verified.
    pub targets_verified: usize,
    /// Bytes verified.
    pub bytes_verified: u64,
    /// Problems (empty: valid).
    pub problems: Vec<String>,
}

impl fmt::Display for ValidateRepoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.problems.is_empty() {
            "valid"
        } else {
            "INVALID"
        };
        writeln!(f, "{}: {verdict}", self.metadata_url)?;
        writeln!(
            f,
            "  {} targets listed, {} verified ({} bytes)",
            self.targets, self.targets_verified, self.bytes_verified
        )?;
        for problem in &self.problems {
            writeln!(f, "  PROBLEM: {problem}")?;
        }
        Ok(())
    }
}

/// Run `pubsys validate-repo`.
pub async fn run(args: &ValidateRepoArgs, context: &Context) -> Result<ValidateRepoReport> {
    let location = args.location.location(context, false).await?;
    let mut report = ValidateRepoReport {
        metadata_url: location.metadata_url.to_string(),
        targets: 0,
        targets_verified: 0,
        bytes_verified: 0,
        problems: Vec::new(),
    };
    let repo = match shared::load(&location).await {
        Ok(repo) => repo,
        Err(error) => {
            report
                .problems
                .push(snafu::Report::from_error(error).to_string());
            return Ok(report);
        }
    };
    let names: Vec<tough::TargetName> = repo.all_targets().map(|(name, _)| name.clone()).collect();
    report.targets = names.len();
    if !args.validate_targets {
        return Ok(report);
    }
    let repo = &repo;
    let results: Vec<(String, std::result::Result<u64, String>)> = futures::stream::iter(names)
        .map(|name| async move {
            let outcome = async {
                let stream = repo
                    .read_target(&name)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("listed but not readable")?;
                // tough checks length and hash as the stream ends; the bytes are only counted.
                stream
                    .map_err(|e| e.to_string())
                    .try_fold(0u64, |n, chunk| async move { Ok(n + chunk.len() as u64) })
                    .await
            }
            .await;
            (name.raw().to_owned(), outcome.map_err(|e: String| e))
        })
        .buffer_unordered(usize::from(args.jobs))
        .collect()
        .await;
    for (name, outcome) in results {
        match outcome {
            Ok(bytes) => {
                report.targets_verified += 1;
                report.bytes_verified += bytes;
            }
            Err(error) => report.problems.push(format!("target {name}: {error}")),
        }
    }
    Ok(report)
}
