//! Shared pieces of the repository tests: paths, an image-builder build of a tiny root tree,
//! and loading a repository with tough the way updog does.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use update_metadata::Manifest;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Load a repository with tough (optionally through another transport, e.g. S3) and return
/// its verified manifest.
pub async fn load_manifest(
    metadata: url::Url,
    targets: url::Url,
    root: &Path,
    transport: Option<pubsys::s3::S3Transport>,
) -> Manifest {
    let root = std::fs::read(root).unwrap();
    let mut loader = tough::RepositoryLoader::new(&root, metadata, targets);
    if let Some(transport) = transport {
        loader = loader.transport(transport);
    }
    let repo = loader.load().await.unwrap();
    let name = tough::TargetName::new("manifest.json").unwrap();
    let stream = repo.read_target(&name).await.unwrap().unwrap();
    let bytes = tough::IntoVec::into_vec(stream).await.unwrap();
    Manifest::from_slice(&bytes, "repo").unwrap()
}

/// A tiny root tree and an image-builder build of it; returns the build report path.
pub fn build(dir: &Path, version: &str) -> PathBuf {
    let root = dir.join(format!("root-{version}"));
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(
        root.join("boot/vmlinuz"),
        format!("kernel {version}\n").repeat(5000),
    )
    .unwrap();
    std::fs::write(
        root.join("usr/lib/os-release"),
        format!("VERSION_ID={version}\nVARIANT_ID=aws-dev\n"),
    )
    .unwrap();
    let mut settings = image_builder::BuildSettings::new(
        root,
        dir.join("images"),
        "aws-dev".into(),
        image_builder::Arch::X86_64,
        version.parse().unwrap(),
        "abcdef0".into(),
    );
    settings.source_date_epoch = Some(1_700_000_000);
    let report = image_builder::build(&settings, &image_builder::progress::NoProgress).unwrap();
    image_builder::report::BuildReport::report_path(&report.output_dir)
}

/// `pubsys repo` arguments for aws-dev/x86_64 `version`: three small fake images written into
/// `dir` (named after the version), the 2w-2w-1w expiration policy, the wave schedule
/// `waves/<waves>.toml`, `root` and `outdir`. The caller adds the keys.
pub fn repo_args(
    dir: &Path,
    version: &str,
    waves: &str,
    root: &Path,
    outdir: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "repo",
        "--variant",
        "aws-dev",
        "--arch",
        "x86_64",
        "--version",
        version,
        "--repo-expiration-policy-path",
        s(&workspace().join("pubsys/tests/data/repo-expiration-2w-2w-1w.toml")),
        "--wave-policy-path",
        s(&workspace().join(format!("waves/{waves}.toml"))),
        "--root-role-path",
        s(root),
        "--outdir",
        s(outdir),
    ]
    .map(str::to_owned)
    .to_vec();
    for (flag, kind) in [
        ("--boot-image", "boot.ext4.lz4"),
        ("--root-image", "root.ext4.lz4"),
        ("--hash-image", "root.verity.lz4"),
    ] {
        let path = dir.join(format!("{version}-{kind}"));
        std::fs::write(&path, format!("{version} {kind}\n").repeat(50)).unwrap();
        args.extend([flag.to_owned(), s(&path).to_owned()]);
    }
    args
}

/// `pubsys repo --build-report REPORT` arguments with the 2w-2w-1w expiration policy, the
/// default waves, `root`, the default key file `key` and `outdir`.
pub fn report_repo_args(report: &Path, root: &Path, key: &Path, outdir: &Path) -> Vec<String> {
    [
        "repo",
        "--build-report",
        s(report),
        "--repo-expiration-policy-path",
        s(&workspace().join("pubsys/tests/data/repo-expiration-2w-2w-1w.toml")),
        "--wave-policy-path",
        s(&workspace().join("waves/default-waves.toml")),
        "--root-role-path",
        s(root),
        "--default-key-path",
        s(key),
        "--outdir",
        s(outdir),
    ]
    .map(str::to_owned)
    .to_vec()
}
