//! Input targets: walking input folders, naming files by their relative path, hashing them in
//! parallel, detecting collisions, and placing them in a repository's targets folder.
use crate::error::{self, Result};
use crate::fsutil::{self, LinkMode, PathExists, READ_BUFFER};
use futures::{StreamExt, TryStreamExt};
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tough::TargetName;
use tough::schema::{Hashes, Target};

/// A file to publish as a target.
#[derive(Debug, Clone)]
pub struct InputTarget {
    /// Target name: the path relative to its input folder, with `/` separators.
    pub name: TargetName,
    /// Length and hashes.
    pub target: Target,
    /// Where the bytes are.
    pub path: PathBuf,
}

pub use crate::fsutil::{hash_file, hash_file_with};

/// How target files are placed in a repository's `targets/` folder.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// Copy, hard-link or symlink.
    pub link_mode: LinkMode,
    /// Also place names with a folder at tough's `<sha256>.dir/file` (see
    /// [`placements`]).
    pub tough_placement: bool,
    /// Files placed at once.
    pub jobs: usize,
    /// What to do with a file already at a target's place.
    pub exists: PathExists,
}

impl Default for Place {
    fn default() -> Self {
        Place {
            link_mode: LinkMode::Copy,
            tough_placement: false,
            jobs: 1,
            exists: PathExists::Skip,
        }
    }
}

/// Files are handed to blocking threads in batches of at most this many files or bytes, so
/// that many small files do not cost one task each, while big files still spread over cores.
const BATCH_FILES: usize = 512;
const BATCH_BYTES: u64 = 64 << 20;

/// Split `items` (with sizes) into batches.
fn batches<T>(items: Vec<(T, u64)>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0u64;
    for (item, size) in items {
        if !current.is_empty() && (current.len() >= BATCH_FILES || bytes + size > BATCH_BYTES) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A `Target` entry for a file of `length` bytes with this SHA-256.
pub fn target_entry(length: u64, sha256: Vec<u8>) -> Target {
    Target {
        length,
        hashes: Hashes {
            sha256: sha256.into(),
            _extra: HashMap::new(),
        },
        custom: HashMap::new(),
        _extra: HashMap::new(),
    }
}

/// The target name of `path` relative to `base` (components joined with `/`).
fn relative_name(base: &Path, path: &Path) -> Result<TargetName> {
    let rel = path
        .strip_prefix(base)
        .ok()
        .context(error::TargetNameSnafu { path })?;
    let mut parts = Vec::new();
    for c in rel.components() {
        let s = c
            .as_os_str()
            .to_str()
            .context(error::TargetNameSnafu { path })?;
        parts.push(s);
    }
    TargetName::new(parts.join("/"))
        .ok()
        .context(error::TargetNameSnafu { path })
}

/// Walk `dirs` (recursively; symlinks followed only with `follow_links`), name each regular file
/// by its path relative to its folder, and hash them with `jobs` files in flight. Two inputs
/// with the same name are an error naming both. The result is sorted by name.
pub async fn scan_inputs(
    dirs: &[PathBuf],
    follow_links: bool,
    jobs: usize,
) -> Result<Vec<InputTarget>> {
    let mut files: BTreeMap<String, (TargetName, PathBuf, u64)> = BTreeMap::new();
    for dir in dirs {
        let meta = std::fs::metadata(dir).context(error::ReadFileSnafu { path: dir })?;
        ensure!(meta.is_dir(), error::NotADirectorySnafu { path: dir });
        let walk = walkdir::WalkDir::new(dir)
            .follow_links(follow_links)
            .sort_by_file_name();
        for entry in walk {
            let entry = entry.map_err(|e| error::Error::WalkDir {
                path: dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            if !entry.file_type().is_file() {
                if entry.path_is_symlink() && !follow_links {
                    tracing::warn!(path = %entry.path().display(), "skipping symlink (use --follow to include)");
                }
                continue;
            }
            let name = relative_name(dir, entry.path())?;
            let key = name.resolved().to_owned();
            if let Some((_, other, _)) = files.get(&key) {
                return error::TargetCollisionSnafu {
                    name: key,
                    first: other.display().to_string(),
                    second: entry.path().display().to_string(),
                }
                .fail();
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            files.insert(key, (name, entry.path().to_path_buf(), size));
        }
    }
    let work = batches(
        files
            .into_values()
            .map(|(n, p, size)| ((n, p), size))
            .collect(),
    );
    let hashed: Vec<Vec<InputTarget>> =
        futures::stream::iter(work.into_iter().map(|batch| async move {
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; READ_BUFFER];
                batch
                    .into_iter()
                    .map(|(name, path)| {
                        let (length, sha256) = hash_file_with(&path, &mut buf)?;
                        Ok(InputTarget {
                            name,
                            target: target_entry(length, sha256),
                            path,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await
            .context(error::JoinSnafu)?
        }))
        .buffered(jobs.max(1))
        .try_collect()
        .await?;
    let hashed: Vec<InputTarget> = hashed.into_iter().flatten().collect();
    Ok(hashed)
}

/// The one way a target name becomes a local path: relative, made only of plain components
/// (no `..`, no `.`, no root, not empty), in both its raw and its resolved form. Every place
/// that writes or reads a target on disk (create, update, download, clone) goes through it, so
/// a signed but hostile name (`/etc/x`, `../../x`) is refused before anything is written.
pub fn local_relative(name: &TargetName) -> Result<PathBuf> {
    let plain = |text: &str| {
        !text.is_empty()
            && !text.starts_with('/')
            && text
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
    };
    ensure!(
        plain(name.raw()) && plain(name.resolved()),
        error::UnsafeTargetNameSnafu {
            name: name.raw().to_owned()
        }
    );
    Ok(PathBuf::from(name.resolved()))
}

/// Where a target goes in `targets_dir`: the spec's `dir/<sha256>.file` with consistent
/// snapshots (plus tough's `<sha256>.dir/file` for names with a folder when
/// `tough_placement`), the plain name without. An unsafe name is an error
/// ([`local_relative`]).
pub fn placements(
    targets_dir: &Path,
    name: &TargetName,
    sha256: &[u8],
    consistent: bool,
    tough_placement: bool,
) -> Result<Vec<PathBuf>> {
    let relative = local_relative(name)?;
    let resolved = name.resolved();
    if !consistent {
        return Ok(vec![targets_dir.join(relative)]);
    }
    let digest = hex::encode(sha256);
    let (dir, base) = match resolved.rsplit_once('/') {
        Some((dir, base)) => (Some(dir), base),
        None => (None, resolved),
    };
    Ok(match dir {
        None => vec![targets_dir.join(format!("{digest}.{base}"))],
        Some(dir) if !tough_placement => {
            vec![targets_dir.join(dir).join(format!("{digest}.{base}"))]
        }
        Some(dir) => vec![
            targets_dir.join(dir).join(format!("{digest}.{base}")),
            targets_dir.join(format!("{digest}.{resolved}")),
        ],
    })
}

/// Place every input in `targets_dir` as `place` says.
pub async fn publish_inputs(
    inputs: &[InputTarget],
    targets_dir: &Path,
    consistent: bool,
    place: Place,
) -> Result<()> {
    let Place {
        link_mode: mode,
        tough_placement,
        jobs,
        exists,
    } = place;
    // (input, its SHA-256, where it goes), with the bytes to copy.
    type Job = (PathBuf, Vec<u8>, Vec<PathBuf>);
    let work: Vec<(Job, u64)> = inputs
        .iter()
        .map(|t| {
            let dests = placements(
                targets_dir,
                &t.name,
                &t.target.hashes.sha256,
                consistent,
                tough_placement,
            )?;
            Ok((
                (t.path.clone(), t.target.hashes.sha256.to_vec(), dests),
                if mode == LinkMode::Copy {
                    t.target.length
                } else {
                    0
                },
            ))
        })
        .collect::<Result<_>>()?;
    // Create each folder once, not once per file.
    let dirs: BTreeSet<PathBuf> = work
        .iter()
        .flat_map(|((_, _, dests), _)| {
            dests
                .iter()
                .filter_map(|d| d.parent().map(Path::to_path_buf))
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        for dir in dirs {
            std::fs::create_dir_all(&dir).context(error::CreateDirSnafu { path: &dir })?;
        }
        Ok::<_, crate::Error>(())
    })
    .await
    .context(error::JoinSnafu)??;
    futures::stream::iter(batches(work).into_iter().map(|batch| async move {
        tokio::task::spawn_blocking(move || {
            for (src, sha256, dests) in batch {
                for dest in dests {
                    fsutil::place_file(&src, &dest, mode, exists, &sha256)?;
                }
            }
            Ok::<_, crate::Error>(())
        })
        .await
        .context(error::JoinSnafu)?
    }))
    .buffer_unordered(jobs.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{placements, scan_inputs};
    use std::path::Path;
    use tough::TargetName;

    #[tokio::test]
    async fn names_are_relative_paths_and_collisions_fail() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(a.path().join("sub/deeper")).unwrap();
        std::fs::write(a.path().join("top.txt"), b"top").unwrap();
        std::fs::write(a.path().join("sub/deeper/x.bin"), b"x").unwrap();
        std::fs::write(b.path().join("top.txt"), b"other").unwrap();
        let found = scan_inputs(&[a.path().to_path_buf()], false, 2)
            .await
            .unwrap();
        let names: Vec<_> = found.iter().map(|t| t.name.raw().to_owned()).collect();
        assert_eq!(names, ["sub/deeper/x.bin", "top.txt"]);
        assert_eq!(found[1].target.length, 3);
        let err = scan_inputs(&[a.path().to_path_buf(), b.path().to_path_buf()], false, 2)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("top.txt"), "{text}");
    }

    #[test]
    fn placements_follow_spec_and_tough() {
        let name = TargetName::new("a/b/c.txt").unwrap();
        let p = placements(Path::new("/t"), &name, &[0xab], true, true).unwrap();
        assert_eq!(p[0], Path::new("/t/a/b/ab.c.txt"));
        assert_eq!(p[1], Path::new("/t/ab.a/b/c.txt"));
        let p = placements(Path::new("/t"), &name, &[0xab], true, false).unwrap();
        assert_eq!(p, [Path::new("/t/a/b/ab.c.txt")]);
        let p = placements(Path::new("/t"), &name, &[0xab], false, true).unwrap();
        assert_eq!(p, [Path::new("/t/a/b/c.txt")]);
        let flat = TargetName::new("c.txt").unwrap();
        let p = placements(Path::new("/t"), &flat, &[0xab], true, true).unwrap();
        assert_eq!(p, [Path::new("/t/ab.c.txt")]);
    }

    #[test]
    fn unsafe_names_never_become_paths() {
        for bad in [
            "/some/abs/path",
            "../../x",
            "a/../../b",
            "a/./b",
            "./a",
            "/x",
        ] {
            let name = TargetName::new(bad).unwrap();
            for consistent in [true, false] {
                assert!(
                    placements(Path::new("/t"), &name, &[0xab], consistent, true).is_err(),
                    "{bad} (consistent: {consistent})"
                );
            }
            assert!(super::local_relative(&name).is_err(), "{bad}");
        }
        let good = TargetName::new("dir/file.lz4").unwrap();
        assert_eq!(
            super::local_relative(&good).unwrap(),
            Path::new("dir/file.lz4")
        );
    }
}
