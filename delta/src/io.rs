//! Writing a partition with direct I/O where it can: the kernel then moves the bytes to the
//! device without copying them into the page cache first, and the final `fdatasync` has
//! little left to flush (measured here: 500 MiB of zeros in 0.15–0.33 s with `O_DIRECT`, in
//! 1.5 s buffered and synced). updog's full-image path and the delta path share this.
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Alignment of buffers, offsets and lengths for direct I/O.
pub const DIRECT_ALIGN: usize = 4096;

/// A buffer whose usable part starts at a [`DIRECT_ALIGN`] boundary (allocated with room to
/// spare, so no unsafe allocation is needed).
#[derive(Debug)]
pub struct AlignedBuffer {
    bytes: Vec<u8>,
    start: usize,
}

impl AlignedBuffer {
    /// `len` zero bytes.
    pub fn new(len: usize) -> AlignedBuffer {
        let bytes = vec![0_u8; len + DIRECT_ALIGN];
        let start = bytes.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        AlignedBuffer { bytes, start }
    }

    /// Its bytes.
    pub fn get(&self) -> &[u8] {
        &self.bytes[self.start..self.bytes.len() - DIRECT_ALIGN + self.start]
    }

    /// Its bytes, to fill.
    pub fn get_mut(&mut self) -> &mut [u8] {
        let end = self.bytes.len() - DIRECT_ALIGN + self.start;
        &mut self.bytes[self.start..end]
    }
}

/// Writes at offsets of a file: aligned writes through a second handle opened with
/// `O_DIRECT` (when there is one), the rest through the plain handle. A file system that
/// refuses direct I/O (`EINVAL`) turns it off for good. Usable from several threads at once.
#[derive(Debug)]
pub struct DirectWriter {
    file: File,
    direct: Option<File>,
    refused: AtomicBool,
    written_direct: AtomicU64,
}

impl DirectWriter {
    /// Write to `file`, and through `direct` (the same file opened with `O_DIRECT`) when given.
    pub fn new(file: File, direct: Option<File>) -> DirectWriter {
        DirectWriter {
            file,
            direct,
            refused: AtomicBool::new(false),
            written_direct: AtomicU64::new(0),
        }
    }

    /// Write all of `buf` at `offset`.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let aligned = buf.as_ptr().align_offset(DIRECT_ALIGN) == 0
            && buf.len().is_multiple_of(DIRECT_ALIGN)
            && offset.is_multiple_of(DIRECT_ALIGN as u64);
        if let (true, Some(direct)) = (aligned, &self.direct)
            && !self.refused.load(Ordering::Relaxed)
        {
            match direct.write_all_at(buf, offset) {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    self.refused.store(true, Ordering::Relaxed);
                }
                Ok(()) => {
                    self.written_direct
                        .fetch_add(buf.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        self.file.write_all_at(buf, offset)
    }

    /// Bytes written with direct I/O so far.
    pub fn written_direct(&self) -> u64 {
        self.written_direct.load(Ordering::Relaxed)
    }

    /// Whether direct I/O is (still) in use.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some() && !self.refused.load(Ordering::Relaxed)
    }

    /// Flush everything written (through either handle) to the device.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}
