//! Helpers of the end-to-end tests: the workspace's binaries, host tools, the kernel, our GRUB,
//! image builds, a TUF repository served over HTTP, and the A/B flags. The VM itself is in
//! `vm.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod vm;

use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Variant, arch and build ID of every image the tests build.
pub const VARIANT: &str = "sample";
pub const ARCH: &str = "x86_64";
pub const BUILD_ID: &str = "e2e";
/// A fixed epoch: the builds are reproducible.
pub const SOURCE_DATE_EPOCH: &str = "1700000000";
/// BOOT partition type GUID (what gptprio scans).
pub const BOOT_TYPE: &str = "6b636168-7420-6568-2070-6c616e657421";

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
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("socat", "socat"),
    ("sgdisk", "gdisk"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("strip", "binutils"),
    ("python3", "python3"),
];

/// UEFI firmware (Debian `ovmf`): the code (read-only) and the template of the variables.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

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
    let firmware_missing = || {
        !Path::new(OVMF_CODE).is_file() || !Path::new("/usr/share/seabios/bios-256k.bin").is_file()
    };
    if missing(()).is_empty() && !firmware_missing() {
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
        !firmware_missing(),
        "{OVMF_CODE} (ovmf) or SeaBIOS (seabios) still missing after scripts/setup"
    );
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

/// The Debian cloud kernel, unpacked by `sample-variant/fetch-kernel` (not installed), cached
/// in `target/e2e-cache/` between runs.
pub fn kernel_dir() -> PathBuf {
    PathBuf::from(stdout_of(
        Command::new(workspace_root().join("sample-variant/fetch-kernel")).arg(cache_dir()),
    ))
}

/// Our GRUB build (`bootloader/build`, cached by the hash of its inputs: built once, then
/// free). Returns the folder image-builder installs from.
pub fn bootloader_dir() -> PathBuf {
    let dir = PathBuf::from(stdout_of(&mut Command::new(
        workspace_root().join("bootloader/build"),
    )));
    assert!(
        dir.join("bootx64.efi").is_file(),
        "no bootx64.efi in {}",
        dir.display()
    );
    dir
}

/// How a release of the sample variant is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// A working host.
    Good,
    /// Its init exits before the boot is marked successful (`make-root --broken`).
    Broken,
}

/// Kernel parameters of the sample variant (serial console; reboot at once on a panic).
pub const KERNEL_PARAMS: &[&str] = &["console=ttyS0,115200n8", "panic=-1", "quiet"];

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
    /// Make the sample variant's root tree (a small real host: kernel + initramfs, init,
    /// updog and signpost from this build, the repository's root.json) and build it with
    /// image-builder and our GRUB.
    pub fn build(
        bins: &Bins,
        work: &Path,
        version: &str,
        health: Health,
        kernel_dir: &Path,
        bootloader: &Path,
        keys: &Keys,
    ) -> Self {
        let root_dir = work.join(format!("root-{version}"));
        let mut make_root = Command::new(workspace_root().join("sample-variant/make-root"));
        make_root
            .arg(&root_dir)
            .args(["--version", version, "--variant", VARIANT, "--kernel-dir"])
            .arg(kernel_dir)
            .arg("--host-tools")
            .arg(bins.updog.parent().expect("bin dir"))
            .arg("--root-json")
            .arg(&keys.root_json);
        if health == Health::Broken {
            make_root.arg("--broken");
        }
        run(&mut make_root);
        let out = work.join("images");
        let mut build = Command::new(&bins.image_builder);
        build
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
                "--bootloader",
            ])
            .arg(bootloader)
            .arg("--out-dir")
            .arg(&out);
        for param in KERNEL_PARAMS {
            build.args(["--kernel-param", param]);
        }
        let stdout = stdout_of(&mut build);
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

/// The release engineer's keys: `pubsys setup` (root and signing key), made before any image
/// is built because the trusted root.json goes into the image.
#[derive(Debug, Clone)]
pub struct Keys {
    pub root_json: PathBuf,
    pub signing_key: PathBuf,
}

impl Keys {
    pub fn create(bins: &Bins, work: &Path) -> Self {
        let dir = work.join("keys");
        let keys = Keys {
            root_json: dir.join("root.json"),
            signing_key: dir.join("signing-key.pem"),
        };
        run(Command::new(&bins.pubsys)
            .arg("setup")
            .arg("--root-role-path")
            .arg(&keys.root_json)
            .arg("--default-key-path")
            .arg(&keys.signing_key));
        keys
    }
}

/// A signed TUF repository published into a folder (`published/`) that an HTTP server on
/// 127.0.0.1 serves.
#[derive(Debug)]
pub struct Repository {
    pub published: PathBuf,
    work: PathBuf,
    keys: Keys,
    previous: Option<String>,
}

impl Repository {
    pub fn new(work: &Path, keys: &Keys) -> Self {
        let published = work.join("published");
        fs::create_dir_all(published.join("targets")).unwrap();
        Repository {
            published,
            work: work.to_path_buf(),
            keys: keys.clone(),
            previous: None,
        }
    }

    /// What a release engineer does for each release: `pubsys repo` from image-builder's build
    /// report, with the default wave schedule and, from the second release on, a
    /// `Release.toml` migration hop and the repository extended from where the previous
    /// release was published. The output is published targets first, metadata after, as an
    /// upload would.
    pub fn publish(&mut self, bins: &Bins, release: &Release) {
        let infra = self.work.join("Infra.toml");
        fs::write(
            &infra,
            format!(
                "[repo.default]\nmetadata_base_url = \"file://{0}/\"\ntargets_url = \"file://{0}/targets/\"\n",
                self.published.display()
            ),
        )
        .unwrap();
        let waves = workspace_root().join("waves/default-waves.toml");
        let expiration = workspace_root().join("pubsys/tests/data/repo-expiration-2w-2w-1w.toml");
        let out = self.work.join(format!("release-{}", release.version));
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
            .arg(&self.keys.root_json)
            .arg("--default-key-path")
            .arg(&self.keys.signing_key)
            .arg("--outdir")
            .arg(&out);
        if let Some(from) = &self.previous {
            let release_toml = self.work.join(format!("Release-{}.toml", release.version));
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
            let (from, to) = (out.join(&folder), self.published.join(&folder));
            fs::create_dir_all(&to).unwrap();
            for entry in fs::read_dir(&from).unwrap() {
                let entry = entry.unwrap();
                // Write beside, then rename: the server never serves a half-copied file.
                let tmp = to.join(format!(".{}.tmp", entry.file_name().to_string_lossy()));
                fs::copy(entry.path(), &tmp).expect("publish a file");
                fs::rename(&tmp, to.join(entry.file_name())).unwrap();
            }
        }
        self.previous = Some(release.version.clone());
    }
}

/// A static HTTP server (`e2e/scripts/range-server.py`: Python's `http.server` plus single
/// byte ranges, which the delta path reads the store with) on 127.0.0.1 serving `dir`;
/// stopped on drop.
#[derive(Debug)]
pub struct HttpServer {
    child: Child,
    pub port: u16,
}

impl HttpServer {
    pub fn start(dir: &Path, log: &Path) -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/range-server.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .expect("start python3 e2e/scripts/range-server.py");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the HTTP server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer { child, port }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
