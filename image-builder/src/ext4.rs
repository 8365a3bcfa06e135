//! ext4 filesystems made with e2fsprogs (`image-layout.md` §3 and §6): `mkfs.ext4 -d`, one
//! `debugfs` batch (removals, ownership, fixed timestamps), `resize2fs -M`.
use crate::error::{self, Result};
use crate::tools::{self, ToolEnv};
use crate::tree::Entry;
use snafu::{ResultExt, ensure};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
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

/// A batch of debugfs commands, in order. debugfs reads a command file line by line, so a
/// command whose path holds a newline cannot be one of its lines: such a command runs on its
/// own with `-R` (its argument is one string), between the file batches before and after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    commands: Vec<Vec<u8>>,
}

impl Script {
    /// Append `verb` applied to `path` (relative to the filesystem root), then `rest`.
    fn push(&mut self, verb: &str, path: &Path, rest: &str) {
        let mut command = Vec::with_capacity(verb.len() + path.as_os_str().len() + rest.len() + 5);
        command.extend_from_slice(verb.as_bytes());
        command.push(b' ');
        command.extend_from_slice(&quote(path));
        command.extend_from_slice(rest.as_bytes());
        self.commands.push(command);
    }

    /// Append every command of `other`.
    pub fn extend(&mut self, other: Script) {
        self.commands.extend(other.commands);
    }

    /// Whether there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The commands, one per line (a command holding a newline spans lines).
    #[cfg(test)]
    fn text(&self) -> String {
        let mut text = String::new();
        for command in &self.commands {
            text.push_str(&String::from_utf8_lossy(command));
            text.push('\n');
        }
        text
    }
}

/// Quote `path` (relative to the filesystem root) as one debugfs argument. debugfs's parser
/// (libss) takes everything between double quotes literally, bytes that are not UTF-8
/// included, and reads `""` inside quotes as one quote.
fn quote(path: &Path) -> Vec<u8> {
    let bytes = path.as_os_str().as_bytes();
    let mut quoted = Vec::with_capacity(bytes.len() + 4);
    quoted.extend_from_slice(b"\"/");
    for &byte in bytes {
        if byte == b'"' {
            quoted.push(b'"');
        }
        quoted.push(byte);
    }
    quoted.push(b'"');
    quoted
}

/// The debugfs commands that give every inode of `entries` (plus the root directory and
/// `lost+found`) fixed times, and optionally root ownership.
pub fn fixup_commands(entries: &[Entry], epoch: Option<i64>, root_owned: bool) -> Script {
    let mut script = Script::default();
    let paths = [Path::new(""), Path::new("lost+found")]
        .into_iter()
        .chain(entries.iter().map(|e| e.path.as_path()));
    for path in paths {
        if let Some(epoch) = epoch {
            for field in ["atime", "ctime", "mtime", "crtime"] {
                script.push("set_inode_field", path, &format!(" {field} @{epoch}"));
            }
        }
        if root_owned {
            for field in ["uid", "gid"] {
                script.push("set_inode_field", path, &format!(" {field} 0"));
            }
        }
    }
    script
}

/// The debugfs commands that empty the directory `dir` of `entries` (children first).
pub fn removal_commands(entries: &[Entry], dir: &Path) -> Script {
    let mut script = Script::default();
    for entry in entries
        .iter()
        .rev()
        .filter(|e| e.path.starts_with(dir) && e.path != dir)
    {
        let verb = if entry.is_dir { "rmdir" } else { "rm" };
        script.push(verb, &entry.path, "");
    }
    script
}

/// Run `script` with `debugfs -w` on `image`: runs of plain commands as `-f` files, commands
/// holding a newline one by one with `-R`.
pub fn debugfs(env: &ToolEnv, image: &Path, script: &Script, work: &Path) -> Result<()> {
    let file = work.join("debugfs.cmds");
    let mut batch: Vec<u8> = Vec::new();
    for command in &script.commands {
        if command.contains(&b'\n') {
            if !batch.is_empty() {
                fs::write(&file, &batch).context(error::WriteFileSnafu { path: &file })?;
                run_debugfs(env, image, &[OsStr::new("-f"), file.as_os_str()])?;
                batch.clear();
            }
            run_debugfs(env, image, &[OsStr::new("-R"), OsStr::from_bytes(command)])?;
        } else {
            batch.extend_from_slice(command);
            batch.push(b'\n');
        }
    }
    if !batch.is_empty() {
        fs::write(&file, &batch).context(error::WriteFileSnafu { path: &file })?;
        run_debugfs(env, image, &[OsStr::new("-f"), file.as_os_str()])?;
    }
    Ok(())
}

/// One `debugfs -w` run. debugfs exits 0 even when a command fails, so any error line on
/// stderr fails it.
fn run_debugfs(env: &ToolEnv, image: &Path, args: &[&OsStr]) -> Result<()> {
    let mut command = env.command("debugfs");
    command.arg("-w").args(args).arg(image);
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
    use std::path::Path;

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
            removal_commands(&entries, Path::new("boot")).text(),
            "rm \"/boot/vmlinuz\"\nrm \"/boot/grub/x\"\nrmdir \"/boot/grub\"\n"
        );
    }

    #[test]
    fn fixups_cover_root_and_lost_found() {
        let text = fixup_commands(&[entry("a b", false)], Some(7), true).text();
        assert!(text.starts_with("set_inode_field \"/\" atime @7\n"));
        assert!(text.contains("set_inode_field \"/lost+found\" crtime @7\n"));
        assert!(text.contains("set_inode_field \"/a b\" gid 0\n"));
        assert!(fixup_commands(&[entry("a", false)], None, false).is_empty());
        let quoted = fixup_commands(&[entry("a\"b\\c", false)], None, true).text();
        assert!(quoted.contains("set_inode_field \"/a\"\"b\\c\" uid 0\n"));
    }
}
