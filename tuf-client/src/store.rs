//! The metadata folder: trusted metadata kept under unversioned names (`root.json`,
//! `timestamp.json`, `snapshot.json`, `targets.json`, `<encoded delegated role>.json`), each
//! exactly the bytes that were verified, written atomically (temporary file in the same folder,
//! fsync, rename).
use crate::error::{self, Result};
use snafu::ResultExt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Percent-encode everything but ASCII letters, digits and `-._~` (so a role or target name
/// becomes one safe path segment: `/` → `%2F`, `?` → `%3F`, `..` stays but cannot be a
/// whole file name once `.json` is appended).
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The metadata folder.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The file of `role` (top-level or delegated).
    pub(crate) fn path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{}.json", encode_name(role)))
    }

    /// The trusted bytes of `role`, if the file exists.
    pub(crate) fn read(&self, role: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(role);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context(error::ReadTrustedSnafu { path }),
        }
    }

    /// Write `bytes` as the trusted `role`, atomically.
    pub(crate) fn write(&self, role: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(role);
        write_atomic(&self.dir, &path, bytes).context(error::WriteMetadataSnafu { path })
    }

    /// Forget the trusted `role` (no error if it was not there).
    pub(crate) fn remove(&self, role: &str) -> Result<()> {
        let path = self.path(role);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).context(error::RemoveMetadataSnafu { path }),
        }
    }
}

/// Write `bytes` to `path` through a temporary file in `dir` (fsync, rename, fsync of the
/// folder).
pub(crate) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    // Make the rename durable; a folder that cannot be opened for sync is not an error.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{Store, encode_name};

    #[test]
    fn names_are_one_safe_segment() {
        assert_eq!(encode_name("targets"), "targets");
        assert_eq!(encode_name("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_name("../x"), "..%2Fx");
        assert_eq!(encode_name("?#"), "%3F%23");
        assert_eq!(encode_name("é"), "%C3%A9");
    }

    #[test]
    fn write_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("m"));
        assert_eq!(store.read("root").unwrap(), None);
        store.write("root", b"one").unwrap();
        store.write("root", b"two").unwrap();
        assert_eq!(store.read("root").unwrap().unwrap(), b"two");
        store.write("../evil", b"x").unwrap();
        assert!(dir.path().join("m/..%2Fevil.json").exists());
        store.remove("root").unwrap();
        store.remove("root").unwrap();
        assert_eq!(store.read("root").unwrap(), None);
        // Only the two files, no temporary leftovers.
        assert_eq!(std::fs::read_dir(dir.path().join("m")).unwrap().count(), 1);
    }
}
