//! dm-verity hash tree, format 1 with superblock (`image-layout.md` §4), computed in Rust.
//!
//! Leaves are hashed on every core (each thread reads its own range of the data file with
//! positioned reads); the upper levels are 1/128 of the work and are hashed on one thread.
use crate::error::{self, Result};
use crate::progress::Progress;
// `SHA-256(salt ‖ block)` of a 4 KiB data or hash block: a leaf or node of the tree (the delta
// crate lists a root's blocks by the same hashes).
use delta::block_sha256 as salted_hash;
use snafu::{OptionExt, ResultExt, ensure};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Data and hash block size.
pub const BLOCK_SIZE: usize = 4096;
/// SHA-256 digest size.
const DIGEST: usize = 32;
/// Digests per hash block.
const HASHES_PER_BLOCK: usize = BLOCK_SIZE / DIGEST;
/// Bytes read per positioned read while hashing leaves.
const READ_CHUNK: usize = 1024 * 1024;

/// The verity parameters of a built hash image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerityInfo {
    /// Root hash, lower-case hex.
    pub root_hash: String,
    /// Salt, lower-case hex.
    pub salt: String,
    /// Superblock UUID.
    pub uuid: String,
    /// Number of 4 KiB data blocks (the whole data image).
    pub data_blocks: u64,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Hash algorithm (`sha256`).
    pub hash_algorithm: &'static str,
    /// Bytes of the superblock plus the tree, before padding to the partition size.
    pub hash_tree_bytes: u64,
}

impl VerityInfo {
    /// The `dm-mod.create` table of `image-layout.md` §4.4 (without the `root,,,ro,` prefix).
    pub fn dm_table(&self) -> String {
        format!(
            "0 {sectors} verity 1 PARTUUID=$boot_uuid/PARTNROFF=1 PARTUUID=$boot_uuid/PARTNROFF=2 \
             {bs} {bs} {blocks} 1 {alg} {root} {salt} 2 restart_on_corruption ignore_zero_blocks",
            sectors = self.data_blocks * 8,
            bs = BLOCK_SIZE,
            blocks = self.data_blocks,
            alg = self.hash_algorithm,
            root = self.root_hash,
            salt = self.salt,
        )
    }
}

/// Number of hash blocks in each level, leaves first (the delta crate reads trees too).
pub use delta::verity::level_sizes;

/// Bytes of the hash image for `data_blocks`: the superblock block plus every tree block.
pub fn hash_image_bytes(data_blocks: u64) -> u64 {
    (1 + level_sizes(data_blocks).iter().sum::<u64>()) * BLOCK_SIZE as u64
}

/// The 512-byte superblock (§4.3), padded to one hash block.
pub fn superblock(uuid: &[u8; 16], salt: &[u8], data_blocks: u64) -> Vec<u8> {
    let mut block = vec![0_u8; BLOCK_SIZE];
    block[0..8].copy_from_slice(b"verity\0\0");
    block[8..12].copy_from_slice(&1_u32.to_le_bytes());
    block[12..16].copy_from_slice(&1_u32.to_le_bytes());
    block[16..32].copy_from_slice(uuid);
    block[32..38].copy_from_slice(b"sha256");
    block[64..68].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
    block[68..72].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
    block[72..80].copy_from_slice(&data_blocks.to_le_bytes());
    block[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
    block[88..88 + salt.len()].copy_from_slice(salt);
    block
}

/// Hash the blocks of `file` in `[first_block, first_block + out.len())` into `out`.
fn hash_range(
    file: &File,
    path: &Path,
    salt: &[u8],
    first_block: u64,
    out: &mut [[u8; DIGEST]],
    progress: &dyn Progress,
) -> Result<()> {
    let mut buffer = vec![0_u8; READ_CHUNK];
    // Blocks in a hole are zeros: their hash is known without reading them.
    let zero_hash = salted_hash(salt, &[0; BLOCK_SIZE]);
    let blocks_per_read = READ_CHUNK / BLOCK_SIZE;
    for (index, hashes) in out.chunks_mut(blocks_per_read).enumerate() {
        let block = first_block + (index * blocks_per_read) as u64;
        let bytes = &mut buffer[..hashes.len() * BLOCK_SIZE];
        let offset = block * BLOCK_SIZE as u64;
        let len = bytes.len() as u64;
        if crate::sparse::is_hole(file, offset, len).context(error::ReadFileSnafu { path })? {
            hashes.fill(zero_hash);
        } else {
            file.read_exact_at(bytes, offset)
                .context(error::ReadFileSnafu { path })?;
            for (hash, data) in hashes.iter_mut().zip(bytes.chunks_exact(BLOCK_SIZE)) {
                *hash = salted_hash(salt, data);
            }
        }
        progress.advance(len);
    }
    Ok(())
}

/// Hash every data block of `file` into leaf digests, on `threads` threads.
fn hash_leaves(
    path: &Path,
    salt: &[u8],
    data_blocks: u64,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Vec<[u8; DIGEST]>> {
    let file = File::open(path).context(error::ReadFileSnafu { path })?;
    let count = usize::try_from(data_blocks)
        .ok()
        .context(error::TooLargeSnafu { path })?;
    let mut leaves = vec![[0_u8; DIGEST]; count];
    let per_thread = count.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = leaves
            .chunks_mut(per_thread)
            .enumerate()
            .map(|(i, out)| {
                let file = &file;
                scope.spawn(move || {
                    hash_range(file, path, salt, (i * per_thread) as u64, out, progress)
                })
            })
            .collect();
        for handle in handles {
            handle.join().map_err(|_| {
                error::ThreadPanickedSnafu {
                    task: "verity hashing",
                }
                .build()
            })??;
        }
        Ok(())
    })?;
    Ok(leaves)
}

/// Pack digests into zero-padded hash blocks.
fn pack(hashes: &[[u8; DIGEST]]) -> Vec<u8> {
    let blocks = hashes.len().div_ceil(HASHES_PER_BLOCK).max(1);
    let mut out = vec![0_u8; blocks * BLOCK_SIZE];
    for (slot, hash) in out.chunks_exact_mut(DIGEST).zip(hashes) {
        slot.copy_from_slice(hash);
    }
    out
}

/// The inputs of [`build_hash_image`].
#[derive(Debug, Clone, Copy)]
pub struct VerityParams<'a> {
    /// Salt (any length up to 256 bytes; 32 is veritysetup's default).
    pub salt: &'a [u8],
    /// Superblock UUID.
    pub uuid: [u8; 16],
    /// Size of the HASH partition in bytes: the image is padded to it, and must fit in it.
    pub partition_bytes: u64,
    /// Threads for leaf hashing.
    pub threads: usize,
}

/// Compute the hash tree of the data image `data` and write the partition-sized hash image
/// `hash_out` (superblock, then levels top first).
pub fn build_hash_image(
    data: &Path,
    hash_out: &Path,
    params: VerityParams<'_>,
    progress: &dyn Progress,
) -> Result<VerityInfo> {
    let salt = params.salt;
    ensure!(
        salt.len() <= 256,
        error::InvalidSettingSnafu {
            reason: "the verity salt is longer than 256 bytes"
        }
    );
    let data_len = std::fs::metadata(data)
        .context(error::ReadFileSnafu { path: data })?
        .len();
    ensure!(
        data_len > 0 && data_len % BLOCK_SIZE as u64 == 0,
        error::UnalignedDataSnafu {
            path: data,
            size: data_len
        }
    );
    let data_blocks = data_len / BLOCK_SIZE as u64;
    let needed = hash_image_bytes(data_blocks);
    ensure!(
        needed <= params.partition_bytes,
        error::TooBigSnafu {
            what: "the dm-verity hash tree",
            needed,
            partition: "HASH",
            available: params.partition_bytes,
        }
    );
    progress.start("Hashing root (dm-verity)", Some(data_len));
    let mut level = hash_leaves(data, salt, data_blocks, params.threads, progress)?;
    // Levels, leaves first; each level's blocks hashed to form the next one.
    let mut levels = Vec::new();
    loop {
        let packed = pack(&level);
        let top = packed.len() == BLOCK_SIZE;
        level = packed
            .chunks_exact(BLOCK_SIZE)
            .map(|block| salted_hash(salt, block))
            .collect();
        levels.push(packed);
        if top {
            break;
        }
    }
    progress.finish();
    let root_hash = hex::encode(level[0]);
    let mut file = File::create(hash_out).context(error::WriteFileSnafu { path: hash_out })?;
    file.write_all(&superblock(&params.uuid, salt, data_blocks))
        .context(error::WriteFileSnafu { path: hash_out })?;
    for packed in levels.iter().rev() {
        file.write_all(packed)
            .context(error::WriteFileSnafu { path: hash_out })?;
    }
    file.set_len(params.partition_bytes)
        .context(error::WriteFileSnafu { path: hash_out })?;
    file.sync_all()
        .context(error::WriteFileSnafu { path: hash_out })?;
    Ok(VerityInfo {
        root_hash,
        salt: hex::encode(salt),
        uuid: crate::ids::uuid_text(&params.uuid),
        data_blocks,
        data_block_size: BLOCK_SIZE as u32,
        hash_block_size: BLOCK_SIZE as u32,
        hash_algorithm: "sha256",
        hash_tree_bytes: needed,
    })
}

#[cfg(test)]
mod tests {
    use super::{VerityParams, build_hash_image, hash_image_bytes, level_sizes, superblock};
    use crate::progress::NoProgress;

    #[test]
    fn level_arithmetic_matches_the_spec_example() {
        assert_eq!(level_sizes(3597), vec![29, 1]);
        assert_eq!(hash_image_bytes(3597), 126_976);
        assert_eq!(level_sizes(1), vec![1]);
        assert_eq!(level_sizes(128), vec![1]);
        assert_eq!(level_sizes(129), vec![2, 1]);
        assert_eq!(level_sizes(128 * 128 + 1), vec![129, 2, 1]);
        // 920 MiB of data (2 GiB layout) needs about 7.3 MiB, under the 10 MiB HASH.
        let blocks = 920 * 256;
        assert!(hash_image_bytes(blocks) < 10 * 1024 * 1024);
        assert!(hash_image_bytes(blocks) > 7 * 1024 * 1024);
    }

    #[test]
    fn superblock_fields() {
        let block = superblock(&[7; 16], &[0xaa; 32], 3597);
        assert_eq!(&block[0..8], b"verity\0\0");
        assert_eq!(block[8], 1);
        assert_eq!(block[12], 1);
        assert_eq!(&block[16..32], &[7; 16]);
        assert_eq!(&block[32..39], b"sha256\0");
        assert_eq!(u32::from_le_bytes(block[64..68].try_into().unwrap()), 4096);
        assert_eq!(u64::from_le_bytes(block[72..80].try_into().unwrap()), 3597);
        assert_eq!(u16::from_le_bytes(block[80..82].try_into().unwrap()), 32);
        assert_eq!(&block[88..120], &[0xaa; 32]);
        assert!(block[120..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_tree_bigger_than_the_partition_is_an_error_naming_both_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::write(&data, vec![1_u8; 4096 * 200]).unwrap();
        let params = VerityParams {
            salt: &[1; 32],
            uuid: [0; 16],
            partition_bytes: 8192,
            threads: 2,
        };
        let error = build_hash_image(&data, &dir.path().join("hash"), params, &NoProgress)
            .unwrap_err()
            .to_string();
        assert!(error.contains("16384") && error.contains("8192"), "{error}");
        assert!(!dir.path().join("hash").exists());
    }

    #[test]
    fn holes_hash_like_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let (sparse, dense) = (dir.path().join("sparse"), dir.path().join("dense"));
        let size = 4096 * 1024;
        let file = std::fs::File::create(&sparse).unwrap();
        file.set_len(size).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[3; 4096], 4096 * 700).unwrap();
        drop(file);
        std::fs::write(&dense, std::fs::read(&sparse).unwrap()).unwrap();
        let params = VerityParams {
            salt: &[2; 32],
            uuid: [3; 16],
            partition_bytes: 65536,
            threads: 2,
        };
        let a = build_hash_image(&sparse, &dir.path().join("a"), params, &NoProgress).unwrap();
        let b = build_hash_image(&dense, &dir.path().join("b"), params, &NoProgress).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            std::fs::read(dir.path().join("a")).unwrap(),
            std::fs::read(dir.path().join("b")).unwrap()
        );
    }

    #[test]
    fn the_delta_crate_reads_the_superblock_and_the_leaves() {
        // updog finds the running root's blocks through these leaves (delta::verity).
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut bytes: Vec<u8> = (0..4096 * 300).map(|i| (i % 249) as u8).collect();
        bytes[4096 * 10..4096 * 11].fill(0);
        std::fs::write(&data, &bytes).unwrap();
        let salt = [5_u8; 32];
        let params = VerityParams {
            salt: &salt,
            uuid: [1; 16],
            partition_bytes: 65536,
            threads: 2,
        };
        let hash = dir.path().join("hash");
        build_hash_image(&data, &hash, params, &NoProgress).unwrap();
        let file = std::fs::File::open(&hash).unwrap();
        let extent = delta::Extent {
            file: &file,
            offset: 0,
            len: 65536,
        };
        let (superblock, leaves) = delta::verity::read_leaves(extent).unwrap();
        assert_eq!(superblock.salt, salt);
        assert_eq!(superblock.data_blocks, 300);
        let expected: Vec<u64> = bytes
            .chunks(4096)
            .map(|block| delta::block_hash(&salt, block))
            .collect();
        assert_eq!(leaves, expected);
        // Another format or a cut partition: no leaves, not a panic.
        assert!(delta::verity::parse_superblock(&[0; 512]).is_none());
        let short = delta::Extent {
            len: 8192,
            ..extent
        };
        assert!(delta::verity::read_leaves(short).is_none());
    }

    #[test]
    fn thread_count_does_not_change_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let bytes: Vec<u8> = (0..4096 * 300).map(|i| (i % 251) as u8).collect();
        std::fs::write(&data, bytes).unwrap();
        let mut outputs = Vec::new();
        for threads in [1, 2, 3, 7] {
            let hash = dir.path().join(format!("hash{threads}"));
            let params = VerityParams {
                salt: &[9; 32],
                uuid: [1; 16],
                partition_bytes: 65536,
                threads,
            };
            let info = build_hash_image(&data, &hash, params, &NoProgress).unwrap();
            assert_eq!(info.data_blocks, 300);
            assert_eq!(info.hash_tree_bytes, 5 * 4096);
            outputs.push((info.root_hash, std::fs::read(&hash).unwrap()));
        }
        assert!(outputs.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(outputs[0].1.len(), 65536);
    }
}
