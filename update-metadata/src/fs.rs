//! Atomic file writes (decision i): a temporary file in the target's folder, flushed and
//! synced, renamed over the target, and the folder synced, so a reader sees the old file or
//! the new one, never a mix.

use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically, with permission bits `mode` (e.g. `0o644`, or `0o600`
/// for anything secret; the temporary file is created `0o600` so nothing leaks while it is
/// written).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(folder)?;
    file.write_all(bytes)?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::write_atomic;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_and_sets_mode_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file.json");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failure_leaves_the_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder").join("file.json");
        assert!(write_atomic(&missing, b"new", 0o644).is_err());
        assert!(!missing.exists());
    }
}
