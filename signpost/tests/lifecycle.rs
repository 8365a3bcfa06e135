//! The A/B lifecycle through the CLI on a reference-layout image, checked after every command
//! against sgdisk and cgpt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Image, assert_disk};
use predicates::prelude::predicate;
use serde_json::{Value, json};

#[test]
fn fresh_image_has_the_reference_initial_state() {
    let image = Image::reference();
    assert_disk(&image.path, (1, 0, true), (0, 0, false), false);
    let text = image.run(&["status"]);
    assert_eq!(
        text,
        format!(
            "OS disk: {}\n\
             Set A:   boot=#3 root=#4 hash=#5 priority=1 tries_left=0 successful=true\n\
             Set B:   boot=#8 root=#9 hash=#10 priority=0 tries_left=0 successful=false\n\
             Active:  Set A\n\
             Next:    Set A\n",
            image.path.display()
        )
    );
    image
        .signpost()
        .arg("has-boot-ever-succeeded")
        .assert()
        .success()
        .stdout("");
}

#[test]
fn full_lifecycle_clear_valid_upgrade_cancel_upgrade_boot_mark() {
    let image = Image::reference();
    let p = &image.path;

    image
        .signpost()
        .arg("clear-inactive")
        .assert()
        .success()
        .stdout("");
    assert_disk(p, (1, 0, true), (0, 0, false), false);

    image.run(&["mark-inactive-valid"]);
    assert_disk(p, (1, 0, true), (0, 1, false), false);

    image.run(&["upgrade-to-inactive"]);
    assert_disk(p, (1, 0, true), (2, 1, false), false);

    image.run(&["cancel-upgrade"]);
    assert_disk(p, (2, 0, true), (0, 1, false), false);

    // Tries were kept: upgrading again needs no re-validation.
    image.run(&["upgrade-to-inactive"]);
    assert_disk(p, (1, 0, true), (2, 1, false), false);

    // Reboot: the bootloader picks B and spends its try.
    assert_eq!(image.run(&["select-boot"]), "b\n");
    assert_disk(p, (1, 0, true), (2, 0, false), false);

    // Booted B is healthy.
    image.run(&["--active-set", "b", "mark-successful-boot"]);
    assert_disk(p, (1, 0, true), (2, 0, true), true);
    image
        .signpost()
        .arg("has-boot-ever-succeeded")
        .assert()
        .success()
        .stdout("true\n");

    // Both sets are now successful: the running set can no longer be inferred.
    asks_for_active_set(&image);
    // The next boot stays on B (successful, higher priority), spending nothing.
    assert_eq!(image.run(&["select-boot"]), "b\n");
    assert_disk(p, (1, 0, true), (2, 0, true), true);
}

/// A command that needs the running set fails, asking for `--active-set`.
fn asks_for_active_set(image: &Image) {
    image
        .signpost()
        .arg("clear-inactive")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "pass --active-set a or --active-set b",
        ));
}

#[test]
fn a_new_set_never_marked_successful_falls_back_to_the_old_one() {
    let image = Image::reference();
    let p = &image.path;
    image.stage_update();
    assert_eq!(image.run(&["select-boot"]), "b\n");
    assert_disk(p, (1, 0, true), (2, 0, false), false);
    // B's boot fails before mark-successful-boot; the machine reboots.
    assert_eq!(image.run(&["select-boot"]), "a\n");
    assert_disk(p, (1, 0, true), (2, 0, false), false);
    let status: Value = serde_json::from_str(&image.run(&["status", "--json"])).unwrap();
    assert_eq!(status["next"], json!("a"));
    // From the disk alone this state (B tried, never marked) is also "B running, not yet
    // marked": the running set is not guessed, so nothing can overwrite it by mistake.
    assert_eq!(status["active"], json!(null));
    asks_for_active_set(&image);
    // Back on A (the host knows), the failed B can be cleared and the update retried.
    image.run(&["--active-set", "a", "clear-inactive"]);
    assert_disk(p, (1, 0, true), (0, 0, false), false);
}

#[test]
fn rollback_to_the_previous_set() {
    let image = Image::reference();
    let p = &image.path;
    image.stage_update();
    assert_eq!(image.run(&["select-boot"]), "b\n");
    image.run(&["--active-set", "b", "mark-successful-boot"]);
    assert_disk(p, (1, 0, true), (2, 0, true), true);

    image.run(&["--active-set", "b", "rollback-to-inactive"]);
    assert_disk(p, (2, 0, true), (1, 0, true), true);
    assert_eq!(image.run(&["select-boot"]), "a\n");
    assert_disk(p, (2, 0, true), (1, 0, true), true);
}

#[test]
fn status_json_is_one_document() {
    let image = Image::reference();
    image.stage_update();
    let status: Value = serde_json::from_str(&image.run(&["status", "--json"])).unwrap();
    assert_eq!(
        status,
        json!({
            "disk": image.path.to_string_lossy(),
            "sector_size": 512,
            "active": "a",
            "active_source": "inferred",
            "next": "b",
            "boot_ever_succeeded": false,
            "sets": {
                "a": { "boot": 3, "root": 4, "hash": 5, "priority": 1, "tries_left": 0, "successful": true },
                "b": { "boot": 8, "root": 9, "hash": 10, "priority": 2, "tries_left": 1, "successful": false }
            },
            "table": { "primary": { "state": "valid" }, "backup": { "state": "valid" } }
        })
    );
    // A changing command with --json prints the state afterwards; select-boot adds the choice.
    let selected: Value = serde_json::from_str(&image.run(&["select-boot", "--json"])).unwrap();
    assert_eq!(selected["selected"], json!("b"));
    assert_eq!(selected["sets"]["b"]["tries_left"], json!(0));
    let ever: Value = serde_json::from_str(&image.run(&[
        "--active-set",
        "b",
        "has-boot-ever-succeeded",
        "--json",
    ]))
    .unwrap();
    assert_eq!(ever, json!({ "boot_ever_succeeded": false }));
}

#[test]
fn repeated_commands_are_idempotent_and_write_nothing() {
    let image = Image::reference();
    image.run(&["clear-inactive"]);
    let before = image.snapshot();
    image.run(&["clear-inactive"]);
    assert_eq!(image.snapshot(), before, "a no-op command wrote the disk");
    image.run(&["rewrite-table"]);
    assert_disk(&image.path, (1, 0, true), (0, 0, false), false);
}

#[test]
fn other_attribute_bits_survive() {
    let image = Image::reference();
    // Set UEFI bit 0 and reserved bit 60 on BOOT-B, bit 2 on PRIVATE.
    common::tool(
        "sgdisk",
        &[
            "-A",
            "8:set:0",
            "-A",
            "8:set:60",
            "-A",
            "12:set:2",
            &image.path.to_string_lossy(),
        ],
    );
    image.stage_update();
    assert_eq!(
        common::sgdisk_attributes(&image.path, 8),
        0x1012_0000_0000_0001
    );
    assert_eq!(image.run(&["select-boot"]), "b\n");
    image.run(&["--active-set", "b", "mark-successful-boot"]);
    assert_eq!(
        common::sgdisk_attributes(&image.path, 8),
        0x1102_0000_0000_0001
    );
    assert_eq!(
        common::sgdisk_attributes(&image.path, 12),
        0x0200_0000_0000_0004
    );
    common::assert_sgdisk_clean(&image.path);
}
