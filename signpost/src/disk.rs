//! Opening the disk (an image file or a block device) under an advisory lock.
//!
//! Readers take a shared `flock`, writers an exclusive one, held for the whole
//! read-modify-write cycle, so two writers (say updog and a boot-time `mark-successful-boot`)
//! never interleave and a reader never sees a half-written table. The lock is advisory: it
//! only stops other users of this lock (every signpost and updog).

use crate::Result;
use crate::error::{DiskLockedSnafu, LockDiskSnafu, OpenDiskSnafu};
use crate::gpt::BlockIo;
use rustix::fs::FlockOperation;
use snafu::ResultExt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a command waits for another holder of the disk lock by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the lock is retried while waiting.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// Whether the disk is opened for reading only or for a read-modify-write cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only; shared lock.
    Read,
    /// Read and write; exclusive lock.
    Write,
}

/// An open, locked disk. The lock is released when it is dropped.
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
    file: File,
    access: Access,
    block_device: bool,
    logical_sector_size: Option<u64>,
}

impl Disk {
    /// Open `path` for `access` and take the matching lock, waiting up to `lock_timeout` for
    /// another holder.
    pub fn open(path: &Path, access: Access, lock_timeout: Duration) -> Result<Disk> {
        let file = OpenOptions::new()
            .read(true)
            .write(access == Access::Write)
            .open(path)
            .context(OpenDiskSnafu {
                path,
                purpose: match access {
                    Access::Read => "reading",
                    Access::Write => "writing",
                },
            })?;
        let block_device = file
            .metadata()
            .map(|meta| meta.file_type().is_block_device())
            .unwrap_or(false);
        // Only a hint for probing the table: a failed query just means "probe both".
        let logical_sector_size = block_device
            .then(|| rustix::fs::ioctl_blksszget(&file).ok())
            .flatten()
            .map(u64::from);
        let (operation, blocking) = match access {
            Access::Read => (
                FlockOperation::NonBlockingLockShared,
                FlockOperation::LockShared,
            ),
            Access::Write => (
                FlockOperation::NonBlockingLockExclusive,
                FlockOperation::LockExclusive,
            ),
        };
        let started = Instant::now();
        let mut announced = false;
        loop {
            match rustix::fs::flock(&file, operation) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    if started.elapsed() >= lock_timeout {
                        return DiskLockedSnafu {
                            path,
                            waited: lock_timeout.as_secs_f64(),
                        }
                        .fail();
                    }
                    if !announced {
                        tracing::info!(disk = %path.display(), "waiting for another process holding the disk lock");
                        announced = true;
                    }
                    std::thread::sleep(LOCK_POLL);
                }
                Err(rustix::io::Errno::NOLCK | rustix::io::Errno::OPNOTSUPP) => {
                    // Filesystems without flock support (some network filesystems): fall back
                    // to a blocking request, which reports the same error if it is really
                    // unsupported.
                    rustix::fs::flock(&file, blocking)
                        .map_err(io::Error::from)
                        .context(LockDiskSnafu { path })?;
                    break;
                }
                Err(errno) => {
                    return Err(io::Error::from(errno)).context(LockDiskSnafu { path });
                }
            }
        }
        tracing::debug!(disk = %path.display(), ?access, block_device, "disk open and locked");
        Ok(Disk {
            path: path.to_owned(),
            file,
            access,
            block_device,
            logical_sector_size,
        })
    }

    /// The path the disk was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the disk is a block device (rather than an image file).
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// The logical sector size a block device reports (`BLKSSZGET`); `None` for image files.
    pub fn logical_sector_size(&self) -> Option<u64> {
        self.logical_sector_size
    }

    /// How the disk was opened.
    pub fn access(&self) -> Access {
        self.access
    }
}

impl Read for Disk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for Disk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Disk {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

impl BlockIo for Disk {
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}
