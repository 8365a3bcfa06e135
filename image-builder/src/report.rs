//! The build report: what was built, where, and the values later steps need (root hash, salt,
//! artifact digests). Printed by `--json` and written as `build-report.json`.
use crate::layout::Layout;
use crate::settings::{Arch, RootFs};
use crate::verity::VerityInfo;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The report's file name inside the output directory.
pub const REPORT_FILE: &str = "build-report.json";

/// What an artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// `<prefix>.img.lz4`: the OS disk.
    OsImage,
    /// `<prefix>-data.img.lz4`: the data disk (split plan).
    DataImage,
    /// `<prefix>-boot.ext4.lz4`: the boot filesystem (updog → inactive BOOT).
    Boot,
    /// `<prefix>-root.ext4.lz4`: the root filesystem (updog → inactive ROOT).
    Root,
    /// `<prefix>-root.verity.lz4`: the partition-sized hash image (updog → inactive HASH).
    Hash,
    /// `<prefix>.img`: the uncompressed OS disk (with `keep_raw_images`).
    RawOsImage,
    /// `<prefix>-data.img`: the uncompressed data disk (with `keep_raw_images`).
    RawDataImage,
}

impl ArtifactKind {
    /// The file name suffix after `FILENAME_PREFIX`.
    pub fn suffix(self) -> &'static str {
        match self {
            ArtifactKind::OsImage => ".img.lz4",
            ArtifactKind::DataImage => "-data.img.lz4",
            ArtifactKind::Boot => "-boot.ext4.lz4",
            ArtifactKind::Root => "-root.ext4.lz4",
            ArtifactKind::Hash => "-root.verity.lz4",
            ArtifactKind::RawOsImage => ".img",
            ArtifactKind::RawDataImage => "-data.img",
        }
    }
}

/// One file of the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// What it is.
    pub kind: ArtifactKind,
    /// File name inside the output directory.
    pub file_name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// Size after LZ4 decompression (equal to `size` for raw files).
    pub uncompressed_size: u64,
    /// The friendly-name symlinks pointing at it.
    pub links: Vec<String>,
}

/// One filesystem image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilesystemReport {
    /// `ext4` or `erofs`.
    pub kind: RootFs,
    /// Filesystem UUID.
    pub uuid: String,
    /// Image size in bytes (shrunk to the minimum for BOOT and ROOT).
    pub size_bytes: u64,
    /// GPT name of the partition it goes to.
    pub partition: String,
    /// Size of that partition in bytes.
    pub partition_bytes: u64,
}

/// The result of a build.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// Image name.
    pub image_name: String,
    /// Variant.
    pub variant: String,
    /// Architecture.
    pub arch: Arch,
    /// Version.
    pub version: String,
    /// Build ID.
    pub build_id: String,
    /// `FILENAME_PREFIX`.
    pub filename_prefix: String,
    /// The directory holding the artifacts (`<out>/<version>-<build-id>`).
    pub output_dir: PathBuf,
    /// `SOURCE_DATE_EPOCH`, when the build was reproducible.
    pub source_date_epoch: Option<i64>,
    /// The disk layout.
    pub layout: Layout,
    /// The root filesystem.
    pub root_fs: FilesystemReport,
    /// The boot filesystem.
    pub boot_fs: FilesystemReport,
    /// dm-verity parameters.
    pub verity: VerityInfo,
    /// The kernel command line in grub.cfg (before `$dm_verity_root` is expanded).
    pub kernel_command_line: String,
    /// Every artifact, in a fixed order.
    pub artifacts: Vec<Artifact>,
    /// The bootloader installed into EFI-SYSTEM and BIOS-BOOT (none: the image does not boot
    /// by itself).
    pub bootloader: Option<crate::bootloader::BootloaderReport>,
}

impl BuildReport {
    /// The artifact of `kind`, if it was built.
    pub fn artifact(&self, kind: ArtifactKind) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.kind == kind)
    }

    /// The path of the artifact of `kind`, if it was built.
    pub fn artifact_path(&self, kind: ArtifactKind) -> Option<PathBuf> {
        self.artifact(kind)
            .map(|a| self.output_dir.join(&a.file_name))
    }

    /// The report file inside `output_dir`.
    pub fn report_path(output_dir: &Path) -> PathBuf {
        output_dir.join(REPORT_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::{Artifact, ArtifactKind, BuildReport, FilesystemReport};
    use crate::layout::{Layout, LayoutSettings};
    use crate::settings::{Arch, RootFs};
    use crate::verity::VerityInfo;

    fn filesystem(partition: &str) -> FilesystemReport {
        FilesystemReport {
            kind: RootFs::Ext4,
            uuid: "u".into(),
            size_bytes: 1,
            partition: partition.into(),
            partition_bytes: 2,
        }
    }

    /// The JSON shape `--json` prints (what pubsys and scripts read): a snapshot of the keys.
    #[test]
    fn json_shape() {
        let report = BuildReport {
            image_name: "bottlerocket".into(),
            variant: "v".into(),
            arch: Arch::X86_64,
            version: "1.0.0".into(),
            build_id: "b".into(),
            filename_prefix: "bottlerocket-v-x86_64-1.0.0-b".into(),
            output_dir: "/out/1.0.0-b".into(),
            source_date_epoch: Some(1),
            layout: Layout::compute(LayoutSettings::default()).unwrap(),
            root_fs: filesystem("BOTTLEROCKET-ROOT-A"),
            boot_fs: filesystem("BOTTLEROCKET-BOOT-A"),
            verity: VerityInfo {
                root_hash: "r".into(),
                salt: "s".into(),
                uuid: "u".into(),
                data_blocks: 1,
                data_block_size: 4096,
                hash_block_size: 4096,
                hash_algorithm: "sha256",
                hash_tree_bytes: 8192,
            },
            kernel_command_line: "ro".into(),
            artifacts: vec![Artifact {
                kind: ArtifactKind::Hash,
                file_name: "f".into(),
                size: 1,
                sha256: "h".into(),
                uncompressed_size: 2,
                links: vec!["l".into()],
            }],
            bootloader: Some(crate::bootloader::BootloaderReport {
                dir: "/grub".into(),
                input_hash: Some("0123".into()),
                boot_modes: vec!["uefi".into(), "legacy-bios".into()],
                efi_sha256: "e".into(),
                core_sha256: Some("c".into()),
            }),
        };
        let json = serde_json::to_value(&report).unwrap();
        let keys =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&json),
            [
                "image_name",
                "variant",
                "arch",
                "version",
                "build_id",
                "filename_prefix",
                "output_dir",
                "source_date_epoch",
                "layout",
                "root_fs",
                "boot_fs",
                "verity",
                "kernel_command_line",
                "artifacts",
                "bootloader"
            ]
        );
        assert_eq!(json["bootloader"]["boot_modes"][1], "legacy-bios");
        assert_eq!(json["arch"], "x86_64");
        assert_eq!(json["root_fs"]["kind"], "ext4");
        assert_eq!(json["layout"]["settings"]["partition_plan"], "split");
        assert_eq!(json["layout"]["settings"]["banks"], "ab");
        let partition = &json["layout"]["os_disk"]["partitions"][2];
        assert_eq!(
            keys(partition),
            [
                "number",
                "name",
                "role",
                "type_guid",
                "bank",
                "start_mib",
                "size_mib"
            ]
        );
        assert_eq!(partition["role"], "boot");
        assert_eq!(
            partition["type_guid"],
            "6b636168-7420-6568-2070-6c616e657421"
        );
        assert_eq!(partition["bank"], "A");
        assert_eq!(
            json["artifacts"][0],
            serde_json::json!({"kind": "hash", "file_name": "f", "size": 1, "sha256": "h",
                "uncompressed_size": 2, "links": ["l"]})
        );
        assert_eq!(
            keys(&json["verity"]),
            [
                "root_hash",
                "salt",
                "uuid",
                "data_blocks",
                "data_block_size",
                "hash_block_size",
                "hash_algorithm",
                "hash_tree_bytes"
            ]
        );
        assert_eq!(
            report.artifact_path(ArtifactKind::Hash).unwrap().to_str(),
            Some("/out/1.0.0-b/f")
        );
        assert!(report.artifact(ArtifactKind::Boot).is_none());
    }
}
