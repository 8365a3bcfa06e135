//! `update` into a new folder and `clone` copy the files they did not sign themselves (the
//! earlier roots of the chain, unchanged delegated roles) from the source: each must be
//! checked against what was verified, not copied as found.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Keys, fails, ok, refs, s, strings, write};

#[test]
fn a_tampered_earlier_root_at_the_source_is_refused_not_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let keys = Keys::new(&t.join("keys"));
    let input = t.join("input");
    write(&input.join("a.txt"), b"a\n");
    let repo = t.join("repo");
    common::create_repo(&keys, &input, &repo);
    // Rotate to root 2 (same keys), published with the next version.
    let root2 = t.join("2.root.json");
    std::fs::copy(&keys.root, &root2).unwrap();
    ok(&["root", "bump-version", s(&root2)]);
    ok(&["root", "sign", s(&root2), "-k", s(&keys.root_key)]);
    let meta = repo.join("metadata");
    let mut args = strings(&[
        "update",
        "-r",
        s(&keys.root),
        "-m",
        s(&meta),
        "-o",
        s(&repo),
    ]);
    args.extend(strings(&[
        "--new-root",
        s(&root2),
        "--expires",
        "in 2 weeks",
    ]));
    args.extend(keys.online());
    ok(&refs(&args));
    assert!(meta.join("2.root.json").is_file());

    // Someone edits 1.root.json at the source (still valid JSON, signatures now wrong).
    let original = std::fs::read_to_string(meta.join("1.root.json")).unwrap();
    let year = original.find("\"expires\": \"").unwrap() + 12;
    let mut tampered = original.clone();
    tampered.replace_range(year..year + 4, "2099");
    assert_ne!(tampered, original);
    std::fs::write(meta.join("1.root.json"), &tampered).unwrap();

    // update into a new folder, trusting root 2: the chain file is checked, nothing written.
    let out = t.join("copy");
    let mut args = strings(&["update", "-r", s(&root2), "-m", s(&meta), "-o", s(&out)]);
    args.extend(strings(&["--expires", "in 2 weeks"]));
    args.extend(keys.online());
    let error = fails(&refs(&args));
    assert!(error.contains("1.root.json"), "{error}");
    assert!(
        error.contains("not the metadata that was verified"),
        "{error}"
    );
    assert!(!out.join("metadata").exists(), "nothing written");
    // clone refuses it too.
    let clone = t.join("clone");
    let error = fails(&[
        "clone",
        "-r",
        s(&root2),
        "-m",
        s(&meta),
        "--metadata-dir",
        s(&clone),
    ]);
    assert!(error.contains("1.root.json"), "{error}");
    assert!(!clone.exists());

    // The genuine file is copied.
    std::fs::write(meta.join("1.root.json"), &original).unwrap();
    ok(&refs(&args));
    assert_eq!(
        std::fs::read_to_string(out.join("metadata/1.root.json")).unwrap(),
        original
    );
}
