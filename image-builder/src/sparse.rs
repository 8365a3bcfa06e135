//! Holes in sparse files: the disk images are mostly holes, and reading a hole only to find
//! zeros is the slowest part of a build. `SEEK_DATA` tells where the next data is.
use std::fs::File;
use std::io;

/// Whether `[offset, offset + len)` of `file` is entirely a hole (reads as zeros). Returns
/// `false` when the filesystem cannot tell (then the caller simply reads).
pub fn is_hole(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(false);
    }
    match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(offset)) {
        Ok(next_data) => Ok(next_data >= offset + len),
        // No data at or after `offset`.
        Err(rustix::io::Errno::NXIO) => Ok(true),
        // SEEK_DATA unsupported: treat everything as data.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::is_hole;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn finds_holes_around_data() {
        let mut file = tempfile::tempfile().unwrap();
        let mib = 1024 * 1024;
        file.set_len(16 * mib).unwrap();
        file.seek(SeekFrom::Start(8 * mib)).unwrap();
        file.write_all(&[1; 4096]).unwrap();
        file.sync_all().unwrap();
        // Data is never reported as a hole, whatever the filesystem supports.
        assert!(!is_hole(&file, 8 * mib, 4096).unwrap());
        assert!(!is_hole(&file, 0, 16 * mib).unwrap());
        assert!(!is_hole(&file, 0, 0).unwrap());
        // On filesystems with SEEK_DATA (ext4, tmpfs, xfs, btrfs) the rest is holes.
        let supported = is_hole(&file, 12 * mib, 4 * mib).unwrap();
        assert_eq!(is_hole(&file, 0, 4 * mib).unwrap(), supported);
    }
}
