//! Error cases: a clear message, exit code 1, and nothing written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Keys, fails, ok, refs, s, snapshot_tree, strings, write};
use std::path::Path;

fn create(keys: &Keys, input: &Path, repo: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&[
        "create",
        "-r",
        s(&keys.root),
        "-a",
        s(input),
        "-o",
        s(repo),
        "--expires",
        "in 2 weeks",
    ]);
    args.extend(keys.online());
    args.extend(extra.iter().map(|x| (*x).to_owned()));
    args
}

struct Fixture {
    _tmp: tempfile::TempDir,
    keys: Keys,
    input: std::path::PathBuf,
    repo: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"));
    let input = tmp.path().join("input");
    write(&input.join("a.txt"), b"a\n");
    write(&input.join("dir/b.txt"), b"b\n");
    let repo = tmp.path().join("repo");
    Fixture {
        keys,
        input,
        repo,
        _tmp: tmp,
    }
}

#[test]
fn create_failures_leave_no_output() {
    let f = fixture();
    // Missing timestamp key: threshold not met.
    let args = [
        "create",
        "-r",
        s(&f.keys.root),
        "-a",
        s(&f.input),
        "-o",
        s(&f.repo),
        "--expires",
        "in 1 day",
        "-k",
        s(&f.keys.targets_key),
        "-k",
        s(&f.keys.snapshot_key),
    ];
    let err = fails(&args);
    assert!(
        err.contains("threshold not met for role timestamp"),
        "{err}"
    );
    assert!(!f.repo.exists());

    // A key that is no key.
    let bogus = f.keys.dir.join("bogus.pem");
    write(
        &bogus,
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let mut a = create(&f.keys, &f.input, &f.repo, &[]);
    a.extend(["-k".into(), s(&bogus).into()]);
    let err = fails(&refs(&a));
    assert!(err.contains("cannot load the key from"), "{err}");
    assert!(!f.repo.exists());

    // An unsigned root (edited after signing).
    let unsigned = f.keys.dir.join("unsigned.root.json");
    std::fs::copy(&f.keys.root, &unsigned).unwrap();
    ok(&["root", "expire", s(&unsigned), "in 10 weeks"]);
    let mut a = create(&f.keys, &f.input, &f.repo, &[]);
    a[2] = s(&unsigned).to_owned();
    let err = fails(&refs(&a));
    assert!(err.contains("not signed by its root threshold"), "{err}");
    assert!(!f.repo.exists());

    // Two inputs with the same target name.
    let other = f.keys.dir.join("other-input");
    write(&other.join("dir/b.txt"), b"different\n");
    let a = create(&f.keys, &f.input, &f.repo, &["-a", s(&other)]);
    let err = fails(&refs(&a));
    assert!(
        err.contains("two inputs have the target name dir/b.txt"),
        "{err}"
    );
    assert!(!f.repo.exists());

    // An expiry in the past.
    let a = create(
        &f.keys,
        &f.input,
        &f.repo,
        &["--timestamp-expires", "2001-01-01T00:00:00Z"],
    );
    let err = fails(&refs(&a));
    assert!(err.contains("not in the future"), "{err}");
    assert!(!f.repo.exists());
}

#[test]
fn update_failures_leave_the_repository_unchanged() {
    let f = fixture();
    ok(&refs(&create(
        &f.keys,
        &f.input,
        &f.repo,
        &["--timestamp-version", "5"],
    )));
    let meta = f.repo.join("metadata");
    let before = snapshot_tree(&f.repo);
    let base = |extra: &[&str], keys: &[String]| -> Vec<String> {
        let mut v = strings(&[
            "update",
            "-r",
            s(&f.keys.root),
            "-m",
            s(&meta),
            "-o",
            s(&f.repo),
            "--expires",
            "in 1 week",
        ]);
        v.extend(keys.iter().cloned());
        v.extend(extra.iter().map(|x| (*x).to_owned()));
        v
    };

    // Versions must increase.
    let err = fails(&refs(&base(
        &["--timestamp-version", "5"],
        &f.keys.online(),
    )));
    assert!(
        err.contains("timestamp version 5 must be greater than the current version 5"),
        "{err}"
    );
    // Targets key missing.
    let ks = vec![
        "-k".into(),
        s(&f.keys.snapshot_key).into(),
        "-k".into(),
        s(&f.keys.timestamp_key).into(),
    ];
    let err = fails(&refs(&base(&[], &ks)));
    assert!(err.contains("threshold not met for role targets"), "{err}");
    // A changed file under an existing name, without --replace-targets.
    let changed = f.keys.dir.join("changed");
    write(&changed.join("a.txt"), b"changed\n");
    let err = fails(&refs(&base(&["-a", s(&changed)], &f.keys.online())));
    assert!(
        err.contains("target a.txt already exists with different content"),
        "{err}"
    );
    // Removing a target that does not exist.
    let err = fails(&refs(&base(
        &["--remove-target", "nope.txt"],
        &f.keys.online(),
    )));
    assert!(err.contains("no target named nope.txt"), "{err}");
    // Wrong trusted root (a different repository's root).
    let other = Keys::new(&f.keys.dir.join("other"));
    let mut a = base(&[], &f.keys.online());
    a[2] = s(&other.root).to_owned();
    let err = fails(&refs(&a));
    assert!(err.contains("cannot load the repository"), "{err}");
    // Refresh of snapshot with only the timestamp key.
    let err = fails(&[
        "refresh",
        "-r",
        s(&f.keys.root),
        "-m",
        s(&meta),
        "-o",
        s(&f.repo),
        "--snapshot",
        "-k",
        s(&f.keys.timestamp_key),
        "--expires",
        "in 1 day",
    ]);
    assert!(err.contains("threshold not met for role snapshot"), "{err}");

    assert_eq!(snapshot_tree(&f.repo), before, "nothing was written");
}

#[test]
fn expired_repository_is_refused_and_can_be_repaired_explicitly() {
    let f = fixture();
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2)).to_string();
    ok(&refs(&create(
        &f.keys,
        &f.input,
        &f.repo,
        &["--timestamp-expires", &soon],
    )));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let meta = f.repo.join("metadata");
    let before = snapshot_tree(&f.repo);
    let dl = f.keys.dir.join("dl");
    let err = fails(&[
        "download",
        s(&dl),
        "-r",
        s(&f.keys.root),
        "-m",
        s(&meta),
        "-t",
        s(&f.repo.join("targets")),
    ]);
    assert!(err.contains("cannot load the repository"), "{err}");
    assert!(!dl.exists());
    let refresh = [
        "refresh",
        "-r",
        s(&f.keys.root),
        "-m",
        s(&meta),
        "-o",
        s(&f.repo),
        "-k",
        s(&f.keys.timestamp_key),
        "--expires",
        "in 1 day",
    ];
    fails(&refresh);
    assert_eq!(snapshot_tree(&f.repo), before);
    let mut repair = refresh.to_vec();
    repair.push("--allow-expired-repo");
    ok(&repair);
    ok(&[
        "download",
        s(&dl),
        "-r",
        s(&f.keys.root),
        "-m",
        s(&meta),
        "-t",
        s(&f.repo.join("targets")),
    ]);
}

#[test]
fn download_failures_leave_no_output() {
    let f = fixture();
    ok(&refs(&create(&f.keys, &f.input, &f.repo, &[])));
    let meta = f.repo.join("metadata");
    let targets = f.repo.join("targets");
    let dl = f.keys.dir.join("dl");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v = strings(&[
            "download",
            s(&dl),
            "-r",
            s(&f.keys.root),
            "-m",
            s(&meta),
            "-t",
            s(&targets),
        ]);
        v.extend(extra.iter().map(|x| (*x).to_owned()));
        v
    };
    // A name that escapes, and an unknown name.
    let err = fails(&refs(&base(&["-n", "../../etc/passwd"])));
    assert!(
        err.contains("no target named") || err.contains("cannot be a target name"),
        "{err}"
    );
    assert!(!dl.exists());
    // Existing output folder.
    std::fs::create_dir_all(&dl).unwrap();
    let err = fails(&refs(&base(&[])));
    assert!(err.contains("already exists"), "{err}");
    std::fs::remove_dir(&dl).unwrap();
    // A tampered target (same length, different bytes).
    let victim = walkdir::WalkDir::new(&targets)
        .into_iter()
        .map(Result::unwrap)
        .find(|e| e.file_type().is_file() && e.file_name().to_string_lossy().ends_with(".b.txt"))
        .unwrap();
    std::fs::write(victim.path(), b"X\n").unwrap();
    let err = fails(&refs(&base(&[])));
    assert!(err.contains("does not match its length or sha256"), "{err}");
    assert!(!dl.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&f.keys.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tuftool-staging"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn keys_are_private_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("k.pem");
    let out = ok(&["gen-key", s(&key), "--type", "rsa2048", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["public_key"]["keytype"], "rsa");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read(&key).unwrap();
    let err = fails(&["gen-key", s(&key)]);
    assert!(err.contains("cannot write"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before);

    // A key not in root cannot sign it.
    let root = tmp.path().join("root.json");
    ok(&["root", "init", s(&root)]);
    let before = std::fs::read(&root).unwrap();
    let err = fails(&["root", "sign", s(&root), "-k", s(&key)]);
    assert!(err.contains("is not a root key of this root"), "{err}");
    assert_eq!(std::fs::read(&root).unwrap(), before);
}

#[test]
fn delegated_targets_must_stay_inside_their_paths() {
    let f = fixture();
    ok(&refs(&create(&f.keys, &f.input, &f.repo, &[])));
    let meta = f.repo.join("metadata");
    let role_key = f.keys.dir.join("role.der");
    ok(&["gen-key", s(&role_key)]);
    let mut add = strings(&[
        "delegation",
        "--signing-role",
        "targets",
        "add-role",
        "--delegated-role",
        "team",
        "--delegated-key",
        s(&role_key),
        "-p",
        "team/*",
        "-r",
        s(&f.keys.root),
        "-m",
        s(&meta),
        "-o",
        s(&f.repo),
        "--expires",
        "in 1 week",
        "-k",
        s(&role_key),
    ]);
    add.extend(f.keys.online());
    ok(&refs(&add));
    let before = snapshot_tree(&f.repo);
    let outside = f.keys.dir.join("outside");
    write(&outside.join("elsewhere/x.txt"), b"x\n");
    let err = fails(&[
        "delegation",
        "--signing-role",
        "team",
        "update-delegated-targets",
        "-a",
        s(&outside),
        "-r",
        s(&f.keys.root),
        "-m",
        s(&meta),
        "-o",
        s(&f.repo),
        "--expires",
        "in 1 week",
        "-k",
        s(&role_key),
        "-k",
        s(&f.keys.snapshot_key),
        "-k",
        s(&f.keys.timestamp_key),
    ]);
    assert!(err.contains("outside the paths delegated to team"), "{err}");
    assert_eq!(snapshot_tree(&f.repo), before);
}
