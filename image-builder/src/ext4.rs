//! ext4 filesystems made with e2fsprogs (`image-layout.md` §3 and §6): `mkfs.ext4 -d`, one
//! `debugfs` batch (removals, ownership, fixed timestamps), `resize2fs -M`.
use crate::error::{self, Result};
use crate::tools::{self, ToolEnv};
use crate::tree::Entry;
use snafu::{ResultExt, ensure};
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Our `mke2fs.conf`: Debian bookworm's defaults (e2fsprogs 1.47.0), pinned so that the host's
/// configuration cannot change the images. The ext4 features are the ones GRUB's `ext2.mod`
/// reads.
pub const MKE2FS_CONF: &str = "\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
\tsmall = {
\t\tblocksize = 1024
\t\tinode_ratio = 4096
\t}
\tfloppy = {
\t\tblocksize = 1024
\t\tinode_ratio = 8192
\t}
\tbig = {
\t\tinode_ratio = 32768
\t}
\thuge = {
\t\tinode_ratio = 65536
\t}

[options]
\tfname_encoding = utf8
";

/// How one ext4 filesystem is made.
#[derive(Debug, Clone)]
pub struct Mkfs<'a> {
    /// The image file to create.
    pub image: &'a Path,
    /// The tree copied in with `-d`.
    pub tree: &'a Path,
    /// Filesystem size in bytes (a whole number of KiB).
    pub size_bytes: u64,
    /// Options before the `-E` list (e.g. `-b 4096`, `-O ^has_journal`).
    pub options: &'a [&'a str],
    /// Extended options besides `hash_seed` (e.g. `lazy_itable_init=0`).
    pub extended: &'a [&'a str],
    /// Filesystem UUID.
    pub uuid: &'a str,
    /// Directory hash seed.
    pub hash_seed: &'a str,
}

/// Run `mkfs.ext4`. Returns its stderr when it fails for lack of space, so that the caller
/// can name the sizes.
pub fn mkfs(env: &ToolEnv, spec: &Mkfs<'_>) -> Result<std::result::Result<(), String>> {
    let mut extended = spec.extended.join(",");
    if !extended.is_empty() {
        extended.push(',');
    }
    extended.push_str("hash_seed=");
    extended.push_str(spec.hash_seed);
    let mut command = env.command("mkfs.ext4");
    command
        .args(["-q", "-F", "-t", "ext4"])
        .args(spec.options)
        .args(["-E", &extended, "-U", spec.uuid, "-d"])
        .arg(spec.tree)
        .arg(spec.image)
        .arg(format!("{}k", spec.size_bytes / 1024));
    tracing::debug!(command = %tools::describe(&command), "making ext4");
    match tools::run("mkfs.ext4", &mut command) {
        Ok(_) => Ok(Ok(())),
        Err(error::Error::ToolFailed { stderr, .. })
            if stderr.contains("Could not allocate")
                || stderr.contains("No space left")
                || stderr.contains("Not enough space") =>
        {
            Ok(Err(stderr))
        }
        Err(other) => Err(other),
    }
}

/// Quote `path` (relative to the filesystem root) for a debugfs command line.
fn quote(path: &str) -> Result<String> {
    ensure!(
        !path.contains(['"', '\n', '\\']),
        error::UnsupportedPathSnafu { path }
    );
    Ok(format!("\"/{path}\""))
}

/// The debugfs commands that give every inode of `entries` (plus the root directory and
/// `lost+found`) fixed times, and optionally root ownership.
pub fn fixup_commands(entries: &[Entry], epoch: Option<i64>, root_owned: bool) -> Result<String> {
    let mut commands = String::new();
    let paths = ["", "lost+found"]
        .into_iter()
        .chain(entries.iter().map(|e| e.path.as_str()));
    for path in paths {
        let quoted = quote(path)?;
        if let Some(epoch) = epoch {
            for field in ["atime", "ctime", "mtime", "crtime"] {
                // Writing to a String cannot fail.
                let _ = writeln!(commands, "set_inode_field {quoted} {field} @{epoch}");
            }
        }
        if root_owned {
            for field in ["uid", "gid"] {
                let _ = writeln!(commands, "set_inode_field {quoted} {field} 0");
            }
        }
    }
    Ok(commands)
}

/// The debugfs commands that empty the directory `dir` of `entries` (children first).
pub fn removal_commands(entries: &[Entry], dir: &str) -> Result<String> {
    let prefix = format!("{dir}/");
    let mut commands = String::new();
    for entry in entries.iter().rev().filter(|e| e.path.starts_with(&prefix)) {
        let verb = if entry.is_dir { "rmdir" } else { "rm" };
        let _ = writeln!(commands, "{verb} {}", quote(&entry.path)?);
    }
    Ok(commands)
}

/// Run one `debugfs -w` batch on `image`. debugfs exits 0 even when a command fails, so any
/// error line on stderr fails the batch.
pub fn debugfs(env: &ToolEnv, image: &Path, commands: &str, work: &Path) -> Result<()> {
    if commands.is_empty() {
        return Ok(());
    }
    let script = work.join("debugfs.cmds");
    std::fs::write(&script, commands).context(error::WriteFileSnafu { path: &script })?;
    let mut command = env.command("debugfs");
    command.arg("-w").arg("-f").arg(&script).arg(image);
    let output = tools::run("debugfs", &mut command)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with("debugfs "))
        .collect();
    ensure!(
        errors.is_empty(),
        error::ToolFailedSnafu {
            tool: "debugfs",
            status: "0 with errors",
            stderr: errors.join("\n"),
        }
    );
    Ok(())
}

/// Check `image` with `e2fsck -fy -E discard`, which also zeroes (punches out) every free
/// block, so nothing removed from the tree stays behind in the image. Exit code 1 ("errors
/// corrected") is accepted: e2fsck reports the discard as a change.
pub fn discard_free(env: &ToolEnv, image: &Path) -> Result<()> {
    let output = env
        .command("e2fsck")
        .args(["-f", "-y", "-E", "discard"])
        .arg(image)
        .output()
        .context(error::SpawnToolSnafu { tool: "e2fsck" })?;
    ensure!(
        matches!(output.status.code(), Some(0 | 1)),
        error::ToolFailedSnafu {
            tool: "e2fsck",
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        }
    );
    Ok(())
}

/// Shrink the filesystem in `image` to its minimum (`resize2fs -M`) and truncate the file to
/// the filesystem size. Returns that size in bytes.
pub fn shrink(env: &ToolEnv, image: &Path) -> Result<u64> {
    let mut command = env.command("resize2fs");
    command.arg("-M").arg(image);
    tools::run("resize2fs", &mut command)?;
    let size = fs_size(image)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .context(error::WriteFileSnafu { path: image })?;
    file.set_len(size)
        .context(error::WriteFileSnafu { path: image })?;
    Ok(size)
}

/// The size of the ext4 filesystem in `image`, from its superblock.
pub fn fs_size(image: &Path) -> Result<u64> {
    let file = File::open(image).context(error::ReadFileSnafu { path: image })?;
    let mut sb = [0_u8; 1024];
    file.read_exact_at(&mut sb, 1024)
        .context(error::ReadFileSnafu { path: image })?;
    let u32_at = |offset: usize| {
        u32::from_le_bytes([sb[offset], sb[offset + 1], sb[offset + 2], sb[offset + 3]])
    };
    ensure!(
        sb[56..58] == [0x53, 0xef] && u32_at(24) <= 16,
        error::BadSuperblockSnafu { path: image }
    );
    let incompat_64bit = u32_at(96) & 0x80 != 0;
    let high = if incompat_64bit {
        u64::from(u32_at(0x150))
    } else {
        0
    };
    let blocks = (high << 32) | u64::from(u32_at(4));
    Ok(blocks << (10 + u32_at(24)))
}

#[cfg(test)]
mod tests {
    use super::{fixup_commands, removal_commands};
    use crate::tree::Entry;

    fn entry(path: &str, is_dir: bool) -> Entry {
        Entry {
            path: path.into(),
            is_dir,
            allocated: 0,
        }
    }

    #[test]
    fn removals_go_children_first_and_keep_the_directory() {
        let entries = [
            entry("bin", true),
            entry("boot", true),
            entry("boot/grub", true),
            entry("boot/grub/x", false),
            entry("boot/vmlinuz", false),
            entry("bootx", false),
        ];
        assert_eq!(
            removal_commands(&entries, "boot").unwrap(),
            "rm \"/boot/vmlinuz\"\nrm \"/boot/grub/x\"\nrmdir \"/boot/grub\"\n"
        );
    }

    #[test]
    fn fixups_cover_root_and_lost_found() {
        let text = fixup_commands(&[entry("a b", false)], Some(7), true).unwrap();
        assert!(text.starts_with("set_inode_field \"/\" atime @7\n"));
        assert!(text.contains("set_inode_field \"/lost+found\" crtime @7\n"));
        assert!(text.contains("set_inode_field \"/a b\" gid 0\n"));
        assert_eq!(
            fixup_commands(&[entry("a", false)], None, false).unwrap(),
            ""
        );
        assert!(fixup_commands(&[entry("a\"b", false)], Some(1), false).is_err());
    }
}
