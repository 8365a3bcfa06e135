//! Helpers shared by tuf-client's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[allow(unused_imports)]
pub use test_support::venv_python;

/// Build the staged python-tuf repository (see tests/python/make_stages.py) in `dir`.
pub fn make_stages(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/make_stages.py");
    let out = std::process::Command::new(venv_python())
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_stages.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copy every file below `from` into `to` (overwriting), creating folders.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A `file://` URL for a folder.
pub fn dir_url(p: &Path) -> url::Url {
    url::Url::from_directory_path(p).unwrap()
}

/// Path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The .json files of a folder, sorted.
pub fn json_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    v.sort();
    v
}

/// The version of a metadata file.
pub fn version_of(path: &Path) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}
