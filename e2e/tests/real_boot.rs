//! The real-boot test (issue 9; `../shared/reference/testing.md` §8.2): build v1 and v2 of the
//! sample variant with image-builder, sign them into a TUF repository (`pubsys setup` and
//! `pubsys repo`, the second release extending the first), update a v1 disk with `updog`, flip and roll back with `signpost`, and boot the
//! disk under QEMU (TCG) after every step. The guest is the Debian cloud kernel with a busybox
//! initramfs (`scripts/initramfs-init`) that does GRUB's gptprio choice with cgpt and sets up
//! dm-verity from the chosen BOOT partition's grub.cfg; the root's `/sbin/init`
//! (`scripts/guest-init`) reports what booted. Results are judged from the serial markers and
//! from `cgpt show` / `signpost status --json` on the disk file after each boot.
//!
//! Run: `cargo test -p e2e --test real_boot -- --nocapture` (after building the binaries; see
//! `e2e/README.md`). `E2E_KEEP=1` keeps the work folder (disks, serial logs) and prints it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    Bins, Boot, Flags, GuestKernel, Release, Repository, Timings, boot, cgpt_flags,
    cgpt_start_sector, copy_sparse, ensure_host_tools, flags, flip_byte, run, run_any,
    signpost_status, stdout_of,
};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";
/// BOOT partitions of set A and B (ROOT = BOOT + 1, HASH = BOOT + 2).
const BOOT_A: u32 = 3;
const BOOT_B: u32 = 8;

/// The disk under test, the guest kernel, and the boot counter.
struct Machine {
    bins: Bins,
    kernel: GuestKernel,
    disk: PathBuf,
    logs: PathBuf,
    boots: u32,
    timings: Timings,
}

impl Machine {
    /// The flags of both sets, read with cgpt (an independent reader).
    fn assert_flags(&self, step: &str, a: Flags, b: Flags) {
        let got = (
            cgpt_flags(&self.disk, BOOT_A),
            cgpt_flags(&self.disk, BOOT_B),
        );
        assert_eq!(
            got,
            (a, b),
            "{step}: cgpt shows A {} B {}, expected A {a} B {b} (P/T/S)",
            got.0,
            got.1
        );
    }

    /// `signpost --disk DISK --active-set ACTIVE COMMAND`, then the flags it should leave.
    fn signpost(&self, active: &str, command: &str, a: Flags, b: Flags) {
        run(Command::new(&self.bins.signpost)
            .arg("--disk")
            .arg(&self.disk)
            .args(["--active-set", active, command]));
        self.assert_flags(&format!("after signpost {command}"), a, b);
    }

    /// Boot once. Before: signpost must name `set` as the next set (what the initramfs' gptprio
    /// then has to choose). After: the flags are `a` / `b`.
    fn boot(&mut self, label: &str, set: &str, a: Flags, b: Flags) -> Boot {
        self.boots += 1;
        let step = format!("boot {} ({label})", self.boots);
        let status = signpost_status(&self.bins, &self.disk);
        assert_eq!(
            status["next"], set,
            "{step}: signpost says set {} boots next, expected {set}: {status}",
            status["next"]
        );
        let log = self.logs.join(format!("boot{}.log", self.boots));
        let (kernel, disk) = (&self.kernel, &self.disk);
        let boot = self.timings.step(&step, || boot(kernel, disk, &log));
        assert_eq!(
            boot.selected_set(),
            Some(set),
            "{step}: serial log:\n{}",
            boot.tail()
        );
        self.assert_flags(&format!("after {step}"), a, b);
        boot
    }

    /// Boot once and check the guest ran `release` from `set` with its root through
    /// dm-verity on that set's partitions, read-only.
    fn boot_release(&mut self, label: &str, set: &str, release: &Release, a: Flags, b: Flags) {
        let boot = self.boot(label, set, a, b);
        let context = || {
            format!(
                "boot {} ({label}): serial log:\n{}",
                self.boots,
                boot.tail()
            )
        };
        assert_eq!(boot.initramfs_failure(), None, "{}", context());
        assert_eq!(
            boot.version_id(),
            Some(release.version.as_str()),
            "{}",
            context()
        );
        let (boot_part, slaves) = if set == "a" {
            (BOOT_A, ["vda4", "vda5"])
        } else {
            (BOOT_B, ["vda10", "vda9"])
        };
        let table = boot.dm_table().unwrap_or_default();
        let devices = format!(
            "verity 1 /dev/vda{} /dev/vda{} 4096 4096",
            boot_part + 1,
            boot_part + 2
        );
        assert!(
            table.contains(&devices) && table.contains(&release.root_hash()),
            "dm table {table:?} should use {devices:?} and root hash {}\n{}",
            release.root_hash(),
            context()
        );
        assert_eq!(boot.root_slaves(), slaves, "{}", context());
        let mount = boot.root_mount().unwrap_or_default();
        assert!(
            mount.starts_with("/dev/mapper/root ext4 ro,"),
            "/ is {mount:?}, expected /dev/mapper/root mounted ro\n{}",
            context()
        );
        assert_eq!(boot.root_writable(), Some("no"), "{}", context());
        assert!(boot.completed(), "{}", context());
    }
}

#[test]
fn update_fallback_rollback_and_tamper_across_real_boots() {
    ensure_host_tools();
    let bins = Bins::locate();
    let mut tmp = tempfile::Builder::new()
        .prefix("e2e-real-boot-")
        .tempdir()
        .expect("temp dir");
    if std::env::var_os("E2E_KEEP").is_some() {
        tmp.disable_cleanup(true);
        eprintln!("e2e: keeping {}", tmp.path().display());
    }
    let work = tmp.path().to_path_buf();
    let mut t = Timings::new();

    let kernel = t.step("kernel + initramfs", || GuestKernel::prepare(&work));
    let v1 = t.step("build 1.0.0", || Release::build(&bins, &work, V1, &kernel));
    let v2 = t.step("build 2.0.0", || Release::build(&bins, &work, V2, &kernel));
    let repo = t.step("publish the TUF repository", || {
        Repository::publish(&bins, &work, &[&v1, &v2])
    });
    let disk = work.join("disk.img");
    copy_sparse(&v1.raw_disk(), &disk);
    let logs = work.join("serial");
    fs::create_dir_all(&logs).unwrap();
    let mut m = Machine {
        bins: bins.clone(),
        kernel,
        disk: disk.clone(),
        logs,
        boots: 0,
        timings: t,
    };

    // 1. v1 boots from A, root through dm-verity on A's partitions, read-only.
    m.assert_flags("fresh v1 disk", flags(1, 0, 1), flags(0, 0, 0));
    m.boot_release("v1 from A", "a", &v1, flags(1, 0, 1), flags(0, 0, 0));

    // 2. updog writes v2 to B and flips; the next boot runs v2 from B and spends B's try.
    let config = repo.updog_config(&work.join("host"), &v1.os_release());
    let updog = |args: &[&str]| {
        let mut command = Command::new(&bins.updog);
        command
            .arg("--config")
            .arg(&config)
            .arg("--disk")
            .arg(&disk)
            .args(["--active-set", "a"])
            .args(args);
        command
    };
    // Waves: the release starts now and the first wave opens later, so this host waits...
    let waiting = run_any(&mut updog(&["check-update"]));
    assert_eq!(
        (waiting.status.code(), waiting.stdout.is_empty()),
        (Some(0), true),
        "check-update before the host's wave: {waiting:?}"
    );
    // ...unless told not to.
    let available = run_any(&mut updog(&["check-update", "--now"]));
    assert_eq!(
        (
            available.status.code(),
            String::from_utf8_lossy(&available.stdout).trim()
        ),
        (Some(100), "sample 2.0.0"),
        "check-update --now: {available:?}"
    );
    let written = m.timings.step("updog update --now", || {
        stdout_of(&mut updog(&["--json", "update", "--now"]))
    });
    let written: serde_json::Value = serde_json::from_str(&written).expect("update JSON");
    assert_eq!(written["version"], V2, "updog update: {written}");
    m.assert_flags("after updog update", flags(1, 0, 1), flags(2, 1, 0));
    m.boot_release("v2 from B", "b", &v2, flags(1, 0, 1), flags(2, 0, 0));

    // 3. B was never marked successful and has no tries left: the next boot falls back to A.
    m.boot_release("fallback to A", "a", &v1, flags(1, 0, 1), flags(2, 0, 0));

    // Re-arm B from A (one more try), boot it and mark it successful, as its boot service
    // would; it then keeps booting.
    m.signpost("a", "mark-inactive-valid", flags(1, 0, 1), flags(2, 1, 0));
    m.boot_release("re-armed B", "b", &v2, flags(1, 0, 1), flags(2, 0, 0));
    m.signpost("b", "mark-successful-boot", flags(1, 0, 1), flags(2, 0, 1));
    assert_eq!(
        signpost_status(&bins, &disk)["boot_ever_succeeded"],
        true,
        "PRIVATE bit 57 after mark-successful-boot"
    );
    m.boot_release("B, successful", "b", &v2, flags(1, 0, 1), flags(2, 0, 1));

    // 4. rollback-to-inactive on B brings back v1 on A.
    m.signpost("b", "rollback-to-inactive", flags(2, 0, 1), flags(1, 0, 1));
    m.boot_release("rollback to A", "a", &v1, flags(2, 0, 1), flags(1, 0, 1));

    // 5. One flipped byte in the active root (A: the first block of /sbin/init) is caught by
    //    dm-verity when the init is read: the kernel logs it and restarts; QEMU exits.
    let root_image = work.join("root-1.0.0.ext4");
    let decompressed = run(Command::new("lz4").args(["-dcq"]).arg(v1.artifact("root")));
    fs::write(&root_image, &decompressed.stdout).unwrap();
    let block: u64 = stdout_of(
        Command::new("debugfs")
            .args(["-R", "bmap /sbin/init 0"])
            .arg(&root_image),
    )
    .parse()
    .expect("debugfs bmap prints a block number");
    let offset = cgpt_start_sector(&disk, BOOT_A + 1) * 512 + block * 4096 + 2;
    let (old, new) = flip_byte(&disk, offset);
    eprintln!(
        "e2e: flipped the byte at {offset} (ROOT-A block {block}) from {old:#04x} to {new:#04x}"
    );
    let b = m.boot("tampered A", "a", flags(2, 0, 1), flags(1, 0, 1));
    let context = format!("boot 7 (tampered root): serial log:\n{}", b.tail());
    assert!(
        b.log.lines().any(|line| line.contains("verity")
            && line.contains(&format!("data block {block} is corrupted"))),
        "dm-verity did not report block {block}: {context}"
    );
    assert!(
        b.log.contains("dm-verity device corrupted"),
        "no restart on corruption: {context}"
    );
    assert!(
        !b.log.contains("E2E-INIT: booted"),
        "the tampered root ran its init: {context}"
    );

    eprintln!("e2e: timings\n{}", m.timings.summary());
}
