//! End-to-end builds through the CLI, checked with independent tools: `veritysetup`, `sgdisk`,
//! `e2fsck`, `fsck.erofs`, `debugfs` and `lz4` (installed by `scripts/setup`; a missing tool
//! fails the test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

const MIB: u64 = 1024 * 1024;
const EPOCH: &str = "1700000000";

/// Deterministic bytes that do not compress to nothing.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state & 0xff) as u8
        })
        .collect()
}

/// A small root tree with a fake kernel under boot/.
fn make_root(dir: &Path, kernel_bytes: usize) -> PathBuf {
    let root = dir.join("root");
    for sub in [
        "bin",
        "etc",
        "usr/lib",
        "boot",
        "var/lib/a/b",
        "proc",
        "sys",
        "dev",
    ] {
        fs::create_dir_all(root.join(sub)).unwrap();
    }
    fs::write(root.join("bin/tool"), noise(300_000, 1)).unwrap();
    fs::write(root.join("var/lib/a/b/data"), "hello\n".repeat(1000)).unwrap();
    let release = "NAME=Bottlerocket\nID=bottlerocket\nPRETTY_NAME=\"Bottlerocket OS 1.0.0 (test)\"\nVERSION_ID=1.0.0\nVARIANT_ID=test\n";
    fs::write(root.join("usr/lib/os-release"), release).unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
    fs::write(root.join("boot/vmlinuz"), noise(kernel_bytes, 2)).unwrap();
    fs::write(root.join("boot/config"), "CONFIG_DM_VERITY=y\n").unwrap();
    root
}

/// Our GRUB build (`bootloader/build`: cached by the hash of its inputs, built when missing;
/// concurrent callers wait for one build).
fn bootloader_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bootloader/build");
        let output = std::process::Command::new(&script).output().unwrap();
        assert!(
            output.status.success(),
            "bootloader/build failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
    })
}

fn image_builder(root: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut command = Command::cargo_bin("image-builder").unwrap();
    command
        .args(["build", "--json", "--variant", "test", "--arch", "x86_64"])
        .args(["--version", "1.0.0", "--build-id", "abc123"])
        .arg("--root-dir")
        .arg(root)
        .arg("--out-dir")
        .arg(out)
        .args(extra)
        .env_remove("SOURCE_DATE_EPOCH");
    if !extra.contains(&"--bootloader") {
        command.arg("--bootloader").arg(bootloader_dir());
    }
    command.output().unwrap()
}

fn build_ok(root: &Path, out: &Path, extra: &[&str]) -> Value {
    let output = image_builder(root, out, extra);
    assert!(
        output.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Run a tool that must exist; returns (success, stdout + stderr).
fn tool(program: &str, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is not installed (run scripts/setup): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn tool_ok(program: &str, args: &[&str]) -> String {
    let (ok, text) = tool(program, args);
    assert!(ok, "{program} {args:?} failed:\n{text}");
    text
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The artifact of `kind` from the report: (path, entry).
fn artifact(report: &Value, kind: &str) -> (PathBuf, Value) {
    let entry = report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} artifact"))
        .clone();
    let dir = PathBuf::from(report["output_dir"].as_str().unwrap());
    (dir.join(entry["file_name"].as_str().unwrap()), entry)
}

/// `lz4 -t`, then `lz4 -d` into `scratch`; returns the decompressed bytes.
fn decompress(path: &Path, scratch: &Path) -> Vec<u8> {
    tool_ok("lz4", &["-t", path_str(path)]);
    let out = scratch.join(format!(
        "{}.raw",
        path.file_name().unwrap().to_str().unwrap()
    ));
    tool_ok("lz4", &["-d", "-f", "-q", path_str(path), path_str(&out)]);
    let bytes = fs::read(&out).unwrap();
    fs::remove_file(&out).unwrap();
    bytes
}

fn partition<'a>(disk: &'a [u8], report: &Value, name: &str) -> &'a [u8] {
    let p = report["layout"]["os_disk"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap();
    let start = (p["start_mib"].as_u64().unwrap() * MIB) as usize;
    let size = (p["size_mib"].as_u64().unwrap() * MIB) as usize;
    &disk[start..start + size]
}

fn write(scratch: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// Write `disk` to `scratch/name` and check it with `sgdisk -v`.
fn sgdisk_verified(scratch: &Path, name: &str, disk: &[u8]) -> PathBuf {
    let path = write(scratch, name, disk);
    let verify = tool_ok("sgdisk", &["-v", path_str(&path)]);
    assert!(verify.contains("No problems found"), "{verify}");
    path
}

/// `sgdisk -i number` must mention every one of `needles`.
fn sgdisk_info(disk: &Path, number: &str, needles: &[&str]) {
    let info = tool_ok("sgdisk", &["-i", number, path_str(disk)]);
    for needle in needles {
        assert!(info.contains(needle), "{needle:?} not in:\n{info}");
    }
}

/// `veritysetup verify` accepts `data` with the tree `hash` under `root_hash`.
fn verity_ok(data: &Path, hash: &Path, root_hash: &str) {
    tool_ok(
        "veritysetup",
        &["verify", path_str(data), path_str(hash), root_hash],
    );
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
        .trim()
}

#[test]
fn split_build_passes_every_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), 2 * MIB as usize);
    let out = dir.path().join("out");
    let report = build_ok(
        &root,
        &out,
        &[
            "--os-image-size-gib",
            "1",
            "--source-date-epoch",
            EPOCH,
            "--kernel-param",
            "console=ttyS0",
        ],
    );
    let scratch = dir.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    let out_dir = out.join("1.0.0-abc123");
    assert_eq!(report["output_dir"].as_str().unwrap(), path_str(&out_dir));
    let prefix = "bottlerocket-test-x86_64-1.0.0-abc123";
    for suffix in [
        ".img.lz4",
        "-data.img.lz4",
        "-boot.ext4.lz4",
        "-root.ext4.lz4",
        "-root.verity.lz4",
    ] {
        assert!(
            out_dir.join(format!("{prefix}{suffix}")).is_file(),
            "{suffix}"
        );
        let link = out_dir.join(format!("bottlerocket-test-x86_64-v1.0.0{suffix}"));
        assert_eq!(
            fs::read_link(&link).unwrap().to_str().unwrap(),
            format!("{prefix}{suffix}")
        );
    }
    // Only the final directory is left in the output directory.
    let names: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["1.0.0-abc123"]);

    // Artifact sizes and digests in the report match the files.
    for entry in report["artifacts"].as_array().unwrap() {
        let path = out_dir.join(entry["file_name"].as_str().unwrap());
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, entry["size"].as_u64().unwrap());
        let digest = tool_ok("sha256sum", &[path_str(&path)]);
        assert_eq!(&digest[..64], entry["sha256"].as_str().unwrap());
    }

    let (disk_path, _) = artifact(&report, "os-image");
    let disk = decompress(&disk_path, &scratch);
    assert_eq!(disk.len() as u64, 1024 * MIB);
    let (boot_path, boot_entry) = artifact(&report, "boot");
    let (root_path, root_entry) = artifact(&report, "root");
    let (hash_path, _) = artifact(&report, "hash");
    let boot = decompress(&boot_path, &scratch);
    let root_img = decompress(&root_path, &scratch);
    let hash = decompress(&hash_path, &scratch);
    assert_eq!(
        boot.len() as u64,
        boot_entry["uncompressed_size"].as_u64().unwrap()
    );
    assert_eq!(
        root_img.len() as u64,
        root_entry["uncompressed_size"].as_u64().unwrap()
    );

    // The update artifacts are exactly what the disk holds in bank A.
    let boot_a = partition(&disk, &report, "BOTTLEROCKET-BOOT-A");
    let root_a = partition(&disk, &report, "BOTTLEROCKET-ROOT-A");
    let hash_a = partition(&disk, &report, "BOTTLEROCKET-HASH-A");
    assert_eq!(&boot_a[..boot.len()], &boot[..]);
    assert!(boot_a[boot.len()..].iter().all(|&b| b == 0));
    assert_eq!(&root_a[..root_img.len()], &root_img[..]);
    assert_eq!(hash_a, &hash[..]);
    assert!(
        partition(&disk, &report, "BOTTLEROCKET-ROOT-B")
            .iter()
            .all(|&b| b == 0)
    );

    // dm-verity: veritysetup accepts the tree and reads the same parameters.
    let root_file = write(&scratch, "root.ext4", &root_img);
    let hash_file = write(&scratch, "root.verity", &hash);
    let verity = &report["verity"];
    let root_hash = verity["root_hash"].as_str().unwrap();
    verity_ok(&root_file, &hash_file, root_hash);
    let dump = tool_ok("veritysetup", &["dump", path_str(&hash_file)]);
    assert_eq!(field(&dump, "Hash type:"), "1");
    assert_eq!(
        field(&dump, "Data blocks:"),
        verity["data_blocks"].as_u64().unwrap().to_string()
    );
    assert_eq!(field(&dump, "Data block size:"), "4096");
    assert_eq!(field(&dump, "Hash block size:"), "4096");
    assert_eq!(field(&dump, "Hash algorithm:"), "sha256");
    assert_eq!(field(&dump, "Salt:"), verity["salt"].as_str().unwrap());
    assert_eq!(field(&dump, "UUID:"), verity["uuid"].as_str().unwrap());
    assert_eq!(
        verity["data_blocks"].as_u64().unwrap() * 4096,
        root_img.len() as u64
    );
    // A wrong root hash is rejected (the oracle can fail).
    let wrong = format!("{}0", &root_hash[..63]);
    let wrong = if wrong == root_hash {
        format!("{}1", &root_hash[..63])
    } else {
        wrong
    };
    assert!(
        !tool(
            "veritysetup",
            &["verify", path_str(&root_file), path_str(&hash_file), &wrong]
        )
        .0
    );

    // Filesystems.
    tool_ok("e2fsck", &["-fn", path_str(&root_file)]);
    let boot_file = write(&scratch, "boot.ext4", &boot);
    tool_ok("e2fsck", &["-fn", path_str(&boot_file)]);
    let private_file = write(
        &scratch,
        "private.ext4",
        partition(&disk, &report, "BOTTLEROCKET-PRIVATE"),
    );
    tool_ok("e2fsck", &["-fn", path_str(&private_file)]);
    let data_a = write(&scratch, "data-a.ext4", partition(&disk, &report, ""));
    tool_ok("e2fsck", &["-fn", path_str(&data_a)]);
    let root_boot = tool_ok("debugfs", &["-R", "ls -p /boot", path_str(&root_file)]);
    assert!(
        !root_boot.contains("vmlinuz"),
        "/boot was not emptied:\n{root_boot}"
    );
    let tool_size = tool_ok("debugfs", &["-R", "stat /bin/tool", path_str(&root_file)]);
    assert!(tool_size.contains("Size: 300000"), "{tool_size}");
    assert!(
        tool_size.contains("mtime: 0x6553f100"),
        "mtime not fixed:\n{tool_size}"
    );
    let grub = tool_ok(
        "debugfs",
        &["-R", "cat /grub/grub.cfg", path_str(&boot_file)],
    );
    let expected_table = format!(
        "set dm_verity_root=\"root,,,ro,0 {} verity 1 PARTUUID=$boot_uuid/PARTNROFF=1 PARTUUID=$boot_uuid/PARTNROFF=2 4096 4096 {} 1 sha256 {} {} 2 restart_on_corruption ignore_zero_blocks\"",
        verity["data_blocks"].as_u64().unwrap() * 8,
        verity["data_blocks"],
        root_hash,
        verity["salt"].as_str().unwrap()
    );
    assert!(grub.contains(&expected_table), "{grub}");
    assert!(grub.contains("menuentry \"Bottlerocket OS 1.0.0 (test) 1.0.0\" --unrestricted {"));
    assert!(grub.contains("linux ($root)/vmlinuz console=ttyS0 root=/dev/dm-0 rootwait ro"));
    let kernel = tool_ok("debugfs", &["-R", "stat /vmlinuz", path_str(&boot_file)]);
    assert!(kernel.contains(&format!("Size: {}", 2 * MIB)), "{kernel}");
    assert!(
        kernel.contains("Mode:  0600") || kernel.contains("Mode:  0700"),
        "{kernel}"
    );
    let bootconfig = scratch.join("bootconfig.data");
    tool_ok(
        "debugfs",
        &[
            "-R",
            &format!("dump /bootconfig.data {}", path_str(&bootconfig)),
            path_str(&private_file),
        ],
    );
    let bootconfig = fs::read(&bootconfig).unwrap();
    assert!(bootconfig.starts_with(b"kernel {}\ninit {}\n\0"));
    assert!(bootconfig.ends_with(b"#BOOTCONFIG\n"));

    // GPT: sgdisk finds no problem, and the bits and GUIDs are the reference ones.
    let disk_file = sgdisk_verified(&scratch, "disk.img", &disk);
    drop(disk);
    sgdisk_info(
        &disk_file,
        "3",
        &[
            "Attribute flags: 0101000000000000",
            "Partition name: 'BOTTLEROCKET-BOOT-A'",
            "6B636168-7420-6568-2070-6C616E657421",
            "First sector: 20480 ",
        ],
    );
    sgdisk_info(&disk_file, "8", &["Attribute flags: 0000000000000000"]);
    sgdisk_info(&disk_file, "5", &["598F10AF-C955-4456-6A99-7720068A6CEA"]);
    sgdisk_info(
        &disk_file,
        "13",
        &[
            "unique GUID: 69040874-417D-4E26-A764-7885F22007EA",
            "Partition name: ''",
        ],
    );
    let (data_disk_path, _) = artifact(&report, "data-image");
    let data_disk = decompress(&data_disk_path, &scratch);
    let data_disk_file = sgdisk_verified(&scratch, "data.img", &data_disk);
    sgdisk_info(
        &data_disk_file,
        "1",
        &[
            "unique GUID: 5B94E8DF-28B8-485C-9D19-362263B5944C",
            "First sector: 2048 ",
        ],
    );
    let data_b_fs = write(
        &scratch,
        "data-b.ext4",
        &data_disk[MIB as usize..(1023 * MIB) as usize],
    );
    tool_ok("e2fsck", &["-fn", path_str(&data_b_fs)]);
}

#[test]
fn builds_are_reproducible_with_a_source_date_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), 1024 * 1024);
    let args = ["--os-image-size-gib", "1", "--source-date-epoch", EPOCH];
    let first = build_ok(&root, &dir.path().join("one"), &args);
    // Touch the tree: host timestamps must not leak into the images.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(root.join("bin/tool"), noise(300_000, 1)).unwrap();
    tool_ok(
        "touch",
        &[
            path_str(&root.join("boot/vmlinuz")),
            path_str(&root.join("etc")),
        ],
    );
    let second = build_ok(&root, &dir.path().join("two"), &args);
    assert_eq!(first["verity"], second["verity"]);
    assert_eq!(first["artifacts"], second["artifacts"]);
    for entry in first["artifacts"].as_array().unwrap() {
        let name = entry["file_name"].as_str().unwrap();
        let a = fs::read(dir.path().join("one/1.0.0-abc123").join(name)).unwrap();
        let b = fs::read(dir.path().join("two/1.0.0-abc123").join(name)).unwrap();
        assert!(a == b, "{name} differs between two builds");
    }
    // Without the epoch the build is not reproducible (the file systems carry the build's
    // times, so the root hash changes), but the verity salt and UUID stay the variant's: they
    // are the same in every release, so unchanged blocks keep their hashes (delta updates).
    let third = build_ok(
        &root,
        &dir.path().join("three"),
        &["--os-image-size-gib", "1"],
    );
    assert_ne!(first["verity"]["root_hash"], third["verity"]["root_hash"]);
    assert_eq!(first["verity"]["salt"], third["verity"]["salt"]);
    assert_eq!(first["verity"]["uuid"], third["verity"]["uuid"]);
}

#[test]
fn unified_erofs_build() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), 1024 * 1024);
    let out = dir.path().join("out");
    let report = build_ok(
        &root,
        &out,
        &[
            "--os-image-size-gib",
            "1",
            "--partition-plan",
            "unified",
            "--root-fs",
            "erofs",
            "--source-date-epoch",
            EPOCH,
        ],
    );
    let scratch = dir.path().to_path_buf();
    assert!(
        report["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kind"] != "data-image")
    );
    assert_eq!(report["layout"]["os_disk"]["size_mib"], 2048);
    let (disk_path, _) = artifact(&report, "os-image");
    let disk = decompress(&disk_path, &scratch);
    let (root_path, _) = artifact(&report, "root");
    let (hash_path, _) = artifact(&report, "hash");
    let root_file = write(&scratch, "root.erofs", &decompress(&root_path, &scratch));
    let hash_file = write(&scratch, "root.verity", &decompress(&hash_path, &scratch));
    tool_ok("fsck.erofs", &[path_str(&root_file)]);
    let extracted = scratch.join("extracted");
    tool_ok(
        "fsck.erofs",
        &[
            &format!("--extract={}", path_str(&extracted)),
            path_str(&root_file),
        ],
    );
    assert_eq!(
        fs::read(extracted.join("bin/tool")).unwrap(),
        noise(300_000, 1)
    );
    assert!(extracted.join("boot").is_dir() && !extracted.join("boot/vmlinuz").exists());
    let root_hash = report["verity"]["root_hash"].as_str().unwrap();
    verity_ok(&root_file, &hash_file, root_hash);
    let disk_file = sgdisk_verified(&scratch, "disk.img", &disk);
    drop(disk);
    sgdisk_info(
        &disk_file,
        "13",
        &[
            "unique GUID: 5B94E8DF-28B8-485C-9D19-362263B5944C",
            "(1024.0 MiB)",
        ],
    );
}

#[test]
fn single_bank_build() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), 1024 * 1024);
    let report = build_ok(
        &root,
        &dir.path().join("out"),
        &["--os-image-size-gib", "1", "--single-bank"],
    );
    let partitions = report["layout"]["os_disk"]["partitions"]
        .as_array()
        .unwrap();
    assert_eq!(partitions.len(), 8);
    let (disk_path, _) = artifact(&report, "os-image");
    let disk = decompress(&disk_path, dir.path());
    let disk_file = sgdisk_verified(dir.path(), "disk.img", &disk);
    sgdisk_info(
        &disk_file,
        "3",
        &["(40.0 MiB)", "Attribute flags: 0101000000000000"],
    );
}

fn assert_size_error(output: &Output, out: &Path, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    assert!(output.stdout.is_empty());
    // The output folder did not exist before: a failed build removes it again.
    assert!(
        !out.exists(),
        "partial output left behind in {}",
        out.display()
    );
}

#[test]
fn a_root_tree_too_big_for_root_is_an_error_naming_both_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), 1024 * 1024);
    fs::write(root.join("bin/big"), vec![0xab_u8; 470 * MIB as usize]).unwrap();
    let out = dir.path().join("out");
    let output = image_builder(&root, &out, &["--os-image-size-gib", "1"]);
    // ROOT is 460 MiB at G = 1.
    assert_size_error(
        &output,
        &out,
        &["root tree", "BOTTLEROCKET-ROOT-A", "482344960 bytes", "MiB"],
    );
}

#[test]
fn a_boot_tree_too_big_for_boot_is_an_error_naming_both_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), 21 * MIB as usize);
    let out = dir.path().join("out");
    let output = image_builder(&root, &out, &["--os-image-size-gib", "1"]);
    // BOOT is 20 MiB at G = 1.
    assert_size_error(
        &output,
        &out,
        &["boot tree", "BOTTLEROCKET-BOOT-A", "20971520 bytes"],
    );
}

#[test]
fn a_missing_kernel_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), 1024);
    fs::remove_file(root.join("boot/vmlinuz")).unwrap();
    let out = dir.path().join("out");
    let output = image_builder(&root, &out, &["--os-image-size-gib", "1"]);
    assert_size_error(&output, &out, &["has no vmlinuz"]);
}

#[test]
fn help_explains_the_build_command() {
    let output = Command::cargo_bin("image-builder")
        .unwrap()
        .args(["build", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--root-dir",
        "--partition-plan",
        "--source-date-epoch",
        "--kernel-param",
        "--json",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn the_sample_root_script_makes_a_buildable_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sample-root");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-variant/make-root");
    tool_ok(
        path_str(&script),
        &[path_str(&root), "--version", "1.0.0", "--fake-kernel"],
    );
    assert!(root.join("bin/busybox").is_file() && root.join("sbin/init").is_file());
    let out = dir.path().join("out");
    let report = build_ok(&root, &out, &["--os-image-size-gib", "1"]);
    let (root_path, _) = artifact(&report, "root");
    let root_file = write(dir.path(), "root.ext4", &decompress(&root_path, dir.path()));
    let release = tool_ok(
        "debugfs",
        &["-R", "cat /usr/lib/os-release", path_str(&root_file)],
    );
    assert!(release.contains("VERSION_ID=1.0.0") && release.contains("VARIANT_ID=sample"));
    let init = tool_ok("debugfs", &["-R", "stat /sbin/init", path_str(&root_file)]);
    assert!(init.contains("Mode:  0755"), "{init}");
}

/// A 512-byte sector of `bytes`.
fn sector(bytes: &[u8], n: usize) -> &[u8] {
    &bytes[n * 512..(n + 1) * 512]
}

#[test]
fn our_grub_is_installed_the_reference_way() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), 1024 * 1024);
    let report = build_ok(
        &root,
        &dir.path().join("out"),
        &["--os-image-size-gib", "1", "--keep-raw-images"],
    );
    let grub = bootloader_dir();
    assert_eq!(
        report["bootloader"]["boot_modes"],
        serde_json::json!(["uefi", "legacy-bios"])
    );
    let (disk_path, _) = artifact(&report, "raw-os-image");
    let disk = fs::read(&disk_path).unwrap();
    let verify = tool_ok("sgdisk", &["-v", path_str(&disk_path)]);
    assert!(verify.contains("No problems found"), "{verify}");

    // MBR: GRUB's boot code pointing at BIOS-BOOT's first sector (LBA 2048), the protective
    // MBR's partition table and signature kept.
    let boot_img = fs::read(grub.join("boot.img")).unwrap();
    let mbr = sector(&disk, 0);
    assert_eq!(&mbr[..3], &boot_img[..3], "the jump to the boot code");
    assert_eq!(&mbr[0x68..0x1b8], &boot_img[0x68..0x1b8], "the boot code");
    assert_eq!(
        u64::from_le_bytes(mbr[0x5c..0x64].try_into().unwrap()),
        2048
    );
    assert_eq!((mbr[0x64], &mbr[0x66..0x68]), (0xff, &[0x90, 0x90][..]));
    assert_eq!(mbr[0x1be + 4], 0xee, "the protective MBR entry is kept");
    assert_eq!(&mbr[0x1fe..], &[0x55, 0xaa]);

    // BIOS-BOOT: the core image, its blocklist naming the sectors after the first.
    let core_img = fs::read(grub.join("core.img")).unwrap();
    let bios = partition(&disk, &report, "BIOS-BOOT");
    let sectors = core_img.len().div_ceil(512);
    assert_eq!(&bios[..500], &core_img[..500]);
    assert_eq!(u64::from_le_bytes(bios[500..508].try_into().unwrap()), 2049);
    assert_eq!(
        usize::from(u16::from_le_bytes(bios[508..510].try_into().unwrap())),
        sectors - 1
    );
    assert_eq!(
        u16::from_le_bytes(bios[510..512].try_into().unwrap()),
        0x820
    );
    assert_eq!(&bios[512..core_img.len()], &core_img[512..]);

    // EFI-SYSTEM: a FAT filesystem that fsck.fat accepts, holding EFI/BOOT/BOOTX64.EFI.
    let efi = write(
        dir.path(),
        "efi.img",
        partition(&disk, &report, "EFI-SYSTEM"),
    );
    tool_ok("fsck.vfat", &["-n", path_str(&efi)]);
    let copied = dir.path().join("BOOTX64.EFI");
    let mtools = std::process::Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args([
            "-i",
            path_str(&efi),
            "::/EFI/BOOT/BOOTX64.EFI",
            path_str(&copied),
        ])
        .output()
        .unwrap();
    assert!(mtools.status.success(), "{mtools:?}");
    assert!(fs::read(&copied).unwrap() == fs::read(grub.join("bootx64.efi")).unwrap());
    // Bank B's EFI slot stays an empty placeholder.
    assert!(
        partition(&disk, &report, "EFI-BACKUP")
            .iter()
            .all(|b| *b == 0)
    );
}

#[test]
fn without_a_bootloader_efi_and_bios_boot_stay_empty() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), 1024 * 1024);
    let report = build_ok(
        &root,
        &dir.path().join("out"),
        &[
            "--os-image-size-gib",
            "1",
            "--keep-raw-images",
            "--bootloader",
            "none",
        ],
    );
    assert_eq!(report["bootloader"], Value::Null);
    let (disk_path, _) = artifact(&report, "raw-os-image");
    let disk = fs::read(&disk_path).unwrap();
    for name in ["EFI-SYSTEM", "BIOS-BOOT"] {
        assert!(
            partition(&disk, &report, name).iter().all(|b| *b == 0),
            "{name}"
        );
    }
    assert!(sector(&disk, 0)[..0x1b8].iter().all(|b| *b == 0));
}

#[test]
fn a_missing_or_unusable_bootloader_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), 1024 * 1024);
    let out = dir.path().join("out");
    let missing = dir.path().join("no-grub-here");
    let output = image_builder(&root, &out, &["--bootloader", path_str(&missing)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no GRUB build in") && stderr.contains("bootloader/build"),
        "{stderr}"
    );
    assert!(!out.join("1.0.0-abc123").exists());
    // Our build has no aarch64 EFI application: an aarch64 image cannot take it.
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("image-builder"))
        .args([
            "build",
            "--variant",
            "test",
            "--arch",
            "aarch64",
            "--version",
            "1.0.0",
        ])
        .args([
            "--build-id",
            "abc123",
            "--os-image-size-gib",
            "1",
            "--root-dir",
        ])
        .arg(&root)
        .arg("--out-dir")
        .arg(&out)
        .arg("--bootloader")
        .arg(bootloader_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bootaa64.efi"), "{stderr}");
    assert!(
        fs::read_dir(&out).map(|d| d.count()).unwrap_or(0) == 0,
        "nothing left in {}",
        out.display()
    );
}

/// What a tree holds, by path bytes relative to its root: a directory, a file's bytes or a
/// symlink's target.
fn tree_map(root: &Path, skip: &[&str]) -> std::collections::BTreeMap<Vec<u8>, String> {
    use std::os::unix::ffi::OsStrExt;
    let mut map = std::collections::BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let full = item.unwrap().path();
            let relative = full.strip_prefix(root).unwrap();
            if skip.iter().any(|s| relative.starts_with(s)) {
                continue;
            }
            let meta = fs::symlink_metadata(&full).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link {:?}", fs::read_link(&full).unwrap())
            } else if meta.is_dir() {
                pending.push(full.clone());
                "dir".to_owned()
            } else {
                format!("file {:?}", fs::read(&full).unwrap())
            };
            map.insert(relative.as_os_str().as_bytes().to_vec(), what);
        }
    }
    map
}

#[test]
fn any_linux_file_name_lands_byte_for_byte_in_ext4_and_erofs() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), 64 * 1024);
    // systemd's escaped unit names, quotes, spaces, a newline, bytes that are not UTF-8, and
    // the debugfs quoting characters in every position.
    let names: [&[u8]; 12] = [
        b"lib/systemd/system/system-systemd\\x2dcryptsetup.slice",
        b"etc/q\"uote",
        b"etc/\"",
        b"etc/\"\"",
        b"etc/a\"\"b\"",
        b"etc/it's here",
        b"etc/new\nline",
        b"etc/tab\there #not a comment",
        b"etc/bin\xff\xfe",
        b"etc/dir \"\\ x/inner\nfile\\",
        b"etc/-dash\\",
        b"boot/odd\\name\" \xff",
    ];
    for (i, name) in names.iter().enumerate() {
        let path = root.join(OsStr::from_bytes(name));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("content {i}\n")).unwrap();
    }
    std::os::unix::fs::symlink(
        OsStr::from_bytes(b"q\"uote\n\\"),
        root.join(OsStr::from_bytes(b"etc/link \"\\\n")),
    )
    .unwrap();
    let source_root = tree_map(&root, &["boot/"]);
    let source_boot = tree_map(&root.join("boot"), &[]);

    for (fs_kind, out) in [("ext4", "out-ext4"), ("erofs", "out-erofs")] {
        let out = dir.path().join(out);
        let report = build_ok(
            &root,
            &out,
            &[
                "--os-image-size-gib",
                "1",
                "--root-fs",
                fs_kind,
                "--source-date-epoch",
                EPOCH,
            ],
        );
        let scratch = dir.path().join(format!("scratch-{fs_kind}"));
        fs::create_dir(&scratch).unwrap();
        let (root_path, _) = artifact(&report, "root");
        let root_file = write(&scratch, "root.fs", &decompress(&root_path, &scratch));
        let extracted = scratch.join("root");
        fs::create_dir(&extracted).unwrap();
        if fs_kind == "ext4" {
            tool_ok("e2fsck", &["-fn", path_str(&root_file)]);
            tool_ok(
                "debugfs",
                &[
                    "-R",
                    &format!("rdump / {}", path_str(&extracted)),
                    path_str(&root_file),
                ],
            );
        } else {
            tool_ok("fsck.erofs", &[path_str(&root_file)]);
            tool_ok(
                "fsck.erofs",
                &[
                    &format!("--extract={}", path_str(&extracted)),
                    "--overwrite",
                    path_str(&root_file),
                ],
            );
        }
        let mut got = tree_map(&extracted, &["lost+found", "boot/"]);
        assert_eq!(
            got.keys()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>(),
            source_root
                .keys()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>(),
            "{fs_kind} root names"
        );
        assert!(got == source_root, "{fs_kind}: contents differ");
        got.clear();

        // BOOT (ext4 whatever the root is) holds the boot tree byte for byte, plus grub.cfg.
        let (boot_path, _) = artifact(&report, "boot");
        let boot_file = write(&scratch, "boot.fs", &decompress(&boot_path, &scratch));
        tool_ok("e2fsck", &["-fn", path_str(&boot_file)]);
        let boot_out = scratch.join("boot");
        fs::create_dir(&boot_out).unwrap();
        tool_ok(
            "debugfs",
            &[
                "-R",
                &format!("rdump / {}", path_str(&boot_out)),
                path_str(&boot_file),
            ],
        );
        assert!(
            tree_map(&boot_out, &["lost+found", "grub"]) == source_boot,
            "{fs_kind} boot"
        );
    }
}

#[test]
fn a_root_of_real_debian_packages_builds_and_checks() {
    // systemd, containerd, runc, glibc, openssl, the cloud kernel... and their dependencies,
    // unpacked by sample-variant/make-debian-root (a few hundred MB).
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("debian-root");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-variant/make-debian-root");
    let made = std::process::Command::new(&script)
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "make-debian-root failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let unit = "lib/systemd/system/system-systemd\\x2dcryptsetup.slice";
    assert!(root.join(unit).is_file());
    let out = dir.path().join("out");
    let report = build_ok(&root, &out, &["--source-date-epoch", EPOCH]);
    let scratch = dir.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    let (root_path, _) = artifact(&report, "root");
    let root_file = write(&scratch, "root.ext4", &decompress(&root_path, &scratch));
    let size = fs::metadata(&root_file).unwrap().len();
    assert!(size > 250 * MIB, "root filesystem of {size} bytes");
    tool_ok("e2fsck", &["-fn", path_str(&root_file)]);
    let (hash_path, _) = artifact(&report, "hash");
    let hash_file = write(&scratch, "root.verity", &decompress(&hash_path, &scratch));
    let root_hash = report["verity"]["root_hash"].as_str().unwrap();
    verity_ok(&root_file, &hash_file, root_hash);
    let stat = tool_ok(
        "debugfs",
        &["-R", &format!("stat \"/{unit}\""), path_str(&root_file)],
    );
    assert!(stat.contains("Type: regular"), "{stat}");
    let containerd = tool_ok(
        "debugfs",
        &["-R", "stat /usr/bin/containerd", path_str(&root_file)],
    );
    assert!(
        containerd.contains("Type: regular") && containerd.contains("User:     0"),
        "{containerd}"
    );
    // The kernel moved to BOOT.
    let (boot_path, _) = artifact(&report, "boot");
    let boot_file = write(&scratch, "boot.ext4", &decompress(&boot_path, &scratch));
    let kernel = tool_ok("debugfs", &["-R", "ls -l /", path_str(&boot_file)]);
    assert!(
        kernel.contains("vmlinuz-") && kernel.contains("-cloud-amd64"),
        "{kernel}"
    );
}
