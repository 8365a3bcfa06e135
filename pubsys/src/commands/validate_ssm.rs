//! `pubsys validate-ssm`: check SSM parameters against a parameters file
//! (region → name → value, as `ssm` and `promote-ssm` write it).
//!
//! Expected names are read by name (so names outside `ssm_prefix`, such as `/aws/…`, are
//! checked too); `--check-unexpected` lists everything under `aws.ssm_prefix` and reports
//! names the file does not expect. Exit code 3 when anything is Incorrect, Missing,
//! Unreachable or (when checked) Unexpected.

use crate::Context;
use crate::aws::AwsArgs;
use crate::aws::params;
use crate::aws::ssm::get_values;
use crate::aws::validate::{self, Counts, ResultsArgs, Status, table};
use crate::error::{self, Result, sdk};
use clap::Args;
use serde::Serialize;
use snafu::{OptionExt, ResultExt};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

/// `pubsys validate-ssm` flags.
#[derive(Debug, Clone, Args)]
pub struct ValidateSsmArgs {
    /// Expected parameters (region → name → value)
    #[arg(long, value_name = "PATH")]
    pub expected_parameters_path: PathBuf,

    /// Also report parameters under aws.ssm_prefix that the file does not list
    #[arg(long)]
    pub check_unexpected: bool,

    /// Where results go and how many regions are checked at once.
    #[command(flatten)]
    pub results: ResultsArgs,

    /// Shared AWS flags (--regions: only these regions of the file).
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// One parameter's result.
#[derive(Debug, Clone, Serialize)]
pub struct SsmResult {
    /// Name.
    pub name: String,
    /// Expected value (none when unexpected).
    pub expected_value: Option<String>,
    /// Actual value (none when missing or unreachable).
    pub actual_value: Option<String>,
    /// Region.
    pub region: String,
    /// Status.
    pub status: Status,
}

/// What `validate-ssm` found: `--json` prints the per-region counts.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateSsmReport {
    /// Counts per region.
    #[serde(flatten)]
    pub counts: BTreeMap<String, Counts>,
    /// Every result.
    #[serde(skip)]
    pub results: Vec<SsmResult>,
    /// Whether unexpected parameters were looked for.
    #[serde(skip)]
    pub checked_unexpected: bool,
}

impl ValidateSsmReport {
    /// Whether anything is wrong.
    pub fn has_problems(&self) -> bool {
        self.counts.values().any(Counts::has_problems)
    }
}

impl fmt::Display for ValidateSsmReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        table(f, &self.counts, self.checked_unexpected)?;
        for r in self.results.iter().filter(|r| r.status != Status::Correct) {
            writeln!(
                f,
                "{:?}: {} {} expected={} actual={}",
                r.status,
                r.region,
                r.name,
                r.expected_value.as_deref().unwrap_or("-"),
                r.actual_value.as_deref().unwrap_or("-")
            )?;
        }
        Ok(())
    }
}

/// Run `pubsys validate-ssm`.
pub async fn run(args: &ValidateSsmArgs, context: &Context) -> Result<ValidateSsmReport> {
    let path = &args.expected_parameters_path;
    let mut expected = params::load(path)?;
    if !args.aws.regions.is_empty() {
        let keep: Vec<String> = args.aws.regions.iter().map(|r| r.to_string()).collect();
        expected.retain(|region, _| keep.contains(region));
    }
    let Some(first) = expected.keys().next() else {
        return error::EmptyAmiInputSnafu { path }.fail();
    };
    let prefix = if args.check_unexpected {
        Some(
            context
                .infra
                .aws
                .as_ref()
                .and_then(|aws| aws.ssm_prefix.clone())
                .context(error::NoPrefixSnafu)?,
        )
    } else {
        None
    };
    let base = first.parse().map_err(|_| error::Error::NoRegions)?;
    let aws = crate::aws::context(&args.aws, context, &base).await;

    let results = validate::per_region(
        &expected,
        args.results.concurrency,
        |region, wanted| {
            let aws = &aws;
            let prefix = prefix.as_deref();
            async move {
                let actual = actual_values(aws, region, wanted, prefix).await?;
                Ok(results(region, wanted, &actual, prefix.is_some()))
            }
        },
        |region, wanted| {
            wanted
                .iter()
                .map(|(name, value)| SsmResult {
                    name: name.clone(),
                    expected_value: Some(value.clone()),
                    actual_value: None,
                    region: region.clone(),
                    status: Status::Unreachable,
                })
                .collect()
        },
    )
    .await;
    let counts = validate::counts(expected.keys(), args.check_unexpected, &results, |r| {
        (r.region.as_str(), r.status)
    });
    args.results.write(&results, |r| r.status)?;
    Ok(ValidateSsmReport {
        counts,
        results,
        checked_unexpected: args.check_unexpected,
    })
}

/// Compare one region's expected values with what was found.
pub fn results(
    region: &str,
    wanted: &BTreeMap<String, String>,
    actual: &HashMap<String, String>,
    check_unexpected: bool,
) -> Vec<SsmResult> {
    let mut out: Vec<SsmResult> = wanted
        .iter()
        .map(|(name, value)| {
            let found = actual.get(name).cloned();
            let status = match &found {
                None => Status::Missing,
                Some(v) if v == value => Status::Correct,
                Some(_) => Status::Incorrect,
            };
            SsmResult {
                name: name.clone(),
                expected_value: Some(value.clone()),
                actual_value: found,
                region: region.to_owned(),
                status,
            }
        })
        .collect();
    if check_unexpected {
        let mut extra: Vec<(&String, &String)> = actual
            .iter()
            .filter(|(name, _)| !wanted.contains_key(*name))
            .collect();
        extra.sort();
        out.extend(extra.into_iter().map(|(name, value)| SsmResult {
            name: name.clone(),
            expected_value: None,
            actual_value: Some(value.clone()),
            region: region.to_owned(),
            status: Status::Unexpected,
        }));
    }
    out
}

async fn actual_values(
    aws: &aws_context::AwsContext,
    region: &str,
    wanted: &BTreeMap<String, String>,
    prefix: Option<&str>,
) -> Result<HashMap<String, String>> {
    let ssm = aws
        .ssm(region)
        .await
        .context(error::ClientSnafu { region })?;
    let names: Vec<String> = wanted.keys().cloned().collect();
    let mut values = get_values(&ssm, region, &names).await?;
    if let Some(prefix) = prefix {
        let mut pages = ssm
            .get_parameters_by_path()
            .path(prefix)
            .recursive(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk).context(error::CallSnafu {
                operation: "GetParametersByPath",
                region,
            })?;
            for p in page.parameters() {
                if let (Some(name), Some(value)) = (p.name(), p.value()) {
                    values.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::{Status, results};
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn classifies_each_parameter() {
        let wanted: BTreeMap<String, String> = [("/a", "1"), ("/b", "2"), ("/c", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let actual: HashMap<String, String> = [("/a", "1"), ("/b", "x"), ("/d", "4")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let statuses: Vec<Status> = results("r", &wanted, &actual, true)
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(
            statuses,
            [
                Status::Correct,
                Status::Incorrect,
                Status::Missing,
                Status::Unexpected
            ]
        );
        assert_eq!(results("r", &wanted, &actual, false).len(), 3);
    }
}
