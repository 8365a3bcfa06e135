//! The metadata folder: trusted metadata kept under unversioned names (`root.json`,
//! `timestamp.json`, `snapshot.json`, `targets.json`, `<encoded delegated role>.json`), each
//! exactly the bytes that were verified, written atomically (temporary file in the same folder,
//! fsync, rename, fsync of the folder).
//!
//! Every root version that passed verification is also kept in [`ROOT_HISTORY`]
//! (`root-history/N.root.json`, the verified bytes), from the first-use root on, so that a
//! client can hand on the whole chain (e.g. to another TUF client that starts from an older
//! root).
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

/// The folder, inside the metadata folder, holding every verified root version as
/// `N.root.json`.
pub const ROOT_HISTORY: &str = "root-history";

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
        read_if_present(self.path(role))
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

impl Store {
    /// The file of root version `version` in the root history.
    pub(crate) fn root_version_path(&self, version: u64) -> PathBuf {
        self.dir
            .join(ROOT_HISTORY)
            .join(format!("{version}.root.json"))
    }

    /// The verified bytes of root version `version`, if the history has them.
    pub(crate) fn read_root_version(&self, version: u64) -> Result<Option<Vec<u8>>> {
        read_if_present(self.root_version_path(version))
    }

    /// Record root version `version` (its verified bytes) in the history, atomically.
    pub(crate) fn write_root_version(&self, version: u64, bytes: &[u8]) -> Result<()> {
        let path = self.root_version_path(version);
        write_atomic(&self.dir.join(ROOT_HISTORY), &path, bytes)
            .context(error::WriteMetadataSnafu { path })
    }

    /// Forget the whole root history (a new first-use root starts a new chain).
    pub(crate) fn clear_root_history(&self) -> Result<()> {
        let path = self.dir.join(ROOT_HISTORY);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).context(error::RemoveMetadataSnafu { path }),
        }
    }
}

/// The bytes of the trusted file `path`, `None` if it does not exist.
fn read_if_present(path: PathBuf) -> Result<Option<Vec<u8>>> {
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context(error::ReadTrustedSnafu { path }),
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

    #[test]
    fn root_history_write_read_clear() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("m"));
        assert_eq!(store.read_root_version(1).unwrap(), None);
        store.write_root_version(1, b"one").unwrap();
        store.write_root_version(2, b"two").unwrap();
        assert_eq!(store.read_root_version(2).unwrap().unwrap(), b"two");
        assert!(dir.path().join("m/root-history/1.root.json").exists());
        // Not a role file: nothing named `*.json` appears at the top of the folder.
        assert_eq!(store.read("root").unwrap(), None);
        store.clear_root_history().unwrap();
        store.clear_root_history().unwrap();
        assert_eq!(store.read_root_version(1).unwrap(), None);
    }
}
