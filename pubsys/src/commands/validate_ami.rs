//! `pubsys validate-ami`: check that the AMIs of an `amis.json` (or the reference's
//! `region → [ImageDef]` form) exist with the expected attributes.
//!
//! Differences from the reference: exit code 3 when anything is Incorrect, Missing or
//! Unreachable; launch permissions compare as sets (order is not meaningful); Unreachable
//! is its own count; `ena_support` and `sriov_net_support` are compared only when the
//! expected file states them (amis.json does not record them, and they are configurable); a
//! record with an unfinished permission change (`pending`) is Incorrect.

use crate::Context;
use crate::aws::AwsArgs;
use crate::aws::amis::{Image, is_public};
use crate::aws::ec2;
use crate::aws::validate::{self, Counts, ResultsArgs, Status, table};
use crate::error::{self, Result, sdk};
use clap::Args;
use serde::{Deserialize, Serialize};
use snafu::ResultExt;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

/// An expected (or found) image: the record `amis.json` holds (one type for both).
pub type ImageDef = Image;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(ImageDef),
    Many(Vec<ImageDef>),
}

/// `pubsys validate-ami` flags.
#[derive(Debug, Clone, Args)]
pub struct ValidateAmiArgs {
    /// Expected AMIs: amis.json, or region → [ImageDef]
    #[arg(long, value_name = "PATH")]
    pub expected_amis_path: PathBuf,

    /// Where results go and how many regions are checked at once.
    #[command(flatten)]
    pub results: ResultsArgs,

    /// Shared AWS flags (--regions: only these regions of the file).
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// One image's result.
#[derive(Debug, Clone, Serialize)]
pub struct AmiResult {
    /// AMI ID.
    pub id: String,
    /// What was expected.
    pub expected_image_def: ImageDef,
    /// What was found.
    pub actual_image_def: Option<ImageDef>,
    /// Region.
    pub region: String,
    /// Status.
    pub status: Status,
}

/// What `validate-ami` found: `--json` prints the per-region counts.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateAmiReport {
    /// Counts per region.
    #[serde(flatten)]
    pub counts: BTreeMap<String, Counts>,
    /// Every result.
    #[serde(skip)]
    pub results: Vec<AmiResult>,
}

impl ValidateAmiReport {
    /// Whether anything is Incorrect, Missing or Unreachable.
    pub fn has_problems(&self) -> bool {
        self.counts.values().any(Counts::has_problems)
    }
}

impl fmt::Display for ValidateAmiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        table(f, &self.counts, false)?;
        for r in self.results.iter().filter(|r| r.status != Status::Correct) {
            writeln!(
                f,
                "{:?}: {} {} ({})",
                r.status, r.region, r.id, r.expected_image_def.name
            )?;
        }
        Ok(())
    }
}

/// Compare expected and actual.
pub fn compare(expected: &ImageDef, actual: &ImageDef) -> Status {
    let same_permissions = expected.launch_permissions.iter().collect::<BTreeSet<_>>()
        == actual.launch_permissions.iter().collect::<BTreeSet<_>>();
    let ena_ok = expected
        .ena_support
        .is_none_or(|e| actual.ena_support.unwrap_or(false) == e);
    let sriov_ok = expected
        .sriov_net_support
        .as_ref()
        .is_none_or(|e| actual.sriov_net_support.as_ref() == Some(e));
    if expected.id == actual.id
        && expected.name == actual.name
        && expected.public == actual.public
        && same_permissions
        && ena_ok
        && sriov_ok
        && expected.pending.is_none()
    {
        Status::Correct
    } else {
        Status::Incorrect
    }
}

/// Run `pubsys validate-ami`.
pub async fn run(args: &ValidateAmiArgs, context: &Context) -> Result<ValidateAmiReport> {
    let path = &args.expected_amis_path;
    let bytes = crate::aws::read(path)?;
    let file: BTreeMap<String, OneOrMany> =
        serde_json::from_slice(&bytes).context(error::ParseJsonSnafu { path })?;
    let mut expected: BTreeMap<String, Vec<ImageDef>> = file
        .into_iter()
        .map(|(region, defs)| match defs {
            OneOrMany::One(def) => (region, vec![def]),
            OneOrMany::Many(defs) => (region, defs),
        })
        .collect();
    if !args.aws.regions.is_empty() {
        let keep: Vec<String> = args.aws.regions.iter().map(|r| r.to_string()).collect();
        expected.retain(|region, _| keep.contains(region));
    }
    let Some(first) = expected.keys().next() else {
        return error::EmptyAmiInputSnafu { path }.fail();
    };
    let base = first.parse().map_err(|_| error::Error::NoRegions)?;
    let aws = crate::aws::context(&args.aws, context, &base).await;

    let results = validate::per_region(
        &expected,
        args.results.concurrency,
        |region, defs| {
            let aws = &aws;
            async move {
                let actual = actual_images(aws, region, defs).await?;
                Ok(defs
                    .iter()
                    .map(|def| {
                        let found = actual.get(&def.id).cloned();
                        let status = match &found {
                            Some(found) => compare(def, found),
                            None => Status::Missing,
                        };
                        AmiResult {
                            id: def.id.clone(),
                            expected_image_def: def.clone(),
                            actual_image_def: found,
                            region: region.clone(),
                            status,
                        }
                    })
                    .collect())
            }
        },
        |region, defs| {
            defs.iter()
                .map(|def| AmiResult {
                    id: def.id.clone(),
                    expected_image_def: def.clone(),
                    actual_image_def: None,
                    region: region.clone(),
                    status: Status::Unreachable,
                })
                .collect()
        },
    )
    .await;
    let counts = validate::counts(std::iter::empty(), false, &results, |r| {
        (r.region.as_str(), r.status)
    });
    args.results.write(&results, |r| r.status)?;
    Ok(ValidateAmiReport { counts, results })
}

/// The images of `defs` that exist in `region`, with their permissions.
async fn actual_images(
    aws: &aws_context::AwsContext,
    region: &str,
    defs: &[ImageDef],
) -> Result<BTreeMap<String, ImageDef>> {
    let client = aws
        .ec2(region)
        .await
        .context(error::ClientSnafu { region })?;
    let ids: Vec<String> = defs.iter().map(|d| d.id.clone()).collect();
    let images = match client
        .describe_images()
        .set_image_ids(Some(ids.clone()))
        .include_deprecated(true)
        .send()
        .await
    {
        Ok(output) => output.images().to_vec(),
        Err(e) if ec2::code(&e).is_some_and(|c| c.starts_with("InvalidAMIID")) => {
            // One unknown ID fails the whole call: ask one by one.
            let mut images = Vec::new();
            for id in &ids {
                if let Some(image) = ec2::describe_image(&client, region, id).await? {
                    images.push(image);
                }
            }
            images
        }
        Err(e) => {
            return Err(sdk(e)).context(error::CallSnafu {
                operation: "DescribeImages",
                region,
            });
        }
    };
    let mut actual = BTreeMap::new();
    for image in images {
        let Some(id) = image.image_id() else { continue };
        let permissions = ec2::launch_permissions(&client, region, id).await?;
        actual.insert(
            id.to_owned(),
            Image {
                public: image.public().unwrap_or_else(|| is_public(&permissions)),
                launch_permissions: permissions,
                ena_support: image.ena_support(),
                sriov_net_support: image.sriov_net_support().map(str::to_owned),
                ..Image::new(id, image.name().unwrap_or_default())
            },
        );
    }
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::{ImageDef, Status, compare};
    use crate::aws::amis::LaunchPermission;

    fn def() -> ImageDef {
        let mut image = ImageDef::new("ami-1", "n");
        image.set_permissions(vec![
            LaunchPermission::Group("all".into()),
            LaunchPermission::UserId("1".into()),
        ]);
        image
    }

    #[test]
    fn compares_permissions_as_sets_and_optional_fields_only_when_expected() {
        let expected = def();
        let mut actual = def();
        actual.launch_permissions.reverse();
        actual.ena_support = Some(false);
        assert_eq!(compare(&expected, &actual), Status::Correct);
        let mut strict = def();
        strict.ena_support = Some(true);
        assert_eq!(compare(&strict, &actual), Status::Incorrect);
        actual.public = false;
        assert_eq!(compare(&expected, &actual), Status::Incorrect);
    }

    #[test]
    fn an_unfinished_permission_change_is_never_correct() {
        use crate::aws::amis::{Operation, PendingChange};
        let mut expected = def();
        assert_eq!(compare(&expected, &def()), Status::Correct);
        expected.pending = Some(PendingChange {
            operation: Operation::Grant,
            launch_permissions: vec![LaunchPermission::Group("all".into())],
        });
        assert_eq!(compare(&expected, &def()), Status::Incorrect);
    }
}
