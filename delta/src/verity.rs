//! The dm-verity hash tree of a root image (format 1 with a superblock, SHA-256, 4 KiB data and
//! hash blocks: what image-builder writes and `veritysetup format` makes). Its leaves are the
//! salted SHA-256 of every data block, `SHA-256(salt ‖ block)`.
//!
//! The delta index lists the root's blocks by those same salted hashes (the salt is stable
//! across the releases of a variant), so a host finds the blocks of the new root in the one it
//! runs by reading its running tree's leaves (a few MB) instead of hashing the whole root. The
//! leaves are only a hint: every copied block is hashed again as it is written and checked
//! against the index, so a leaf that lies costs a fetch, never a bad block.
use crate::index::{BLOCK_SIZE, short_hash};
use crate::io::Extent;
use std::os::unix::fs::FileExt;

/// Hashes in one 4 KiB hash block.
pub const HASHES_PER_BLOCK: u64 = (BLOCK_SIZE / 32) as u64;
/// Largest salt the format allows.
pub use crate::index::MAX_SALT;

/// What a tree's superblock says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// The salt of every hash.
    pub salt: Vec<u8>,
    /// Data blocks the tree covers.
    pub data_blocks: u64,
}

/// Read a superblock (the first 512 bytes of a hash image); `None` unless it is one this
/// module reads: format 1, SHA-256, 4 KiB blocks.
pub fn parse_superblock(block: &[u8]) -> Option<Superblock> {
    let le32 = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(block.get(at..at + 4)?.try_into().ok()?))
    };
    if block.get(0..8)? != b"verity\0\0"
        || le32(8)? != 1
        || le32(12)? != 1
        || block.get(32..38)? != b"sha256"
        || block.get(38..64)?.iter().any(|b| *b != 0)
        || le32(64)? as usize != BLOCK_SIZE
        || le32(68)? as usize != BLOCK_SIZE
    {
        return None;
    }
    let data_blocks = u64::from_le_bytes(block.get(72..80)?.try_into().ok()?);
    let salt_len = usize::from(u16::from_le_bytes(block.get(80..82)?.try_into().ok()?));
    if salt_len > MAX_SALT || data_blocks > (1 << 40) / BLOCK_SIZE as u64 {
        return None;
    }
    Some(Superblock {
        salt: block.get(88..88 + salt_len)?.to_vec(),
        data_blocks,
    })
}

/// Number of hash blocks in each level of a tree over `data_blocks`, leaves first.
pub fn level_sizes(data_blocks: u64) -> Vec<u64> {
    let mut levels = vec![data_blocks.div_ceil(HASHES_PER_BLOCK)];
    while let Some(&last) = levels.last() {
        if last <= 1 {
            break;
        }
        levels.push(last.div_ceil(HASHES_PER_BLOCK));
    }
    levels
}

/// Byte offset of the leaves in a hash image: after the superblock's block and the upper
/// levels (stored top first).
pub fn leaves_offset(data_blocks: u64) -> u64 {
    (1 + level_sizes(data_blocks).iter().skip(1).sum::<u64>()) * BLOCK_SIZE as u64
}

/// The leaves of the tree in `hash` (a hash partition): its superblock and the block hash
/// ([`crate::short_hash`] of the salted SHA-256) of each data block, in order. `None`
/// when the partition holds no tree this module reads, or cannot be read.
pub fn read_leaves(hash: Extent<'_>) -> Option<(Superblock, Vec<u64>)> {
    let mut block = vec![0_u8; BLOCK_SIZE];
    hash.file.read_exact_at(&mut block, hash.offset).ok()?;
    let superblock = parse_superblock(&block)?;
    let at = leaves_offset(superblock.data_blocks);
    let len = superblock.data_blocks.checked_mul(32)?;
    if at.checked_add(len)? > hash.len {
        return None;
    }
    let mut raw = vec![0_u8; usize::try_from(len).ok()?];
    hash.file.read_exact_at(&mut raw, hash.offset + at).ok()?;
    let leaves = raw
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0_u8; 32];
            h.copy_from_slice(c);
            short_hash(&h)
        })
        .collect();
    Some((superblock, leaves))
}
