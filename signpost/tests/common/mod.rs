//! Shared helpers for the integration tests: disk images in the reference layout built with
//! sgdisk, and the independent oracles (sgdisk, cgpt) to check them with.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use signpost::BootFlags;
use signpost::gpt_types::PartitionRole;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command as Process;

/// One partition of the reference layout: (name, role, start MiB, size MiB).
pub type Row = (&'static str, PartitionRole, u64, u64);

/// The 1 GiB split-plan layout of `image-layout.md` §1.1, partitions 1 to 13.
pub const LAYOUT_1GIB: [Row; 13] = [
    ("BIOS-BOOT", PartitionRole::BiosBoot, 1, 4),
    ("EFI-SYSTEM", PartitionRole::EfiSystem, 5, 5),
    ("BOTTLEROCKET-BOOT-A", PartitionRole::Boot, 10, 20),
    ("BOTTLEROCKET-ROOT-A", PartitionRole::Root, 30, 460),
    ("BOTTLEROCKET-HASH-A", PartitionRole::Hash, 490, 5),
    ("BOTTLEROCKET-RESERVED-A", PartitionRole::Reserved, 495, 10),
    ("EFI-BACKUP", PartitionRole::EfiBackup, 505, 5),
    ("BOTTLEROCKET-BOOT-B", PartitionRole::Boot, 510, 20),
    ("BOTTLEROCKET-ROOT-B", PartitionRole::Root, 530, 460),
    ("BOTTLEROCKET-HASH-B", PartitionRole::Hash, 990, 5),
    ("BOTTLEROCKET-RESERVED-B", PartitionRole::Reserved, 995, 10),
    ("BOTTLEROCKET-PRIVATE", PartitionRole::Private, 1005, 17),
    ("", PartitionRole::Data, 1022, 1),
];
/// Disk size of the 1 GiB layout, in MiB.
pub const DISK_MIB: u64 = 1024;
/// BOOT partitions of sets A and B, and PRIVATE.
pub const BOOT_A: u32 = 3;
pub const BOOT_B: u32 = 8;
pub const PRIVATE: u32 = 12;

/// sgdisk arguments that create `rows` (numbered in order) on a disk with `sectors_per_mib`
/// sectors per MiB (2048 for 512-byte sectors, 256 for 4096), plus the initial BOOT-A bits.
pub fn sgdisk_layout_args(rows: &[Row], sectors_per_mib: u64) -> Vec<String> {
    let mut args: Vec<String> = vec!["-a".into(), "1".into()];
    for (index, (name, role, start, size)) in rows.iter().enumerate() {
        let n = index + 1;
        let first = start * sectors_per_mib;
        let last = (start + size) * sectors_per_mib - 1;
        args.push(format!("--new={n}:{first}:{last}"));
        args.push(format!("--typecode={n}:{}", role.type_guid()));
        if !name.is_empty() {
            args.push(format!("--change-name={n}:{name}"));
        }
    }
    if rows.len() >= 3 && rows[2].1 == PartitionRole::Boot {
        args.extend([
            "-A".into(),
            "3:set:48".into(),
            "-A".into(),
            "3:set:56".into(),
        ]);
    }
    args
}

/// A disk image in a temporary directory (under the target dir, so it is on a real
/// filesystem where `chattr` works).
pub struct Image {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("signpost-test")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

/// Run a tool and return its stdout; panic with its output if it fails.
pub fn tool(program: &str, args: &[&str]) -> String {
    let output = Process::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install it with scripts/setup): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

impl Image {
    /// A sparse 1 GiB image in the reference layout with the initial attributes (BOOT-A
    /// priority 1 + successful, everything else zero), made with sgdisk.
    pub fn reference() -> Image {
        Image::with_rows(&LAYOUT_1GIB)
    }

    /// A sparse image with the given rows (numbered in order), made with sgdisk.
    pub fn with_rows(rows: &[Row]) -> Image {
        let dir = tempdir();
        let path = dir.path().join("disk.img");
        File::create(&path)
            .expect("create image")
            .set_len(DISK_MIB << 20)
            .expect("size image");
        let mut args = sgdisk_layout_args(rows, 2048);
        args.push(path.to_string_lossy().into_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tool("sgdisk", &args);
        Image { dir, path }
    }

    /// The signpost CLI on this image.
    pub fn signpost(&self) -> Command {
        let mut cmd = Command::cargo_bin("signpost").expect("signpost binary");
        cmd.arg("--disk")
            .arg(&self.path)
            .arg("--lock-timeout")
            .arg("5");
        cmd
    }

    /// Run the CLI with `args` on this image, expect success, and return its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self.signpost().args(args).assert().success();
        String::from_utf8(output.get_output().stdout.clone()).expect("utf-8 output")
    }

    /// Stage an update of set B while running A: clear-inactive, mark-inactive-valid,
    /// upgrade-to-inactive.
    pub fn stage_update(&self) {
        for command in [
            "clear-inactive",
            "mark-inactive-valid",
            "upgrade-to-inactive",
        ] {
            self.run(&[command]);
        }
    }

    /// Everything a write could touch (first and last MiB) plus the modification time.
    pub fn snapshot(&self) -> Snapshot {
        snapshot(&self.path)
    }
}

/// The regions holding the two tables, and the modification time.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    head: Vec<u8>,
    tail: Vec<u8>,
    len: u64,
    modified: std::time::SystemTime,
}

pub fn snapshot(path: &Path) -> Snapshot {
    let mut file = File::open(path).expect("open image");
    let len = file.seek(SeekFrom::End(0)).expect("seek");
    let region = (1 << 20).min(len);
    let mut head = vec![0; region as usize];
    file.seek(SeekFrom::Start(0)).expect("seek");
    file.read_exact(&mut head).expect("read head");
    let mut tail = vec![0; region as usize];
    file.seek(SeekFrom::Start(len - region)).expect("seek");
    file.read_exact(&mut tail).expect("read tail");
    let modified = fs::metadata(path).expect("stat").modified().expect("mtime");
    Snapshot {
        head,
        tail,
        len,
        modified,
    }
}

/// Overwrite bytes of a file.
pub fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let mut file = fs::OpenOptions::new().write(true).open(path).expect("open");
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.write_all(bytes).expect("write");
    file.sync_all().expect("sync");
}

/// The 64-bit attribute field of partition `n` as `sgdisk -i N` prints it.
pub fn sgdisk_attributes(path: &Path, n: u32) -> u64 {
    let out = tool("sgdisk", &["-i", &n.to_string(), &path.to_string_lossy()]);
    let line = out
        .lines()
        .find(|line| line.starts_with("Attribute flags:"))
        .unwrap_or_else(|| panic!("no attribute line in sgdisk -i {n}:\n{out}"));
    let hex = line.trim_start_matches("Attribute flags:").trim();
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("bad attribute hex {hex:?}: {e}"))
}

/// `cgpt show -i N -<flag>`, one option per call, as a number.
pub fn cgpt_value(path: &Path, n: u32, flag: &str) -> u64 {
    let out = tool(
        "cgpt",
        &["show", "-i", &n.to_string(), flag, &path.to_string_lossy()],
    );
    let text = out.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|e| panic!("bad cgpt output {text:?} for -{flag}: {e}"))
}

/// The flags of BOOT partition `n` as cgpt reads them.
pub fn cgpt_flags(path: &Path, n: u32) -> BootFlags {
    BootFlags {
        priority: cgpt_value(path, n, "-P") as u8,
        tries_left: cgpt_value(path, n, "-T") as u8,
        successful: cgpt_value(path, n, "-S") == 1,
    }
}

/// `sgdisk -v` output, stdout and stderr together (it reports damaged copies on stderr while
/// still printing "No problems found" on stdout).
fn sgdisk_verify(path: &Path) -> String {
    let output = Process::new("sgdisk")
        .arg("-v")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run sgdisk (install it with scripts/setup): {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `sgdisk -v` finds no problem in either copy.
pub fn assert_sgdisk_clean(path: &Path) {
    assert!(
        !sgdisk_reports_problems(path),
        "sgdisk -v found problems:\n{}",
        sgdisk_verify(path)
    );
}

/// `sgdisk -v` reports a problem.
pub fn sgdisk_reports_problems(path: &Path) -> bool {
    let out = sgdisk_verify(path);
    !out.contains("No problems found")
        || ["ERROR", "Warning", "Caution", "corrupt", "don't match"]
            .iter()
            .any(|word| out.contains(word))
}

/// Check the flags of both sets and bit 57 with sgdisk and cgpt, and that `sgdisk -v` is
/// clean.
pub fn assert_disk(path: &Path, a: (u8, u8, bool), b: (u8, u8, bool), ever: bool) {
    for (n, (priority, tries_left, successful)) in [(BOOT_A, a), (BOOT_B, b)] {
        let expected = BootFlags {
            priority,
            tries_left,
            successful,
        };
        let attributes = sgdisk_attributes(path, n);
        assert_eq!(
            attributes,
            expected.apply_to(0),
            "sgdisk -i {n}: {attributes:016X}"
        );
        assert_eq!(cgpt_flags(path, n), expected, "cgpt show -i {n}");
    }
    let private = sgdisk_attributes(path, PRIVATE);
    assert_eq!(
        private,
        u64::from(ever) << 57,
        "sgdisk -i {PRIVATE}: {private:016X}"
    );
    assert_sgdisk_clean(path);
}
