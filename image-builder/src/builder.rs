//! The build itself: root tree → filesystems → verity → grub.cfg → disks → artifacts.
//!
//! Everything is made inside a temporary directory in the output directory and renamed into
//! place at the very end, so a failed build leaves nothing behind.
use crate::bootconfig;
use crate::bootloader::{self, BootloaderChoice, GrubImages};
use crate::compress::{self, Written};
use crate::disk::{self, DiskKind};
use crate::error::{self, Result};
use crate::ext4::{self, Mkfs};
use crate::grub::{self, GrubConfig};
use crate::ids::{Seed, uuid_text};
use crate::layout::{Layout, Partition};
use crate::progress::Progress;
use crate::report::{Artifact, ArtifactKind, BuildReport, FilesystemReport};
use crate::settings::{BuildSettings, RootFs};
use crate::tools::{self, ToolEnv};
use crate::tree::{self, Entry};
use crate::verity::{self, VerityParams};
use gpt_contract::PartitionRole;
use snafu::{OptionExt, ResultExt, ensure};
use std::fs;
use std::path::{Path, PathBuf};

/// Build the image and artifacts `settings` describe; report progress to `progress`.
pub fn build(settings: &BuildSettings, progress: &dyn Progress) -> Result<BuildReport> {
    settings.validate()?;
    let layout = Layout::compute(settings.layout).context(error::LayoutSnafu)?;
    // The folders this build creates for its output, deepest first: removed again (when
    // still empty) if the build fails, so a failed build leaves nothing behind.
    let created: Vec<PathBuf> = settings
        .out_dir
        .ancestors()
        .take_while(|dir| !dir.as_os_str().is_empty() && fs::symlink_metadata(dir).is_err())
        .map(Path::to_path_buf)
        .collect();
    fs::create_dir_all(&settings.out_dir).context(error::CreateDirSnafu {
        path: &settings.out_dir,
    })?;
    let result = build_in(settings, &layout, progress);
    if result.is_err() {
        for dir in &created {
            let _ = fs::remove_dir(dir);
        }
    }
    result
}

/// [`build`] once the output folder exists.
fn build_in(
    settings: &BuildSettings,
    layout: &Layout,
    progress: &dyn Progress,
) -> Result<BuildReport> {
    let temp = tempfile::Builder::new()
        .prefix(".image-builder-")
        .tempdir_in(&settings.out_dir)
        .context(error::CreateDirSnafu {
            path: &settings.out_dir,
        })?;
    let work = temp.path().join("work");
    let stage = temp.path().join("out");
    for dir in [&work, &stage] {
        fs::create_dir(dir).context(error::CreateDirSnafu { path: dir })?;
    }
    let final_dir = settings.out_dir.join(settings.output_dir_name());
    let mut report = Builder::new(settings, layout, &work, progress)?.run(&stage)?;
    report.output_dir = final_dir.clone();
    let json = serde_json::to_vec_pretty(&report).context(error::SerializeReportSnafu)?;
    let report_path = BuildReport::report_path(&stage);
    fs::write(&report_path, json).context(error::WriteFileSnafu { path: &report_path })?;
    fs::remove_dir_all(&work).context(error::WriteFileSnafu { path: &work })?;
    // Replace an earlier build of the same version and build ID (re-runs are idempotent): move
    // it into the temporary directory, which is removed when `temp` is dropped.
    if fs::symlink_metadata(&final_dir).is_ok() {
        tracing::info!(dir = %final_dir.display(), "replacing the earlier output");
        let old = temp.path().join("old");
        fs::rename(&final_dir, &old).context(error::RenameSnafu {
            from: &final_dir,
            to: &old,
        })?;
    }
    fs::rename(&stage, &final_dir).context(error::RenameSnafu {
        from: &stage,
        to: &final_dir,
    })?;
    Ok(report)
}

struct Builder<'a> {
    settings: &'a BuildSettings,
    layout: &'a Layout,
    work: &'a Path,
    progress: &'a dyn Progress,
    env: ToolEnv,
    seed: Seed,
    /// The seed of what stays the same in every release of the variant: the file systems'
    /// UUIDs and hash seeds and the verity salt and UUID. Unchanged blocks of a new release
    /// then keep their bytes (ext4 metadata checksums cover the UUID) and their verity hashes,
    /// so delta updates fetch only what changed. Nothing finds a file system by its UUID
    /// (the kernel command line names partitions by PARTUUID).
    stable: Seed,
    threads: usize,
}

/// A filesystem image made in the work directory.
struct Made {
    path: PathBuf,
    report: FilesystemReport,
}

/// What [`Builder::ext4`] makes.
struct Ext4Spec<'s> {
    label: &'s str,
    tree: &'s Path,
    part: &'s Partition,
    options: &'s [&'s str],
    extended: &'s [&'s str],
    /// Names the tree in a size error.
    what: &'s str,
    /// The estimated size, for a size error.
    needed: u64,
}

/// A size error unless `needed` bytes fit in `part`.
fn check_fits(what: &str, needed: u64, part: &Partition) -> Result<()> {
    ensure!(
        needed <= part.size_bytes(),
        error::TooBigSnafu {
            what,
            needed,
            partition: part.name,
            available: part.size_bytes(),
        }
    );
    Ok(())
}

fn partition(found: Option<&Partition>, role: PartitionRole) -> Result<&Partition> {
    found.with_context(|| error::InvalidSettingSnafu {
        reason: format!(
            "the layout has no {} partition",
            crate::layout::role_name(role)
        ),
    })
}

impl<'a> Builder<'a> {
    fn new(
        settings: &'a BuildSettings,
        layout: &'a Layout,
        work: &'a Path,
        progress: &'a dyn Progress,
    ) -> Result<Builder<'a>> {
        let mke2fs_config = work.join("mke2fs.conf");
        fs::write(&mke2fs_config, ext4::MKE2FS_CONF).context(error::WriteFileSnafu {
            path: &mke2fs_config,
        })?;
        let seed = match settings.source_date_epoch {
            Some(epoch) => Seed::from_inputs(&[
                &settings.image_name,
                &settings.variant,
                &settings.arch.to_string(),
                &settings.version.to_string(),
                &settings.build_id,
                &epoch.to_string(),
            ]),
            None => Seed::random()?,
        };
        Ok(Builder {
            settings,
            layout,
            work,
            progress,
            env: ToolEnv {
                epoch: settings.source_date_epoch,
                mke2fs_config,
            },
            seed,
            stable: Seed::from_inputs(&[
                "identifiers stable across releases",
                &settings.image_name,
                &settings.variant,
                &settings.arch.to_string(),
            ]),
            threads: settings.thread_count(),
        })
    }

    fn run(&self, stage: &Path) -> Result<BuildReport> {
        let s = self.settings;
        let root_part = partition(self.layout.bank_a(PartitionRole::Root), PartitionRole::Root)?;
        let hash_part = partition(self.layout.bank_a(PartitionRole::Hash), PartitionRole::Hash)?;
        let boot_part = partition(self.layout.bank_a(PartitionRole::Boot), PartitionRole::Boot)?;
        let private_part = partition(
            self.layout.shared(PartitionRole::Private),
            PartitionRole::Private,
        )?;
        let data_a_part = partition(self.layout.shared(PartitionRole::Data), PartitionRole::Data)?;

        // The bootloader first: a missing or unusable GRUB build fails before any filesystem
        // is made.
        let grub = match &s.bootloader {
            BootloaderChoice::None => None,
            BootloaderChoice::Grub(dir) => Some(GrubImages::load(dir, s.arch)?),
        };
        let boot_source = s
            .boot_dir
            .clone()
            .unwrap_or_else(|| s.root_dir.join("boot"));
        ensure!(
            boot_source.join("vmlinuz").exists(),
            error::MissingKernelSnafu { path: &boot_source }
        );
        let os_release = tree::read_os_release(&s.root_dir);
        let version = s.version.to_string();
        if let Some(found) = os_release.version_id.as_deref().filter(|v| *v != version) {
            tracing::warn!(os_release = found, version = %version, "VERSION_ID in os-release differs from --version");
        }

        let root = self.root_fs(root_part)?;
        let hash_path = self.work.join("root.verity");
        let verity = verity::build_hash_image(
            &root.path,
            &hash_path,
            VerityParams {
                salt: &self.stable.derive("verity/salt"),
                uuid: self.stable.uuid("verity/uuid"),
                partition_bytes: hash_part.size_bytes(),
                threads: self.threads,
            },
            self.progress,
        )?;
        tracing::info!(root_hash = %verity.root_hash, data_blocks = verity.data_blocks, "dm-verity hash tree");

        let grub_cfg = grub::render(
            &GrubConfig {
                pretty_name: os_release.pretty_name.as_deref().unwrap_or(&s.image_name),
                version_id: &version,
                kernel_params: &s.kernel_params,
                bootconfig: s.grub_set_private_var,
                initrd: boot_source.join("initrd.img").is_file(),
            },
            &verity,
        );
        let kernel_command_line = grub_cfg
            .lines()
            .find_map(|l| l.trim().strip_prefix("linux ($root)/vmlinuz "))
            .unwrap_or_default()
            .to_owned();
        let boot = self.boot_fs(boot_part, &boot_source, &grub_cfg)?;
        let private = self.private_fs(private_part)?;
        let data_a = self.data_fs(data_a_part, "data-a")?;
        let efi = match &grub {
            Some(images) => {
                let part = partition(
                    self.layout.bank_a(PartitionRole::EfiSystem),
                    PartitionRole::EfiSystem,
                )?;
                let volume_id = self.seed.derive("efi/volume-id");
                let volume_id = [volume_id[0], volume_id[1], volume_id[2], volume_id[3]];
                let image =
                    bootloader::efi_partition(&self.env, self.work, part, images, volume_id)?;
                Some((part, image))
            }
            None => None,
        };

        self.progress.start("Writing disk images", None);
        let os_img = self.work.join("os.img");
        let plan = s.layout.partition_plan;
        disk::create(
            &os_img,
            &self.layout.os_disk,
            DiskKind::Os,
            plan,
            &self.seed,
        )?;
        for (part, image) in [
            (boot_part, &boot.path),
            (root_part, &root.path),
            (hash_part, &hash_path),
            (private_part, &private),
            (data_a_part, &data_a),
        ] {
            disk::write_partition(&os_img, part, image, self.progress)?;
        }
        if let Some((part, image)) = &efi {
            disk::write_partition(&os_img, part, image, self.progress)?;
        }
        if let Some(bios) = grub.as_ref().and_then(|g| g.bios.as_ref()) {
            let part = partition(
                self.layout.shared(PartitionRole::BiosBoot),
                PartitionRole::BiosBoot,
            )?;
            bootloader::install_bios(&os_img, part, bios)?;
        }
        let data_img = match &self.layout.data_disk {
            Some(data_disk) => {
                let data_b_part = partition(data_disk.partitions.first(), PartitionRole::Data)?;
                let data_b = self.data_fs(data_b_part, "data-b")?;
                let path = self.work.join("data.img");
                disk::create(&path, data_disk, DiskKind::Data, plan, &self.seed)?;
                disk::write_partition(&path, data_b_part, &data_b, self.progress)?;
                Some(path)
            }
            None => None,
        };
        self.progress.finish();

        let mut inputs = vec![(ArtifactKind::OsImage, os_img.clone())];
        if let Some(path) = &data_img {
            inputs.push((ArtifactKind::DataImage, path.clone()));
        }
        inputs.extend([
            (ArtifactKind::Boot, boot.path.clone()),
            (ArtifactKind::Root, root.path.clone()),
            (ArtifactKind::Hash, hash_path.clone()),
        ]);
        let mut artifacts = Vec::new();
        for (kind, input) in inputs {
            artifacts.push(self.compress(kind, &input, stage)?);
        }
        if s.keep_raw_images {
            let raw = [
                (ArtifactKind::RawOsImage, Some(os_img)),
                (ArtifactKind::RawDataImage, data_img),
            ];
            for (kind, input) in raw {
                if let Some(input) = input {
                    artifacts.push(self.keep_raw(kind, &input, stage)?);
                }
            }
        }
        Ok(BuildReport {
            image_name: s.image_name.clone(),
            variant: s.variant.clone(),
            arch: s.arch,
            version,
            build_id: s.build_id.clone(),
            filename_prefix: s.filename_prefix(),
            output_dir: stage.to_path_buf(),
            source_date_epoch: s.source_date_epoch,
            layout: self.layout.clone(),
            root_fs: root.report,
            boot_fs: boot.report,
            verity,
            kernel_command_line,
            artifacts,
            bootloader: grub.as_ref().map(GrubImages::report),
        })
    }

    /// UUID and hash seed of the filesystem `label`.
    fn fs_ids(&self, label: &str) -> (String, String) {
        (
            uuid_text(&self.stable.uuid(&format!("fs/{label}/uuid"))),
            uuid_text(&self.stable.uuid(&format!("fs/{label}/hash-seed"))),
        )
    }

    /// The root filesystem, shrunk to its minimum.
    fn root_fs(&self, part: &Partition) -> Result<Made> {
        let s = self.settings;
        let entries = tree::walk(&s.root_dir)?;
        let what = format!("the root tree {}", s.root_dir.display());
        let needed = tree::estimate_bytes(&entries, 4096);
        // erofs compresses, so only its result can be checked.
        if s.root_fs == RootFs::Ext4 {
            check_fits(&what, needed, part)?;
        }
        let path = self.work.join("root.img");
        self.progress.start("Making the root filesystem", None);
        let uuid = match s.root_fs {
            RootFs::Ext4 => {
                let uuid = self.ext4(&Ext4Spec {
                    label: "root",
                    tree: &s.root_dir,
                    part,
                    options: &["-b", "4096", "-O", "^has_journal"],
                    extended: &["lazy_itable_init=0", "stride=1024", "stripe_width=1024"],
                    what: &what,
                    needed,
                })?;
                // Fix the times of every inode first, including those about to be removed
                // (a deleted inode keeps its times), then empty /boot (it moved to BOOT), then
                // fix /boot itself again. The freed blocks are zeroed by `discard_free`.
                let epoch = s.source_date_epoch;
                let mut commands = ext4::fixup_commands(&entries, epoch, false);
                commands.extend(ext4::removal_commands(&entries, Path::new("boot")));
                let boot_dir: Vec<Entry> = entries
                    .iter()
                    .filter(|e| e.path == Path::new("boot"))
                    .cloned()
                    .collect();
                commands.extend(ext4::fixup_commands(&boot_dir, epoch, false));
                ext4::debugfs(&self.env, &path, &commands, self.work)?;
                ext4::discard_free(&self.env, &path)?;
                ext4::shrink(&self.env, &path)?;
                uuid
            }
            RootFs::Erofs => {
                let (uuid, _) = self.fs_ids("root");
                let mut command = self.env.command("mkfs.erofs");
                command
                    .args([
                        "--quiet",
                        "-zlz4hc,12",
                        "-C262144",
                        "--exclude-regex=^boot/.",
                    ])
                    .arg(format!("-U{uuid}"));
                // Like upstream, every file is owned by root.
                command.arg("--all-root");
                if let Some(epoch) = s.source_date_epoch {
                    command.arg(format!("-T{epoch}"));
                }
                command.arg(&path).arg(&s.root_dir);
                tracing::debug!(command = %tools::describe(&command), "making erofs");
                tools::run("mkfs.erofs", &mut command)?;
                uuid
            }
        };
        self.progress.finish();
        let size_bytes = tools::file_len(&path)?;
        check_fits(&what, size_bytes, part)?;
        tracing::info!(size_bytes, kind = ?s.root_fs, "root filesystem");
        Ok(Made {
            path,
            report: FilesystemReport {
                kind: s.root_fs,
                uuid,
                size_bytes,
                partition: part.name.to_owned(),
                partition_bytes: part.size_bytes(),
            },
        })
    }

    /// The boot filesystem: the boot tree (private modes, root-owned) plus `grub/grub.cfg`.
    fn boot_fs(&self, part: &Partition, source: &Path, grub_cfg: &str) -> Result<Made> {
        let tree_dir = self.work.join("boot-tree");
        tree::copy_private(source, &tree_dir)?;
        let grub_dir = tree_dir.join("grub");
        fs::create_dir_all(&grub_dir).context(error::CreateDirSnafu { path: &grub_dir })?;
        let cfg = grub_dir.join("grub.cfg");
        fs::write(&cfg, grub_cfg).context(error::WriteFileSnafu { path: &cfg })?;
        let entries = tree::walk(&tree_dir)?;
        let what = format!("the boot tree {}", source.display());
        let needed = tree::estimate_bytes(&entries, 1024);
        check_fits(&what, needed, part)?;
        let uuid = self.ext4(&Ext4Spec {
            label: "boot",
            tree: &tree_dir,
            part,
            options: &["-O", "^has_journal"],
            extended: &["lazy_itable_init=0"],
            what: &what,
            needed,
        })?;
        let path = self.work.join("boot.img");
        let commands = ext4::fixup_commands(&entries, self.settings.source_date_epoch, true);
        ext4::debugfs(&self.env, &path, &commands, self.work)?;
        let size_bytes = ext4::shrink(&self.env, &path)?;
        Ok(Made {
            path,
            report: FilesystemReport {
                kind: RootFs::Ext4,
                uuid,
                size_bytes,
                partition: part.name.to_owned(),
                partition_bytes: part.size_bytes(),
            },
        })
    }

    /// PRIVATE: `bootconfig.data`, partition-sized.
    fn private_fs(&self, part: &Partition) -> Result<PathBuf> {
        let mut text = String::new();
        for snippet in &self.settings.bootconfig_snippets {
            text.push_str(
                &fs::read_to_string(snippet).context(error::ReadFileSnafu { path: snippet })?,
            );
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
        if text.is_empty() {
            text.push_str(bootconfig::NOOP_CONFIG);
        }
        let tree_dir = self.work.join("private-tree");
        fs::create_dir(&tree_dir).context(error::CreateDirSnafu { path: &tree_dir })?;
        let file = tree_dir.join("bootconfig.data");
        fs::write(&file, bootconfig::encode(&text)?)
            .context(error::WriteFileSnafu { path: &file })?;
        self.plain_fs(
            part,
            &tree_dir,
            "private",
            &["-b", "4096", "-i", "4096", "-I", "256"],
        )
    }

    /// An empty data filesystem (`-m 0`), partition-sized.
    fn data_fs(&self, part: &Partition, label: &str) -> Result<PathBuf> {
        let tree_dir = self.work.join(format!("{label}-tree"));
        fs::create_dir(&tree_dir).context(error::CreateDirSnafu { path: &tree_dir })?;
        self.plain_fs(part, &tree_dir, label, &["-m", "0"])
    }

    /// A partition-sized ext4 of `tree_dir`, with fixed times and root ownership.
    fn plain_fs(
        &self,
        part: &Partition,
        tree_dir: &Path,
        label: &str,
        options: &[&str],
    ) -> Result<PathBuf> {
        let entries = tree::walk(tree_dir)?;
        let what = format!("the {label} filesystem");
        self.ext4(&Ext4Spec {
            label,
            tree: tree_dir,
            part,
            options,
            extended: &["lazy_itable_init=0"],
            what: &what,
            needed: tree::estimate_bytes(&entries, 4096),
        })?;
        let path = self.work.join(format!("{label}.img"));
        let commands = ext4::fixup_commands(&entries, self.settings.source_date_epoch, true);
        ext4::debugfs(&self.env, &path, &commands, self.work)?;
        Ok(path)
    }

    /// Make the partition-sized ext4 `<work>/<label>.img` of `spec.tree`; running out of space
    /// is a size error. Returns the filesystem UUID.
    fn ext4(&self, spec: &Ext4Spec<'_>) -> Result<String> {
        let (uuid, hash_seed) = self.fs_ids(spec.label);
        let path = self.work.join(format!("{}.img", spec.label));
        let made = ext4::mkfs(
            &self.env,
            &Mkfs {
                image: &path,
                tree: spec.tree,
                size_bytes: spec.part.size_bytes(),
                options: spec.options,
                extended: spec.extended,
                uuid: &uuid,
                hash_seed: &hash_seed,
            },
        )?;
        if let Err(stderr) = made {
            tracing::debug!(%stderr, "mkfs.ext4 ran out of space");
            // The estimate fitted but mkfs did not: report at least one byte too many.
            let needed = spec.needed.max(spec.part.size_bytes() + 1);
            check_fits(spec.what, needed, spec.part)?;
        }
        Ok(uuid)
    }

    fn compress(&self, kind: ArtifactKind, input: &Path, stage: &Path) -> Result<Artifact> {
        let file_name = format!("{}{}", self.settings.filename_prefix(), kind.suffix());
        let output = stage.join(&file_name);
        let uncompressed_size = tools::file_len(input)?;
        self.progress.start(
            &format!("Compressing {}", kind.suffix()),
            Some(uncompressed_size),
        );
        let Written { size, sha256 } =
            compress::compress_file(input, &output, self.threads, self.progress)?;
        self.progress.finish();
        tracing::info!(file = %file_name, size, uncompressed_size, "artifact");
        self.artifact(
            kind,
            stage,
            file_name,
            Written { size, sha256 },
            uncompressed_size,
        )
    }

    fn keep_raw(&self, kind: ArtifactKind, input: &Path, stage: &Path) -> Result<Artifact> {
        let file_name = format!("{}{}", self.settings.filename_prefix(), kind.suffix());
        let output = stage.join(&file_name);
        fs::rename(input, &output).context(error::RenameSnafu {
            from: input,
            to: &output,
        })?;
        let written = compress::hash_file(&output)?;
        let size = written.size;
        self.artifact(kind, stage, file_name, written, size)
    }

    /// The report entry of a written artifact, with its friendly-name symlinks.
    fn artifact(
        &self,
        kind: ArtifactKind,
        stage: &Path,
        file_name: String,
        written: Written,
        uncompressed_size: u64,
    ) -> Result<Artifact> {
        Ok(Artifact {
            kind,
            links: self.link(stage, &file_name, kind)?,
            file_name,
            size: written.size,
            sha256: written.sha256,
            uncompressed_size,
        })
    }

    /// The friendly-name symlinks of `file_name` (`image-layout.md` §7).
    fn link(&self, stage: &Path, file_name: &str, kind: ArtifactKind) -> Result<Vec<String>> {
        let s = self.settings;
        let friendly = s.friendly_name();
        let names = [
            format!("{friendly}{}", kind.suffix()),
            format!("{friendly}-{}{}", s.version, kind.suffix()),
            format!("{friendly}-v{}{}", s.version, kind.suffix()),
        ];
        for name in &names {
            let path = stage.join(name);
            std::os::unix::fs::symlink(file_name, &path).context(error::WriteFileSnafu { path })?;
        }
        Ok(names.into())
    }
}
