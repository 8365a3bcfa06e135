//! `pubsys ssm`: render parameter templates per region and publish them (the pipeline after
//! rendering, shared with `promote-ssm`, is [`crate::aws::ssm`]).

use crate::Context;
use crate::aws::amis;
use crate::aws::params::{self, ParamsFile};
use crate::aws::ssm::{Desired, EC2_IMAGE_DATA_TYPE, SsmReport, TemplateArgs, prefix, verified};
use crate::aws::template;
use crate::error::Result;
use clap::Args;
use std::path::PathBuf;

/// `pubsys ssm` flags.
#[derive(Debug, Clone, Args)]
pub struct SsmArgs {
    /// amis.json with the AMI of each region
    #[arg(long, value_name = "PATH")]
    pub ami_input: PathBuf,

    /// Image version, e.g. 1.15.0-abc12345 (template variable `image_version`)
    #[arg(long)]
    pub version: String,

    /// Allow changing the value of existing parameters
    #[arg(long)]
    pub allow_clobber: bool,

    /// Give parameters whose value is exactly `{image_id}` the `aws:ec2:image` data type
    /// (SSM then checks the AMI exists)
    #[arg(long)]
    pub ec2_image_data_type: bool,

    /// Write the parameters set (region → name → value) here
    #[arg(long, value_name = "PATH")]
    pub ssm_parameter_output: Option<PathBuf>,

    /// Templates, guard, rate and regions.
    #[command(flatten)]
    pub common: TemplateArgs,
}

/// Run `pubsys ssm`.
pub async fn run(args: &SsmArgs, context: &Context) -> Result<SsmReport> {
    let common = &args.common;
    let applicable = common.applicable()?;
    if applicable.is_empty() {
        return Ok(SsmReport::nothing_applies());
    }
    let regions = common.aws.regions(context)?;
    let region_names: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
    let amis = amis::load_for(&args.ami_input, &region_names)?;
    let prefix = prefix(context);

    let mut desired = Vec::new();
    for region in &region_names {
        let image = amis::image(&amis, region, &args.ami_input)?;
        let vars = common.vars(&[
            ("image_version", args.version.as_str()),
            ("image_id", image.id.as_str()),
            ("image_name", image.name.as_str()),
            ("region", region.as_str()),
        ]);
        for t in &applicable {
            let name = template::full_name(prefix, &template::render(&t.name, &vars)?);
            let value = template::render(&t.value, &vars)?;
            let data_type = (args.ec2_image_data_type && t.value.trim() == "{image_id}")
                .then(|| EC2_IMAGE_DATA_TYPE.to_owned());
            desired.push(Desired {
                region: region.clone(),
                name,
                value,
                data_type,
            });
        }
    }

    let aws = crate::aws::context(&common.aws, context, &regions[0]).await;
    let mut report = common
        .guard_and_publish(&aws, desired, args.allow_clobber)
        .await?;
    if let Some(path) = &args.ssm_parameter_output {
        params::save(path, &verified(&report, ParamsFile::new()))?;
        report.output = Some(path.clone());
    }
    Ok(report)
}
