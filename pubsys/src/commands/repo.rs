//! `pubsys repo`: sign a release into the TUF repository of its variant and arch.
//!
//! The release (variant, arch, version and the boot/root/hash images) comes from an
//! image-builder `build-report.json` or from explicit flags. When the repository config names
//! published URLs, the repository there is loaded and verified and the release is added to it;
//! otherwise a new repository is created. The manifest gets the update (re-adding a version
//! replaces it), the release's migrations and the wave schedule; the images and `manifest.json`
//! become targets; targets, snapshot and timestamp are signed with every key given and expire
//! as the policy says. Output: `<outdir>/<variant>/<arch>/` (metadata, including the root
//! chain) and `<outdir>/targets/`.

use crate::Context;
use crate::config::expiration::Expirations;
use crate::error::{self, Result};
use crate::repo::{self as shared, MANIFEST_TARGET};
use clap::Args;
use jiff::Timestamp;
use semver::Version;
use serde::Serialize;
use snafu::{OptionExt, ResultExt, ensure};
use std::fmt;
use std::path::{Path, PathBuf};
use tuftool::keys::KeySource;
use tuftool::repo::{Place, PublishOptions, UpdateOptions};
use update_metadata::{Arch, Images, Manifest, NewUpdate, Offset, Release, WaveSchedule};
use url::Url;

/// Arguments of `pubsys repo`.
#[derive(Debug, Args)]
pub struct RepoArgs {
    /// Repository name in Infra.toml ([repo.NAME])
    #[arg(long, default_value = "default")]
    pub repo: String,

    /// image-builder's build-report.json: gives the variant, arch, version and images
    #[arg(long, value_name = "PATH", required_unless_present_all = ["variant", "arch", "version", "boot_image", "root_image", "hash_image"])]
    pub build_report: Option<PathBuf>,

    /// Variant name (overrides the build report)
    #[arg(long)]
    pub variant: Option<String>,

    /// Architecture (overrides the build report)
    #[arg(long)]
    pub arch: Option<Arch>,

    /// Release version, semver with an optional leading v (overrides the build report)
    #[arg(long, value_parser = update_metadata::parse_version)]
    pub version: Option<Version>,

    /// LZ4-compressed boot image (overrides the build report)
    #[arg(long, value_name = "PATH")]
    pub boot_image: Option<PathBuf>,

    /// LZ4-compressed root image (overrides the build report)
    #[arg(long, value_name = "PATH")]
    pub root_image: Option<PathBuf>,

    /// LZ4-compressed dm-verity hash image (overrides the build report)
    #[arg(long, value_name = "PATH")]
    pub hash_image: Option<PathBuf>,

    /// Extra target published under its file name, e.g. the full disk image (repeatable)
    #[arg(long, value_name = "PATH")]
    pub link_target: Vec<PathBuf>,

    /// Extra target copied under its file name, e.g. a migration (repeatable)
    #[arg(long, value_name = "PATH")]
    pub copy_target: Vec<PathBuf>,

    /// Expiration policy TOML (snapshot/targets/timestamp_expiration)
    #[arg(long, value_name = "PATH")]
    pub repo_expiration_policy_path: PathBuf,

    /// Release.toml; its `[migrations]` table replaces the manifest's
    #[arg(long, value_name = "PATH")]
    pub release_config_path: Option<PathBuf>,

    /// Wave schedule TOML (e.g. waves/default-waves.toml)
    #[arg(long, value_name = "PATH")]
    pub wave_policy_path: PathBuf,

    /// Trusted root.json of the repository
    #[arg(long, value_name = "PATH")]
    pub root_role_path: PathBuf,

    /// Signing key source, repeatable (file path, file://, aws-ssm://, aws-kms://); overrides
    /// the repository's signing_keys
    #[arg(long = "signing-key", value_name = "KEY")]
    pub signing_keys: Vec<KeySource>,

    /// Key file used when neither --signing-key nor Infra.toml names a key
    #[arg(long, value_name = "PATH")]
    pub default_key_path: Option<PathBuf>,

    /// Release start, for waves and expirations: RFC 3339, or an offset from now such as
    /// 'in 2 hours' (default: now)
    #[arg(long, value_name = "TIME")]
    pub release_start_time: Option<Offset>,

    /// Output folder: metadata goes to OUTDIR/VARIANT/ARCH/, targets to OUTDIR/targets/
    #[arg(long, value_name = "PATH")]
    pub outdir: PathBuf,

    /// After signing, publish the output folder to s3://BUCKET/PREFIX (targets to
    /// PREFIX/targets/, metadata to PREFIX/VARIANT/ARCH/; timestamp.json last). A failed
    /// upload can be finished with `pubsys upload-repo`
    #[arg(long, value_name = "S3_URL")]
    pub upload: Option<Url>,

    /// Do not publish the delta index and store (hosts then always download the full images)
    #[arg(long)]
    pub no_delta: bool,
}

/// What `pubsys repo` did.
#[derive(Debug, Serialize)]
pub struct RepoReport {
    /// The release.
    pub variant: String,
    /// Architecture.
    pub arch: Arch,
    /// Version.
    pub version: String,
    /// Whether an existing published repository was extended (false: a new one).
    pub extended: Option<String>,
    /// Metadata folder written.
    pub metadata_dir: PathBuf,
    /// Targets folder.
    pub targets_dir: PathBuf,
    /// Target names published by this run.
    pub targets: Vec<String>,
    /// Roles signed, with version and expiry.
    pub signed: Vec<tuftool::repo::SignedRoleReport>,
    /// Release start used for waves and expirations.
    pub release_start: Timestamp,
    /// Expiry of each role.
    pub expirations: Expirations,
    /// Number of updates in the manifest now.
    pub manifest_updates: usize,
    /// The S3 upload, with `--upload`.
    pub upload: Option<crate::s3::UploadReport>,
}

impl fmt::Display for RepoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match &self.extended {
            Some(url) => format!("extended the repository at {url}"),
            None => "created a new repository".to_owned(),
        };
        writeln!(f, "{} {} {}: {how}", self.variant, self.arch, self.version)?;
        writeln!(f, "  metadata: {}", self.metadata_dir.display())?;
        writeln!(
            f,
            "  targets:  {} ({} published by this run)",
            self.targets_dir.display(),
            self.targets.len()
        )?;
        for role in &self.signed {
            writeln!(
                f,
                "  signed {} version {} expiring {}",
                role.role, role.version, role.expires
            )?;
        }
        writeln!(
            f,
            "  release start {}; manifest lists {} updates",
            self.release_start, self.manifest_updates
        )?;
        match &self.upload {
            Some(upload) => write!(f, "  {upload}"),
            None => Ok(()),
        }
    }
}

/// The images and identity of the release.
struct Inputs {
    variant: String,
    arch: Arch,
    version: Version,
    boot: PathBuf,
    root: PathBuf,
    hash: PathBuf,
}

/// The part of image-builder's `build-report.json` a release needs. Artifacts are found beside
/// the report, so a moved output folder still works.
#[derive(Debug, serde::Deserialize)]
struct BuildReportView {
    variant: String,
    arch: String,
    version: String,
    artifacts: Vec<ArtifactView>,
}

#[derive(Debug, serde::Deserialize)]
struct ArtifactView {
    kind: String,
    file_name: String,
    /// Size in bytes, as built (older reports may lack it).
    #[serde(default)]
    size: Option<u64>,
    /// SHA-256 in hex, as built (older reports may lack it).
    #[serde(default)]
    sha256: Option<String>,
}

impl BuildReportView {
    fn load(path: &Path) -> Result<(BuildReportView, PathBuf)> {
        let bytes = std::fs::read(path).context(error::ReadConfigSnafu { path })?;
        let view = serde_json::from_slice(&bytes).context(error::ParseBuildReportSnafu { path })?;
        let folder = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok((view, folder))
    }

    /// The path of the artifact of this kind (`boot`, `root`, `hash`, `os-image`, ...).
    fn artifact(&self, folder: &Path, kind: &str) -> Option<PathBuf> {
        self.artifacts
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| folder.join(&a.file_name))
    }

    /// Check the artifact of `kind` at `path` against the size and SHA-256 the build recorded,
    /// before anything is signed: a file changed or truncated since the build is refused.
    fn verify(&self, path: &Path, kind: &str) -> Result<()> {
        let Some(expected) = self.artifacts.iter().find(|a| a.kind == kind) else {
            return Ok(());
        };
        let (size, digest) = tuftool::targets::hash_file(path).context(error::TuftoolSnafu)?;
        let digest = hex::encode(digest);
        let size_ok = expected.size.is_none_or(|s| s == size);
        let hash_ok = expected
            .sha256
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(&digest));
        ensure!(
            size_ok && hash_ok,
            error::ArtifactMismatchSnafu {
                path,
                expected: format!(
                    "{} bytes, sha256 {}",
                    expected.size.map_or("?".to_owned(), |s| s.to_string()),
                    expected.sha256.as_deref().unwrap_or("?")
                ),
                actual: format!("{size} bytes, sha256 {digest}"),
            }
        );
        Ok(())
    }
}

fn inputs(args: &RepoArgs) -> Result<Inputs> {
    let report = args
        .build_report
        .as_deref()
        .map(BuildReportView::load)
        .transpose()?;
    let from_report = |kind: &str| {
        report
            .as_ref()
            .and_then(|(r, folder)| r.artifact(folder, kind))
    };
    let missing = |what: &str| error::MissingReleaseInputSnafu { what }.build();
    let arch = match (&args.arch, &report) {
        (Some(arch), _) => *arch,
        (None, Some((r, _))) => r.arch.parse().context(error::MetadataSnafu)?,
        (None, None) => return Err(missing("--arch")),
    };
    let version = match (&args.version, &report) {
        (Some(v), _) => v.clone(),
        (None, Some((r, _))) => update_metadata::parse_version(&r.version)
            .map_err(|_| missing("a valid version in the build report"))?,
        (None, None) => return Err(missing("--version")),
    };
    // Artifacts taken from the report are checked against it before anything is signed.
    if let Some((r, folder)) = &report {
        for (kind, flag) in [
            ("boot", &args.boot_image),
            ("root", &args.root_image),
            ("hash", &args.hash_image),
        ] {
            if let (None, Some(path)) = (flag, r.artifact(folder, kind)) {
                r.verify(&path, kind)?;
            }
        }
    }
    let variant = args
        .variant
        .clone()
        .or_else(|| report.as_ref().map(|(r, _)| r.variant.clone()));
    Ok(Inputs {
        variant: variant.ok_or_else(|| missing("--variant"))?,
        arch,
        version,
        boot: args
            .boot_image
            .clone()
            .or_else(|| from_report("boot"))
            .ok_or_else(|| missing("--boot-image"))?,
        root: args
            .root_image
            .clone()
            .or_else(|| from_report("root"))
            .ok_or_else(|| missing("--root-image"))?,
        hash: args
            .hash_image
            .clone()
            .or_else(|| from_report("hash"))
            .ok_or_else(|| missing("--hash-image"))?,
    })
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .context(error::MissingReleaseInputSnafu {
            what: format!("a file name in {}", path.display()),
        })
}

/// Put `source` into the staging input folder under its file name (a symlink; tuftool copies
/// the bytes it points to).
fn stage(input_dir: &Path, source: &Path) -> Result<String> {
    let name = file_name(source)?;
    let source = std::path::absolute(source).context(error::ReadConfigSnafu { path: source })?;
    ensure!(
        source.is_file(),
        error::MissingReleaseInputSnafu {
            what: format!("the file {}", source.display())
        }
    );
    let link = input_dir.join(&name);
    ensure!(
        !link.exists(),
        error::DuplicateTargetNameSnafu { name: name.clone() }
    );
    std::os::unix::fs::symlink(&source, &link).context(error::WriteOutputSnafu { path: &link })?;
    Ok(name)
}

/// Build the delta index and store of the staged images into `input_dir` (see the `delta`
/// crate), on a blocking thread: it reads and compresses the whole of every image.
async fn make_delta(input_dir: &Path, images: &Images) -> Result<update_metadata::Delta> {
    let (index, store) = delta::target_names(&images.root);
    let paths = [
        ("root", input_dir.join(&images.root)),
        ("boot", input_dir.join(&images.boot)),
        ("hash", input_dir.join(&images.hash)),
    ];
    for name in [&index, &store] {
        ensure!(
            !input_dir.join(name).exists(),
            error::DuplicateTargetNameSnafu { name: name.clone() }
        );
    }
    let index_path = input_dir.join(&index);
    let store_path = input_dir.join(&store);
    let started = std::time::Instant::now();
    let built = tokio::task::spawn_blocking(move || {
        let images: Vec<(&str, &Path)> = paths.iter().map(|(r, p)| (*r, p.as_path())).collect();
        delta::build_files(
            &images,
            &index_path,
            &store_path,
            delta::BuildOptions::default(),
        )
    })
    .await
    .context(error::JoinSnafu)?
    .context(error::DeltaSnafu)?;
    tracing::info!(
        index = %index,
        store = %store,
        store_bytes = built.index.store_len,
        stored_blocks = built.stored_blocks,
        seconds = started.elapsed().as_secs_f64(),
        "delta index and store built"
    );
    Ok(update_metadata::Delta {
        index,
        store,
        extra: Default::default(),
    })
}

/// Run `pubsys repo`.
pub async fn run(args: &RepoArgs, context: &Context) -> Result<RepoReport> {
    let release = inputs(args)?;
    let arch = release.arch.as_str();
    let metadata_dir = args.outdir.join(&release.variant).join(arch);
    let targets_dir = args.outdir.join("targets");
    ensure!(
        !metadata_dir.exists(),
        error::OutputExistsSnafu {
            path: &metadata_dir
        }
    );

    let repo_config = context.infra.repo(&args.repo);
    let shared::Signing {
        keys,
        start,
        expirations,
    } = shared::signing(
        shared::SigningFlags {
            repo: &args.repo,
            keys: &args.signing_keys,
            default_key_path: args.default_key_path.as_deref(),
            start: args.release_start_time.as_ref(),
            policy: &args.repo_expiration_policy_path,
        },
        context,
    )
    .await?;
    let waves = WaveSchedule::load(&args.wave_policy_path).context(error::MetadataSnafu)?;
    let migrations = args
        .release_config_path
        .as_deref()
        .map(Release::load)
        .transpose()
        .context(error::MetadataSnafu)?;

    // The published repository, if there is one.
    let location = match shared::published_location(
        &repo_config,
        &args.root_role_path,
        &release.variant,
        arch,
        false,
    )? {
        Some(location) => Some(shared::with_transport(location, context, &repo_config).await?),
        None => None,
    };
    // Check the upload destination before signing anything.
    let upload_to = args
        .upload
        .as_ref()
        .map(crate::s3::S3Location::parse)
        .transpose()?;
    let existing = match &location {
        Some(location) if shared::is_published(location).await? => {
            let repo = shared::load(location).await?;
            Some((
                location.clone(),
                shared::read_manifest(&repo, &location.metadata_url).await?,
            ))
        }
        Some(location) => {
            tracing::warn!(url = %location.metadata_url, "no repository published there yet; creating a new one");
            None
        }
        None => None,
    };

    // Stage every input under its target name.
    let staging = shared::staging(&args.outdir, ".pubsys-repo-")?;
    let input_dir = staging.path().join("inputs");
    std::fs::create_dir(&input_dir).context(error::WriteOutputSnafu { path: &input_dir })?;
    let images = Images {
        boot: stage(&input_dir, &release.boot)?,
        root: stage(&input_dir, &release.root)?,
        hash: stage(&input_dir, &release.hash)?,
        extra: Default::default(),
    };
    let mut targets = vec![
        images.boot.clone(),
        images.root.clone(),
        images.hash.clone(),
    ];
    // The delta index and store, beside the full images.
    let delta = if args.no_delta {
        None
    } else {
        let delta = make_delta(&input_dir, &images).await?;
        targets.push(delta.index.clone());
        targets.push(delta.store.clone());
        Some(delta)
    };
    for extra in args.link_target.iter().chain(&args.copy_target) {
        targets.push(stage(&input_dir, extra)?);
    }
    ensure!(
        !targets.iter().any(|t| t == MANIFEST_TARGET),
        error::DuplicateTargetNameSnafu {
            name: MANIFEST_TARGET
        }
    );

    // The manifest.
    let mut manifest = existing
        .as_ref()
        .map(|(_, m)| m.clone())
        .unwrap_or_else(Manifest::default);
    manifest.add_update(NewUpdate {
        variant: release.variant.clone(),
        arch: arch.to_owned(),
        version: release.version.clone(),
        images,
        delta,
        max_version: None,
    });
    if let Some(release_config) = &migrations {
        manifest.set_migrations(release_config);
    }
    manifest
        .set_waves(&release.variant, arch, &release.version, &waves, start)
        .context(error::MetadataSnafu)?;
    manifest
        .save(&input_dir.join(MANIFEST_TARGET))
        .context(error::MetadataSnafu)?;
    targets.push(MANIFEST_TARGET.to_owned());

    // Sign with tuftool's library into the staging folder.
    let out = staging.path().join("out");
    let options = PublishOptions {
        keys,
        add_targets: vec![input_dir.clone()],
        follow_links: true,
        place: Place {
            jobs: 4,
            ..Place::default()
        },
        schedule: expirations.schedule(),
        outdir: out.clone(),
    };
    let report = match &existing {
        Some((location, _)) => {
            let update = UpdateOptions {
                remove_targets: Vec::new(),
                replace_targets: true,
                new_root: None,
                role: None,
            };
            tuftool::repo::update_repo(location, &options, &update, context.now)
                .await
                .context(error::TuftoolSnafu)?
        }
        None => tuftool::repo::create_repo(&args.root_role_path, &options, context.now)
            .await
            .context(error::TuftoolSnafu)?,
    };

    shared::move_into_layout(&out, &metadata_dir, &targets_dir)?;
    let upload = shared::upload_if(
        upload_to.as_ref(),
        context,
        &repo_config,
        &args.outdir,
        (&release.variant, arch),
    )
    .await?;
    Ok(RepoReport {
        upload,
        variant: release.variant,
        arch: release.arch,
        version: release.version.to_string(),
        extended: existing.map(|(location, _)| location.metadata_url.to_string()),
        metadata_dir,
        targets_dir,
        targets,
        signed: report.signed,
        release_start: start,
        expirations,
        manifest_updates: manifest.updates.len(),
    })
}
