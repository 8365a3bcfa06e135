//! The run lock: an exclusive advisory `flock` on a lock file, so two updog runs never
//! interleave. A second run fails at once with a clear message; the lock is released when the
//! process ends (even if it is killed), so a stale file never blocks the next run.
use crate::error::{self, Result};
use rustix::fs::FlockOperation;
use snafu::ResultExt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// A held run lock; released on drop.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Take the lock at `path` (creating the file and its folder), or fail if another run holds
    /// it.
    pub fn acquire(path: &Path) -> Result<RunLock> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).context(error::LockFileSnafu { path })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .context(error::LockFileSnafu { path })?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return error::AlreadyRunningSnafu { path }.fail();
            }
            Err(errno) => {
                return Err(std::io::Error::from(errno)).context(error::LockFileSnafu { path });
            }
        }
        tracing::debug!(lock = %path.display(), "run lock taken");
        Ok(RunLock {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::RunLock;

    #[test]
    fn second_holder_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/updog.lock");
        let first = RunLock::acquire(&path).unwrap();
        let error = RunLock::acquire(&path).unwrap_err().to_string();
        assert!(error.contains("another updog"), "{error}");
        drop(first);
        RunLock::acquire(&path).unwrap();
    }
}
