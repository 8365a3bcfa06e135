//! Finding the OS disk and the running partition on a real host, through sysfs
//! (`reference/signpost.md` §3.2, with the `dev_t` decoding fixed).
//!
//! 1. `stat(root)` gives the root filesystem's device number, decoded with the glibc/kernel
//!    encoding ([`dev_major_minor`]), not the reference's 8-bit `>> 8` / `& 0xff`.
//! 2. `<sysfs>/dev/block/MAJ:MIN` names the device (e.g. `dm-0`). A stacked device (dm-verity)
//!    is followed down its `slaves/` until partitions are reached; unlike the reference, every
//!    slave is followed (dm-verity has two: ROOT and HASH, both of the running set) and a root
//!    that is itself a partition is accepted.
//! 3. The disk is the `<sysfs>/block/<disk>` that contains the partition; its node is
//!    `<dev>/<disk>`, and the partition number comes from the `partition` file.
//!
//! All three roots are injectable ([`HostPaths`]) so tests run against a fake sysfs.

use crate::Result;
use crate::error::{
    DiskNotFoundSnafu, LowerDevicesSpanDisksSnafu, NoLowerDeviceSnafu, ReadSysfsSnafu,
    StackTooDeepSnafu, StatRootSnafu,
};
use snafu::ResultExt;
use std::fs;
use std::path::{Path, PathBuf};

/// How deep device stacking is followed (dm on dm on ...) before giving up.
const MAX_STACK_DEPTH: usize = 8;

/// The system paths host detection reads; overridable for tests and demos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The mount point whose device is the running root (`/`).
    pub root: PathBuf,
    /// Where sysfs is mounted (`/sys`).
    pub sysfs: PathBuf,
    /// Where device nodes live (`/dev`).
    pub dev: PathBuf,
}

impl Default for HostPaths {
    fn default() -> HostPaths {
        HostPaths {
            root: PathBuf::from("/"),
            sysfs: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// The OS disk and the partitions the running root sits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningDisk {
    /// The disk's device node, e.g. `/dev/nvme0n1`.
    pub disk: PathBuf,
    /// The partitions under the running root, as `(name, number)`, e.g. `("nvme0n1p4", 4)`.
    pub partitions: Vec<(String, u32)>,
}

/// Split a Linux `dev_t` into `(major, minor)` with the glibc/kernel encoding:
/// `major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xfffff000)`,
/// `minor = (dev & 0xff) | ((dev >> 12) & 0xffffff00)`.
pub fn dev_major_minor(dev: u64) -> (u32, u32) {
    (rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// Find the disk holding the running root.
pub fn find_running_disk(paths: &HostPaths) -> Result<RunningDisk> {
    let stat = rustix::fs::stat(&paths.root)
        .map_err(std::io::Error::from)
        .context(StatRootSnafu { path: &paths.root })?;
    find_disk_of_device(paths, stat.st_dev)
}

/// Find the disk holding the device `dev` (a `dev_t`), following stacked devices down.
pub fn find_disk_of_device(paths: &HostPaths, dev: u64) -> Result<RunningDisk> {
    let (major, minor) = dev_major_minor(dev);
    let link = paths.sysfs.join(format!("dev/block/{major}:{minor}"));
    let target = fs::read_link(&link).context(ReadSysfsSnafu { path: &link })?;
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut partitions = Vec::new();
    lower_partitions(paths, &name, 0, &mut partitions)?;
    let mut disk: Option<String> = None;
    let mut numbered = Vec::new();
    for partition in partitions {
        let this_disk = disk_of_partition(paths, &partition)?;
        if let Some(first) = disk.as_ref().filter(|first| **first != this_disk) {
            return LowerDevicesSpanDisksSnafu {
                device: name,
                first: first.clone(),
                second: this_disk,
            }
            .fail();
        }
        disk = Some(this_disk);
        let number_path = paths
            .sysfs
            .join(format!("class/block/{partition}/partition"));
        let text =
            fs::read_to_string(&number_path).context(ReadSysfsSnafu { path: &number_path })?;
        let number = text
            .trim()
            .parse::<u32>()
            .ok()
            .ok_or_else(|| crate::Error::ReadSysfs {
                path: number_path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not a partition number: {:?}", text.trim()),
                ),
            })?;
        numbered.push((partition, number));
    }
    let disk = disk.ok_or_else(|| crate::Error::NoLowerDevice {
        device: name.clone(),
    })?;
    tracing::debug!(disk = %disk, partitions = ?numbered, "found the running root's disk");
    Ok(RunningDisk {
        disk: paths.dev.join(disk),
        partitions: numbered,
    })
}

/// Collect the partitions at the bottom of the device stack under `name`.
fn lower_partitions(
    paths: &HostPaths,
    name: &str,
    depth: usize,
    out: &mut Vec<String>,
) -> Result<()> {
    if depth > MAX_STACK_DEPTH {
        return StackTooDeepSnafu { device: name }.fail();
    }
    let device = paths.sysfs.join("class/block").join(name);
    if device.join("partition").exists() {
        out.push(name.to_owned());
        return Ok(());
    }
    let slaves_dir = device.join("slaves");
    let mut slaves = match fs::read_dir(&slaves_dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<Vec<_>>>()
            .context(ReadSysfsSnafu { path: &slaves_dir })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).context(ReadSysfsSnafu { path: &slaves_dir }),
    };
    if slaves.is_empty() {
        return NoLowerDeviceSnafu { device: name }.fail();
    }
    slaves.sort();
    for slave in slaves {
        lower_partitions(paths, &slave, depth + 1, out)?;
    }
    Ok(())
}

/// The disk (`<sysfs>/block/<disk>`) that contains partition `name`.
fn disk_of_partition(paths: &HostPaths, name: &str) -> Result<String> {
    let block = paths.sysfs.join("block");
    let entries = fs::read_dir(&block).context(ReadSysfsSnafu { path: &block })?;
    let mut disks = Vec::new();
    for entry in entries {
        let entry = entry.context(ReadSysfsSnafu { path: &block })?;
        if entry.path().join(name).exists() {
            disks.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    disks.sort();
    disks
        .into_iter()
        .next()
        .ok_or_else(|| DiskNotFoundSnafu { partition: name }.build())
}

/// The device node of partition `number` of the disk node `disk` (`/dev/nvme0n1` + 3 →
/// `/dev/nvme0n1p3`, `/dev/xvda` + 3 → `/dev/xvda3`).
pub fn partition_node(disk: &Path, number: u32) -> PathBuf {
    let name = disk.to_string_lossy();
    let separator = if name.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    PathBuf::from(format!("{name}{separator}{number}"))
}

#[cfg(test)]
mod tests {
    use super::{HostPaths, dev_major_minor, find_disk_of_device, partition_node};
    use crate::Error;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    /// A fake sysfs with one NVMe disk (259:0) holding partitions p1..p13 (259:1..259:13, but
    /// p4 gets minor 300 to exercise the wide-minor encoding), and a dm-verity device dm-0
    /// (254:0) stacked on p4 (ROOT-A) and p5 (HASH-A).
    struct FakeSys {
        _dir: tempfile::TempDir,
        paths: HostPaths,
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }

    fn fake_sys() -> FakeSys {
        let dir = tempfile::tempdir().expect("tempdir");
        let sys = dir.path().join("sys");
        let devices = sys.join("devices");
        let disk = devices.join("pci0000:00/nvme/nvme0/nvme0n1");
        fs::create_dir_all(sys.join("dev/block")).expect("mkdir");
        fs::create_dir_all(sys.join("class/block")).expect("mkdir");
        fs::create_dir_all(sys.join("block")).expect("mkdir");
        write(&disk.join("dev"), "259:0\n");
        symlink(&disk, sys.join("block/nvme0n1")).expect("link");
        symlink(&disk, sys.join("class/block/nvme0n1")).expect("link");
        symlink(&disk, sys.join("dev/block/259:0")).expect("link");
        for number in 1..=13_u32 {
            let name = format!("nvme0n1p{number}");
            let minor = if number == 4 { 300 } else { number };
            let part = disk.join(&name);
            write(&part.join("partition"), &format!("{number}\n"));
            write(&part.join("dev"), &format!("259:{minor}\n"));
            symlink(&part, sys.join("class/block").join(&name)).expect("link");
            symlink(&part, sys.join(format!("dev/block/259:{minor}"))).expect("link");
        }
        let dm = devices.join("virtual/block/dm-0");
        write(&dm.join("dev"), "254:0\n");
        fs::create_dir_all(dm.join("slaves")).expect("mkdir");
        for lower in ["nvme0n1p5", "nvme0n1p4"] {
            symlink(disk.join(lower), dm.join("slaves").join(lower)).expect("link");
        }
        symlink(&dm, sys.join("class/block/dm-0")).expect("link");
        symlink(&dm, sys.join("dev/block/254:0")).expect("link");
        // A dm device with no lower devices.
        let lonely = devices.join("virtual/block/dm-1");
        write(&lonely.join("dev"), "254:1\n");
        fs::create_dir_all(lonely.join("slaves")).expect("mkdir");
        symlink(&lonely, sys.join("class/block/dm-1")).expect("link");
        symlink(&lonely, sys.join("dev/block/254:1")).expect("link");
        let paths = HostPaths {
            root: PathBuf::from("/"),
            sysfs: sys,
            dev: dir.path().join("dev"),
        };
        FakeSys { _dir: dir, paths }
    }

    #[test]
    fn decodes_wide_device_numbers() {
        for (major, minor) in [(8, 1), (259, 300), (4095, 255), (4096, 1 << 19), (254, 0)] {
            let dev = rustix::fs::makedev(major, minor);
            assert_eq!(dev_major_minor(dev), (major, minor));
        }
        // The reference's legacy decoding gets 259:300 wrong; ours does not.
        let dev = rustix::fs::makedev(259, 300);
        assert_ne!(((dev >> 8) as u32, (dev & 0xff) as u32), (259, 300));
    }

    #[test]
    fn follows_dm_verity_down_to_both_partitions() {
        let fake = fake_sys();
        let found =
            find_disk_of_device(&fake.paths, rustix::fs::makedev(254, 0)).expect("detects disk");
        assert_eq!(found.disk, fake.paths.dev.join("nvme0n1"));
        assert_eq!(
            found.partitions,
            vec![("nvme0n1p4".to_owned(), 4), ("nvme0n1p5".to_owned(), 5)]
        );
    }

    #[test]
    fn accepts_a_plain_partition_root_with_a_wide_minor() {
        let fake = fake_sys();
        let found =
            find_disk_of_device(&fake.paths, rustix::fs::makedev(259, 300)).expect("detects disk");
        assert_eq!(found.partitions, vec![("nvme0n1p4".to_owned(), 4)]);
    }

    #[test]
    fn stacked_device_without_slaves_is_an_error() {
        let fake = fake_sys();
        let error = find_disk_of_device(&fake.paths, rustix::fs::makedev(254, 1))
            .expect_err("no lower devices");
        assert!(matches!(error, Error::NoLowerDevice { ref device } if device == "dm-1"));
        assert!(error.to_string().contains("has no lower root devices"));
        let error = find_disk_of_device(&fake.paths, rustix::fs::makedev(1, 3))
            .expect_err("unknown device");
        assert!(matches!(error, Error::ReadSysfs { .. }));
    }

    #[test]
    fn partition_nodes_follow_kernel_naming() {
        assert_eq!(
            partition_node(Path::new("/dev/nvme0n1"), 3),
            PathBuf::from("/dev/nvme0n1p3")
        );
        assert_eq!(
            partition_node(Path::new("/dev/xvda"), 10),
            PathBuf::from("/dev/xvda10")
        );
    }
}
