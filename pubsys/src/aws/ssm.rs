//! Publishing SSM parameters (`ssm`, `promote-ssm`): the shared flags and the pipeline after
//! rendering.
//!
//! Order: render → public-namespace guard (`/aws/…` must point at public AMIs) → read the
//! current values → refuse to change any without `--allow-clobber` → put the new and
//! changed ones, rate-limited per region with backoff on throttling → read everything back
//! → write the parameters file with what is verified in place. A `PutParameter` that
//! answers `ParameterAlreadyExists` (a retried create whose first answer was lost) is
//! checked rather than failed. The pipeline after rendering is shared with `promote-ssm`.

use super::params::ParamsFile;
use super::template::{self, Vars};
use super::{Arch, AwsArgs};
use crate::Context;
use crate::error::{self, Result, sdk};
use aws_context::AwsContext;
use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::ParameterType;
use clap::Args;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use snafu::ResultExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The data type SSM validates as an AMI ID.
pub const EC2_IMAGE_DATA_TYPE: &str = "aws:ec2:image";

/// The flags `ssm` and `promote-ssm` share: which templates apply (variant, arch), the
/// public-namespace guard, the write rate and the regions.
#[derive(Debug, Clone, Args)]
pub struct TemplateArgs {
    /// Architecture (template variable `arch`, EC2 spelling)
    #[arg(short = 'a', long)]
    pub arch: Arch,

    /// Variant (template variable `variant`)
    #[arg(long)]
    pub variant: String,

    /// Parameter templates (TOML, `[[parameter]]` entries)
    #[arg(long, value_name = "PATH")]
    pub template_path: PathBuf,

    /// Allow private AMIs in the public /aws/ namespace
    #[arg(long)]
    pub allow_private_images: bool,

    /// Rate limiting and concurrency of the writes.
    #[command(flatten)]
    pub put: PutArgs,

    /// Shared AWS flags (--regions defaults to aws.regions).
    #[command(flatten)]
    pub aws: AwsArgs,
}

impl TemplateArgs {
    /// The templates that apply to this variant and arch (none: the command has nothing to
    /// do, see [`SsmReport::nothing_applies`]).
    pub fn applicable(&self) -> Result<Vec<template::Template>> {
        let templates = template::load(&self.template_path)?;
        Ok(
            template::applicable(&templates, &self.variant, self.arch.ec2_name())
                .into_iter()
                .cloned()
                .collect(),
        )
    }

    /// The template variables every parameter has (`variant`, `arch`), plus `more`.
    pub fn vars<'a>(&'a self, more: &[(&'static str, &'a str)]) -> Vars<'a> {
        [
            ("variant", self.variant.as_str()),
            ("arch", self.arch.ec2_name()),
        ]
        .into_iter()
        .chain(more.iter().copied())
        .collect()
    }

    /// The public-namespace guard (unless `--allow-private-images`), then [`publish`].
    pub async fn guard_and_publish(
        &self,
        aws: &AwsContext,
        desired: Vec<Desired>,
        allow_clobber: bool,
    ) -> Result<SsmReport> {
        if !self.allow_private_images {
            check_public(aws, &desired).await?;
        }
        publish(aws, desired, allow_clobber, self.put, &self.aws).await
    }
}

/// Infra.toml's `aws.ssm_prefix`, if any.
pub fn prefix(context: &Context) -> Option<&str> {
    context
        .infra
        .aws
        .as_ref()
        .and_then(|aws| aws.ssm_prefix.as_deref())
}

/// How fast to write parameters.
#[derive(Debug, Clone, Copy, Args)]
pub struct PutArgs {
    /// PutParameter calls per second per region at most (halved each time AWS throttles)
    #[arg(long, default_value_t = 10.0, value_name = "N")]
    pub rate: f64,

    /// Calls in flight at once, across regions
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
}

/// A parameter to have in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Desired {
    /// Region.
    pub region: String,
    /// Full name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Data type (`aws:ec2:image`), if not text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
}

/// What happened to one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// It did not exist and was created.
    New,
    /// It had the value already.
    Unchanged,
    /// Its value was changed.
    Changed,
    /// It could not be set or did not read back.
    Failed,
}

/// One parameter's result.
#[derive(Debug, Clone, Serialize)]
pub struct ParamOutcome {
    /// The parameter.
    #[serde(flatten)]
    pub desired: Desired,
    /// The value before, if any.
    pub previous: Option<String>,
    /// Result.
    pub change: Change,
    /// What went wrong.
    pub error: Option<String>,
}

/// What `ssm` or `promote-ssm` did.
#[derive(Debug, Clone, Serialize)]
pub struct SsmReport {
    /// Per parameter.
    pub parameters: Vec<ParamOutcome>,
    /// Where the parameters file was written.
    pub output: Option<PathBuf>,
    /// A note (e.g. nothing applied to this variant).
    pub note: Option<String>,
}

impl SsmReport {
    /// The answer when no template applies to the variant and arch.
    pub fn nothing_applies() -> SsmReport {
        SsmReport {
            parameters: Vec::new(),
            output: None,
            note: Some("No parameters for this arch/variant".to_owned()),
        }
    }

    /// Whether some parameter failed.
    pub fn failed(&self) -> bool {
        self.parameters.iter().any(|p| p.change == Change::Failed)
    }
}

impl fmt::Display for SsmReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(note) = &self.note {
            writeln!(f, "{note}")?;
        }
        for p in &self.parameters {
            let what = match p.change {
                Change::New => "new parameter".to_owned(),
                Change::Unchanged => "no change".to_owned(),
                Change::Changed => format!(
                    "changing value (was {})",
                    p.previous.as_deref().unwrap_or("-")
                ),
                Change::Failed => format!("FAILED: {}", p.error.as_deref().unwrap_or("")),
            };
            writeln!(
                f,
                "{:<16} {} = {}: {what}",
                p.desired.region, p.desired.name, p.desired.value
            )?;
        }
        if let Some(path) = &self.output {
            writeln!(f, "wrote {}", path.display())?;
        }
        Ok(())
    }
}

/// Add the verified parameters of `report` to `file`.
pub fn verified(report: &SsmReport, mut file: ParamsFile) -> ParamsFile {
    for p in &report.parameters {
        if p.change != Change::Failed {
            file.entry(p.desired.region.clone())
                .or_default()
                .insert(p.desired.name.clone(), p.desired.value.clone());
        }
    }
    file
}

/// Refuse to point names under `/aws/` at AMIs that are not public.
pub async fn check_public(aws: &AwsContext, desired: &[Desired]) -> Result<()> {
    let mut checks: BTreeMap<(String, String), String> = BTreeMap::new();
    for d in desired {
        if template::is_public_namespace(&d.name) && d.value.starts_with("ami-") {
            checks
                .entry((d.region.clone(), d.value.clone()))
                .or_insert_with(|| d.name.clone());
        }
    }
    stream::iter(checks)
        .map(|((region, image_id), name)| async move {
            let ec2 = aws.ec2(&region).await.context(error::ClientSnafu {
                region: region.as_str(),
            })?;
            let public = super::ec2::describe_image(&ec2, &region, &image_id)
                .await?
                .and_then(|image| image.public())
                .unwrap_or(false);
            snafu::ensure!(
                public,
                error::PrivateImageSnafu {
                    image_id,
                    name,
                    region
                }
            );
            Ok(())
        })
        .buffer_unordered(4)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Current values of `names` in `region` (missing names are absent from the map).
pub async fn get_values(
    ssm: &aws_sdk_ssm::Client,
    region: &str,
    names: &[String],
) -> Result<HashMap<String, String>> {
    let mut values = HashMap::new();
    for chunk in names.chunks(10) {
        let output = ssm
            .get_parameters()
            .set_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(sdk)
            .context(error::CallSnafu {
                operation: "GetParameters",
                region,
            })?;
        for p in output.parameters() {
            if let (Some(name), Some(value)) = (p.name(), p.value()) {
                values.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    Ok(values)
}

/// Current values of every region's names, regions read concurrently.
async fn current(
    aws: &AwsContext,
    by_region: &BTreeMap<String, Vec<String>>,
) -> Result<HashMap<(String, String), String>> {
    let results: Vec<(String, HashMap<String, String>)> = stream::iter(by_region.iter())
        .map(|(region, names)| async move {
            let ssm = aws.ssm(region).await.context(error::ClientSnafu {
                region: region.as_str(),
            })?;
            let values = get_values(&ssm, region, names).await?;
            Ok::<_, error::Error>((region.clone(), values))
        })
        .buffer_unordered(4)
        .try_collect()
        .await?;
    let mut all = HashMap::new();
    for (region, values) in results {
        for (name, value) in values {
            all.insert((region.clone(), name), value);
        }
    }
    Ok(all)
}

/// Spaces calls to one region; slows down when throttled.
#[derive(Debug)]
struct Limiter {
    state: tokio::sync::Mutex<(Instant, Duration)>,
}

/// Past this interval a throttled parameter gives up.
const MAX_INTERVAL: Duration = Duration::from_millis(6400);

impl Limiter {
    fn new(interval: Duration) -> Limiter {
        Limiter {
            state: tokio::sync::Mutex::new((Instant::now(), interval)),
        }
    }

    async fn acquire(&self) {
        let at = {
            let mut state = self.state.lock().await;
            let now = Instant::now();
            let at = state.0.max(now);
            state.0 = at + state.1;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }

    /// Double the interval; `false` once it is beyond the limit.
    async fn slow_down(&self) -> bool {
        let mut state = self.state.lock().await;
        state.1 = (state.1 * 2).max(Duration::from_millis(50));
        state.1 <= MAX_INTERVAL
    }
}

fn is_throttling<E: ProvideErrorMetadata>(error: &E) -> bool {
    matches!(
        error.code(),
        Some("ThrottlingException" | "TooManyUpdates" | "Throttling" | "RequestLimitExceeded")
    )
}

/// Put one parameter (already known to need it).
async fn put_one(
    ssm: &aws_sdk_ssm::Client,
    limiter: &Limiter,
    d: &Desired,
    mut overwrite: bool,
    allow_clobber: bool,
    backoff: Duration,
) -> Result<()> {
    let region = d.region.as_str();
    let mut attempts = 0u32;
    loop {
        limiter.acquire().await;
        let mut request = ssm
            .put_parameter()
            .name(&d.name)
            .value(&d.value)
            .r#type(ParameterType::String)
            .overwrite(overwrite);
        if let Some(data_type) = &d.data_type {
            request = request.data_type(data_type);
        }
        match request.send().await {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some("ParameterAlreadyExists") => {
                // Maybe our own earlier attempt: check before deciding.
                let now = get_values(ssm, region, std::slice::from_ref(&d.name)).await?;
                match now.get(&d.name) {
                    Some(value) if *value == d.value => return Ok(()),
                    Some(_) if !allow_clobber => {
                        return error::ClobberSnafu {
                            count: 1usize,
                            example: d.name.clone(),
                        }
                        .fail();
                    }
                    _ => overwrite = true,
                }
            }
            Err(e) if is_throttling(&e) => {
                tracing::debug!(name = %d.name, region, "throttled; slowing down");
                if !limiter.slow_down().await {
                    return error::ThrottledSnafu {
                        name: d.name.clone(),
                        region,
                    }
                    .fail();
                }
            }
            Err(e) => {
                attempts += 1;
                if attempts >= 5 {
                    return Err(sdk(e)).context(error::CallSnafu {
                        operation: "PutParameter",
                        region,
                    });
                }
                tokio::time::sleep(backoff * attempts).await;
            }
        }
    }
}

/// Make `desired` true: diff against current values, guard clobbering, put with rate
/// limits, read back. Failures of individual parameters are reported, not fatal.
pub async fn publish(
    aws: &AwsContext,
    desired: Vec<Desired>,
    allow_clobber: bool,
    put: PutArgs,
    aws_args: &AwsArgs,
) -> Result<SsmReport> {
    let mut by_region: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &desired {
        by_region
            .entry(d.region.clone())
            .or_default()
            .push(d.name.clone());
    }
    let before = current(aws, &by_region).await?;
    let mut outcomes: Vec<ParamOutcome> = desired
        .into_iter()
        .map(|d| {
            let previous = before.get(&(d.region.clone(), d.name.clone())).cloned();
            let change = match &previous {
                None => Change::New,
                Some(value) if *value == d.value => Change::Unchanged,
                Some(_) => Change::Changed,
            };
            ParamOutcome {
                desired: d,
                previous,
                change,
                error: None,
            }
        })
        .collect();
    let clobbered: Vec<&ParamOutcome> = outcomes
        .iter()
        .filter(|o| o.change == Change::Changed)
        .collect();
    if !allow_clobber && let Some(first) = clobbered.first() {
        return error::ClobberSnafu {
            count: clobbered.len(),
            example: format!(
                "{} in {}: '{}' → '{}'",
                first.desired.name,
                first.desired.region,
                first.previous.as_deref().unwrap_or(""),
                first.desired.value
            ),
        }
        .fail();
    }

    let interval = Duration::from_secs_f64(1.0 / put.rate.max(0.01));
    let limiters: HashMap<String, Arc<Limiter>> = by_region
        .keys()
        .map(|r| (r.clone(), Arc::new(Limiter::new(interval))))
        .collect();
    let mut clients = HashMap::new();
    for region in by_region.keys() {
        let ssm = aws.ssm(region).await.context(error::ClientSnafu {
            region: region.as_str(),
        })?;
        clients.insert(region.clone(), ssm);
    }
    let backoff = Duration::from_millis(aws_args.retry_backoff_ms);
    let to_put: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.change != Change::Unchanged)
        .map(|(i, _)| i)
        .collect();
    let results: Vec<(usize, Result<()>)> = stream::iter(to_put)
        .map(|i| {
            let o = &outcomes[i];
            let ssm = &clients[&o.desired.region];
            let limiter = &limiters[&o.desired.region];
            async move {
                let result = put_one(
                    ssm,
                    limiter,
                    &o.desired,
                    o.change == Change::Changed,
                    allow_clobber,
                    backoff,
                )
                .await;
                (i, result)
            }
        })
        .buffer_unordered(put.concurrency.max(1))
        .collect()
        .await;
    for (i, result) in results {
        if let Err(e) = result {
            outcomes[i].change = Change::Failed;
            outcomes[i].error = Some(snafu::Report::from_error(&e).to_string());
        }
    }

    // Read back everything that should be in place, a few times (new parameters with a data
    // type appear after validation).
    let mut attempt = 0u32;
    loop {
        let pending: BTreeSet<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| o.change != Change::Failed)
            .map(|(i, _)| i)
            .collect();
        let after = current(aws, &by_region).await?;
        let wrong: Vec<usize> = pending
            .into_iter()
            .filter(|&i| {
                let o = &outcomes[i];
                after.get(&(o.desired.region.clone(), o.desired.name.clone()))
                    != Some(&o.desired.value)
            })
            .collect();
        if wrong.is_empty() {
            break;
        }
        attempt += 1;
        if attempt > 3 {
            for i in wrong {
                outcomes[i].change = Change::Failed;
                outcomes[i].error = Some("value did not read back".to_owned());
            }
            break;
        }
        tokio::time::sleep(backoff * (1 << attempt)).await;
    }
    let failed = outcomes
        .iter()
        .filter(|o| o.change == Change::Failed)
        .count();
    if failed > 0 {
        tracing::error!("Failed to set {failed} of {} parameters", outcomes.len());
    }
    Ok(SsmReport {
        parameters: outcomes,
        output: None,
        note: None,
    })
}

#[cfg(test)]
mod tests {
    use super::Limiter;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn limiter_spaces_calls_and_slows_down() {
        let limiter = Limiter::new(Duration::from_millis(10));
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(40));
        let mut doublings = 0;
        while limiter.slow_down().await {
            doublings += 1;
        }
        // The first slow-down goes to at least 50 ms, then 100 … 6400 ms: eight rounds within
        // the limit.
        assert_eq!(doublings, 8);
    }
}
