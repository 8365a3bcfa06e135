//! The real-boot test (`../shared/reference/testing.md` §8): disks built by image-builder boot
//! by themselves under real firmware (OVMF and SeaBIOS) through our GRUB and its
//! `gptprio.next`, and the running host updates itself with its own `updog` and `signpost`.
//!
//! 1. GRUB's choice agrees with `signpost select-boot` on a matrix of flag states (set with
//!    `cgpt`), and the try GRUB spends is the one signpost spends (read back with `cgpt`).
//! 2. In the guest: v1 from A → `updog check-update` → `updog update --now --reboot` against
//!    the repository served over HTTP on 127.0.0.1 (reached only through QEMU's user network
//!    with `restrict=on`) → real reboot → GRUB picks B → v2 marks itself successful → the next
//!    boot stays on v2.
//! 3. `signpost rollback-to-inactive` in the guest, reboot → the other version runs (both ways).
//! 4. Automatic fallback: v3 (whose init exits before the boot is marked successful) is
//!    published; the guest updates to it and reboots; v3 fails; GRUB's spent try brings v2 back.
//! 5. The same disk under SeaBIOS: boots, and boots the other set after a flip.
//! 6. One flipped byte in the active root: dm-verity stops the boot.
//!
//! After every step the flags are read from the disk file with `cgpt` and `sgdisk -v` checks
//! both GPT copies. Run: `cargo test -p e2e --test real_boot -- --nocapture`; `E2E_KEEP=1`
//! keeps the work folder (disks, serial logs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::vm::{Firmware, Vm, VmConfig, vm_config};
use common::{
    Bins, Flags, Health, HttpServer, Keys, Release, Repository, Timings, bootloader_dir,
    cgpt_flags, cgpt_start_sector, copy_sparse, ensure_host_tools, flags, flip_byte, kernel_dir,
    run, run_any, stdout_of,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";
const V3: &str = "3.0.0";
/// BOOT partitions of set A and B (ROOT = BOOT + 1, HASH = BOOT + 2).
const BOOT_A: u32 = 3;
const BOOT_B: u32 = 8;
/// From power-on (or reset) to the host's `HOST: ready` under TCG, with margin for a loaded
/// machine.
const BOOT: Duration = Duration::from_secs(180);
/// An update inside the guest (download, write, flip) up to the reboot's GRUB line.
const UPDATE: Duration = Duration::from_secs(420);

fn boot_part(set: &str) -> u32 {
    if set == "a" { BOOT_A } else { BOOT_B }
}

/// `sgdisk -v` must find no problems (both headers, both entry arrays, CRCs).
fn assert_sgdisk_ok(disk: &Path, step: &str) {
    let out = run_any(Command::new("sgdisk").arg("-v").arg(disk));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("No problems found"),
        "{step}: sgdisk -v {}:\n{text}{}",
        disk.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The flags of both sets, read with cgpt, and sgdisk's verdict on the table.
fn assert_disk(disk: &Path, step: &str, a: Flags, b: Flags) {
    let got = (cgpt_flags(disk, BOOT_A), cgpt_flags(disk, BOOT_B));
    assert_eq!(
        got,
        (a, b),
        "{step}: cgpt shows A {} B {}, expected A {a} B {b} (P/T/S)",
        got.0,
        got.1
    );
    assert_sgdisk_ok(disk, step);
}

/// Set both sets' flags with cgpt (an independent writer).
fn cgpt_set(disk: &Path, a: Flags, b: Flags) {
    for (part, f) in [(BOOT_A, a), (BOOT_B, b)] {
        run(Command::new("cgpt")
            .args(["add", "-i", &part.to_string()])
            .args(["-P", &f.priority.to_string(), "-T", &f.tries.to_string()])
            .args(["-S", if f.successful { "1" } else { "0" }])
            .arg(disk));
    }
}

/// The set GRUB chose, from its `gptprio: chose hd0,gptN (...)` line.
fn chosen_set(line: &str) -> &'static str {
    if line.contains(&format!(",gpt{BOOT_A} ")) {
        "a"
    } else if line.contains(&format!(",gpt{BOOT_B} ")) {
        "b"
    } else {
        panic!("GRUB chose neither BOOT partition: {line}")
    }
}

/// What a boot should bring: `version` from `set`, and then the flags `a` / `b` on the disk.
struct Then {
    set: &'static str,
    version: &'static str,
    a: Flags,
    b: Flags,
}

fn then(set: &'static str, version: &'static str, a: Flags, b: Flags) -> Then {
    Then { set, version, a, b }
}

/// A running host and what the test expects of it.
struct Host<'a> {
    vm: Vm,
    disk: PathBuf,
    releases: &'a [&'a Release],
    boots: u32,
}

impl Host<'_> {
    fn release(&self, version: &str) -> &Release {
        self.releases
            .iter()
            .find(|r| r.version == version)
            .expect("known release")
    }

    /// Wait for GRUB's choice and the host's `HOST: ready`; check that `version` runs from
    /// `set` with its root through dm-verity on that set's partitions, read-only, and that it
    /// marked its boot successful. The console since the last mark is searched.
    fn expect_ready(&mut self, set: &str, version: &str) -> String {
        self.expect_ready_within(BOOT, set, version)
    }

    /// [`Host::expect_ready`], allowing `first` for GRUB's line (an update comes before it).
    /// Returns GRUB's line.
    fn expect_ready_within(&mut self, first: Duration, set: &str, version: &str) -> String {
        self.boots += 1;
        let what = format!("boot {} (expecting {version} from set {set})", self.boots);
        let line = self.vm.expect("gptprio: chose", first, &what);
        assert_eq!(chosen_set(&line), set, "{what}: {line}\n{}", self.vm.tail());
        // The embedded config then finds PRIVATE by its GPT name (for ($private)/bootconfig.data).
        let private = self
            .vm
            .expect("gptprio: found BOTTLEROCKET-PRIVATE", BOOT, &what);
        assert!(private.ends_with(" at hd0,gpt12"), "{what}: {private}");
        self.vm.expect("HOST: ready", BOOT, &what);
        let lines = self.vm.since_mark().to_vec();
        let find = |prefix: &str| -> String {
            lines
                .iter()
                .rev()
                .find_map(|l| {
                    l.find(prefix)
                        .map(|at| l[at + prefix.len()..].trim().to_owned())
                })
                .unwrap_or_else(|| panic!("{what}: no `{prefix}` line\n{}", self.vm.tail()))
        };
        assert_eq!(find("VERSION_ID="), version, "{what}\n{}", self.vm.tail());
        let n = boot_part(set);
        let table = find("INITRAMFS: dm table: ");
        let devices = format!("verity 1 /dev/vda{} /dev/vda{} 4096 4096", n + 1, n + 2);
        let root_hash = self.release(version).root_hash();
        assert!(
            table.contains(&devices) && table.contains(&root_hash),
            "{what}: dm table {table:?} should use {devices:?} and root hash {root_hash}\n{}",
            self.vm.tail()
        );
        let mut slaves: Vec<String> = find("HOST: root on:")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        slaves.sort();
        let mut expected = vec![format!("vda{}", n + 1), format!("vda{}", n + 2)];
        expected.sort();
        assert_eq!(slaves, expected, "{what}\n{}", self.vm.tail());
        let mount = find("HOST: root: ");
        assert!(
            mount.starts_with("/dev/mapper/root ext4 ro,"),
            "{what}: / is {mount:?}\n{}",
            self.vm.tail()
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("HOST: boot marked successful")),
            "{what}: the boot was not marked successful\n{}",
            self.vm.tail()
        );
        eprintln!("e2e: {what}: ok");
        line
    }

    /// Type a command that reboots the host; what follows is searched from here.
    fn reboot_with(&mut self, command: &str) {
        self.vm.mark();
        self.vm.type_line(command);
    }

    fn check(&self, step: &str, a: Flags, b: Flags) {
        assert_disk(&self.disk, step, a, b);
    }

    /// One timed step: type `command` (which reboots), then expect what `then` says.
    fn reboot_into(&mut self, t: &mut Timings, label: &str, command: &str, then: Then) {
        t.step(label, || {
            self.reboot_with(command);
            self.expect_ready(then.set, then.version);
        });
        self.check(label, then.a, then.b);
    }
}

/// Step 1: for each flag state, GRUB's choice (booted for real, stopped after the choice) and
/// the try it spent must match what `signpost select-boot` does to a copy of the same disk.
fn gptprio_matrix(work: &Path, base_disk: &Path, logs: &Path) {
    let disk = work.join("matrix.img");
    let copy = work.join("matrix-signpost.img");
    copy_sparse(base_disk, &disk);
    let bins = Bins::locate();
    // (A, B) before; every case of signpost's next(): a plain choice, a staged update, a
    // fallback, ties (both tries, tries vs successful), successful at priority 0 on either
    // side, zero priority with tries, nothing bootable, high values.
    let cases = [
        (flags(1, 0, 1), flags(0, 0, 0)),
        (flags(1, 0, 1), flags(2, 1, 0)),
        (flags(2, 0, 0), flags(1, 0, 1)),
        (flags(2, 1, 0), flags(2, 1, 0)),
        (flags(1, 0, 1), flags(1, 1, 0)),
        (flags(0, 0, 1), flags(0, 0, 0)),
        (flags(0, 0, 0), flags(0, 0, 1)),
        (flags(0, 3, 0), flags(0, 0, 0)),
        (flags(0, 0, 0), flags(0, 0, 0)),
        (flags(3, 15, 0), flags(5, 2, 0)),
    ];
    for (i, (a, b)) in cases.into_iter().enumerate() {
        let case = format!("gptprio case {} (A {a}, B {b})", i + 1);
        cgpt_set(&disk, a, b);
        copy_sparse(&disk, &copy);
        let selected = run_any(Command::new(&bins.signpost).arg("--disk").arg(&copy).args([
            "--active-set",
            "a",
            "--json",
            "select-boot",
        ]));
        let expected: Option<String> = selected.status.success().then(|| {
            let json: serde_json::Value = serde_json::from_slice(&selected.stdout).unwrap();
            json["selected"].as_str().unwrap().to_owned()
        });
        let mut vm = uefi_once(&disk, &logs.join(format!("matrix-{}.log", i + 1)));
        let (which, line) = vm.expect_any(
            &["gptprio: chose", "no bootable BOOT partition"],
            BOOT,
            &case,
        );
        let grub = (which == 0).then(|| chosen_set(&line).to_owned());
        if grub.is_none() {
            vm.expect("GRUB: boot failed", BOOT, &case);
        }
        vm.kill();
        assert_eq!(
            grub, expected,
            "{case}: GRUB chose {grub:?}, signpost {expected:?}"
        );
        let after = (cgpt_flags(&disk, BOOT_A), cgpt_flags(&disk, BOOT_B));
        let want = (cgpt_flags(&copy, BOOT_A), cgpt_flags(&copy, BOOT_B));
        assert_eq!(
            after, want,
            "{case}: flags after GRUB {after:?}, after signpost select-boot {want:?}"
        );
        assert_sgdisk_ok(&disk, &case);
        eprintln!(
            "e2e: {case}: both chose {grub:?}; flags after A {} B {}",
            after.0, after.1
        );
    }

    // A damaged copy of the table (primary, then backup): GRUB reads the good one, spends the
    // try and writes both back valid, as signpost does.
    let last_sector = fs::metadata(&disk).unwrap().len() - 512;
    for (label, offset, damaged) in [
        ("primary", 512 + 8, (false, true)),
        ("backup", last_sector + 8, (true, false)),
    ] {
        let case = format!("gptprio with a damaged {label} header");
        cgpt_set(&disk, flags(1, 0, 1), flags(2, 1, 0));
        flip_byte(&disk, offset);
        assert_eq!(gpt_copies_valid(&disk), damaged, "{case}: before the boot");
        let mut vm = uefi_once(&disk, &logs.join(format!("matrix-{label}.log")));
        let line = vm.expect("gptprio: chose", BOOT, &case);
        vm.kill();
        assert_eq!(chosen_set(&line), "b", "{case}: {line}");
        assert_eq!(
            gpt_copies_valid(&disk),
            (true, true),
            "{case}: both copies after GRUB's write"
        );
        assert_disk(&disk, &case, flags(1, 0, 1), flags(2, 0, 0));
        eprintln!("e2e: {case}: repaired, B's try spent");
    }
}

/// A UEFI machine with nothing but the disk, whose first reboot ends QEMU.
fn uefi_once(disk: &Path, log: &Path) -> Vm {
    Vm::start(&VmConfig {
        no_reboot: true,
        ..vm_config(Firmware::Uefi, disk, None, log)
    })
}

/// CRC-32 (IEEE), as GPT uses; for checking both copies independently of the tools.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                0xedb8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Whether the primary and the backup GPT (512-byte sectors) are each intact: signature,
/// header CRC, entry-array CRC.
fn gpt_copies_valid(disk: &Path) -> (bool, bool) {
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(disk).unwrap();
    let last = file.metadata().unwrap().len() / 512 - 1;
    let valid = |lba: u64| {
        let mut header = [0u8; 512];
        file.read_exact_at(&mut header, lba * 512).unwrap();
        let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap());
        let size = u32_at(12) as usize;
        if &header[..8] != b"EFI PART" || !(92..=512).contains(&size) {
            return false;
        }
        let stored = u32_at(16);
        let mut copy = header;
        copy[16..20].fill(0);
        let entries_lba = u64::from_le_bytes(header[72..80].try_into().unwrap());
        let mut entries = vec![0u8; (u32_at(80) * u32_at(84)) as usize];
        file.read_exact_at(&mut entries, entries_lba * 512).unwrap();
        crc32(&copy[..size]) == stored && crc32(&entries) == u32_at(88)
    };
    (valid(1), valid(last))
}

/// The image as built: GPT valid, GRUB installed the reference way.
fn check_installed_bootloader(disk: &Path) {
    assert_sgdisk_ok(disk, "the built disk");
    let mut mbr = [0u8; 512];
    {
        use std::os::unix::fs::FileExt;
        fs::File::open(disk)
            .unwrap()
            .read_exact_at(&mut mbr, 0)
            .unwrap();
    }
    let bios_start = cgpt_start_sector(disk, 1);
    assert_eq!(
        u64::from_le_bytes(mbr[0x5c..0x64].try_into().unwrap()),
        bios_start,
        "the MBR boot code must load the core image from BIOS-BOOT"
    );
    assert_eq!(&mbr[0x1fe..], &[0x55, 0xaa]);
    let efi_offset = cgpt_start_sector(disk, 2) * 512;
    let listing = stdout_of(
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@{efi_offset}", disk.display()))
            .arg("::/EFI/BOOT"),
    );
    assert!(
        listing.contains("BOOTX64  EFI"),
        "EFI-SYSTEM holds:\n{listing}"
    );
}

#[test]
fn hosts_boot_through_our_grub_and_update_themselves() {
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
    let logs = work.join("serial");
    fs::create_dir_all(&logs).unwrap();
    let mut t = Timings::new();

    let bootloader = t.step("our GRUB (bootloader/build, cached)", bootloader_dir);
    let kernel = t.step("kernel (fetch-kernel, cached)", kernel_dir);
    let keys = t.step("pubsys setup", || Keys::create(&bins, &work));
    let build = |version, health| {
        Release::build(&bins, &work, version, health, &kernel, &bootloader, &keys)
    };
    let v1 = t.step("build 1.0.0", || build(V1, Health::Good));
    let v2 = t.step("build 2.0.0", || build(V2, Health::Good));
    let v3 = t.step("build 3.0.0 (broken on purpose)", || {
        build(V3, Health::Broken)
    });
    let mut repo = Repository::new(&work, &keys);
    t.step("pubsys repo 1.0.0 + 2.0.0", || {
        repo.publish(&bins, &v1);
        repo.publish(&bins, &v2);
    });
    let server = HttpServer::start(&repo.published, &work.join("http.log"));
    check_installed_bootloader(&v1.raw_disk());

    // 1. GRUB against signpost, flag state by flag state.
    t.step("gptprio matrix (UEFI, 12 boots to GRUB's choice)", || {
        gptprio_matrix(&work, &v1.raw_disk(), &logs)
    });

    // 2. The host updates itself and reboots into v2.
    let disk = work.join("host.img");
    copy_sparse(&v1.raw_disk(), &disk);
    assert_disk(&disk, "fresh v1 disk", flags(1, 0, 1), flags(0, 0, 0));
    let releases = [&v1, &v2, &v3];
    let mut host = Host {
        vm: Vm::start(&vm_config(
            Firmware::Uefi,
            &disk,
            Some(server.port),
            &logs.join("host-uefi.log"),
        )),
        disk: disk.clone(),
        releases: &releases,
        boots: 0,
    };
    t.step("UEFI boot: v1 from A", || host.expect_ready("a", V1));
    host.check("v1 booted", flags(1, 0, 1), flags(0, 0, 0));
    // The release started now and the first wave opens later: this host waits...
    let (rc, _) = host.vm.run("updog check-update", BOOT);
    assert_eq!(
        rc,
        0,
        "check-update before the host's wave\n{}",
        host.vm.tail()
    );
    // ...unless told not to.
    let (rc, out) = host.vm.run("updog check-update --now", BOOT);
    assert!(
        rc == 100 && out.iter().any(|l| l.trim() == "sample 2.0.0"),
        "check-update --now: rc {rc}\n{}",
        host.vm.tail()
    );
    let chose = t.step("in-guest updog update --now --reboot → v2 from B", || {
        host.reboot_with("updog update --now --reboot");
        host.expect_ready_within(UPDATE, "b", V2)
    });
    assert!(
        chose.contains("spent one"),
        "GRUB must spend B's try: {chose}"
    );
    // The running host updated itself by the delta path (pubsys published the index and the
    // store beside the full images): every image, and what it fetched.
    let written = host
        .vm
        .transcript
        .iter()
        .rfind(|l| l.contains("update written") && l.contains("version=2.0.0"))
        .unwrap_or_else(|| panic!("no `update written` line for 2.0.0\n{}", host.vm.tail()));
    println!("in-guest update v1 -> v2: {}", written.trim());
    assert!(written.contains("images_by_delta=3"), "{written}");
    host.check(
        "v2 booted and marked itself successful",
        flags(1, 0, 1),
        flags(2, 0, 1),
    );
    host.reboot_into(
        &mut t,
        "reboot: stays on v2",
        "reboot -f",
        then("b", V2, flags(1, 0, 1), flags(2, 0, 1)),
    );

    // 3. Rollback inside the guest, both ways.
    let rollback = "signpost rollback-to-inactive && reboot -f";
    host.reboot_into(
        &mut t,
        "signpost rollback-to-inactive → v1 from A",
        rollback,
        then("a", V1, flags(2, 0, 1), flags(1, 0, 1)),
    );
    host.reboot_into(
        &mut t,
        "signpost rollback-to-inactive → v2 from B",
        rollback,
        then("b", V2, flags(1, 0, 1), flags(2, 0, 1)),
    );
    // This disk, v1 on A and v2 on B, is also the one booted under SeaBIOS below.
    let bios_disk = work.join("bios.img");
    copy_sparse(&disk, &bios_disk);

    // 4. A broken v3: the host updates, v3 fails before marking its boot, GRUB falls back.
    t.step("pubsys repo 3.0.0", || repo.publish(&bins, &v3));
    let (rc, out) = host.vm.run("updog check-update --now", BOOT);
    assert!(
        rc == 100 && out.iter().any(|l| l.trim() == "sample 3.0.0"),
        "check-update --now for v3: rc {rc}\n{}",
        host.vm.tail()
    );
    t.step(
        "in-guest update to v3 → v3 fails → GRUB falls back to v2",
        || {
            host.reboot_with("updog update --now --reboot");
            let line = host
                .vm
                .expect("gptprio: chose", UPDATE, "the update to v3 and its reboot");
            assert_eq!(chosen_set(&line), "a", "v3 is on A: {line}");
            host.vm
                .expect("this release is broken on purpose", BOOT, "v3's boot");
            host.vm.expect("Kernel panic", BOOT, "v3's init exiting");
            host.vm.mark();
            host.expect_ready("b", V2);
        },
    );
    host.check("fell back to v2", flags(2, 0, 0), flags(1, 0, 1));
    let _ = host.vm.kill();

    // 5. SeaBIOS: the same kind of disk boots, and boots the other set after a flip.
    let mut bios = Host {
        vm: Vm::start(&vm_config(
            Firmware::Bios,
            &bios_disk,
            None,
            &logs.join("host-bios.log"),
        )),
        disk: bios_disk.clone(),
        releases: &releases,
        boots: 0,
    };
    t.step("BIOS boot: v2 from B", || {
        bios.vm
            .expect("GRUB: i386-pc", BOOT, "SeaBIOS → our core image");
        bios.expect_ready("b", V2);
    });
    bios.check("BIOS, v2", flags(1, 0, 1), flags(2, 0, 1));
    bios.reboot_into(
        &mut t,
        "BIOS: rollback-to-inactive → v1 from A",
        rollback,
        then("a", V1, flags(2, 0, 1), flags(1, 0, 1)),
    );
    let _ = bios.vm.kill();

    // 6. One flipped byte in the active root (B, v2: the first block of /sbin/init) is caught
    //    by dm-verity when init is read: the kernel logs it and restarts.
    let root_image = work.join("root-2.0.0.ext4");
    let decompressed = run(Command::new("lz4").args(["-dcq"]).arg(v2.artifact("root")));
    fs::write(&root_image, &decompressed.stdout).unwrap();
    let block: u64 = stdout_of(
        Command::new("debugfs")
            .args(["-R", "bmap /sbin/init 0"])
            .arg(&root_image),
    )
    .parse()
    .expect("debugfs bmap prints a block number");
    let offset = cgpt_start_sector(&disk, BOOT_B + 1) * 512 + block * 4096 + 2;
    let (old, new) = flip_byte(&disk, offset);
    eprintln!(
        "e2e: flipped the byte at {offset} (ROOT-B block {block}) from {old:#04x} to {new:#04x}"
    );
    t.step("tampered root: dm-verity stops the boot", || {
        let mut vm = uefi_once(&disk, &logs.join("tampered.log"));
        let line = vm.expect("gptprio: chose", BOOT, "tampered boot");
        assert_eq!(chosen_set(&line), "b");
        let corrupted = format!("data block {block} is corrupted");
        vm.expect(&corrupted, BOOT, "dm-verity on the tampered block");
        vm.wait_exit(BOOT, "the restart on corruption");
        let transcript = vm.kill();
        assert!(
            !transcript.iter().any(|l| l.contains("HOST: booted")),
            "the tampered root ran its init"
        );
    });
    assert_disk(
        &disk,
        "after the tampered boot",
        flags(2, 0, 0),
        flags(1, 0, 1),
    );
    drop(server);
    eprintln!("e2e: timings\n{}", t.summary());
}
