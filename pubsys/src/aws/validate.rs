//! What `validate-ami` and `validate-ssm` share: the status of one check, counts per region
//! and their table, the results-file flags, and checking every region at once.

use crate::error::Result;
use clap::{Args, ValueEnum};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;

/// Result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ValueEnum)]
pub enum Status {
    /// As expected.
    #[value(name = "Correct")]
    Correct,
    /// Exists, but differs.
    #[value(name = "Incorrect")]
    Incorrect,
    /// Does not exist.
    #[value(name = "Missing")]
    Missing,
    /// The region could not be asked.
    #[value(name = "Unreachable")]
    Unreachable,
    /// Exists but was not expected (validate-ssm --check-unexpected).
    #[value(name = "Unexpected")]
    Unexpected,
}

/// Counts per status for one region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Correct.
    pub correct: usize,
    /// Incorrect.
    pub incorrect: usize,
    /// Missing.
    pub missing: usize,
    /// Unreachable.
    pub unreachable: usize,
    /// Unexpected (SSM only, with --check-unexpected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unexpected: Option<usize>,
}

impl Counts {
    /// Count one status.
    pub fn add(&mut self, status: Status) {
        match status {
            Status::Correct => self.correct += 1,
            Status::Incorrect => self.incorrect += 1,
            Status::Missing => self.missing += 1,
            Status::Unreachable => self.unreachable += 1,
            Status::Unexpected => *self.unexpected.get_or_insert(0) += 1,
        }
    }

    /// Whether anything is wrong.
    pub fn has_problems(&self) -> bool {
        self.incorrect + self.missing + self.unreachable + self.unexpected.unwrap_or(0) > 0
    }
}

/// Print a per-region table of counts.
pub fn table(
    f: &mut fmt::Formatter<'_>,
    counts: &BTreeMap<String, Counts>,
    unexpected: bool,
) -> fmt::Result {
    write!(
        f,
        "{:<16} {:>8} {:>10} {:>8} {:>12}",
        "region", "correct", "incorrect", "missing", "unreachable"
    )?;
    if unexpected {
        write!(f, " {:>11}", "unexpected")?;
    }
    writeln!(f)?;
    for (region, c) in counts {
        write!(
            f,
            "{:<16} {:>8} {:>10} {:>8} {:>12}",
            region, c.correct, c.incorrect, c.missing, c.unreachable
        )?;
        if unexpected {
            write!(f, " {:>11}", c.unexpected.unwrap_or(0))?;
        }
        writeln!(f)?;
    }
    Ok(())
}

/// Output and fan-out flags shared by `validate-ami` and `validate-ssm`.
#[derive(Debug, Clone, Args)]
pub struct ResultsArgs {
    /// Write each result (JSON array) here
    #[arg(long, value_name = "PATH")]
    pub write_results_path: Option<PathBuf>,

    /// Only write results with these statuses (repeatable)
    #[arg(long, value_enum, requires = "write_results_path")]
    pub write_results_filter: Vec<Status>,

    /// Regions checked at once
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
}

impl ResultsArgs {
    /// Write the results whose status passes `--write-results-filter` to
    /// `--write-results-path`, if one was given.
    pub fn write<T: Serialize>(&self, results: &[T], status: impl Fn(&T) -> Status) -> Result<()> {
        let Some(out) = &self.write_results_path else {
            return Ok(());
        };
        let written: Vec<&T> = results
            .iter()
            .filter(|r| {
                self.write_results_filter.is_empty()
                    || self.write_results_filter.contains(&status(r))
            })
            .collect();
        super::write_json(out, &written, "validation results")
    }
}

/// Check every region of `expected` (at most `concurrency` at once) with `check`. A region
/// that cannot be checked is logged, and each of its expected items is reported by
/// `unreachable`. Results come back grouped by region, in completion order.
pub async fn per_region<'a, E, R, F, Fut>(
    expected: &'a BTreeMap<String, E>,
    concurrency: usize,
    check: F,
    unreachable: impl Fn(&'a String, &'a E) -> Vec<R>,
) -> Vec<R>
where
    F: Fn(&'a String, &'a E) -> Fut,
    Fut: Future<Output = Result<Vec<R>>>,
{
    let check = &check;
    let unreachable = &unreachable;
    let per_region: Vec<Vec<R>> = stream::iter(expected.iter())
        .map(|(region, wanted)| async move {
            match check(region, wanted).await {
                Ok(results) => results,
                Err(e) => {
                    tracing::error!(region, "{}", snafu::Report::from_error(&e));
                    unreachable(region, wanted)
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    per_region.into_iter().flatten().collect()
}

/// Counts per region of `results` (`of` gives a result's region and status); every region of
/// `regions` is listed, with an `unexpected` count when `unexpected` was checked.
pub fn counts<'a, R>(
    regions: impl Iterator<Item = &'a String>,
    unexpected: bool,
    results: &[R],
    of: impl Fn(&R) -> (&str, Status),
) -> BTreeMap<String, Counts> {
    let mut counts: BTreeMap<String, Counts> = regions
        .map(|region| {
            let mut entry = Counts::default();
            if unexpected {
                entry.unexpected = Some(0);
            }
            (region.clone(), entry)
        })
        .collect();
    for r in results {
        let (region, status) = of(r);
        counts.entry(region.to_owned()).or_default().add(status);
    }
    counts
}
