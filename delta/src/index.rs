//! The index: what the new images hold, block by block, and where each block's compressed
//! bytes lie in the store.
//!
//! Layout before compression (little-endian integers; `varint` is LEB128), the whole then one
//! zstd frame:
//!
//! ```text
//! "UPDELTA2"  u32 block_size  u64 store_len  u32 image_count
//! per image:  u32 role_len, role (UTF-8)  u64 size  [32] the image's digest
//!             u16 salt_len, salt
//!             [6] × ceil(size / block_size)   block hashes
//!             varint × ceil(size / block_size)   where each block is:
//!                 0      zeros (nothing in the store)
//!                 1, F   the same bytes as store frame F (an earlier block)
//!                 L + 2  the next store frame, L bytes long
//! ```
//!
//! The store is the frames one after the other: each block that is not zeros and not a repeat,
//! compressed alone (one zstd frame), in image order. A frame's offset is the sum of the
//! lengths before it, so the index does not list offsets.
//!
//! A block's SHA-256 is that of its 4 KiB (the image's last block zero-padded), salted for a
//! root with the salt of its dm-verity tree (see the `verity` module: a host then finds blocks
//! through the tree it runs, without hashing its root). Its first 6
//! bytes are the block hash listed here: it finds a block among a host's partitions, and every
//! fetched block is checked against it before it is written. What makes a written image
//! trusted is its digest, also in this (signed) index, checked before the partition set is
//! marked valid: the SHA-256 of the concatenated SHA-256 of its blocks, in order (a two-level
//! hash tree). Unlike the SHA-256 of the whole image, it can be computed on every core, in any
//! order, and costs nothing for blocks of zeros.
//!
//! Why 6 bytes (format 1 had 8): the index is most of what a one-file release fetches, and
//! the block hash is not what the image's trust rests on. A wrong match (two different blocks
//! sharing a block hash, about once in 30,000 updates of a 500 MB root) makes the digest
//! differ, and the host writes the full image instead.
use crate::error::{self, Result};
use aws_lc_rs::digest::{SHA256, digest};
use snafu::{ResultExt, ensure};
use std::io::Read;

/// File magic and format version.
pub const MAGIC: &[u8; 8] = b"UPDELTA2";
/// Largest salt (what dm-verity allows).
pub const MAX_SALT: usize = 256;
/// Bytes of a block hash in the index.
const HASH_BYTES: usize = 6;
/// Block size: the file systems' and dm-verity's.
pub const BLOCK_SIZE: usize = 4096;
/// Largest decompressed index read (a 64 GiB image's index is about 160 MiB).
const MAX_INDEX_BYTES: u64 = 256 << 20;
/// Largest image an index may describe.
const MAX_IMAGE_BYTES: u64 = 1 << 40;
/// zstd level of the index (it is small; its hashes are random and do not compress, but runs
/// of zero blocks and the frame lengths do).
const INDEX_LEVEL: i32 = 19;

/// A block's SHA-256 with `salt` in front, `SHA-256(salt ‖ block)`, a short block
/// zero-padded to [`BLOCK_SIZE`]. With an empty salt, the block's plain SHA-256; with a root's
/// dm-verity salt, its leaf in the tree.
pub fn block_sha256(salt: &[u8], block: &[u8]) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&SHA256);
    context.update(salt);
    context.update(block);
    if block.len() < BLOCK_SIZE {
        context.update(&[0_u8; BLOCK_SIZE][block.len()..]);
    }
    let mut out = [0_u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// The block hash of a block's SHA-256: its first 6 bytes, as a number.
pub fn short_hash(sha: &[u8; 32]) -> u64 {
    let mut first = [0_u8; 8];
    first[..HASH_BYTES].copy_from_slice(&sha[..HASH_BYTES]);
    u64::from_le_bytes(first)
}

/// The hash that finds a block (see [`short_hash`] and [`block_sha256`]).
pub fn block_hash(salt: &[u8], block: &[u8]) -> u64 {
    short_hash(&block_sha256(salt, block))
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0_u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// An image's digest (the SHA-256 of its blocks' SHA-256, in order) in the making: the blocks
/// before `next` are in `context`; `ahead` holds the SHA-256 of blocks written out of order
/// (the host's; the publisher pushes in order).
pub(crate) struct Digest {
    pub(crate) next: usize,
    pub(crate) context: aws_lc_rs::digest::Context,
    pub(crate) ahead: std::collections::BTreeMap<usize, [u8; 32]>,
}

impl Digest {
    pub(crate) fn new() -> Digest {
        Digest {
            next: 0,
            context: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            ahead: std::collections::BTreeMap::new(),
        }
    }

    /// Take the next block's SHA-256.
    pub(crate) fn push(&mut self, sha: &[u8; 32]) {
        self.context.update(sha);
        self.next += 1;
    }

    pub(crate) fn finish(&mut self) -> [u8; 32] {
        let context = std::mem::replace(
            &mut self.context,
            aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
        );
        let mut out = [0_u8; 32];
        out.copy_from_slice(context.finish().as_ref());
        out
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest")
            .field("next", &self.next)
            .field("ahead", &self.ahead.len())
            .finish_non_exhaustive()
    }
}

/// Where one block's bytes lie in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Offset of its zstd frame in the store.
    pub offset: u64,
    /// Length of the frame; 0 for a block of zeros.
    pub len: u32,
}

impl Frame {
    /// Whether the block is all zeros (no bytes in the store).
    pub const fn is_zero(&self) -> bool {
        self.len == 0
    }
}

/// One image of the update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIndex {
    /// Which partition it is for (`root`, `boot`, `hash`).
    pub role: String,
    /// Size in bytes.
    pub size: u64,
    /// Its digest: the SHA-256 of its blocks' SHA-256, in order.
    pub digest: [u8; 32],
    /// What its blocks' SHA-256 are salted with (see [`block_sha256`]): empty, or for a root
    /// the salt of its dm-verity tree.
    pub salt: Vec<u8>,
    /// The hash of every block.
    pub blocks: Vec<u64>,
    /// Where every block is in the store.
    pub frames: Vec<Frame>,
}

impl ImageIndex {
    /// Bytes of block `i` (the last one may be short).
    pub fn block_len(&self, i: usize) -> usize {
        let start = i as u64 * BLOCK_SIZE as u64;
        // At most BLOCK_SIZE, so the conversion cannot truncate.
        self.size.saturating_sub(start).min(BLOCK_SIZE as u64) as usize
    }

    /// A block's salted SHA-256 ([`block_sha256`] with this image's salt).
    pub fn sha(&self, block: &[u8]) -> [u8; 32] {
        block_sha256(&self.salt, block)
    }

    /// The salted SHA-256 of a block of zeros.
    pub fn zero_sha(&self) -> [u8; 32] {
        self.sha(&[0_u8; BLOCK_SIZE])
    }
}

/// The whole index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Length of the store in bytes.
    pub store_len: u64,
    /// The images.
    pub images: Vec<ImageIndex>,
}

impl Index {
    /// The image for `role`, if the index has one.
    pub fn image(&self, role: &str) -> Option<&ImageIndex> {
        self.images.iter().find(|i| i.role == role)
    }

    /// The index as published: the layout above, zstd-compressed.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut raw = Vec::new();
        raw.extend_from_slice(MAGIC);
        raw.extend_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        raw.extend_from_slice(&self.store_len.to_le_bytes());
        raw.extend_from_slice(&(self.images.len() as u32).to_le_bytes());
        // Frame offset → frame number, to write repeats.
        let mut numbers = std::collections::HashMap::new();
        for image in &self.images {
            raw.extend_from_slice(&(image.role.len() as u32).to_le_bytes());
            raw.extend_from_slice(image.role.as_bytes());
            raw.extend_from_slice(&image.size.to_le_bytes());
            raw.extend_from_slice(&image.digest);
            raw.extend_from_slice(&(image.salt.len() as u16).to_le_bytes());
            raw.extend_from_slice(&image.salt);
            for hash in &image.blocks {
                raw.extend_from_slice(&hash.to_le_bytes()[..HASH_BYTES]);
            }
            for frame in &image.frames {
                if frame.is_zero() {
                    put_varint(&mut raw, 0);
                } else if let Some(number) = numbers.get(&frame.offset) {
                    put_varint(&mut raw, 1);
                    put_varint(&mut raw, *number);
                } else {
                    numbers.insert(frame.offset, numbers.len() as u64);
                    put_varint(&mut raw, u64::from(frame.len) + 2);
                }
            }
        }
        zstd::bulk::compress(&raw, INDEX_LEVEL).context(error::WriteSnafu {
            what: "the delta index",
        })
    }

    /// Read a published index, checking every count and offset (a bad index is an error,
    /// never a panic or an unbounded allocation).
    pub fn decode(bytes: &[u8]) -> Result<Index> {
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::new(bytes)
            .and_then(|d| d.take(MAX_INDEX_BYTES + 1).read_to_end(&mut raw))
            .map_err(|e| bad(format!("not a zstd frame ({e})")))?;
        ensure!(
            raw.len() as u64 <= MAX_INDEX_BYTES,
            error::BadIndexSnafu {
                reason: format!("larger than {MAX_INDEX_BYTES} bytes")
            }
        );
        let mut r = Reader { bytes: &raw };
        ensure!(
            r.take(8)? == MAGIC,
            error::BadIndexSnafu {
                reason: "not a delta index of format 2 (magic)"
            }
        );
        let block_size = r.u32()?;
        ensure!(
            block_size as usize == BLOCK_SIZE,
            error::BadIndexSnafu {
                reason: format!("block size {block_size}, not {BLOCK_SIZE}")
            }
        );
        let store_len = r.u64()?;
        let count = r.u32()?;
        ensure!(
            count <= 16,
            error::BadIndexSnafu {
                reason: format!("{count} images")
            }
        );
        let max_frame = zstd::zstd_safe::compress_bound(BLOCK_SIZE) as u64;
        // Every stored frame so far: (offset, len).
        let mut stored: Vec<Frame> = Vec::new();
        let mut next_offset = 0_u64;
        let mut images = Vec::new();
        for _ in 0..count {
            let role_len = r.u32()? as usize;
            ensure!(
                role_len <= 64,
                error::BadIndexSnafu {
                    reason: "an image role longer than 64 bytes"
                }
            );
            let role = String::from_utf8(r.take(role_len)?.to_vec())
                .map_err(|_| bad("an image role that is not UTF-8".to_owned()))?;
            ensure!(
                !images.iter().any(|i: &ImageIndex| i.role == role),
                error::BadIndexSnafu {
                    reason: format!("image {role} listed twice")
                }
            );
            let size = r.u64()?;
            ensure!(
                size <= MAX_IMAGE_BYTES,
                error::BadIndexSnafu {
                    reason: format!("image {role} of {size} bytes")
                }
            );
            let mut sha = [0_u8; 32];
            sha.copy_from_slice(r.take(32)?);
            let salt_len = usize::from(r.u16()?);
            ensure!(
                salt_len <= MAX_SALT,
                error::BadIndexSnafu {
                    reason: format!("a salt of {salt_len} bytes for image {role}")
                }
            );
            let salt = r.take(salt_len)?.to_vec();
            let nblocks = size.div_ceil(BLOCK_SIZE as u64) as usize;
            let hashes = r.take(
                nblocks
                    .checked_mul(HASH_BYTES)
                    .ok_or_else(|| bad("too many blocks".to_owned()))?,
            )?;
            let blocks = hashes
                .chunks_exact(HASH_BYTES)
                .map(|c| {
                    let mut b = [0_u8; 8];
                    b[..HASH_BYTES].copy_from_slice(c);
                    u64::from_le_bytes(b)
                })
                .collect();
            // The hashes of `nblocks` blocks were there, so the count is backed by the index's
            // bytes (a bad count cannot reserve memory up front); reserved exactly, since
            // growing it by doubling made the largest part of a 2 GiB root's peak memory
            // (the old and the new copy at once).
            let mut frames = Vec::with_capacity(nblocks);
            for _ in 0..nblocks {
                let frame = match r.varint()? {
                    0 => Frame { offset: 0, len: 0 },
                    1 => {
                        let number = r.varint()?;
                        *usize::try_from(number)
                            .ok()
                            .and_then(|n| stored.get(n))
                            .ok_or_else(|| {
                                bad(format!(
                                    "image {role} repeats frame {number}, not stored before"
                                ))
                            })?
                    }
                    code => {
                        let len = code - 2;
                        ensure!(
                            len > 0 && len <= max_frame,
                            error::BadIndexSnafu {
                                reason: format!("a frame of {len} bytes in image {role}")
                            }
                        );
                        // len <= max_frame, far below u32::MAX.
                        let frame = Frame {
                            offset: next_offset,
                            len: len as u32,
                        };
                        next_offset += len;
                        ensure!(
                            next_offset <= store_len,
                            error::BadIndexSnafu {
                                reason: format!(
                                    "the frames of image {role} run past the store's {store_len} bytes"
                                )
                            }
                        );
                        stored.push(frame);
                        frame
                    }
                };
                frames.push(frame);
            }
            images.push(ImageIndex {
                role,
                size,
                digest: sha,
                salt,
                blocks,
                frames,
            });
        }
        ensure!(
            r.bytes.is_empty(),
            error::BadIndexSnafu {
                reason: format!("{} bytes after the last image", r.bytes.len())
            }
        );
        Ok(Index { store_len, images })
    }
}

/// Append `value` as LEB128.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn bad(reason: String) -> error::Error {
    error::Error::BadIndex { reason }
}

/// A cursor that fails (never panics) at the end of its bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(
            n <= self.bytes.len(),
            error::BadIndexSnafu {
                reason: "truncated"
            }
        );
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16> {
        let mut b = [0_u8; 2];
        b.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self) -> Result<u32> {
        let mut b = [0_u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0_u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("a number longer than 64 bits".to_owned()))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0_u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
}
