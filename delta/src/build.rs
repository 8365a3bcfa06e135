//! Publishing: the index and the store of a release's images, from the raw images.
//!
//! Every block that is not zeros and not a repeat of an earlier block (in any image) becomes
//! one zstd frame appended to the store. Blocks are compressed on every core, a batch at a
//! time, and written in order, so memory stays bounded whatever the image size.
use crate::error::{self, Result};
use crate::index::{BLOCK_SIZE, Frame, ImageIndex, Index, block_sha256, sha256, short_hash};
use snafu::ResultExt;
use std::collections::HashMap;
use std::io::{Read, Write};

/// How the store is compressed.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    /// zstd level of each block.
    pub level: i32,
    /// Threads compressing blocks.
    pub threads: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            level: DEFAULT_LEVEL,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// zstd level by default (see BENCHMARKS.md for the measurement).
pub const DEFAULT_LEVEL: i32 = 19;
/// Blocks read and compressed per batch (4 MiB).
const BATCH_BLOCKS: usize = 1024;

/// One image to index: its role (`root`, `boot`, `hash`) and its bytes.
#[derive(Debug)]
pub struct Source<R> {
    /// The partition it is for.
    pub role: String,
    /// The raw image.
    pub reader: R,
    /// What its blocks' SHA-256 are salted with in the index (see [`crate::verity`]): empty,
    /// or for a root its dm-verity salt.
    pub salt: Vec<u8>,
}

/// What [`build`] made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The index (encode it with [`Index::encode`]).
    pub index: Index,
    /// Blocks stored (not zeros, not a repeat).
    pub stored_blocks: u64,
}

/// Index `images` and write their store to `store`.
pub fn build<R: Read>(
    images: Vec<Source<R>>,
    store: &mut dyn Write,
    options: BuildOptions,
) -> Result<Built> {
    // Full SHA-256 of a stored block → its frame.
    let mut seen: HashMap<[u8; 32], Frame> = HashMap::new();
    let mut store_len = 0_u64;
    let mut stored_blocks = 0;
    let mut out = Vec::new();
    for Source {
        role,
        mut reader,
        salt,
    } in images
    {
        let zero_sha = block_sha256(&salt, &[0_u8; BLOCK_SIZE]);
        let mut whole = crate::index::Digest::new();
        let mut blocks = Vec::new();
        let mut frames = Vec::new();
        let mut size = 0_u64;
        loop {
            let batch =
                read_up_to(&mut reader, BATCH_BLOCKS * BLOCK_SIZE).context(error::ReadSnafu {
                    what: format!("image {role}"),
                })?;
            if batch.is_empty() {
                break;
            }
            size += batch.len() as u64;
            // Which blocks are new (first of their bytes), then compress those on every core.
            let mut fresh: Vec<(usize, [u8; 32])> = Vec::new();
            let mut in_batch = std::collections::HashSet::new();
            let mut kinds = Vec::new();
            for (i, block) in batch.chunks(BLOCK_SIZE).enumerate() {
                if block.iter().all(|b| *b == 0) {
                    blocks.push(short_hash(&zero_sha));
                    whole.push(&zero_sha);
                    kinds.push(None);
                    continue;
                }
                // The index's hash pads a short last block; the store's key does not (a
                // short block's frame must not stand for a whole block ending in zeros).
                let padded = block_sha256(&salt, block);
                let digest = if block.len() == BLOCK_SIZE && salt.is_empty() {
                    padded
                } else {
                    sha256(block)
                };
                blocks.push(short_hash(&padded));
                whole.push(&padded);
                if !seen.contains_key(&digest) && in_batch.insert(digest) {
                    fresh.push((i, digest));
                }
                kinds.push(Some(digest));
            }
            let frames_bytes = compress_all(&batch, &fresh, options, &role)?;
            for ((_, digest), frame) in fresh.iter().zip(frames_bytes) {
                store.write_all(&frame).context(error::WriteSnafu {
                    what: "the delta store",
                })?;
                // A frame is at most compress_bound(BLOCK_SIZE), far below u32::MAX.
                let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
                seen.insert(
                    *digest,
                    Frame {
                        offset: store_len,
                        len,
                    },
                );
                store_len += frame.len() as u64;
                stored_blocks += 1;
            }
            for kind in kinds {
                frames.push(match kind {
                    None => Frame { offset: 0, len: 0 },
                    Some(digest) => seen
                        .get(&digest)
                        .copied()
                        .unwrap_or(Frame { offset: 0, len: 0 }),
                });
            }
            if batch.len() < BATCH_BLOCKS * BLOCK_SIZE {
                break;
            }
        }
        let sha = whole.finish();
        tracing::debug!(%role, size, blocks = blocks.len(), "indexed image");
        out.push(ImageIndex {
            role,
            size,
            digest: sha,
            salt,
            blocks,
            frames,
        });
    }
    Ok(Built {
        index: Index {
            store_len,
            images: out,
        },
        stored_blocks,
    })
}

/// Compress the blocks `fresh` names, split across `options.threads` threads, in order.
fn compress_all(
    batch: &[u8],
    fresh: &[(usize, [u8; 32])],
    options: BuildOptions,
    role: &str,
) -> Result<Vec<Vec<u8>>> {
    let threads = options.threads.max(1);
    let per = fresh.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<Vec<u8>>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = fresh
            .chunks(per)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(i, _)| {
                            let start = i * BLOCK_SIZE;
                            let end = (start + BLOCK_SIZE).min(batch.len());
                            zstd::bulk::compress(&batch[start..end], options.level).context(
                                error::CompressSnafu {
                                    image: role.to_owned(),
                                },
                            )
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(error::Error::Compress {
                        image: role.to_owned(),
                        source: std::io::Error::other("a compression thread panicked"),
                    })
                })
            })
            .collect()
    });
    let mut frames = Vec::with_capacity(fresh.len());
    for part in results {
        frames.extend(part?);
    }
    Ok(frames)
}

/// Read until `len` bytes or the end.
fn read_up_to(reader: &mut dyn Read, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    reader.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Index the image files `images` (role, path; LZ4 frames are decoded, anything else is read
/// as it is) and write the index to `index_out` and the store to `store_out`, each through a
/// temporary file renamed into place (nothing half-written is left on failure).
pub fn build_files(
    images: &[(&str, &std::path::Path)],
    index_out: &std::path::Path,
    store_out: &std::path::Path,
    options: BuildOptions,
) -> Result<Built> {
    // The root's blocks are listed by their dm-verity leaves when the hash image holds a
    // tree of it (see crate::verity).
    let mut root_salt = Vec::new();
    if let Some((_, path)) = images.iter().find(|(role, _)| *role == "hash") {
        let mut first = vec![0_u8; BLOCK_SIZE];
        let n = read_up_to(&mut open_image(path)?, BLOCK_SIZE).context(error::ReadSnafu {
            what: path.display().to_string(),
        })?;
        first[..n.len()].copy_from_slice(&n);
        if let Some(superblock) = crate::verity::parse_superblock(&first) {
            root_salt = superblock.salt;
        }
    }
    let mut sources = Vec::new();
    for (role, path) in images {
        sources.push(Source {
            role: (*role).to_owned(),
            reader: open_image(path)?,
            salt: if *role == "root" {
                root_salt.clone()
            } else {
                Vec::new()
            },
        });
    }
    let folder = |p: &std::path::Path| {
        p.parent()
            .filter(|f| !f.as_os_str().is_empty())
            .map_or_else(
                || std::path::PathBuf::from("."),
                std::path::Path::to_path_buf,
            )
    };
    let write_err = |path: &std::path::Path| error::WriteSnafu {
        what: path.display().to_string(),
    };
    let mut store =
        tempfile::NamedTempFile::new_in(folder(store_out)).context(write_err(store_out))?;
    let built = {
        let mut writer = std::io::BufWriter::new(store.as_file_mut());
        let built = build(sources, &mut writer, options)?;
        writer.flush().context(write_err(store_out))?;
        built
    };
    store.as_file().sync_all().context(write_err(store_out))?;
    let mut index =
        tempfile::NamedTempFile::new_in(folder(index_out)).context(write_err(index_out))?;
    index
        .write_all(&built.index.encode()?)
        .and_then(|()| index.as_file().sync_all())
        .context(write_err(index_out))?;
    // Published files: readable by everyone, like every other target (a temporary file is
    // created 0600).
    use std::os::unix::fs::PermissionsExt;
    for file in [store.as_file(), index.as_file()] {
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .context(write_err(store_out))?;
    }
    store
        .persist(store_out)
        .map_err(|e| e.error)
        .context(write_err(store_out))?;
    index
        .persist(index_out)
        .map_err(|e| e.error)
        .context(write_err(index_out))?;
    Ok(built)
}

/// A reader of the raw image in `path`: decoded if it is an LZ4 frame.
fn open_image(path: &std::path::Path) -> Result<Box<dyn Read + Send>> {
    let what = || path.display().to_string();
    let mut file = std::fs::File::open(path).context(error::ReadSnafu { what: what() })?;
    let mut magic = [0_u8; 4];
    let n = file
        .read(&mut magic)
        .context(error::ReadSnafu { what: what() })?;
    use std::io::Seek;
    file.rewind().context(error::ReadSnafu { what: what() })?;
    let file = std::io::BufReader::with_capacity(1 << 20, file);
    if n == 4 && magic == [0x04, 0x22, 0x4d, 0x18] {
        let decoder = lz4::Decoder::new(file).context(error::ReadSnafu { what: what() })?;
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(file))
    }
}
