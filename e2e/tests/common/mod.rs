//! Helpers of the end-to-end tests: the workspace's binaries, host tools, the kernel and
//! initramfs, image builds, a TUF repository, QEMU boots and the A/B flags.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Variant, arch and build ID of every image the tests build.
pub const VARIANT: &str = "sample";
pub const ARCH: &str = "x86_64";
pub const BUILD_ID: &str = "e2e";
/// A fixed epoch: the builds are reproducible.
pub const SOURCE_DATE_EPOCH: &str = "1700000000";
/// BOOT partition type GUID (what gptprio scans).
pub const BOOT_TYPE: &str = "6b636168-7420-6568-2070-6c616e657421";
/// The wall-clock limit of one boot (the guest powers off within ~10 s under TCG).
pub const BOOT_TIMEOUT_SECS: u64 = 60;

/// The workspace root (`e2e/..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A script of this crate.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// `target/<profile>/`: the test executable is `target/<profile>/deps/<test>-<hash>`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test executable has a parent");
    deps.parent().expect("deps has a parent").to_path_buf()
}

/// Where downloads (the kernel package) are cached between runs: `target/e2e-cache/`.
pub fn cache_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().unwrap_or(&profile).join("e2e-cache")
}

/// The workspace's binaries, built by `cargo test --workspace` (or `cargo build -p …`)
/// into the same target directory as this test.
#[derive(Debug, Clone)]
pub struct Bins {
    pub image_builder: PathBuf,
    pub signpost: PathBuf,
    pub updog: PathBuf,
    pub pubsys: PathBuf,
}

impl Bins {
    /// Locate every binary (in `E2E_BIN_DIR` if set, e.g. `target/release`); fail with the
    /// command that builds them if one is missing.
    pub fn locate() -> Self {
        let dir = std::env::var_os("E2E_BIN_DIR").map_or_else(profile_dir, PathBuf::from);
        let find = |name: &str| {
            let path = dir.join(name);
            assert!(
                path.is_file(),
                "{} is missing: the e2e tests drive the workspace's binaries from the same target \
                 directory. Build them first: `cargo build -p image-builder -p signpost -p updog \
                 -p pubsys` (with the same CARGO_TARGET_DIR), or run `cargo test \
                 --workspace`, which builds every package's binaries",
                path.display()
            );
            path
        };
        Bins {
            image_builder: find("image-builder"),
            signpost: find("signpost"),
            updog: find("updog"),
            pubsys: find("pubsys"),
        }
    }
}

/// Host tools the boot test needs, with the Debian package of each.
const HOST_TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("cgpt", "cgpt"),
    ("dmsetup", "dmsetup"),
    ("cpio", "cpio"),
    ("modinfo", "kmod"),
    ("busybox", "busybox-static"),
    ("debugfs", "e2fsprogs"),
    ("mkfs.ext4", "e2fsprogs"),
    ("lz4", "lz4"),
    ("timeout", "coreutils"),
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
];

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file()
        || Path::new("/sbin").join(tool).is_file()
}

/// Make sure every host tool is there: if one is missing, run `scripts/setup` (which installs
/// `scripts/apt-packages.txt`), then fail clearly if it is still missing. Never skips.
pub fn ensure_host_tools() {
    let missing = |_: ()| -> Vec<(&str, &str)> {
        HOST_TOOLS
            .iter()
            .copied()
            .filter(|(tool, _)| !on_path(tool))
            .collect()
    };
    if missing(()).is_empty() {
        return;
    }
    eprintln!(
        "e2e: missing host tools {:?}: running scripts/setup",
        missing(())
    );
    let status = Command::new(workspace_root().join("scripts/setup"))
        .status()
        .expect("run scripts/setup");
    let still = missing(());
    assert!(
        still.is_empty(),
        "the boot test needs these tools (Debian package in brackets), still missing after \
         scripts/setup (exit {status}): {}",
        still
            .iter()
            .map(|(tool, package)| format!("{tool} ({package})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Run a command; on failure, panic with the command line, exit status, stdout and stderr.
pub fn run(command: &mut Command) -> Output {
    let output = run_any(command);
    assert!(
        output.status.success(),
        "{:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        command,
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Run a command and return its output, whatever its exit status.
pub fn run_any(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Stdout of a successful command, trimmed.
pub fn stdout_of(command: &mut Command) -> String {
    String::from_utf8(run(command).stdout)
        .expect("utf-8 stdout")
        .trim()
        .to_string()
}

/// A step's wall time, printed as the test goes (`--nocapture` shows them).
#[derive(Debug)]
pub struct Timings {
    start: Instant,
    lines: String,
}

impl Timings {
    pub fn new() -> Self {
        Timings {
            start: Instant::now(),
            lines: String::new(),
        }
    }

    /// Time `f` under `label`.
    pub fn step<T>(&mut self, label: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let value = f();
        let line = format!("{label}: {:.1} s", start.elapsed().as_secs_f64());
        eprintln!("e2e: {line}");
        writeln!(self.lines, "  {line}").unwrap();
        value
    }

    pub fn total(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn summary(&self) -> String {
        format!("{}  total: {:.1} s", self.lines, self.total().as_secs_f64())
    }
}

/// The Debian kernel (unpacked, not installed) and the test initramfs.
#[derive(Debug, Clone)]
pub struct GuestKernel {
    pub vmlinuz: PathBuf,
    pub initramfs: PathBuf,
}

impl GuestKernel {
    /// Fetch (or reuse) the kernel package in the cache and build the initramfs into `dir`.
    pub fn prepare(dir: &Path) -> Self {
        let unpacked = PathBuf::from(stdout_of(
            Command::new(script("fetch-kernel")).arg(cache_dir()),
        ));
        let vmlinuz = fs::read_dir(unpacked.join("boot"))
            .expect("read the kernel's boot/")
            .map(|entry| entry.unwrap().path())
            .find(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("vmlinuz-"))
            })
            .unwrap_or_else(|| panic!("no boot/vmlinuz-* in {}", unpacked.display()));
        let initramfs = dir.join("initramfs.cpio.gz");
        run(Command::new(script("make-initramfs"))
            .arg(&unpacked)
            .arg(&initramfs));
        GuestKernel { vmlinuz, initramfs }
    }
}

/// One image-builder build of the sample variant.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: String,
    /// The root tree it was built from.
    pub root_dir: PathBuf,
    /// `<out>/<version>-<build-id>/`.
    pub out_dir: PathBuf,
    pub report: Value,
}

impl Release {
    /// Make the sample root tree (busybox + the kernel + the e2e guest init) and build it.
    pub fn build(bins: &Bins, work: &Path, version: &str, kernel: &GuestKernel) -> Self {
        let root_dir = work.join(format!("root-{version}"));
        run(
            Command::new(workspace_root().join("image-builder/scripts/make-sample-root"))
                .arg(&root_dir)
                .args(["--version", version, "--variant", VARIANT, "--kernel"])
                .arg(&kernel.vmlinuz),
        );
        // Our init reports the booted version, the root mount and the dm device's slaves.
        fs::copy(script("guest-init"), root_dir.join("sbin/init")).expect("install guest-init");
        let out = work.join("images");
        let stdout = stdout_of(
            Command::new(&bins.image_builder)
                .args(["build", "--root-dir"])
                .arg(&root_dir)
                .args([
                    "--variant",
                    VARIANT,
                    "--arch",
                    ARCH,
                    "--version",
                    version,
                    "--build-id",
                    BUILD_ID,
                    "--source-date-epoch",
                    SOURCE_DATE_EPOCH,
                    "--keep-raw-images",
                    "--json",
                    "-q",
                    "--out-dir",
                ])
                .arg(&out),
        );
        let report: Value = serde_json::from_str(&stdout).expect("build report JSON");
        let out_dir = out.join(format!("{version}-{BUILD_ID}"));
        assert_eq!(report["version"], version, "report: {report}");
        Release {
            version: version.to_string(),
            root_dir,
            out_dir,
            report,
        }
    }

    /// The artifact file of a kind (`os-image`, `boot`, `root`, `hash`…) from the report.
    pub fn artifact(&self, kind: &str) -> PathBuf {
        let name = self.report["artifacts"]
            .as_array()
            .expect("artifacts array")
            .iter()
            .find(|a| a["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} artifact in {}", self.report))["file_name"]
            .as_str()
            .expect("file_name")
            .to_string();
        self.out_dir.join(name)
    }

    /// The raw OS disk (`--keep-raw-images`).
    pub fn raw_disk(&self) -> PathBuf {
        let prefix = self.report["filename_prefix"].as_str().expect("prefix");
        self.out_dir.join(format!("{prefix}.img"))
    }

    pub fn root_hash(&self) -> String {
        self.report["verity"]["root_hash"]
            .as_str()
            .expect("verity.root_hash")
            .to_string()
    }

    pub fn os_release(&self) -> PathBuf {
        self.root_dir.join("usr/lib/os-release")
    }
}

/// A/B flags as cgpt reads them: (priority, tries left, successful).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    pub priority: u8,
    pub tries: u8,
    pub successful: bool,
}

/// `P/T/S`, e.g. `2/1/0`.
pub fn flags(p: u8, t: u8, s: u8) -> Flags {
    Flags {
        priority: p,
        tries: t,
        successful: s == 1,
    }
}

impl std::fmt::Display for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.priority,
            self.tries,
            u8::from(self.successful)
        )
    }
}

/// Read a BOOT partition's flags with `cgpt show -i N -P|-T|-S` (one option per call).
pub fn cgpt_flags(disk: &Path, partition: u32) -> Flags {
    let field = |option: &str| -> u8 {
        let text = stdout_of(
            Command::new("cgpt")
                .args(["show", "-i", &partition.to_string(), option])
                .arg(disk),
        );
        text.parse()
            .unwrap_or_else(|_| panic!("cgpt show {option}: {text:?}"))
    };
    Flags {
        priority: field("-P"),
        tries: field("-T"),
        successful: field("-S") == 1,
    }
}

/// The first sector of a partition (`cgpt show -i N -b`).
pub fn cgpt_start_sector(disk: &Path, partition: u32) -> u64 {
    let text = stdout_of(
        Command::new("cgpt")
            .args(["show", "-i", &partition.to_string(), "-b"])
            .arg(disk),
    );
    text.parse()
        .unwrap_or_else(|_| panic!("cgpt show -b: {text:?}"))
}

/// What the serial console showed of one boot.
#[derive(Debug, Clone)]
pub struct Boot {
    pub log: String,
    pub exit_code: Option<i32>,
    pub elapsed: Duration,
}

impl Boot {
    /// The value of `E2E-<who>: <key>=<value>` or `… <key>: <value>` markers, first match.
    fn marker(&self, prefix: &str) -> Option<&str> {
        self.log.lines().find_map(|line| {
            let at = line.find(prefix)?;
            Some(line[at + prefix.len()..].trim())
        })
    }

    /// The set the initramfs' gptprio chose (`a`/`b`).
    pub fn selected_set(&self) -> Option<&str> {
        let rest = self.marker("E2E-INITRAMFS: selected set=")?;
        rest.split_whitespace().next()
    }

    /// The dm-verity table the initramfs loaded.
    pub fn dm_table(&self) -> Option<&str> {
        self.marker("E2E-INITRAMFS: dm table: ")
    }

    /// VERSION_ID of the root that ran /sbin/init.
    pub fn version_id(&self) -> Option<&str> {
        self.marker("E2E-INIT: VERSION_ID=")
    }

    /// `/`'s device, type and options in /proc/mounts.
    pub fn root_mount(&self) -> Option<&str> {
        self.marker("E2E-INIT: root mount: ")
    }

    /// The partitions under the `root` dm device, sorted.
    pub fn root_slaves(&self) -> Vec<String> {
        let mut slaves: Vec<String> = self
            .marker("E2E-INIT: root slaves: ")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        slaves.sort();
        slaves
    }

    pub fn root_writable(&self) -> Option<&str> {
        self.marker("E2E-INIT: root writable=")
    }

    /// The guest's init ran to its end and powered off.
    pub fn completed(&self) -> bool {
        self.log.contains("E2E-INIT: done")
    }

    /// A failure reported by the initramfs.
    pub fn initramfs_failure(&self) -> Option<&str> {
        self.marker("E2E-INITRAMFS: FAIL: ")
    }

    /// The last lines of the log, for failure messages.
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Boot a disk under QEMU with TCG (the recipe of testing.md §8), wrapped in a timeout;
/// the serial log is kept in `log_path`.
pub fn boot(kernel: &GuestKernel, disk: &Path, log_path: &Path) -> Boot {
    let start = Instant::now();
    let output = run_any(
        Command::new("timeout")
            .args([
                "--kill-after=5",
                &BOOT_TIMEOUT_SECS.to_string(),
                "qemu-system-x86_64",
                "-machine",
                "q35,accel=tcg",
                "-m",
                "512",
                "-smp",
                "1",
                "-nographic",
                "-no-reboot",
                "-net",
                "none",
                "-kernel",
            ])
            .arg(&kernel.vmlinuz)
            .arg("-initrd")
            .arg(&kernel.initramfs)
            .args(["-append", "console=ttyS0 panic=-1 quiet", "-drive"])
            .arg(format!("file={},format=raw,if=virtio", disk.display())),
    );
    let elapsed = start.elapsed();
    let mut log = String::from_utf8_lossy(&output.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&output.stderr));
    fs::write(log_path, &log).expect("write the serial log");
    let boot = Boot {
        log,
        exit_code: output.status.code(),
        elapsed,
    };
    assert_ne!(
        boot.exit_code,
        Some(124),
        "the boot of {} did not end within {BOOT_TIMEOUT_SECS} s; serial log {}:\n{}",
        disk.display(),
        log_path.display(),
        boot.tail()
    );
    eprintln!(
        "e2e: boot of {} took {:.1} s (qemu exit {:?})",
        disk.display(),
        elapsed.as_secs_f64(),
        boot.exit_code
    );
    boot
}

/// Copy a sparse file, keeping it sparse.
pub fn copy_sparse(from: &Path, to: &Path) {
    run(Command::new("cp").arg("--sparse=always").arg(from).arg(to));
}

/// Invert one byte of a file.
pub fn flip_byte(path: &Path, offset: u64) -> (u8, u8) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the disk");
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut byte).unwrap();
    let new = byte[0] ^ 0xff;
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&[new]).unwrap();
    file.sync_all().unwrap();
    (byte[0], new)
}

/// A signed TUF repository on the local disk, read by updog through `file://` URLs.
#[derive(Debug, Clone)]
pub struct Repository {
    /// The trusted root updog starts from.
    pub root_json: PathBuf,
    pub metadata_url: String,
    pub targets_url: String,
}

impl Repository {
    /// What a release engineer does: `pubsys setup` (root and signing key), then one
    /// `pubsys repo` per release from image-builder's build report, with the default wave
    /// schedule and, from the second release on, a `Release.toml` migration hop and the
    /// repository extended from where the previous release was published (file://). Each
    /// output is published targets first, metadata after, as an upload would.
    pub fn publish(bins: &Bins, work: &Path, releases: &[&Release]) -> Self {
        let keys = work.join("keys");
        let published = work.join("published");
        let root_json = keys.join("root.json");
        let key = keys.join("signing-key.pem");
        run(Command::new(&bins.pubsys)
            .arg("setup")
            .arg("--root-role-path")
            .arg(&root_json)
            .arg("--default-key-path")
            .arg(&key));
        let infra = work.join("Infra.toml");
        fs::write(
            &infra,
            format!(
                "[repo.default]\nmetadata_base_url = \"file://{0}/\"\ntargets_url = \"file://{0}/targets/\"\n",
                published.display()
            ),
        )
        .unwrap();
        let waves = workspace_root().join("waves/default-waves.toml");
        let expiration = workspace_root().join("pubsys/tests/data/repo-expiration-2w-2w-1w.toml");
        let mut previous: Option<&str> = None;
        for release in releases {
            let out = work.join(format!("release-{}", release.version));
            let mut command = Command::new(&bins.pubsys);
            command
                .arg("--infra-config")
                .arg(&infra)
                .arg("repo")
                .arg("--build-report")
                .arg(release.out_dir.join("build-report.json"))
                .arg("--wave-policy-path")
                .arg(&waves)
                .arg("--repo-expiration-policy-path")
                .arg(&expiration)
                .arg("--root-role-path")
                .arg(&root_json)
                .arg("--default-key-path")
                .arg(&key)
                .arg("--outdir")
                .arg(&out);
            if let Some(from) = previous {
                let release_toml = work.join(format!("Release-{}.toml", release.version));
                fs::write(
                    &release_toml,
                    format!(
                        "version = \"{}\"\n\n[migrations]\n\"({from}, {})\" = []\n",
                        release.version, release.version
                    ),
                )
                .unwrap();
                command.arg("--release-config-path").arg(&release_toml);
            }
            run(&mut command);
            for folder in ["targets".to_owned(), format!("{VARIANT}/{ARCH}")] {
                let (from, to) = (out.join(&folder), published.join(&folder));
                fs::create_dir_all(&to).unwrap();
                for entry in fs::read_dir(&from).unwrap() {
                    let entry = entry.unwrap();
                    fs::copy(entry.path(), to.join(entry.file_name())).expect("publish a file");
                }
            }
            previous = Some(&release.version);
        }
        Repository {
            root_json,
            metadata_url: format!("file://{}/{VARIANT}/{ARCH}/", published.display()),
            targets_url: format!("file://{}/targets/", published.display()),
        }
    }

    /// An updog configuration for a host running `os_release`, with every path in `dir`.
    pub fn updog_config(&self, dir: &Path, os_release: &Path) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        let config = format!(
            "metadata_base_url = \"{}\"\ntargets_base_url = \"{}\"\nseed = 1234\n\
             trusted_root = \"{}\"\nos_release = \"{}\"\ndatastore = \"{}\"\n\
             metadata_cache = \"{}\"\nmigrations_cache = \"{}\"\nlock_file = \"{}\"\n",
            self.metadata_url,
            self.targets_url,
            self.root_json.display(),
            os_release.display(),
            dir.join("tuf").display(),
            dir.join("metadata").display(),
            dir.join("migrations").display(),
            dir.join("updog.lock").display(),
        );
        let path = dir.join("updog.toml");
        fs::write(&path, config).unwrap();
        path
    }
}

/// `signpost --disk DISK --json status`.
pub fn signpost_status(bins: &Bins, disk: &Path) -> Value {
    let text = stdout_of(
        Command::new(&bins.signpost)
            .arg("--disk")
            .arg(disk)
            .args(["--json", "status"]),
    );
    serde_json::from_str(&text).expect("signpost status JSON")
}
