//! `pubsys promote-ssm`: copy parameters from one version's names to another's (e.g.
//! `1.15.0-abc12345` → `latest`, or back for a rollback).
//!
//! Only the **names** are rendered, with `image_version` = source and = target; templates
//! whose names use `image_id`, `image_name` or `region` cannot be promoted, and templates
//! without `{image_version}` in the name map to themselves (skipped). Unlike the reference,
//! the public-namespace guard applies (a private AMI never lands under `/aws/`), and the
//! same rate limiting, "maybe done" checks and read-back as `ssm` are used. Promotion
//! overwrites target values (that is its purpose). The output file is merged (new wins).

use crate::Context;
use crate::aws::params;
use crate::aws::ssm::{self, Desired, SsmReport, TemplateArgs};
use crate::aws::template::{self};
use crate::error::{self, Result};
use clap::Args;
use futures::stream::{self, StreamExt, TryStreamExt};
use snafu::ResultExt;
use std::path::PathBuf;

/// `pubsys promote-ssm` flags.
#[derive(Debug, Clone, Args)]
pub struct PromoteSsmArgs {
    /// Version whose parameters are copied
    #[arg(long)]
    pub source: String,

    /// Version name they are copied to (e.g. latest)
    #[arg(long)]
    pub target: String,

    /// Merge the promoted parameters into this file (region → name → value)
    #[arg(long, value_name = "PATH")]
    pub ssm_parameter_output: Option<PathBuf>,

    /// Templates, guard, rate and regions.
    #[command(flatten)]
    pub common: TemplateArgs,
}

/// Run `pubsys promote-ssm`.
pub async fn run(args: &PromoteSsmArgs, context: &Context) -> Result<SsmReport> {
    let common = &args.common;
    let applicable = common.applicable()?;
    if applicable.is_empty() {
        return Ok(SsmReport::nothing_applies());
    }
    let prefix = ssm::prefix(context);
    let mut pairs = Vec::new();
    for t in applicable {
        let vars = template::variables(&t.name)?;
        if let Some(bad) = vars
            .iter()
            .find(|v| matches!(v.as_str(), "image_id" | "image_name" | "region"))
        {
            return error::RenderSnafu {
                template: t.name.clone(),
                message: format!("promote-ssm cannot promote names that use '{bad}'"),
            }
            .fail();
        }
        if !vars.iter().any(|v| v == "image_version") {
            continue;
        }
        let render = |version: &str| -> Result<String> {
            let vars = common.vars(&[("image_version", version)]);
            Ok(template::full_name(
                prefix,
                &template::render(&t.name, &vars)?,
            ))
        };
        pairs.push((render(&args.source)?, render(&args.target)?));
    }

    let regions = common.aws.regions(context)?;
    let aws = crate::aws::context(&common.aws, context, &regions[0]).await;
    let sources: Vec<String> = pairs.iter().map(|(s, _)| s.clone()).collect();
    let found: Vec<Vec<Desired>> = stream::iter(regions.iter())
        .map(|region| {
            let aws = &aws;
            let sources = &sources;
            let pairs = &pairs;
            async move {
                let ssm = aws.ssm(region.as_str()).await.context(error::ClientSnafu {
                    region: region.as_str(),
                })?;
                let values = ssm::get_values(&ssm, region.as_str(), sources).await?;
                let mut desired = Vec::new();
                for (source, target) in pairs {
                    match values.get(source) {
                        Some(value) => desired.push(Desired {
                            region: region.to_string(),
                            name: target.clone(),
                            value: value.clone(),
                            data_type: None,
                        }),
                        None => tracing::warn!(%region, source, "no source parameter"),
                    }
                }
                Ok::<_, error::Error>(desired)
            }
        })
        .buffer_unordered(4)
        .try_collect()
        .await?;
    let desired: Vec<Desired> = found.into_iter().flatten().collect();
    snafu::ensure!(
        !desired.is_empty(),
        error::NoSourceParametersSnafu {
            source_version: args.source.clone()
        }
    );
    let mut report = common.guard_and_publish(&aws, desired, true).await?;
    if let Some(path) = &args.ssm_parameter_output {
        let existing = params::load_or_default(path)?;
        params::save(path, &ssm::verified(&report, existing))?;
        report.output = Some(path.clone());
    }
    Ok(report)
}
