//! Installing the bootloader the reference way (`image-layout.md` §3, §8): a FAT EFI-SYSTEM
//! partition holding `EFI/BOOT/BOOTX64.EFI`, and for BIOS the GRUB boot code in the protective
//! MBR and the core image in BIOS-BOOT (what `grub-bios-setup` does, done here so that the
//! build machine needs no `grub-pc`).
//!
//! The images come from a GRUB build folder, by default ours (`bootloader/build` in this
//! repository: Debian's GRUB 2.06 plus the `gptprio` module), holding `bootx64.efi`,
//! `boot.img`, `core.img` and `bootloader.json`.
use crate::error::{self, Result};
use crate::layout::Partition;
use crate::tools::{self, ToolEnv};
use serde::Serialize;
use snafu::{OptionExt, ResultExt, ensure};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use update_metadata::Arch;

/// Environment variable naming the GRUB build folder (the default of `--bootloader`).
pub const BOOTLOADER_ENV: &str = "IMAGE_BUILDER_BOOTLOADER";

const SECTOR: usize = 512;
/// `boot.img` fields (GRUB `include/grub/i386/pc/boot.h`).
const BPB_START: usize = 0x3;
const BPB_END: usize = 0x5a;
const KERNEL_SECTOR: usize = 0x5c;
const BOOT_DRIVE: usize = 0x64;
const DRIVE_CHECK: usize = 0x66;
const WINDOWS_NT_MAGIC: usize = 0x1b8;
const PART_END: usize = 0x1fe;
/// One blocklist entry of the core image's first sector: start (u64), length (u16), segment
/// (u16). The first entry is the last 12 bytes of the sector; further ones grow downwards.
const BLOCKLIST_ENTRY: usize = 12;
/// Where the diskboot code loads the rest of the core image: `GRUB_BOOT_I386_PC_KERNEL_SEG`
/// plus one sector.
const CORE_LOAD_SEGMENT: u16 = 0x800 + (SECTOR as u16 >> 4);
/// The most sectors a blocklist entry (and GRUB) allows for the core image.
const MAX_CORE_SECTORS: usize = 0xffff;

/// Which bootloader a build installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootloaderChoice {
    /// None: EFI-SYSTEM and BIOS-BOOT stay empty and the image does not boot by itself
    /// (tests that never boot, or images whose bootloader is installed later).
    None,
    /// The GRUB build in this folder.
    Grub(PathBuf),
}

impl std::str::FromStr for BootloaderChoice {
    type Err = std::convert::Infallible;

    /// A command-line value: `none` or a folder.
    fn from_str(text: &str) -> std::result::Result<BootloaderChoice, Self::Err> {
        Ok(BootloaderChoice::parse(text))
    }
}

impl BootloaderChoice {
    /// Parse a command-line value: `none` or a folder.
    pub fn parse(text: &str) -> BootloaderChoice {
        if text == "none" {
            BootloaderChoice::None
        } else {
            BootloaderChoice::Grub(PathBuf::from(text))
        }
    }

    /// The default: `$IMAGE_BUILDER_BOOTLOADER` if set, else our GRUB build beside the running
    /// executable's build folder (`target/<profile>/../bootloader/current`, where
    /// `bootloader/build` puts it).
    pub fn default_for_exe() -> BootloaderChoice {
        if let Some(value) = std::env::var_os(BOOTLOADER_ENV).filter(|v| !v.is_empty()) {
            return BootloaderChoice::parse(&value.to_string_lossy());
        }
        let dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
            .unwrap_or_default()
            .join("bootloader/current");
        BootloaderChoice::Grub(dir)
    }
}

/// The GRUB images of one build, read and checked.
#[derive(Debug, Clone)]
pub struct GrubImages {
    /// The folder they came from.
    pub dir: PathBuf,
    /// The EFI application (`bootx64.efi` / `bootaa64.efi`).
    pub efi: Vec<u8>,
    /// The name it gets in `EFI/BOOT/`.
    pub efi_name: &'static str,
    /// BIOS boot code and core image (x86_64 only).
    pub bios: Option<BiosImages>,
    /// `input_hash` from `bootloader.json`: names the exact build.
    pub input_hash: Option<String>,
}

/// The i386-pc images.
#[derive(Debug, Clone)]
pub struct BiosImages {
    /// GRUB's `boot.img` (one sector).
    pub boot: Vec<u8>,
    /// GRUB's `core.img`.
    pub core: Vec<u8>,
}

/// What the build report says about the installed bootloader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootloaderReport {
    /// The GRUB build folder.
    pub dir: PathBuf,
    /// `bootloader.json`'s input hash, when present.
    pub input_hash: Option<String>,
    /// The firmware interfaces the image boots with (`uefi`, `legacy-bios`).
    pub boot_modes: Vec<String>,
    /// SHA-256 of the installed EFI application.
    pub efi_sha256: String,
    /// SHA-256 of the core image as read (before its blocklist is set).
    pub core_sha256: Option<String>,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    fs::read(&path).context(error::ReadBootloaderSnafu { path })
}

fn invalid(dir: &Path, reason: impl Into<String>) -> error::Error {
    error::Error::InvalidBootloader {
        dir: dir.to_path_buf(),
        reason: reason.into(),
    }
}

impl GrubImages {
    /// Read and check the images in `dir` for `arch`.
    pub fn load(dir: &Path, arch: Arch) -> Result<GrubImages> {
        ensure!(
            dir.join("bootloader.json").exists() || dir.join("bootx64.efi").exists(),
            error::MissingBootloaderSnafu { dir }
        );
        let efi_file = match arch {
            Arch::X86_64 => "bootx64.efi",
            Arch::Aarch64 => "bootaa64.efi",
        };
        let efi = read(dir, efi_file)?;
        if !efi.starts_with(b"MZ") {
            return Err(invalid(
                dir,
                format!("{efi_file} is not a PE/COFF EFI application"),
            ));
        }
        let bios = match arch {
            Arch::X86_64 => {
                let boot = read(dir, "boot.img")?;
                let core = read(dir, "core.img")?;
                check_bios(dir, &boot, &core)?;
                Some(BiosImages { boot, core })
            }
            Arch::Aarch64 => None,
        };
        let input_hash = fs::read(dir.join("bootloader.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|json| json.get("input_hash")?.as_str().map(str::to_owned));
        Ok(GrubImages {
            dir: dir.to_path_buf(),
            efi,
            efi_name: match arch {
                Arch::X86_64 => "BOOTX64.EFI",
                Arch::Aarch64 => "BOOTAA64.EFI",
            },
            bios,
            input_hash,
        })
    }

    /// The report entry.
    pub fn report(&self) -> BootloaderReport {
        let sha = |bytes: &[u8]| {
            hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
        };
        let mut boot_modes = vec!["uefi".to_owned()];
        if self.bios.is_some() {
            boot_modes.push("legacy-bios".to_owned());
        }
        BootloaderReport {
            dir: self.dir.clone(),
            input_hash: self.input_hash.clone(),
            boot_modes,
            efi_sha256: sha(&self.efi),
            core_sha256: self.bios.as_ref().map(|b| sha(&b.core)),
        }
    }
}

fn check_bios(dir: &Path, boot: &[u8], core: &[u8]) -> Result<()> {
    if boot.len() != SECTOR || boot[PART_END..] != [0x55, 0xaa] {
        return Err(invalid(dir, "boot.img is not one 512-byte boot sector"));
    }
    if core.len() < 2 * SECTOR {
        return Err(invalid(dir, "core.img is shorter than two sectors"));
    }
    if core.len().div_ceil(SECTOR) > MAX_CORE_SECTORS {
        return Err(invalid(dir, "core.img is larger than 0xFFFF sectors"));
    }
    Ok(())
}

/// Make the FAT image of the EFI system partition (`mkfs.vfat` of exactly the partition's size,
/// `EFI/BOOT/<name>` copied in with mtools) at `<work>/efi.img`. Reproducible with an epoch:
/// a fixed volume ID and `SOURCE_DATE_EPOCH` for every timestamp.
pub fn efi_partition(
    env: &ToolEnv,
    work: &Path,
    part: &Partition,
    images: &GrubImages,
    volume_id: [u8; 4],
) -> Result<PathBuf> {
    let image = work.join("efi.img");
    let app = work.join("efi-app");
    fs::write(&app, &images.efi).context(error::WriteFileSnafu { path: &app })?;
    let kib = part.size_bytes() / 1024;
    let mut mkfs = env.command("mkfs.vfat");
    mkfs.args(["-S", "512", "-n", "EFI-SYSTEM", "-i"])
        .arg(hex::encode(volume_id));
    if env.epoch.is_some() {
        mkfs.arg("--invariant");
    }
    mkfs.arg("-C").arg(&image).arg(kib.to_string());
    tools::run("mkfs.vfat", &mut mkfs)?;
    let target = format!("::/EFI/BOOT/{}", images.efi_name);
    let mtools: [(&str, Vec<&std::ffi::OsStr>); 2] = [
        ("mmd", vec!["::/EFI".as_ref(), "::/EFI/BOOT".as_ref()]),
        ("mcopy", vec![app.as_os_str(), target.as_ref()]),
    ];
    for (tool, args) in mtools {
        let mut command = env.command(tool);
        command
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&image)
            .args(args);
        tools::run(tool, &mut command)?;
    }
    fs::remove_file(&app).context(error::WriteFileSnafu { path: &app })?;
    Ok(image)
}

/// Install the BIOS boot code into sector 0 of `disk` (keeping the protective MBR's BPB area,
/// disk signature and partition table) and the core image at the start of `bios_boot`, with
/// its blocklist pointing at the sectors after its first.
pub fn install_bios(disk: &Path, bios_boot: &Partition, images: &BiosImages) -> Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .context(error::WriteFileSnafu { path: disk })?;
    let mut existing = [0u8; SECTOR];
    file.read_exact_at(&mut existing, 0)
        .context(error::ReadFileSnafu { path: disk })?;
    let (mbr, core) = bios_sectors(&existing, images, bios_boot.first_sector())?;
    ensure!(
        core.len() as u64 <= bios_boot.size_bytes(),
        error::TooBigSnafu {
            what: "the GRUB core image",
            needed: core.len() as u64,
            partition: bios_boot.name,
            available: bios_boot.size_bytes(),
        }
    );
    file.write_all_at(&core, bios_boot.offset_bytes())
        .context(error::WriteFileSnafu { path: disk })?;
    file.write_all_at(&mbr, 0)
        .context(error::WriteFileSnafu { path: disk })?;
    Ok(())
}

/// The patched MBR and core image for a core image that starts at LBA `first` (pure).
fn bios_sectors(
    existing_mbr: &[u8; SECTOR],
    images: &BiosImages,
    first: u64,
) -> Result<([u8; SECTOR], Vec<u8>)> {
    let mut mbr = [0u8; SECTOR];
    mbr.copy_from_slice(&images.boot);
    mbr[BPB_START..BPB_END].copy_from_slice(&existing_mbr[BPB_START..BPB_END]);
    mbr[WINDOWS_NT_MAGIC..PART_END].copy_from_slice(&existing_mbr[WINDOWS_NT_MAGIC..PART_END]);
    mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&first.to_le_bytes());
    // 0xff: use the drive number the BIOS passes; the drive check is a jump that buggy BIOSes
    // need on floppies only, replaced by two NOPs for a hard disk (as grub-bios-setup does).
    mbr[BOOT_DRIVE] = 0xff;
    mbr[DRIVE_CHECK] = 0x90;
    mbr[DRIVE_CHECK + 1] = 0x90;

    let sectors = images.core.len().div_ceil(SECTOR);
    let mut core = images.core.clone();
    core.resize(sectors * SECTOR, 0);
    // Clear the blocklist the image came with (entries downwards from the end of the first
    // sector until a zero length), then write the one entry: the rest of the core image.
    let mut at = SECTOR - BLOCKLIST_ENTRY;
    loop {
        let len = u16::from_le_bytes([core[at + 8], core[at + 9]]);
        core[at..at + BLOCKLIST_ENTRY].fill(0);
        if len == 0 || at < BLOCKLIST_ENTRY {
            break;
        }
        at -= BLOCKLIST_ENTRY;
    }
    let entry = SECTOR - BLOCKLIST_ENTRY;
    let rest = u16::try_from(sectors - 1)
        .ok()
        .context(error::TooBigSnafu {
            what: "the GRUB core image",
            needed: images.core.len() as u64,
            partition: "BIOS-BOOT",
            available: (MAX_CORE_SECTORS * SECTOR) as u64,
        })?;
    core[entry..entry + 8].copy_from_slice(&(first + 1).to_le_bytes());
    core[entry + 8..entry + 10].copy_from_slice(&rest.to_le_bytes());
    core[entry + 10..entry + 12].copy_from_slice(&CORE_LOAD_SEGMENT.to_le_bytes());
    Ok((mbr, core))
}

#[cfg(test)]
mod tests {
    use super::{BiosImages, SECTOR, bios_sectors};

    fn images() -> BiosImages {
        let mut boot = vec![0xeb; SECTOR];
        boot[0x1fe] = 0x55;
        boot[0x1ff] = 0xaa;
        let mut core = vec![0x11; 3 * SECTOR + 100];
        // A blocklist as grub-mkimage leaves it: one entry (start 2, 3 sectors, segment 0x820).
        let e = SECTOR - 12;
        core[e..e + 8].copy_from_slice(&2u64.to_le_bytes());
        core[e + 8..e + 10].copy_from_slice(&3u16.to_le_bytes());
        core[e + 10..e + 12].copy_from_slice(&0x820u16.to_le_bytes());
        core[e - 12..e].fill(0);
        BiosImages { boot, core }
    }

    #[test]
    fn mbr_keeps_the_partition_table_and_points_at_the_core() {
        let mut existing = [0u8; SECTOR];
        existing[0x1b8..0x1fe]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        existing[0x10] = 0x77;
        let (mbr, core) = bios_sectors(&existing, &images(), 2048).unwrap();
        assert_eq!(&mbr[0x1b8..0x1fe], &existing[0x1b8..0x1fe]);
        assert_eq!(mbr[0x10], 0x77, "BPB area comes from the existing sector");
        assert_eq!(&mbr[0x1fe..], &[0x55, 0xaa]);
        assert_eq!(
            u64::from_le_bytes(mbr[0x5c..0x64].try_into().unwrap()),
            2048
        );
        assert_eq!(mbr[0x64], 0xff);
        assert_eq!(&mbr[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(mbr[0], 0xeb, "boot code from boot.img");

        assert_eq!(core.len(), 4 * SECTOR, "padded to whole sectors");
        let e = SECTOR - 12;
        assert_eq!(u64::from_le_bytes(core[e..e + 8].try_into().unwrap()), 2049);
        assert_eq!(
            u16::from_le_bytes(core[e + 8..e + 10].try_into().unwrap()),
            3
        );
        assert_eq!(
            u16::from_le_bytes(core[e + 10..e + 12].try_into().unwrap()),
            0x820
        );
        assert!(
            core[e - 12..e].iter().all(|b| *b == 0),
            "terminator after the entry"
        );
        assert!(core[3 * SECTOR + 100..].iter().all(|b| *b == 0));
    }
}
