//! A real block device with 4096-byte logical sectors (a loop device made with
//! `losetup -b 4096`), where sgdisk and cgpt can check a 4K table. Needs root and a free loop
//! device, so it is ignored by default; run it with
//! `cargo test -p signpost --test block_device -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{DISK_MIB, Image, LAYOUT_1GIB, assert_disk, sgdisk_layout_args, tool};
use std::fs::File;
use std::path::PathBuf;

/// Detaches the loop device on drop.
struct Loop(PathBuf);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .status();
    }
}

#[test]
#[ignore = "needs root and a free loop device; run with --ignored"]
fn lifecycle_on_a_4k_sector_block_device() {
    let dir = common::tempdir();
    let backing = dir.path().join("backing.img");
    File::create(&backing)
        .unwrap()
        .set_len(DISK_MIB << 20)
        .unwrap();
    let device = tool(
        "losetup",
        &["-b", "4096", "-f", "--show", &backing.to_string_lossy()],
    );
    let device = Loop(PathBuf::from(device.trim()));
    assert_eq!(
        tool("blockdev", &["--getss", &device.0.to_string_lossy()]).trim(),
        "4096"
    );
    let mut args = sgdisk_layout_args(&LAYOUT_1GIB, 256);
    args.push(device.0.to_string_lossy().into_owned());
    tool(
        "sgdisk",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    let image = Image {
        dir,
        path: device.0.clone(),
    };
    let status = image.run(&["status"]);
    assert!(
        status.contains(&format!("boot={}p3", device.0.display())),
        "{status}"
    );
    assert!(
        image
            .run(&["status", "--json"])
            .contains("\"sector_size\": 4096")
    );
    assert_disk(&image.path, (1, 0, true), (0, 0, false), false);
    image.stage_update();
    assert_disk(&image.path, (1, 0, true), (2, 1, false), false);
    assert_eq!(image.run(&["select-boot"]), "b\n");
    image.run(&["--active-set", "b", "mark-successful-boot"]);
    assert_disk(&image.path, (1, 0, true), (2, 0, true), true);
}
