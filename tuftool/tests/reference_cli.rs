//! Compatibility of the command line: a release script written for the reference tuftool
//! (tests/data/reference-release.sh: its flags and argument forms only) runs unchanged, and
//! python-tuf accepts the repository it makes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn a_reference_tuftool_release_script_runs_unchanged() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference-release.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("TUFTOOL", env!("CARGO_BIN_EXE_tuftool"))
        .env("WORK", w)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the reference-style script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(w.join("download/a.txt")).unwrap(), b"alpha\n");
    assert_eq!(std::fs::read(w.join("download/c.txt")).unwrap(), b"gamma\n");
    assert!(w.join("clone/metadata/timestamp.json").is_file());
    let expected = w.join("expected");
    std::fs::create_dir_all(expected.join("sub")).unwrap();
    std::fs::write(expected.join("sub/b.txt"), b"beta\n").unwrap();
    std::fs::write(expected.join("c.txt"), b"gamma\n").unwrap();
    test_support::python_tuf_accepts(
        &w.join("repo"),
        &w.join("client"),
        &w.join("root.json"),
        &expected,
        &["sub/b.txt", "c.txt"],
    );
    // transfer-metadata re-signed the targets as version 3.
    let transferred = std::fs::read_dir(w.join("transferred/metadata"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert!(
        transferred.iter().any(|n| n == "3.targets.json"),
        "{transferred:?}"
    );
}
