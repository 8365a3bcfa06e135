//! File-system helpers: atomic writes (temp file in the same directory, then rename), private
//! files created with mode 0600, and target publishing in copy, hardlink or symlink mode.
use crate::error::{self, Result};
use aws_lc_rs::digest::{Context, SHA256};
use snafu::{OptionExt, ResultExt};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How target files are placed in the repository's targets directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkMode {
    /// Copy the bytes (the default: the repository does not depend on the input folder).
    #[default]
    Copy,
    /// Hard-link the input file (same file system only; no extra space).
    Hardlink,
    /// Symlink to the input file's absolute path (the input folder must stay in place).
    Symlink,
}

/// What happens when a target's place in the repository already holds a file
/// (`--target-path-exists`, the reference tuftool's flag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathExists {
    /// Keep it when it holds the target's bytes (its SHA-256 is checked: a name, even a
    /// content-addressed one, is not trusted), else replace it.
    #[default]
    Skip,
    /// Always place the target anew.
    Replace,
    /// Refuse: an existing file is an error.
    Fail,
}

fn parent_of(path: &Path) -> Result<PathBuf> {
    let parent = path.parent().context(error::NoParentSnafu { path })?;
    Ok(if parent.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        parent.to_path_buf()
    })
}

/// Write `bytes` to `path` atomically (the workspace's one atomic write: temp file in the same
/// directory, synced, renamed, directory synced). The directory is created if needed. Metadata
/// is world-readable by design (0644), unlike keys.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_of(path)?;
    std::fs::create_dir_all(&dir).context(error::CreateDirSnafu { path: &dir })?;
    update_metadata::fs::write_atomic(path, bytes, 0o644).context(error::WriteFileSnafu { path })
}

/// Create `path` with `bytes`, mode 0600 from the start, atomically, failing if it exists.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_of(path)?;
    std::fs::create_dir_all(&dir).context(error::CreateDirSnafu { path: &dir })?;
    // tempfile creates its files with mode 0600.
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).context(error::WriteFileSnafu { path })?;
    set_mode(tmp.path(), 0o600)?;
    tmp.write_all(bytes)
        .context(error::WriteFileSnafu { path })?;
    tmp.as_file()
        .sync_all()
        .context(error::WriteFileSnafu { path })?;
    tmp.persist_noclobber(path)
        .map_err(|e| e.error)
        .context(error::WriteFileSnafu { path })?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .context(error::WriteFileSnafu { path })
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

/// A unique temporary name beside `dest`.
fn temp_beside(dest: &Path) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = dest
        .file_name()
        .context(error::NoParentSnafu { path: dest })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id());
    Ok(parent_of(dest)?.join(tmp))
}

/// Place `src` at `dest` by `mode`, atomically (created beside `dest`, then renamed over it),
/// replacing anything there.
pub fn publish_file(src: &Path, dest: &Path, mode: LinkMode) -> Result<()> {
    let dir = parent_of(dest)?;
    std::fs::create_dir_all(&dir).context(error::CreateDirSnafu { path: &dir })?;
    replace_file(src, dest, mode)
}

/// Place target `src`, whose SHA-256 is `sha256`, at `dest` (whose folder exists) by `mode`;
/// a file already at `dest` is handled by `exists`.
pub fn place_file(
    src: &Path,
    dest: &Path,
    mode: LinkMode,
    exists: PathExists,
    sha256: &[u8],
) -> Result<()> {
    if exists != PathExists::Replace && mode != LinkMode::Copy {
        // A link is created whole or not at all, so it can go straight to its final name: no
        // temporary name, no rename, no `stat` first. This halves the directory operations
        // per target, which dominate publishing many small files.
        let placed = match mode {
            LinkMode::Hardlink => std::fs::hard_link(src, dest),
            _ => std::fs::canonicalize(src).and_then(|abs| symlink(&abs, dest)),
        };
        match placed {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(error::Error::PublishTarget {
                    src: src.to_path_buf(),
                    dest: dest.to_path_buf(),
                    source: e,
                });
            }
            Err(_) => {}
        }
    } else if exists == PathExists::Replace || std::fs::symlink_metadata(dest).is_err() {
        return replace_file(src, dest, mode);
    }
    // Something is there already.
    match exists {
        PathExists::Fail => error::TargetPathExistsSnafu { path: dest }.fail(),
        PathExists::Skip if holds(dest, sha256) => Ok(()),
        _ => {
            tracing::warn!(
                path = %dest.display(),
                "the file at this target's place does not hold its bytes; replacing it"
            );
            replace_file(src, dest, mode)
        }
    }
}

/// Whether `path` (followed if a link) holds bytes whose SHA-256 is `sha256`.
fn holds(path: &Path, sha256: &[u8]) -> bool {
    hash_file(path).is_ok_and(|(_, digest)| digest == sha256)
}

/// Place `src` at `dest` by `mode` through a temporary name beside it, replacing anything
/// there.
fn replace_file(src: &Path, dest: &Path, mode: LinkMode) -> Result<()> {
    let tmp = temp_beside(dest)?;
    let placed = match mode {
        LinkMode::Copy => std::fs::copy(src, &tmp).map(|_| ()),
        LinkMode::Hardlink => std::fs::hard_link(src, &tmp),
        LinkMode::Symlink => {
            let abs = std::fs::canonicalize(src).context(error::ReadFileSnafu { path: src })?;
            symlink(&abs, &tmp)
        }
    };
    if let Err(source) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(error::Error::PublishTarget {
            src: src.to_path_buf(),
            dest: dest.to_path_buf(),
            source,
        });
    }
    std::fs::rename(&tmp, dest).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        error::Error::PublishTarget {
            src: src.to_path_buf(),
            dest: dest.to_path_buf(),
            source,
        }
    })
}

#[cfg(unix)]
fn symlink(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(src, dest)
}

#[cfg(not(unix))]
fn symlink(_src: &Path, _dest: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("symlinks are only supported on Unix"))
}

/// Fail unless `path` does not exist (for output folders that must be new).
pub fn ensure_absent(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        return error::OutputExistsSnafu { path }.fail();
    }
    Ok(())
}

/// A temporary folder beside `final_path`, to be renamed to it once complete.
pub fn staging_dir_for(final_path: &Path) -> Result<tempfile::TempDir> {
    let dir = parent_of(final_path)?;
    std::fs::create_dir_all(&dir).context(error::CreateDirSnafu { path: &dir })?;
    tempfile::Builder::new()
        .prefix(".tuftool-staging-")
        .tempdir_in(&dir)
        .context(error::CreateDirSnafu { path: &dir })
}

/// Rename a finished staging folder to `final_path` (which must not exist).
pub fn commit_staging(staging: tempfile::TempDir, final_path: &Path) -> Result<()> {
    ensure_absent(final_path)?;
    let path = staging.keep();
    std::fs::rename(&path, final_path).map_err(|source| {
        let _ = std::fs::remove_dir_all(&path);
        error::Error::CreateDir {
            path: final_path.to_path_buf(),
            source,
        }
    })
}

/// Hash a file (SHA-256) and measure it. Blocking. `buf` is a reusable read buffer.
pub fn hash_file_with(path: &Path, buf: &mut [u8]) -> Result<(u64, Vec<u8>)> {
    let mut file = std::fs::File::open(path).context(error::ReadFileSnafu { path })?;
    let mut ctx = Context::new(&SHA256);
    let mut length = 0u64;
    loop {
        let n = file.read(buf).context(error::ReadFileSnafu { path })?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        length += n as u64;
    }
    Ok((length, ctx.finish().as_ref().to_vec()))
}

/// Hash a file (SHA-256) and measure it. Blocking.
pub fn hash_file(path: &Path) -> Result<(u64, Vec<u8>)> {
    hash_file_with(path, &mut vec![0u8; READ_BUFFER])
}

/// Read buffer size for hashing.
pub(crate) const READ_BUFFER: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::{
        LinkMode, PathExists, hash_file, place_file, publish_file, write_atomic, write_new_private,
    };

    #[test]
    fn private_files_are_0600_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_new_private(&path, b"secret").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(write_new_private(&path, b"other").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
    }

    #[test]
    fn an_existing_file_is_kept_only_when_it_holds_the_targets_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.txt");
        write_atomic(&src, b"data").unwrap();
        let sha256 = hash_file(&src).unwrap().1;
        for mode in [LinkMode::Copy, LinkMode::Hardlink, LinkMode::Symlink] {
            let dest = dir.path().join(format!("{mode:?}.txt"));
            // A wrong file under the (content-addressed) name is replaced, not trusted.
            std::fs::write(&dest, b"evil").unwrap();
            place_file(&src, &dest, mode, PathExists::Skip, &sha256).unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"data", "{mode:?}");
            // A right one is kept as it is (a copy stays a copy).
            let kept = dir.path().join(format!("{mode:?}-kept.txt"));
            std::fs::write(&kept, b"data").unwrap();
            place_file(&src, &kept, mode, PathExists::Skip, &sha256).unwrap();
            assert!(!std::fs::symlink_metadata(&kept).unwrap().is_symlink());
            // fail: refused whatever it holds.
            assert!(place_file(&src, &kept, mode, PathExists::Fail, &sha256).is_err());
            place_file(&src, &kept, mode, PathExists::Replace, &sha256).unwrap();
            assert_eq!(std::fs::read(&kept).unwrap(), b"data");
        }
    }

    #[test]
    fn publishes_in_every_mode() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.txt");
        write_atomic(&src, b"data").unwrap();
        for (i, mode) in [LinkMode::Copy, LinkMode::Hardlink, LinkMode::Symlink]
            .into_iter()
            .enumerate()
        {
            let dest = dir.path().join(format!("out/{i}/f.txt"));
            publish_file(&src, &dest, mode).unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"data");
            let is_link = std::fs::symlink_metadata(&dest)
                .unwrap()
                .file_type()
                .is_symlink();
            assert_eq!(is_link, mode == LinkMode::Symlink);
        }
        let leftovers: Vec<_> = walkdir::WalkDir::new(dir.path())
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
