//! Shared helpers for updog's integration tests: a loopback HTTP server with fault injection,
//! a real signed TUF repository (tough's editor), a sparse disk image in the reference layout
//! (sgdisk), LZ4 images, and the CLI under test with every path pointed at a temp folder.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use aws_lc_rs::rand::SystemRandom;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tough::editor::RepositoryEditor;
use tough::editor::signed::{PathExists, SignedRole};
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root};
use tough::sign::Sign;

// ---------------------------------------------------------------------------------------------
// HTTP server

/// A fault to inject on one path (matched by suffix).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Close the connection after this many body bytes, `times` times.
    DropAfter { bytes: u64, times: u32 },
    /// Send the file up to this absolute offset, then nothing for a long time (a resumed
    /// request starting at or after it gets nothing at all).
    StallAfter { bytes: u64 },
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
        let Ok(data) = fs::read(&file) else {
            stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let total = data.len() as u64;
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|r| r.parse::<u64>().ok())
            .filter(|s| *s < total);
        let (status, body) = match start {
            Some(s) => (
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{total}\r\n",
                    total - 1
                ),
                &data[s as usize..],
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
            Some(Fault::StallAfter { bytes }) => {
                let n = (bytes.saturating_sub(start.unwrap_or(0)) as usize).min(body.len());
                stream.write_all(&body[..n])?;
                stream.flush()?;
                std::thread::sleep(Duration::from_secs(60));
                return Ok(());
            }
            None => stream.write_all(body)?,
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

/// LZ4 frame of `data`, with the decompressed size in the header if `declare_size`.
pub fn lz4(data: &[u8], declare_size: bool) -> Vec<u8> {
    let mut builder = lz4::EncoderBuilder::new();
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

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A signing key and a signed root (consistent snapshots, one key for every role).
pub struct Keys {
    pub key_path: PathBuf,
    pub root_path: PathBuf,
}

pub fn make_keys(dir: &Path) -> Keys {
    let rng = SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key_path = dir.join("key.pk8");
    fs::write(&key_path, pkcs8.as_ref()).unwrap();
    let signer = tough::sign::parse_keypair(pkcs8.as_ref()).unwrap();
    let key = signer.tuf_key();
    let keyid = key.key_id().unwrap();
    let roles = [
        RoleType::Root,
        RoleType::Snapshot,
        RoleType::Targets,
        RoleType::Timestamp,
    ]
    .into_iter()
    .map(|role| {
        (
            role,
            RoleKeys {
                keyids: vec![keyid.clone()],
                threshold: NonZeroU64::MIN,
                _extra: HashMap::new(),
            },
        )
    })
    .collect();
    let root = Root {
        spec_version: "1.0.0".to_owned(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires: whole_seconds(Timestamp::now() + SignedDuration::from_hours(24 * 365)),
        keys: HashMap::from([(keyid, key)]),
        roles,
        _extra: HashMap::new(),
    };
    let keys: Vec<Box<dyn KeySource>> = vec![Box::new(LocalKeySource {
        path: key_path.clone(),
    })];
    let signed = block_on(SignedRole::new(
        root.clone(),
        &KeyHolder::Root(root),
        &keys,
        &rng,
    ))
    .unwrap();
    let root_path = dir.join("root.json");
    fs::write(&root_path, signed.buffer()).unwrap();
    Keys {
        key_path,
        root_path,
    }
}

pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap()
}

/// Sign a repository of the files in `inputs` into `out/metadata` and `out/targets`.
pub fn sign_repo(keys: &Keys, inputs: &Path, out: &Path, version: u64, expires: Timestamp) {
    block_on(async {
        let mut editor = RepositoryEditor::new(&keys.root_path).await.unwrap();
        let version = NonZeroU64::new(version).unwrap();
        let expires = whole_seconds(expires);
        editor
            .snapshot_version(version)
            .snapshot_expires(expires)
            .timestamp_version(version)
            .timestamp_expires(expires);
        editor.targets_version(version).unwrap();
        editor.targets_expires(expires).unwrap();
        let mut paths: Vec<PathBuf> = fs::read_dir(inputs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        editor.add_target_paths(paths).await.unwrap();
        let keys: Vec<Box<dyn KeySource>> = vec![Box::new(LocalKeySource {
            path: keys.key_path.clone(),
        })];
        let signed = editor.sign(&keys).await.unwrap();
        let metadata = out.join("metadata");
        let targets = out.join("targets");
        fs::create_dir_all(&metadata).unwrap();
        fs::create_dir_all(&targets).unwrap();
        signed.write(&metadata).await.unwrap();
        signed
            .copy_targets(inputs, &targets, PathExists::Replace)
            .await
            .unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Disk

pub const LAYOUT_1GIB: [(&str, &str, u64, u64); 13] = [
    ("BIOS-BOOT", "21686148-6449-6e6f-744e-656564454649", 1, 4),
    ("EFI-SYSTEM", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", 5, 5),
    (
        "BOTTLEROCKET-BOOT-A",
        "6b636168-7420-6568-2070-6c616e657421",
        10,
        20,
    ),
    (
        "BOTTLEROCKET-ROOT-A",
        "5526016a-1a97-4ea4-b39a-b7c8c6ca4502",
        30,
        460,
    ),
    (
        "BOTTLEROCKET-HASH-A",
        "598f10af-c955-4456-6a99-7720068a6cea",
        490,
        5,
    ),
    (
        "BOTTLEROCKET-RESERVED-A",
        "0c5d99a5-d331-4147-baef-08e2b855bdc9",
        495,
        10,
    ),
    ("EFI-BACKUP", "b39ce39c-0a00-b4ab-2d11-f18f8237a21c", 505, 5),
    (
        "BOTTLEROCKET-BOOT-B",
        "6b636168-7420-6568-2070-6c616e657421",
        510,
        20,
    ),
    (
        "BOTTLEROCKET-ROOT-B",
        "5526016a-1a97-4ea4-b39a-b7c8c6ca4502",
        530,
        460,
    ),
    (
        "BOTTLEROCKET-HASH-B",
        "598f10af-c955-4456-6a99-7720068a6cea",
        990,
        5,
    ),
    (
        "BOTTLEROCKET-RESERVED-B",
        "0c5d99a5-d331-4147-baef-08e2b855bdc9",
        995,
        10,
    ),
    (
        "BOTTLEROCKET-PRIVATE",
        "440408bb-eb0b-4328-a6e5-a29038fad706",
        1005,
        17,
    ),
    ("", "626f7474-6c65-6474-6861-726d61726b73", 1022, 1),
];

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

/// A sparse 1 GiB disk image in the reference layout; set A bootable and successful
/// (priority 1), set B empty.
pub fn make_disk(path: &Path) {
    File::create(path).unwrap().set_len(1024 << 20).unwrap();
    let mut args: Vec<String> = vec!["-a".into(), "1".into()];
    for (index, (name, guid, start, size)) in LAYOUT_1GIB.iter().enumerate() {
        let n = index + 1;
        args.push(format!(
            "--new={n}:{}:{}",
            start * 2048,
            (start + size) * 2048 - 1
        ));
        args.push(format!("--typecode={n}:{guid}"));
        if !name.is_empty() {
            args.push(format!("--change-name={n}:{name}"));
        }
    }
    args.extend([
        "-A".into(),
        "3:set:48".into(),
        "-A".into(),
        "3:set:56".into(),
    ]);
    args.push(path.to_string_lossy().into_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tool("sgdisk", &args);
}

/// Byte range (offset, size) of partition `n` in the 1 GiB layout.
pub fn partition_range(n: usize) -> (u64, u64) {
    let (_, _, start, size) = LAYOUT_1GIB[n - 1];
    (start << 20, size << 20)
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
}

impl Release {
    pub fn new(version: &str, seed: u64) -> Release {
        Release {
            version: version.to_owned(),
            root: mixed_data(3 << 20, seed),
            boot: mixed_data(1 << 20, seed + 1),
            hash: mixed_data(100 << 10, seed + 2),
        }
    }

    pub fn names(&self) -> [String; 3] {
        let base = format!("test-variant-{}-{}", std::env::consts::ARCH, self.version);
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
        let keys = make_keys(dir.path());
        let inputs = dir.path().join("inputs");
        fs::create_dir_all(&inputs).unwrap();
        let [root, boot, hash] = release.names();
        fs::write(inputs.join(&root), lz4(&release.root, declare_sizes)).unwrap();
        fs::write(inputs.join(&boot), lz4(&release.boot, declare_sizes)).unwrap();
        fs::write(inputs.join(&hash), lz4(&release.hash, declare_sizes)).unwrap();
        fs::write(
            inputs.join("migrate_1.1.0_foo.lz4"),
            lz4(b"#!/bin/sh\necho migrate\n", false),
        )
        .unwrap();
        let t = |hours: i64| (wave_start + SignedDuration::from_hours(hours)).to_string();
        let manifest = serde_json::json!({
            "updates": [{
                "variant": "test-variant",
                "arch": std::env::consts::ARCH,
                "version": release.version,
                "max_version": release.version,
                "waves": { "0": t(0), "1024": t(24), "2048": t(48) },
                "images": { "root": root, "boot": boot, "hash": hash }
            }],
            "migrations": {
                format!("(1.0.0, {})", release.version): ["migrate_1.1.0_foo.lz4"]
            }
        });
        fs::write(
            inputs.join("manifest.json"),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();
        let repo = dir.path().join("repo");
        sign_repo(
            &keys,
            &inputs,
            &repo,
            1,
            Timestamp::now() + SignedDuration::from_hours(24 * 7),
        );
        let server = Server::start(&repo);
        let disk = dir.path().join("disk.img");
        make_disk(&disk);
        fs::write(
            dir.path().join("os-release"),
            "NAME=Test\nVERSION_ID=1.0.0\nVARIANT_ID=test-variant\n",
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

    /// Re-sign the repository from the inputs (with `version`), into `repo`.
    pub fn resign(&self, version: u64, expires: Timestamp) {
        sign_repo(
            &self.keys,
            &self.inputs,
            &self.path("repo"),
            version,
            expires,
        );
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
