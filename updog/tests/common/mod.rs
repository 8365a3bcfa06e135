//! Shared helpers for updog's integration tests: a loopback HTTP server with fault injection,
//! a real TUF repository signed by our own tools (a `manifest.json` made with update-metadata
//! as `pubsys repo` makes it, signed by the tuftool library through test-support: no AWS SDK),
//! a host disk built by image-builder, LZ4 images, and the CLI under test with every path
//! pointed at a temp folder.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The variant every scenario runs and publishes.
pub const VARIANT: &str = "test-variant";

/// The version the host runs (image-builder's base disk and the test's os-release).
pub const RUNNING_VERSION: &str = "1.0.0";

// ---------------------------------------------------------------------------------------------
// HTTP server

/// A fault to inject on one path (matched by suffix).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Close the connection after this many body bytes, `times` times.
    DropAfter { bytes: u64, times: u32 },
    /// Send the file up to this absolute offset, then nothing for a long time (a resumed
    /// request starting at or after it gets nothing at all; a range ending before it is
    /// served whole).
    StallAfter { bytes: u64 },
    /// Send the file up to this absolute offset, then one byte every `every` (never idle long
    /// enough for an idle timeout).
    Trickle { bytes: u64, every: Duration },
    /// Serve the file for the first `requests` requests, then `body` instead (a file replaced
    /// on the mirror between two fetches).
    ChangeAfter { requests: u32, body: Vec<u8> },
}

#[derive(Default)]
struct ServerState {
    root: PathBuf,
    faults: HashMap<String, Fault>,
    log: Vec<Request>,
}

/// One logged request.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub query: String,
    pub range: Option<String>,
}

/// The bytes of `path`, read once per version of the file (benchmarks serve the same large
/// store to hundreds of range requests).
fn read_cached(path: &Path) -> std::io::Result<Arc<Vec<u8>>> {
    type Cache = HashMap<(PathBuf, std::time::SystemTime, u64), Arc<Vec<u8>>>;
    static CACHE: std::sync::OnceLock<Mutex<Cache>> = std::sync::OnceLock::new();
    let meta = fs::metadata(path)?;
    let key = (path.to_owned(), meta.modified()?, meta.len());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(data) = cache.lock().unwrap().get(&key) {
        return Ok(data.clone());
    }
    let data = Arc::new(fs::read(path)?);
    let mut cache = cache.lock().unwrap();
    // Keep only the newest version of each file.
    cache.retain(|(p, ..), _| p != path);
    cache.insert(key, data.clone());
    Ok(data)
}

/// A static file server on 127.0.0.1:0 with `Range` support and injectable faults.
pub struct Server {
    pub port: u16,
    state: Arc<Mutex<ServerState>>,
}

impl Server {
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ServerState {
            root: root.to_owned(),
            ..ServerState::default()
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        Server { port, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    pub fn set_root(&self, root: &Path) {
        self.state.lock().unwrap().root = root.to_owned();
    }

    pub fn fault(&self, suffix: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .insert(suffix.to_owned(), fault);
    }

    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    pub fn log(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

fn serve(stream: TcpStream, state: &Mutex<ServerState>) -> std::io::Result<()> {
    // Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm holds
    // the body until the client's delayed ACK (40 ms per request on a kept-alive connection).
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_owned();
        let mut range = None;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("range")
            {
                range = Some(value.trim().to_owned());
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let (file, fault) = {
            let mut state = state.lock().unwrap();
            state.log.push(Request {
                path: path.to_owned(),
                query: query.to_owned(),
                range: range.clone(),
            });
            let fault_key = state
                .faults
                .keys()
                .find(|suffix| path.ends_with(suffix.as_str()))
                .cloned();
            let fault = fault_key.and_then(|key| {
                let fault = state.faults.get(&key).cloned();
                if let Some(Fault::ChangeAfter { requests, body }) = &fault
                    && *requests > 0
                {
                    // Served as is this time.
                    let left = Fault::ChangeAfter {
                        requests: requests - 1,
                        body: body.clone(),
                    };
                    state.faults.insert(key, left);
                    return None;
                }
                if let Some(Fault::DropAfter { bytes, times }) = fault {
                    if times <= 1 {
                        state.faults.remove(&key);
                    } else {
                        state.faults.insert(
                            key,
                            Fault::DropAfter {
                                bytes,
                                times: times - 1,
                            },
                        );
                    }
                }
                fault
            });
            (state.root.join(path.trim_start_matches('/')), fault)
        };
        let data = match &fault {
            Some(Fault::ChangeAfter { body, .. }) => Ok(Arc::new(body.clone())),
            _ => read_cached(&file),
        };
        let Ok(data) = data else {
            if let Some(Fault::StallAfter { .. }) = fault {
                // A stall on a missing file (the probe for the next root) holds the answer.
                std::thread::sleep(Duration::from_secs(60));
                return Ok(());
            }
            stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let total = data.len() as u64;
        // `bytes=S-` or `bytes=S-E` (one range).
        let bounds = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .and_then(|(s, e)| {
                let s = s.parse::<u64>().ok()?;
                let e = if e.is_empty() {
                    total.saturating_sub(1)
                } else {
                    e.parse::<u64>().ok()?.min(total.saturating_sub(1))
                };
                (s < total && s <= e).then_some((s, e))
            });
        let start = bounds.map(|(s, _)| s);
        let (status, body) = match bounds {
            Some((s, e)) => (
                format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{e}/{total}\r\n"),
                &data[s as usize..=e as usize],
            ),
            None => ("HTTP/1.1 200 OK\r\n".to_owned(), &data[..]),
        };
        let head = format!(
            "{status}Accept-Ranges: bytes\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        match fault {
            Some(Fault::DropAfter { bytes, .. }) => {
                let n = (bytes as usize).min(body.len());
                stream.write_all(&body[..n])?;
                stream.flush()?;
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            // A range that ends before the stall point is served whole (and the connection
            // kept).
            Some(Fault::StallAfter { bytes })
                if start.unwrap_or(0) + body.len() as u64 <= bytes =>
            {
                stream.write_all(body)?;
            }
            Some(Fault::StallAfter { bytes }) => {
                let n = (bytes.saturating_sub(start.unwrap_or(0)) as usize).min(body.len());
                stream.write_all(&body[..n])?;
                stream.flush()?;
                std::thread::sleep(Duration::from_secs(60));
                return Ok(());
            }
            Some(Fault::Trickle { bytes, every }) => {
                let n = (bytes.saturating_sub(start.unwrap_or(0)) as usize).min(body.len());
                stream.write_all(&body[..n])?;
                for byte in &body[n..] {
                    stream.flush()?;
                    std::thread::sleep(every);
                    stream.write_all(std::slice::from_ref(byte))?;
                }
                return Ok(());
            }
            Some(Fault::ChangeAfter { .. }) | None => stream.write_all(body)?,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Data

/// Deterministic pseudo-random bytes (xorshift), half of each 64 KiB block zeros, so the data
/// compresses like a filesystem image.
pub fn mixed_data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let block = out.len() / 65536;
        if block % 2 == 0 {
            out.extend_from_slice(&state.to_le_bytes());
        } else {
            out.extend_from_slice(&[0; 8]);
        }
    }
    out.truncate(len);
    out
}

/// LZ4 frame of `data` as `lz4 -9` makes it (level 9, independent 4 MiB blocks, content
/// checksum), with the decompressed size in the header if `declare_size`.
pub fn lz4(data: &[u8], declare_size: bool) -> Vec<u8> {
    let mut builder = lz4::EncoderBuilder::new();
    builder
        .level(9)
        .block_size(lz4::BlockSize::Max4MB)
        .block_mode(lz4::BlockMode::Independent)
        .checksum(lz4::ContentChecksum::ChecksumEnabled);
    if declare_size {
        builder.content_size(data.len() as u64);
    }
    let mut encoder = builder.build(Vec::new()).unwrap();
    encoder.write_all(data).unwrap();
    let (out, result) = encoder.finish();
    result.unwrap();
    out
}

// ---------------------------------------------------------------------------------------------
// TUF repository

pub use test_support::tuf_repo::Keys;

/// The migration every release ships, for the hop from the running version.
pub const MIGRATION: &str = "migrate_1.1.0_foo.lz4";

/// The scenarios' wave schedule (pubsys's wave TOML). It resolves to the manifest waves
/// {0: start, 1024: start + 1 day, 1536: start + 2 days}: the first half of the fleet over the
/// first day, the next quarter over the second, the rest two days after the start. The tests'
/// seed, 1500, lies in the second wave. (No schedule yields a 2048 key: the first wave gets key
/// 0 and each later one the previous wave's percentage, always below 100%.)
const WAVES: &str = "\
[[waves]]
start_after = '0 hours'
fleet_percentage = 50

[[waves]]
start_after = '1 day'
fleet_percentage = 75

[[waves]]
start_after = '2 days'
fleet_percentage = 100
";

/// Sign `release` (its images and the migration, in `inputs`) into a new repository, the way
/// `pubsys repo` makes one: a `manifest.json` (built with update-metadata) listing the update,
/// the migration hop from the running version and the waves from `wave_start`, signed with
/// every target by the tuftool library, every role expiring a week from now (absolute: the
/// wave start may lie days in the past). The result is laid out in `repo` the way the host
/// fetches it, `metadata/` and `targets/`; `work` holds the staged targets.
fn publish(
    keys: &Keys,
    release: &Release,
    inputs: &Path,
    wave_start: Timestamp,
    work: &Path,
    repo: &Path,
) {
    use update_metadata::{Images, Manifest, NewUpdate};
    let staged = work.join("targets");
    fs::create_dir_all(&staged).unwrap();
    let [root, boot, hash] = release.names();
    for name in [&root, &boot, &hash, &MIGRATION.to_owned()] {
        fs::hard_link(inputs.join(name), staged.join(name)).unwrap();
    }
    // The delta index and store, as `pubsys repo` makes them, when the release has them.
    let delta = release.delta.then(|| {
        let (index, store) = delta::target_names(&root);
        delta::build_files(
            &[
                ("root", &staged.join(&root)),
                ("boot", &staged.join(&boot)),
                ("hash", &staged.join(&hash)),
            ],
            &staged.join(&index),
            &staged.join(&store),
            delta::BuildOptions::default(),
        )
        .unwrap();
        update_metadata::Delta {
            index,
            store,
            extra: Default::default(),
        }
    });
    let version: semver::Version = release.version.parse().unwrap();
    let arch = std::env::consts::ARCH;
    let mut manifest = Manifest::default();
    manifest.add_update(NewUpdate {
        variant: VARIANT.to_owned(),
        arch: arch.to_owned(),
        version: version.clone(),
        images: Images {
            boot,
            root,
            hash,
            extra: Default::default(),
        },
        delta,
        max_version: None,
    });
    let release_toml = format!(
        "version = \"{version}\"\n\n[migrations]\n\"({RUNNING_VERSION}, {version})\" = [\"{MIGRATION}\"]\n"
    );
    manifest.set_migrations(
        &update_metadata::Release::from_toml(&release_toml, "Release.toml").unwrap(),
    );
    let waves = update_metadata::WaveSchedule::from_toml(WAVES, "waves.toml").unwrap();
    manifest
        .set_waves(VARIANT, arch, &version, &waves, wave_start)
        .unwrap();
    manifest.save(&staged.join("manifest.json")).unwrap();
    let expires = Timestamp::now() + SignedDuration::from_hours(24 * 7);
    keys.sign_new(&staged, expires, repo);
}

// ---------------------------------------------------------------------------------------------
// Disk

/// The host disk every scenario starts from: release 1.0.0 of the test variant, built once per
/// test binary by image-builder.
struct BaseDisk {
    /// The raw OS disk image, open. Its folder is removed once the build is done (the open
    /// file keeps the data), so nothing outlives the test binary, which never drops statics.
    image: File,
    /// The layout image-builder computed and wrote to it.
    layout: image_builder::layout::Layout,
}

fn base_disk() -> &'static BaseDisk {
    static BASE: OnceLock<BaseDisk> = OnceLock::new();
    BASE.get_or_init(build_base_disk)
}

/// The OS image size (GiB) of the test disk: 1, or `UPDOG_TEST_OS_IMAGE_GIB` (the benchmark's
/// large images need the 4 or 8 GiB layout; ROOT holds 460 MiB per GiB).
pub fn os_image_gib() -> u32 {
    std::env::var("UPDOG_TEST_OS_IMAGE_GIB")
        .ok()
        .map_or(1, |v| {
            v.parse().expect("UPDOG_TEST_OS_IMAGE_GIB: 1, 2, 4 or 8")
        })
}

/// A tiny root tree built by image-builder with a 1 GiB OS image (see [`os_image_gib`]), the
/// raw disk kept.
fn build_base_disk() -> BaseDisk {
    let dir = tempfile::Builder::new()
        .prefix("updog-base-disk")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let tree = dir.path().join("rootfs");
    fs::create_dir_all(tree.join("boot")).unwrap();
    fs::create_dir_all(tree.join("usr/lib")).unwrap();
    fs::write(tree.join("boot/vmlinuz"), "not a kernel\n".repeat(1000)).unwrap();
    fs::write(
        tree.join("usr/lib/os-release"),
        format!("VERSION_ID={RUNNING_VERSION}\nVARIANT_ID={VARIANT}\n"),
    )
    .unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => image_builder::Arch::X86_64,
        "aarch64" => image_builder::Arch::Aarch64,
        other => panic!("image-builder does not build for {other}"),
    };
    let mut settings = image_builder::BuildSettings::new(
        tree,
        dir.path().join("images"),
        VARIANT.to_owned(),
        arch,
        RUNNING_VERSION.parse().unwrap(),
        "updogtest".to_owned(),
    );
    settings.layout.os_image_size_gib = os_image_gib();
    settings.keep_raw_images = true;
    settings.source_date_epoch = Some(1_700_000_000);
    let report = image_builder::build(&settings, &image_builder::NoProgress).unwrap();
    let raw = report
        .artifact_path(image_builder::ArtifactKind::RawOsImage)
        .unwrap();
    let image = File::open(raw).unwrap();
    // The build folder goes now; the open handle keeps the raw disk readable.
    drop(dir);
    BaseDisk {
        image,
        layout: report.layout,
    }
}

/// Copy the base disk to `path`, a new file, as sparse as the original: only the data extents
/// (found with `SEEK_DATA`/`SEEK_HOLE`) are written.
pub fn copy_base_disk(path: &Path) {
    use rustix::fs::{SeekFrom as Whence, seek};
    let base = &base_disk().image;
    let len = base.metadata().unwrap().len();
    let copy = File::create_new(path).unwrap();
    copy.set_len(len).unwrap();
    let mut buffer = vec![0; 1 << 20];
    let mut offset = 0;
    while offset < len {
        // Both seeks take absolute offsets and reads are positioned, so scenarios on other
        // threads may share the handle.
        let start = match seek(base, Whence::Data(offset)) {
            Ok(start) => start,
            // Only a hole left: already zero in the copy.
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => panic!("seeking the base disk: {e}"),
        };
        let end = seek(base, Whence::Hole(start)).unwrap();
        let mut at = start;
        while at < end {
            let n = buffer.len().min((end - at) as usize);
            base.read_exact_at(&mut buffer[..n], at).unwrap();
            copy.write_all_at(&buffer[..n], at).unwrap();
            at += n as u64;
        }
        offset = end;
    }
}

/// Byte range (offset, size) of partition `n` of the OS disk, as image-builder laid it out.
pub fn partition_range(n: usize) -> (u64, u64) {
    let partition = base_disk()
        .layout
        .os_disk
        .partitions
        .iter()
        .find(|p| p.number as usize == n)
        .unwrap_or_else(|| panic!("the OS disk has no partition {n}"));
    (partition.offset_bytes(), partition.size_bytes())
}

pub fn tool(program: &str, args: &[&str]) -> String {
    let output = Process::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install it with scripts/setup): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn read_range(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut file = File::open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len];
    file.read_exact(&mut buf).unwrap();
    buf
}

/// Priority, tries left, successful of BOOT partition `n`, read with sgdisk.
pub fn flags(path: &Path, n: u32) -> (u8, u8, bool) {
    let out = tool("sgdisk", &["-i", &n.to_string(), &path.to_string_lossy()]);
    let line = out
        .lines()
        .find(|l| l.starts_with("Attribute flags:"))
        .unwrap();
    let bits = u64::from_str_radix(line.trim_start_matches("Attribute flags:").trim(), 16).unwrap();
    (
        ((bits >> 48) & 0xf) as u8,
        ((bits >> 52) & 0xf) as u8,
        (bits >> 56) & 1 == 1,
    )
}

/// `sgdisk -v` reports no problem.
pub fn assert_sgdisk_clean(path: &Path) {
    let output = Process::new("sgdisk").arg("-v").arg(path).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("No problems found")
            && !["ERROR", "Warning", "Caution", "corrupt"]
                .iter()
                .any(|w| text.contains(w)),
        "sgdisk -v:\n{text}"
    );
}

/// What the bootloader would boot: (set, flags) via signpost's own rules.
pub fn next_set(path: &Path) -> Option<signpost::SetId> {
    let state = signpost::State::load(
        &signpost::DiskSource::Path {
            path: path.to_owned(),
            active: Some(signpost::SetId::A),
        },
        signpost::Access::Read,
    )
    .unwrap();
    state.next()
}

// ---------------------------------------------------------------------------------------------
// A whole scenario

/// Images of one release.
pub struct Release {
    pub version: String,
    pub root: Vec<u8>,
    pub boot: Vec<u8>,
    pub hash: Vec<u8>,
    /// Whether the repository also gets the delta index and store.
    pub delta: bool,
}

impl Release {
    pub fn new(version: &str, seed: u64) -> Release {
        Release {
            version: version.to_owned(),
            root: mixed_data(3 << 20, seed),
            boot: mixed_data(1 << 20, seed + 1),
            hash: mixed_data(100 << 10, seed + 2),
            delta: false,
        }
    }

    pub fn names(&self) -> [String; 3] {
        let base = format!("{VARIANT}-{}-{}", std::env::consts::ARCH, self.version);
        [
            format!("{base}-root.ext4.lz4"),
            format!("{base}-boot.ext4.lz4"),
            format!("{base}-root.verity.lz4"),
        ]
    }
}

/// A host (config, os-release, caches, disk) plus a repository served over HTTP.
pub struct Scenario {
    pub dir: tempfile::TempDir,
    pub keys: Keys,
    pub server: Server,
    pub disk: PathBuf,
    pub config: PathBuf,
    pub inputs: PathBuf,
}

impl Scenario {
    /// Running 1.0.0; the repository offers `release` with waves starting at `wave_start`.
    pub fn new(release: &Release, wave_start: Timestamp) -> Scenario {
        Scenario::with_options(release, wave_start, true)
    }

    pub fn with_options(release: &Release, wave_start: Timestamp, declare_sizes: bool) -> Scenario {
        let dir = tempfile::Builder::new()
            .prefix("updog-test")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let keys = Keys::create(&dir.path().join("keys"));
        let inputs = dir.path().join("inputs");
        fs::create_dir_all(&inputs).unwrap();
        let [root, boot, hash] = release.names();
        fs::write(inputs.join(&root), lz4(&release.root, declare_sizes)).unwrap();
        fs::write(inputs.join(&boot), lz4(&release.boot, declare_sizes)).unwrap();
        fs::write(inputs.join(&hash), lz4(&release.hash, declare_sizes)).unwrap();
        fs::write(
            inputs.join(MIGRATION),
            lz4(b"#!/bin/sh\necho migrate\n", false),
        )
        .unwrap();
        let repo = dir.path().join("repo");
        publish(
            &keys,
            release,
            &inputs,
            wave_start,
            &dir.path().join("publish"),
            &repo,
        );
        let server = Server::start(&repo);
        let disk = dir.path().join("disk.img");
        copy_base_disk(&disk);
        fs::write(
            dir.path().join("os-release"),
            format!("NAME=Test\nVERSION_ID={RUNNING_VERSION}\nVARIANT_ID={VARIANT}\n"),
        )
        .unwrap();
        let config = dir.path().join("updog.toml");
        let scenario = Scenario {
            dir,
            keys,
            server,
            disk,
            config,
            inputs,
        };
        scenario.write_config(1500, "");
        scenario
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write the config with `seed` and `extra` lines.
    pub fn write_config(&self, seed: u32, extra: &str) {
        let text = format!(
            "metadata_base_url = \"{}\"\ntargets_base_url = \"{}\"\nseed = {seed}\nversion_lock = \"latest\"\nignore_waves = false\n\
             trusted_root = \"{}\"\nos_release = \"{}\"\ndatastore = \"{}\"\nmetadata_cache = \"{}\"\n\
             migrations_cache = \"{}\"\nlock_file = \"{}\"\n{extra}\n",
            self.server.url("metadata/"),
            self.server.url("targets/"),
            self.keys.root_path.display(),
            self.path("os-release").display(),
            self.path("datastore").display(),
            self.path("metadata-cache").display(),
            self.path("migrations-cache").display(),
            self.path("updog.lock").display(),
        );
        fs::write(&self.config, text).unwrap();
    }

    /// Re-sign the served repository's targets, snapshot and timestamp as `version`, expiring
    /// at `expires` (pubsys picks versions itself and refuses to sign expired metadata, which is
    /// exactly what the metadata fault tests need).
    pub fn resign(&self, version: u64, expires: Timestamp) {
        self.keys.resign(&self.path("repo"), version, expires);
    }

    /// The CLI on this scenario's disk and config.
    pub fn updog(&self) -> Command {
        let mut cmd = Command::cargo_bin("updog").unwrap();
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--disk")
            .arg(&self.disk)
            .arg("--lock-timeout")
            .arg("5")
            .env_remove("RUST_LOG")
            .env("NO_PROXY", "127.0.0.1")
            .timeout(Duration::from_secs(120));
        cmd
    }

    /// The served file of target `name` (with its digest prefix).
    pub fn served_target(&self, name: &str) -> PathBuf {
        let targets = self.path("repo").join("targets");
        fs::read_dir(&targets)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .ends_with(&format!(".{name}"))
            })
            .unwrap()
    }

    /// Partitions of set B hold exactly `release`'s images (followed by the old bytes).
    pub fn assert_set_b_holds(&self, release: &Release) {
        for (n, data) in [(9, &release.root), (8, &release.boot), (10, &release.hash)] {
            let (offset, _) = partition_range(n);
            let on_disk = read_range(&self.disk, offset, data.len());
            assert!(on_disk == *data, "partition {n} does not hold its image");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmarks

/// The root image size a benchmark asks for in MiB (environment variable `var`, default 256),
/// checked against the test disk's ROOT partition.
pub fn bench_root_mib(var: &str) -> usize {
    let mib: usize = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    // ROOT-B (partition 9) is 460 MiB per GiB of the OS image.
    let (_, root_b) = partition_range(9);
    assert!(
        (mib as u64) << 20 <= root_b,
        "the test disk's ROOT partition holds {} MiB: set UPDOG_TEST_OS_IMAGE_GIB to 4 or 8",
        root_b >> 20
    );
    mib
}

/// Wall seconds, peak RSS (KiB) and stderr of a command run under `/usr/bin/time -f
/// maxrss=%M` (see [`Scenario::bench_updog`]); it must succeed.
pub fn measure(command: &mut std::process::Command) -> (f64, u64, String) {
    let started = std::time::Instant::now();
    let output = command.output().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let rss = stderr
        .lines()
        .rev()
        .find_map(|l| {
            l.trim()
                .strip_prefix("maxrss=")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    (elapsed, rss, stderr)
}

impl Scenario {
    /// The updog a benchmark measures, on this scenario's config and disk, under
    /// `/usr/bin/time -f maxrss=%M` (see [`measure`]): `UPDOG_BENCH_BIN` (a release build, as
    /// hosts get it), else the one this test target built.
    pub fn bench_updog(&self) -> std::process::Command {
        let mut updog = std::process::Command::new("/usr/bin/time");
        updog
            .args(["-f", "maxrss=%M"])
            .arg(
                std::env::var_os("UPDOG_BENCH_BIN")
                    .map_or_else(|| assert_cmd::cargo::cargo_bin("updog"), Into::into),
            )
            .arg("--config")
            .arg(&self.config)
            .arg("--disk")
            .arg(&self.disk);
        updog
    }

    /// Write `release`'s images into set A (partitions 3, 4, 5): the host runs it.
    pub fn install_in_set_a(&self, release: &Release) {
        let disk = fs::OpenOptions::new().write(true).open(&self.disk).unwrap();
        for (n, data) in [(3, &release.boot), (4, &release.root), (5, &release.hash)] {
            let (offset, _) = partition_range(n);
            disk.write_all_at(data, offset).unwrap();
        }
    }
}
