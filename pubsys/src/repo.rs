//! What the repository commands share: where a repository lives (from `Infra.toml` and the
//! command line), which keys sign it, loading it and its `manifest.json`, and moving a signed
//! result into the reference output layout (`<outdir>/<variant>/<arch>/` for metadata,
//! `<outdir>/targets/` for targets).
//!
//! Signing itself is the `tuftool` library's job; pubsys never runs the tuftool binary.

use crate::config::expiration::{Expirations, RepoExpirationPolicy};
use crate::config::infra::{RepoConfig, SigningKeyConfig};
use crate::error::{self, Result};
use snafu::{OptionExt, ResultExt, ensure};
use std::path::{Path, PathBuf};
use tough::{Repository, TargetName};
use tuftool::keys::{AwsHandle, KeySource};
use tuftool::repo::RepoLocation;
use update_metadata::Manifest;
use update_metadata::Offset;
use url::Url;

/// The target name of the manifest in every repository.
pub const MANIFEST_TARGET: &str = "manifest.json";

/// The key sources to sign with: the command line's, else the repository's `signing_keys`,
/// else the default key file if it exists.
pub fn signing_keys(
    cli_keys: &[KeySource],
    repo: &RepoConfig,
    repo_name: &str,
    default_key_path: Option<&Path>,
) -> Result<Vec<KeySource>> {
    if !cli_keys.is_empty() {
        return Ok(cli_keys.to_vec());
    }
    if !repo.signing_keys.is_empty() {
        return Ok(repo.signing_keys.iter().map(key_source).collect());
    }
    match default_key_path {
        Some(path) if path.exists() => Ok(vec![KeySource::File {
            path: path.to_owned(),
        }]),
        _ => error::NoSigningKeySnafu { repo: repo_name }.fail(),
    }
}

/// `keys` with their AWS clients (KMS, SSM) taken from the run's one AWS factory:
/// Infra.toml's profile and role chain, with the first of `aws.regions` (else the first
/// region a key names) as the base region. Without any region the keys build their own
/// clients from the SDK's default chain.
pub async fn with_aws(keys: Vec<KeySource>, context: &crate::Context) -> Vec<KeySource> {
    let key_region = |key: &KeySource| match key {
        KeySource::Kms { region, .. } | KeySource::Ssm { region, .. } => region.clone(),
        _ => None,
    };
    let uses_aws = keys.iter().any(|k| !matches!(k, KeySource::File { .. }));
    let base = context
        .infra
        .aws
        .as_ref()
        .and_then(|aws| aws.regions.first())
        .map(|region| region.as_str().to_owned())
        .or_else(|| keys.iter().find_map(key_region));
    let (true, Some(base)) = (uses_aws, base) else {
        return keys;
    };
    let aws = crate::aws::factory(context, &base, aws_context::RetrySettings::default()).await;
    keys.into_iter().map(|key| key.with_aws(&aws)).collect()
}

/// A new staging folder inside `outdir` (created if missing), removed when dropped: signed
/// output is moved out of it only once it is complete.
pub fn staging(outdir: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(outdir).context(error::WriteOutputSnafu { path: outdir })?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(outdir)
        .context(error::WriteOutputSnafu { path: outdir })
}

/// What signing needs, resolved once from the flags and Infra.toml (`repo` and
/// `refresh-repo` alike).
#[derive(Debug)]
pub struct Signing {
    /// Key sources, with the AWS factory handed in.
    pub keys: Vec<KeySource>,
    /// The release start (expiries, and waves for `repo`).
    pub start: jiff::Timestamp,
    /// Role expiries, checked to lie after now.
    pub expirations: Expirations,
}

/// The flags that say how to sign.
#[derive(Debug, Clone, Copy)]
pub struct SigningFlags<'a> {
    /// The repository's name in Infra.toml.
    pub repo: &'a str,
    /// `--signing-key` sources.
    pub keys: &'a [KeySource],
    /// `--default-key-path`.
    pub default_key_path: Option<&'a Path>,
    /// The start time flag.
    pub start: Option<&'a Offset>,
    /// The expiration policy file.
    pub policy: &'a Path,
}

/// Resolve `flags`: the keys (command line, else Infra.toml, else the default key), the
/// start (now unless given) and the expiries from the policy.
pub async fn signing(flags: SigningFlags<'_>, context: &crate::Context) -> Result<Signing> {
    let repo_config = context.infra.repo(flags.repo);
    let keys = signing_keys(flags.keys, &repo_config, flags.repo, flags.default_key_path)?;
    let keys = with_aws(keys, context).await;
    let start = match flags.start {
        Some(offset) => offset.resolve(context.now).context(error::MetadataSnafu)?,
        None => context.now,
    };
    let expirations = RepoExpirationPolicy::load(flags.policy)?.expirations(start)?;
    expirations.check_future(context.now)?;
    Ok(Signing {
        keys,
        start,
        expirations,
    })
}

/// An `Infra.toml` key source as a tuftool key source. A KMS key is used in the region its
/// `available_keys` entry names (else the AWS factory's base region).
pub fn key_source(config: &SigningKeyConfig) -> KeySource {
    match config {
        SigningKeyConfig::File { path } => KeySource::File { path: path.clone() },
        SigningKeyConfig::Kms {
            key_id,
            available_keys,
            ..
        } => {
            let (key_id, region) = match key_id {
                Some(id) => (id.clone(), available_keys.get(id).cloned()),
                None => available_keys
                    .iter()
                    .next()
                    .map(|(id, region)| (id.clone(), Some(region.clone())))
                    .unwrap_or_default(),
            };
            KeySource::Kms {
                profile: None,
                key_id,
                region,
                aws: AwsHandle::default(),
            }
        }
        SigningKeyConfig::Ssm { parameter } => KeySource::Ssm {
            profile: None,
            parameter: parameter.clone(),
            kms_key_id: None,
            region: None,
            aws: AwsHandle::default(),
        },
    }
}

/// A URL that names a folder: ends with `/`, so names join below it.
pub fn folder_url(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// Where the repository for one variant and arch is published, if the repository config says
/// so (both `metadata_base_url` and `targets_url`).
pub fn published_location(
    repo: &RepoConfig,
    root: &Path,
    variant: &str,
    arch: &str,
    allow_expired: bool,
) -> Result<Option<RepoLocation>> {
    let (Some(base), Some(targets)) = (&repo.metadata_base_url, &repo.targets_url) else {
        return Ok(None);
    };
    let metadata_url = folder_url(base.clone())
        .join(&format!("{variant}/{arch}/"))
        .ok()
        .context(error::BadUrlSnafu {
            url: base.to_string(),
        })?;
    Ok(Some(RepoLocation::new(
        root.to_owned(),
        metadata_url,
        Some(folder_url(targets.clone())),
        allow_expired,
    )))
}

/// The region S3 calls go to: the repository's `[aws.s3.<file_hosting_config_name>]` region,
/// else the first of `aws.regions`, else `AWS_REGION` / `AWS_DEFAULT_REGION`.
pub fn s3_region(context: &crate::Context, repo: &RepoConfig) -> Result<String> {
    let aws = context.infra.aws.clone().unwrap_or_default();
    let hosting = repo
        .file_hosting_config_name
        .as_ref()
        .and_then(|name| aws.s3.get(name))
        .and_then(|s3| s3.region.clone());
    hosting
        .or_else(|| aws.regions.first().map(|r| r.as_str().to_owned()))
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
        .context(error::NoS3RegionSnafu)
}

/// An S3 client built by the one AWS client factory (profile and role from `Infra.toml`,
/// `AWS_ENDPOINT_URL`).
pub async fn s3_client(context: &crate::Context, repo: &RepoConfig) -> Result<aws_sdk_s3::Client> {
    let region = s3_region(context, repo)?;
    crate::aws::factory(context, &region, aws_context::RetrySettings::default())
        .await
        .s3(&region)
        .await
        .map_err(|e| error::Error::S3 {
            action: "client setup",
            url: format!("region {region}"),
            message: e.to_string(),
        })
}

/// Publish `<outdir>/targets/` and `<outdir>/<variant>/<arch>/` to `destination` with an S3
/// client for this repository (see [`crate::s3::upload`] for the order).
pub async fn upload(
    destination: &crate::s3::S3Location,
    context: &crate::Context,
    repo: &RepoConfig,
    outdir: &Path,
    variant: &str,
    arch: &str,
) -> Result<crate::s3::UploadReport> {
    let client = s3_client(context, repo).await?;
    crate::s3::upload(&client, outdir, variant, arch, destination).await
}

/// [`upload`] when the command was given a destination (`--upload`).
pub async fn upload_if(
    destination: Option<&crate::s3::S3Location>,
    context: &crate::Context,
    repo: &RepoConfig,
    outdir: &Path,
    which: (&str, &str),
) -> Result<Option<crate::s3::UploadReport>> {
    match destination {
        Some(to) => upload(to, context, repo, outdir, which.0, which.1)
            .await
            .map(Some),
        None => Ok(None),
    }
}

/// The location with the transport its URLs need: S3 when either URL is `s3://`.
pub async fn with_transport(
    mut location: RepoLocation,
    context: &crate::Context,
    repo: &RepoConfig,
) -> Result<RepoLocation> {
    let s3 = crate::s3::is_s3(&location.metadata_url)
        || location.targets_url.as_ref().is_some_and(crate::s3::is_s3);
    if s3 {
        let client = s3_client(context, repo).await?;
        location.transport = Some(tuftool::repo::AnyTransport(Box::new(
            crate::s3::S3Transport::new(client),
        )));
    }
    Ok(location)
}

/// Whether a repository has been published at `location` (its `timestamp.json` exists).
/// Any answer but "found" or "not found" is an error: a signature, expiry or network problem
/// must never make us start a fresh repository over a published one.
pub async fn is_published(location: &RepoLocation) -> Result<bool> {
    let url = location
        .metadata_url
        .join("timestamp.json")
        .ok()
        .context(error::BadUrlSnafu {
            url: location.metadata_url.to_string(),
        })?;
    // Only "not found" means "not published"; a 403 or any other failure is an error.
    let found = location.probe(&url).await.context(error::TuftoolSnafu)?;
    Ok(found.is_some())
}

/// Load and verify a published repository (root chain, signatures, expiry unless allowed).
pub async fn load(location: &RepoLocation) -> Result<Repository> {
    tuftool::repo::load_repo(location)
        .await
        .context(error::TuftoolSnafu)
}

/// Read and parse the repository's `manifest.json` target (verified by tough).
pub async fn read_manifest(repo: &Repository, origin: &Url) -> Result<Manifest> {
    let name = TargetName::new(MANIFEST_TARGET)
        .ok()
        .context(error::BadUrlSnafu {
            url: MANIFEST_TARGET,
        })?;
    let stream = repo
        .read_target(&name)
        .await
        .context(error::ReadTargetSnafu {
            name: MANIFEST_TARGET,
        })?
        .context(error::MissingManifestSnafu {
            url: origin.to_string(),
        })?;
    let bytes = tough::IntoVec::into_vec(stream)
        .await
        .context(error::ReadTargetSnafu {
            name: MANIFEST_TARGET,
        })?;
    Manifest::from_slice(&bytes, &format!("{origin}{MANIFEST_TARGET}"))
        .context(error::MetadataSnafu)
}

/// Move a tuftool output folder (`metadata/`, `targets/`) into the reference layout:
/// metadata into `metadata_dir` (which must not exist yet), targets merged into `targets_dir`
/// (an existing file of the same name is kept only if identical).
pub fn move_into_layout(
    staged: &Path,
    metadata_dir: &Path,
    targets_dir: &Path,
) -> Result<Vec<PathBuf>> {
    ensure!(
        !metadata_dir.exists(),
        error::OutputExistsSnafu { path: metadata_dir }
    );
    let parent = metadata_dir
        .parent()
        .context(error::OutputExistsSnafu { path: metadata_dir })?;
    std::fs::create_dir_all(parent).context(error::WriteOutputSnafu { path: parent })?;
    std::fs::create_dir_all(targets_dir).context(error::WriteOutputSnafu { path: targets_dir })?;
    let mut moved = Vec::new();
    let staged_targets = staged.join("targets");
    if staged_targets.exists() {
        let entries = std::fs::read_dir(&staged_targets).context(error::WriteOutputSnafu {
            path: &staged_targets,
        })?;
        for entry in entries {
            let entry = entry.context(error::WriteOutputSnafu {
                path: &staged_targets,
            })?;
            let destination = targets_dir.join(entry.file_name());
            if destination.exists() {
                let same = same_content(&destination, &entry.path())?;
                ensure!(same, error::TargetConflictSnafu { path: &destination });
                continue;
            }
            std::fs::rename(entry.path(), &destination)
                .context(error::WriteOutputSnafu { path: &destination })?;
            moved.push(destination);
        }
    }
    let staged_metadata = staged.join("metadata");
    std::fs::rename(&staged_metadata, metadata_dir)
        .context(error::WriteOutputSnafu { path: metadata_dir })?;
    moved.push(metadata_dir.to_owned());
    Ok(moved)
}

/// Whether two files hold the same bytes: sizes first, then both streamed in 1 MiB pieces (the
/// files can be multi-GiB disk images). A file that cannot be read is an error, never "equal".
pub fn same_content(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let open = |path: &Path| {
        let file = std::fs::File::open(path).context(error::CompareFileSnafu { path })?;
        let len = file
            .metadata()
            .context(error::CompareFileSnafu { path })?
            .len();
        Ok::<_, error::Error>((file, len))
    };
    let ((mut fa, la), (mut fb, lb)) = (open(a)?, open(b)?);
    if la != lb {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa
            .read(&mut ba)
            .context(error::CompareFileSnafu { path: a })?;
        if n == 0 {
            // Same length, all compared; b must end too.
            let m = fb
                .read(&mut bb[..1])
                .context(error::CompareFileSnafu { path: b })?;
            return Ok(m == 0);
        }
        fb.read_exact(&mut bb[..n])
            .context(error::CompareFileSnafu { path: b })?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{folder_url, key_source, same_content, signing_keys};

    #[test]
    fn content_comparison_streams_and_never_equates_failures() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &big).unwrap();
        std::fs::write(&b, &big).unwrap();
        let mut other = big.clone();
        other[2_999_999] ^= 1;
        std::fs::write(&c, &other).unwrap();
        assert!(same_content(&a, &b).unwrap());
        assert!(
            !same_content(&a, &c).unwrap(),
            "a difference in the last byte"
        );
        std::fs::write(&c, &big[..100]).unwrap();
        assert!(!same_content(&a, &c).unwrap(), "a shorter file");
        // Two missing files are an error, not "the same".
        let (x, y) = (dir.path().join("missing-x"), dir.path().join("missing-y"));
        assert!(same_content(&x, &y).is_err());
    }
    use crate::config::infra::{RepoConfig, SigningKeyConfig};
    use tuftool::keys::KeySource;

    #[test]
    fn key_precedence_cli_then_infra_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("default.pem");
        let infra = RepoConfig {
            signing_keys: vec![SigningKeyConfig::Ssm {
                parameter: "/k".into(),
            }],
            ..RepoConfig::default()
        };
        let cli = [KeySource::File {
            path: "cli.pem".into(),
        }];
        assert_eq!(
            signing_keys(&cli, &infra, "r", Some(&default))
                .unwrap()
                .len(),
            1
        );
        let from_infra = signing_keys(&[], &infra, "r", Some(&default)).unwrap();
        assert_eq!(
            from_infra[0].to_string(),
            key_source(&infra.signing_keys[0]).to_string()
        );
        let error =
            signing_keys(&[], &RepoConfig::default(), "release", Some(&default)).unwrap_err();
        assert!(error.to_string().contains("release"), "{error}");
        std::fs::write(&default, "x").unwrap();
        assert!(signing_keys(&[], &RepoConfig::default(), "r", Some(&default)).is_ok());
    }

    #[test]
    fn folder_urls_end_with_a_slash() {
        let url = folder_url("https://example.com/repo".parse().unwrap());
        assert_eq!(
            url.join("aws-dev/x86_64/").unwrap().as_str(),
            "https://example.com/repo/aws-dev/x86_64/"
        );
    }
}

/// Which repository (Infra.toml name) and which variant/arch in it.
#[derive(Debug, clap::Args)]
pub struct RepoSelectArgs {
    /// Repository name in Infra.toml ([repo.NAME]): URLs, keys, AWS profile, role and region
    #[arg(long, default_value = "default")]
    pub repo: String,

    /// Variant and arch.
    #[command(flatten)]
    pub which: crate::args::VariantArchArgs,
}

/// Which published repository a command works on.
#[derive(Debug, clap::Args)]
pub struct LocationArgs {
    /// Repository, variant and arch.
    #[command(flatten)]
    pub select: RepoSelectArgs,

    /// Trusted root.json of the repository
    #[arg(long, value_name = "PATH")]
    pub root_role_path: PathBuf,

    /// Metadata base URL (file://, http(s)://, s3://); overrides Infra.toml's metadata_base_url
    #[arg(long, value_name = "URL")]
    pub metadata_base_url: Option<Url>,

    /// Targets URL; overrides Infra.toml's targets_url
    #[arg(long, value_name = "URL")]
    pub targets_url: Option<Url>,
}

impl LocationArgs {
    /// The repository location, from the flags or `Infra.toml`, with the transport its URLs
    /// need (`s3://` included).
    pub async fn location(
        &self,
        context: &crate::Context,
        allow_expired: bool,
    ) -> Result<RepoLocation> {
        let select = &self.select;
        let mut config = context.infra.repo(&select.repo);
        if let Some(url) = &self.metadata_base_url {
            config.metadata_base_url = Some(url.clone());
        }
        if let Some(url) = &self.targets_url {
            config.targets_url = Some(url.clone());
        }
        let location = published_location(
            &config,
            &self.root_role_path,
            &select.which.variant,
            select.which.arch.as_str(),
            allow_expired,
        )?
        .context(error::NoRepoLocationSnafu { repo: &select.repo })?;
        with_transport(location, context, &config).await
    }
}
