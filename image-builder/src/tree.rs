//! The input trees: walking them (sorted, without following symlinks), estimating their size,
//! staging the boot tree, and reading `os-release`.
use crate::error::{self, Result};
use snafu::ResultExt;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One file, directory or other node of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the tree root, without a leading slash. Any name Linux allows (it need
    /// not be UTF-8).
    pub path: PathBuf,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Bytes allocated on the host (sparse files count only their data).
    pub allocated: u64,
}

/// Every entry under `root` (not `root` itself), sorted by the bytes of the path, parents before
/// children.
pub fn walk(root: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut pending = vec![(root.to_path_buf(), PathBuf::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let reader = fs::read_dir(&dir).context(error::ReadTreeSnafu { path: &dir })?;
        for item in reader {
            let item = item.context(error::ReadTreeSnafu { path: &dir })?;
            let full = item.path();
            let metadata =
                fs::symlink_metadata(&full).context(error::ReadTreeSnafu { path: &full })?;
            let path = prefix.join(item.file_name());
            if metadata.is_dir() {
                pending.push((full, path.clone()));
            }
            entries.push(Entry {
                path,
                is_dir: metadata.is_dir(),
                allocated: metadata.blocks() * 512,
            });
        }
    }
    entries.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    Ok(entries)
}

/// A lower bound of the bytes a filesystem needs for `entries`: each entry's allocated data
/// rounded up to `block` (metadata comes on top).
pub fn estimate_bytes(entries: &[Entry], block: u64) -> u64 {
    entries
        .iter()
        .map(|e| e.allocated.div_ceil(block) * block)
        .sum()
}

/// Copy the tree at `from` into `to` (created), keeping symlinks as symlinks, with every
/// permission bit for group and others removed (`chmod -R go-rwx`).
pub fn copy_private(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).context(error::CreateDirSnafu { path: to })?;
    set_mode(to, 0o700)?;
    for entry in walk(from)? {
        let (src, dst) = (from.join(&entry.path), to.join(&entry.path));
        let metadata = fs::symlink_metadata(&src).context(error::ReadTreeSnafu { path: &src })?;
        if metadata.is_dir() {
            fs::create_dir(&dst).context(error::CreateDirSnafu { path: &dst })?;
            set_mode(&dst, metadata.mode() & 0o700)?;
        } else if metadata.file_type().is_symlink() {
            let target = fs::read_link(&src).context(error::ReadTreeSnafu { path: &src })?;
            std::os::unix::fs::symlink(target, &dst)
                .context(error::WriteFileSnafu { path: &dst })?;
        } else if metadata.is_file() {
            fs::copy(&src, &dst).context(error::WriteFileSnafu { path: &dst })?;
            set_mode(&dst, metadata.mode() & 0o700)?;
        } else {
            return error::UnsupportedFileSnafu { path: src }.fail();
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .context(error::WriteFileSnafu { path })
}

/// The `os-release` fields the build uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
    /// `VERSION_ID`.
    pub version_id: Option<String>,
    /// `VARIANT_ID`.
    pub variant_id: Option<String>,
}

/// Parse `os-release` text (shell-style `KEY=value`, values optionally quoted).
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut release = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value)
            .to_owned();
        match key {
            "PRETTY_NAME" => release.pretty_name = Some(value),
            "VERSION_ID" => release.version_id = Some(value),
            "VARIANT_ID" => release.variant_id = Some(value),
            _ => {}
        }
    }
    release
}

/// Read `usr/lib/os-release`, else `etc/os-release`, of the tree at `root` (a symlink in the
/// tree is resolved inside the tree, not on the host).
pub fn read_os_release(root: &Path) -> OsRelease {
    for candidate in ["usr/lib/os-release", "etc/os-release"] {
        let path: PathBuf = root.join(candidate);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
            && let Ok(text) = fs::read_to_string(&path)
        {
            return parse_os_release(&text);
        }
    }
    OsRelease::default()
}

#[cfg(test)]
mod tests {
    use super::{copy_private, estimate_bytes, parse_os_release, walk};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn os_release_values_are_unquoted() {
        let release = parse_os_release(
            "NAME=Bottlerocket\nPRETTY_NAME=\"Bottlerocket OS 1.0.0 (aws-dev)\"\nVERSION_ID=1.0.0\nVARIANT_ID='aws-dev'\n# c\n",
        );
        assert_eq!(
            release.pretty_name.as_deref(),
            Some("Bottlerocket OS 1.0.0 (aws-dev)")
        );
        assert_eq!(release.version_id.as_deref(), Some("1.0.0"));
        assert_eq!(release.variant_id.as_deref(), Some("aws-dev"));
    }

    #[test]
    fn walk_is_sorted_and_copy_strips_group_and_other_bits() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("b/c")).unwrap();
        std::fs::write(src.join("a"), "x").unwrap();
        std::fs::write(src.join("b/c/d"), vec![1; 5000]).unwrap();
        std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("a", src.join("link")).unwrap();
        let entries = walk(&src).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.to_str().unwrap()).collect();
        assert_eq!(paths, ["a", "b", "b/c", "b/c/d", "link"]);
        assert!(estimate_bytes(&entries, 4096) >= 4096 * 3);
        let dst = dir.path().join("dst");
        copy_private(&src, &dst).unwrap();
        let mode = std::fs::metadata(dst.join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap().to_str(),
            Some("a")
        );
        assert_eq!(std::fs::read(dst.join("b/c/d")).unwrap().len(), 5000);
    }
}
