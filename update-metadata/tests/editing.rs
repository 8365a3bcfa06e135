//! Manifest editing as publishers use it: idempotent add, per-group ceilings, removal, waves,
//! migrations, and atomic saves that keep unknown fields.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken invariants

use jiff::Timestamp;
use semver::Version;
use update_metadata::{Images, Manifest, NewUpdate, WaveSchedule};

fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

fn images(tag: &str) -> Images {
    Images {
        boot: format!("{tag}-boot"),
        root: format!("{tag}-root"),
        hash: format!("{tag}-hash"),
        extra: Default::default(),
    }
}

fn new(variant: &str, arch: &str, version: &str, max: Option<&str>) -> NewUpdate {
    NewUpdate {
        variant: variant.into(),
        arch: arch.into(),
        version: v(version),
        images: images(version),
        delta: None,
        max_version: max.map(v),
    }
}

fn ceilings(m: &Manifest) -> Vec<(String, String, String, String)> {
    m.updates
        .iter()
        .map(|u| {
            (
                u.variant.clone(),
                u.arch.clone(),
                u.version.to_string(),
                u.max_version.to_string(),
            )
        })
        .collect()
}

#[test]
fn re_adding_replaces_in_place_and_keeps_waves() {
    let mut m = Manifest::default();
    m.add_update(new("aws-dev", "x86_64", "1.0.0", None));
    let schedule = WaveSchedule::from_toml(
        "[[waves]]\nstart_after = '1 hour'\nfleet_percentage = 100\n",
        "inline",
    )
    .unwrap();
    let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
    m.set_waves("aws-dev", "x86_64", &v("1.0.0"), &schedule, start)
        .unwrap();
    let mut replacement = new("aws-dev", "x86_64", "1.0.0", None);
    replacement.images = images("rebuilt");
    m.add_update(replacement);
    assert_eq!(m.updates.len(), 1, "no duplicate entry");
    assert_eq!(m.updates[0].images.root, "rebuilt-root");
    assert_eq!(m.updates[0].waves.0.len(), 1, "waves survive a re-add");
}

#[test]
fn ceilings_are_per_variant_and_arch() {
    let mut m = Manifest::default();
    m.add_update(new("aws-dev", "x86_64", "1.0.0", None));
    m.add_update(new("aws-dev", "aarch64", "1.0.0", None));
    m.add_update(new("other", "x86_64", "3.0.0", None));
    m.add_update(new("aws-dev", "x86_64", "1.1.0", None));
    assert_eq!(
        ceilings(&m),
        [
            (
                "aws-dev".into(),
                "x86_64".into(),
                "1.0.0".into(),
                "1.1.0".into()
            ),
            (
                "aws-dev".into(),
                "aarch64".into(),
                "1.0.0".into(),
                "1.0.0".into()
            ),
            (
                "other".into(),
                "x86_64".into(),
                "3.0.0".into(),
                "3.0.0".into()
            ),
            (
                "aws-dev".into(),
                "x86_64".into(),
                "1.1.0".into(),
                "1.1.0".into()
            ),
        ]
    );
    // An explicit ceiling pulls the group, and only the group.
    m.set_max_version("aws-dev", "x86_64", &v("1.0.0")).unwrap();
    assert_eq!(m.updates[0].max_version, v("1.0.0"));
    assert_eq!(m.updates[3].max_version, v("1.0.0"));
    assert_eq!(m.updates[2].max_version, v("3.0.0"));
    assert!(m.set_max_version("nope", "x86_64", &v("1.0.0")).is_err());
}

#[test]
fn remove_names_what_is_missing() {
    let mut m = Manifest::default();
    m.add_update(new("aws-dev", "x86_64", "1.0.0", None));
    let error = m
        .remove_update("aws-dev", "x86_64", &v("9.9.9"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("aws-dev") && error.contains("9.9.9"),
        "{error}"
    );
    assert_eq!(
        m.remove_update("aws-dev", "x86_64", &v("1.0.0"))
            .unwrap()
            .version,
        v("1.0.0")
    );
    assert!(m.updates.is_empty());
}

#[test]
fn set_waves_on_a_missing_update_is_an_error() {
    let mut m = Manifest::default();
    let schedule = WaveSchedule::load(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../waves/ohno.toml"),
    )
    .unwrap();
    let error = m
        .set_waves(
            "aws-dev",
            "x86_64",
            &v("1.0.0"),
            &schedule,
            Timestamp::UNIX_EPOCH,
        )
        .unwrap_err();
    assert!(error.to_string().contains("No update"), "{error}");
}

#[test]
fn save_is_atomic_and_keeps_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    let source = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/bottlerocket/manifests/single_wave.json"
    ))
    .unwrap();
    let mut m = Manifest::from_slice(&source, "single_wave").unwrap();
    m.extra
        .insert("future_field".into(), serde_json::json!({"kept": true}));
    m.add_update(new("bottlerocket-aws-eks", "x86_64", "1.14.0", None));
    m.save(&path).unwrap();
    let reloaded = Manifest::load(&path).unwrap();
    assert_eq!(reloaded, m);
    let text = std::fs::read_to_string(&path).unwrap();
    for field in [
        "future_field",
        "datastore_versions",
        "\"status\": \"Ready\"",
    ] {
        assert!(text.contains(field), "{field} lost:\n{text}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["manifest.json"]);
}

#[test]
fn the_delta_field_is_kept_and_absent_when_there_is_none() {
    let mut m = Manifest::default();
    m.add_update(new("aws-dev", "x86_64", "1.0.0", None));
    // No delta: the JSON is what the reference writes (no `delta` key at all).
    let plain = m.to_json().unwrap();
    assert!(!plain.contains("delta"), "{plain}");
    let mut with_delta = new("aws-dev", "x86_64", "1.1.0", None);
    with_delta.delta = Some(update_metadata::Delta {
        index: "x-delta.index".into(),
        store: "x-delta.store".into(),
        extra: Default::default(),
    });
    m.add_update(with_delta);
    let text = m.to_json().unwrap();
    let back = Manifest::from_slice(text.as_bytes(), "test").unwrap();
    assert_eq!(back, m);
    let update = back
        .updates
        .iter()
        .find(|u| u.version == v("1.1.0"))
        .unwrap();
    assert_eq!(update.delta.as_ref().unwrap().store, "x-delta.store");
    // A reader that knows nothing of deltas (the reference's model: serde without
    // deny_unknown_fields) reads the same update and its images.
    #[derive(serde::Deserialize)]
    struct ReferenceUpdate {
        version: String,
        images: std::collections::BTreeMap<String, String>,
    }
    #[derive(serde::Deserialize)]
    struct ReferenceManifest {
        updates: Vec<ReferenceUpdate>,
    }
    let reference: ReferenceManifest = serde_json::from_str(&text).unwrap();
    let newest = reference
        .updates
        .iter()
        .find(|u| u.version == "1.1.0")
        .unwrap();
    assert_eq!(newest.images["root"], "1.1.0-root");
    // Re-adding with new images drops a delta made for the old ones.
    m.add_update(new("aws-dev", "x86_64", "1.1.0", None));
    assert!(m.updates.iter().all(|u| u.delta.is_none()));
}
