//! The tuftool commands no other test runs: `root set-threshold`, `root set-version`, `root
//! add-key --public-key`, and `delegation create-role` / `add-role -i` / `add-key` /
//! `remove-key` / `remove`. Each published step is refreshed by python-tuf, and the metadata is
//! checked for what the command was to change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Keys, ok, refs, s, strings, write};
use std::path::Path;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The newest `N.targets.json` in `metadata`.
fn latest_targets(metadata: &Path) -> serde_json::Value {
    let newest = std::fs::read_dir(metadata)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".targets.json")?.parse::<u64>().ok()
        })
        .max()
        .unwrap();
    json(&metadata.join(format!("{newest}.targets.json")))
}

#[test]
fn root_edits_and_the_whole_delegation_lifecycle() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let keys = Keys::new(&t.join("keys"));

    // root set-threshold / set-version / add-key --public-key, on a copy of the root.
    let edited = t.join("edited.root.json");
    std::fs::copy(&keys.root, &edited).unwrap();
    let extra = t.join("extra.der");
    let generated: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "gen-key", s(&extra)])).unwrap();
    let public = t.join("extra.pub.json");
    std::fs::write(&public, generated["public_key"].to_string()).unwrap();
    let keyid = generated["keyid"].as_str().unwrap();
    ok(&[
        "root",
        "add-key",
        s(&edited),
        "--public-key",
        s(&public),
        "-R",
        "targets",
    ]);
    ok(&["root", "set-threshold", s(&edited), "targets", "2"]);
    ok(&["root", "set-version", s(&edited), "7"]);
    let root = json(&edited);
    assert_eq!(root["signed"]["version"], 7);
    assert_eq!(root["signed"]["roles"]["targets"]["threshold"], 2);
    let targets_keys = root["signed"]["roles"]["targets"]["keyids"]
        .as_array()
        .unwrap();
    assert!(targets_keys.iter().any(|k| k == keyid), "{targets_keys:?}");
    assert!(root["signed"]["keys"][keyid].is_object());
    assert_eq!(
        root["signatures"].as_array().unwrap().len(),
        0,
        "edits clear signatures"
    );
    // Threshold 2 with two keys, the root key signs: a valid root.
    ok(&["root", "sign", s(&edited), "-k", s(&keys.root_key)]);
    let zero = common::run(&["root", "set-threshold", s(&edited), "targets", "0"]);
    assert!(!zero.0 && zero.2.contains("invalid value '0'"), "{zero:?}");

    // A repository to delegate from.
    let input = t.join("input");
    write(&input.join("top.txt"), b"top\n");
    let repo = t.join("repo");
    let meta = repo.join("metadata");
    common::create_repo(&keys, &input, &repo);
    // Where the repository is, and the expiry, for every command that publishes it.
    let at = || {
        strings(&[
            "-r",
            s(&keys.root),
            "-m",
            s(&meta),
            "-o",
            s(&repo),
            "-e",
            "in 2 weeks",
        ])
    };
    let repo_args = |extra: &[&str]| {
        let mut args = strings(extra);
        args.extend(at());
        args.extend(keys.online());
        args
    };

    // create-role: the delegatee signs its empty role; add-role -i imports it.
    let team_key = t.join("team.der");
    ok(&["gen-key", s(&team_key)]);
    let incoming = t.join("incoming");
    ok(&[
        "delegation",
        "--signing-role",
        "team",
        "create-role",
        "-k",
        s(&team_key),
        "-e",
        "in 2 weeks",
        "--version",
        "1",
        "-o",
        s(&incoming),
    ]);
    let created = json(&incoming.join("metadata/team.json"));
    assert_eq!(created["signed"]["_type"], "targets");
    assert_eq!(created["signatures"].as_array().unwrap().len(), 1);
    let mut args = repo_args(&[
        "delegation",
        "--signing-role",
        "targets",
        "add-role",
        "-d",
        "team",
        "--delegated-key",
        s(&team_key),
        "-p",
        "team/*",
        "-i",
        s(&incoming.join("metadata")),
    ]);
    args.push("-k".into());
    args.push(s(&team_key).into());
    ok(&refs(&args));
    let delegation = &latest_targets(&meta)["signed"]["delegations"];
    assert_eq!(delegation["roles"][0]["name"], "team");
    let team_keyids: Vec<String> = delegation["roles"][0]["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(team_keyids.len(), 1);

    // The team publishes a target; python-tuf finds it through the delegation.
    let team_input = t.join("team-input");
    write(&team_input.join("team/t.txt"), b"from the team\n");
    let mut args = strings(&[
        "delegation",
        "--signing-role",
        "team",
        "update-delegated-targets",
        "-a",
        s(&team_input),
    ]);
    args.extend(at());
    for key in [&team_key, &keys.snapshot_key, &keys.timestamp_key] {
        args.extend(strings(&["-k", s(key)]));
    }
    ok(&refs(&args));
    let client = t.join("client");
    test_support::python_tuf_accepts(&repo, &client, &keys.root, &team_input, &["team/t.txt"]);

    // add-key: a second key trusted for the team.
    let second = t.join("team2.der");
    ok(&["gen-key", s(&second)]);
    ok(&refs(&repo_args(&[
        "delegation",
        "--signing-role",
        "targets",
        "add-key",
        "-d",
        "team",
        "--new-key",
        s(&second),
    ])));
    let after_add = &latest_targets(&meta)["signed"]["delegations"];
    assert_eq!(after_add["roles"][0]["keyids"].as_array().unwrap().len(), 2);
    test_support::python_tuf_accepts(&repo, &client, &keys.root, &team_input, &["team/t.txt"]);

    // remove-key: the first key is no longer trusted for the team, whose metadata it signed:
    // the team's role is re-signed in the same step, so its remaining key is needed.
    let remove_key = repo_args(&[
        "delegation",
        "--signing-role",
        "targets",
        "remove-key",
        "--keyid",
        &team_keyids[0],
        "-d",
        "team",
    ]);
    let before = common::snapshot_tree(&meta);
    let refused = common::fails(&refs(&remove_key));
    assert!(refused.contains("team"), "{refused}");
    assert!(
        common::snapshot_tree(&meta) == before,
        "a refusal writes nothing"
    );
    let mut with_team_key = remove_key.clone();
    with_team_key.extend(strings(&["-k", s(&second)]));
    ok(&refs(&with_team_key));
    test_support::python_tuf_accepts(&repo, &client, &keys.root, &team_input, &["team/t.txt"]);
    let after_remove = &latest_targets(&meta)["signed"]["delegations"];
    let left = after_remove["roles"][0]["keyids"].as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert_ne!(left[0], team_keyids[0].as_str());

    // remove: the delegation is gone; python-tuf still refreshes, the team's target is gone.
    ok(&refs(&repo_args(&[
        "delegation",
        "--signing-role",
        "targets",
        "remove",
        "-d",
        "team",
    ])));
    let after = latest_targets(&meta);
    let roles = after["signed"]["delegations"]["roles"].as_array();
    assert!(roles.is_none_or(|r| r.is_empty()), "{after}");
    test_support::python_tuf_accepts(&repo, &client, &keys.root, &input, &["top.txt"]);
    let out = std::process::Command::new(test_support::venv_python())
        .arg(common::script("ngclient_check.py"))
        .args([
            s(&repo),
            s(&client),
            s(&keys.root),
            s(&team_input),
            "team/t.txt",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the removed role's target must be gone"
    );
}
