//! Helpers shared by tuftool's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

#[allow(unused_imports)]
pub use test_support::venv_python;

/// A python script under tests/python.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Run tuftool; return (success, stdout, stderr).
pub fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::cargo_bin("tuftool")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run tuftool and require success; return stdout.
pub fn ok(args: &[&str]) -> String {
    let (success, stdout, stderr) = run(args);
    assert!(success, "tuftool {args:?} failed:\n{stderr}");
    stdout
}

/// Run tuftool and require failure with exit code 1; return stderr.
pub fn fails(args: &[&str]) -> String {
    let out = Command::cargo_bin("tuftool")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "tuftool {args:?} should fail with 1: {out:?}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Write a file, creating folders.
pub fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Every file below `dir` with its bytes (symlinks read through), sorted.
pub fn snapshot_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut out: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| !e.file_type().is_dir())
        .map(|e| {
            (
                e.path().to_path_buf(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Keys and a signed version-1 root for a test repository.
pub struct Keys {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub root_key: PathBuf,
    pub targets_key: PathBuf,
    pub snapshot_key: PathBuf,
    pub timestamp_key: PathBuf,
}

impl Keys {
    /// Generate keys of several types and a signed 1.root.json in `dir`.
    pub fn new(dir: &Path) -> Self {
        let root = dir.join("1.root.json");
        let k = |n: &str| dir.join(n);
        ok(&["root", "init", s(&root), "--expires", "in 52 weeks"]);
        ok(&[
            "root",
            "gen-key",
            s(&root),
            s(&k("root.der")),
            "--type",
            "ed25519",
            "-R",
            "root",
        ]);
        ok(&[
            "root",
            "gen-key",
            s(&root),
            s(&k("targets.der")),
            "--type",
            "ecdsa-p256",
            "-R",
            "targets",
        ]);
        ok(&[
            "root",
            "gen-key",
            s(&root),
            s(&k("snapshot.pem")),
            "--type",
            "rsa2048",
            "-R",
            "snapshot",
        ]);
        ok(&[
            "root",
            "gen-key",
            s(&root),
            s(&k("timestamp.der")),
            "--type",
            "ed25519",
            "-R",
            "timestamp",
        ]);
        ok(&["root", "sign", s(&root), "-k", s(&k("root.der"))]);
        Keys {
            dir: dir.to_path_buf(),
            root,
            root_key: k("root.der"),
            targets_key: k("targets.der"),
            snapshot_key: k("snapshot.pem"),
            timestamp_key: k("timestamp.der"),
        }
    }

    /// `-k` arguments for targets, snapshot and timestamp.
    pub fn online(&self) -> Vec<String> {
        [&self.targets_key, &self.snapshot_key, &self.timestamp_key]
            .iter()
            .flat_map(|p| ["-k".to_owned(), p.display().to_string()])
            .collect()
    }
}

/// Convert owned args to &str.
pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Owned copies of `parts`.
pub fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|x| (*x).to_owned()).collect()
}

/// `tuftool create` of `input` into `repo`, signed with `keys`' online keys, every role
/// expiring in two weeks.
pub fn create_repo(keys: &Keys, input: &Path, repo: &Path) {
    let mut args = strings(&["create", "-r", s(&keys.root), "-a", s(input), "-o", s(repo)]);
    args.extend(strings(&["--expires", "in 2 weeks"]));
    args.extend(keys.online());
    ok(&refs(&args));
}
