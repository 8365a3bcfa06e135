//! LZ4 frame compression of the artifacts (level 9, `image-layout.md` §7), on every core.
//!
//! The input is cut into chunks of whole 4 MiB blocks; each chunk is compressed by liblz4's
//! frame encoder (high compression, independent blocks, block checksums) on a worker thread.
//! Independent blocks do not refer to earlier blocks, so the block sequences of the chunk
//! frames, written one after the other under a single frame header and one end mark, form one
//! standard frame: the `lz4` tool and `lz4::Decoder` (updog) read it like any other. The output
//! depends only on the input, never on the thread count.
use crate::error::{self, Result};
use crate::progress::Progress;
use aws_lc_rs::digest::{Context, SHA256};
use lz4::liblz4::BlockChecksum;
use lz4::{BlockMode, BlockSize, ContentChecksum, EncoderBuilder};
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// LZ4 HC level (`lz4 -9`).
pub const LEVEL: u32 = 9;
/// Frame block size (4 MiB, block size ID 7).
const BLOCK: usize = 4 * 1024 * 1024;
/// Input bytes per work item: a whole number of blocks.
const CHUNK: usize = 2 * BLOCK;
/// Frame header length with no content size and no dictionary ID.
const HEADER: usize = 7;
/// The end mark (a zero block size).
const END_MARK: [u8; 4] = [0; 4];
/// LZ4 frame magic number, little-endian.
pub const MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// The frame header written to the file: the chunk frames' header with the content size added
/// (flag bit 3 and 8 bytes after the block descriptor), so a reader can check the decompressed
/// size against its destination before writing anything (updog does).
fn header_with_content_size(chunk_header: &[u8], content_size: u64) -> Vec<u8> {
    let (flags, block_descriptor) = (chunk_header[4] | 0b0000_1000, chunk_header[5]);
    let mut descriptor = vec![flags, block_descriptor];
    descriptor.extend_from_slice(&content_size.to_le_bytes());
    let checksum = (xxh32_short(&descriptor) >> 8) as u8;
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&descriptor);
    header.push(checksum);
    header
}

/// xxHash32 with seed 0 of fewer than 16 bytes (all an LZ4 frame descriptor needs).
fn xxh32_short(input: &[u8]) -> u32 {
    const P1: u32 = 0x9E37_79B1;
    const P2: u32 = 0x85EB_CA77;
    const P3: u32 = 0xC2B2_AE3D;
    const P4: u32 = 0x27D4_EB2F;
    const P5: u32 = 0x1656_67B1;
    debug_assert!(input.len() < 16);
    let mut hash = P5.wrapping_add(input.len() as u32);
    let mut words = input.chunks_exact(4);
    for word in &mut words {
        let value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        hash = hash
            .wrapping_add(value.wrapping_mul(P3))
            .rotate_left(17)
            .wrapping_mul(P4);
    }
    for &byte in words.remainder() {
        hash = hash
            .wrapping_add(u32::from(byte).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    hash ^= hash >> 15;
    hash = hash.wrapping_mul(P2);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(P3);
    hash ^ (hash >> 16)
}

/// A written artifact: compressed size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of the written bytes, lower-case hex.
    pub sha256: String,
}

/// One chunk compressed to a complete frame: header, blocks, end mark.
#[derive(Clone)]
struct ChunkFrame(Vec<u8>);

impl ChunkFrame {
    fn header(&self) -> &[u8] {
        &self.0[..HEADER]
    }

    fn blocks(&self) -> &[u8] {
        &self.0[HEADER..self.0.len() - END_MARK.len()]
    }
}

/// Compress one chunk to a complete frame.
fn compress_chunk(input: &[u8], path: &Path) -> Result<ChunkFrame> {
    let mut builder = EncoderBuilder::new();
    builder
        .level(LEVEL)
        .block_size(BlockSize::Max4MB)
        .block_mode(BlockMode::Independent)
        .block_checksum(BlockChecksum::BlockChecksumEnabled)
        .checksum(ContentChecksum::NoChecksum);
    let mut encoder = builder
        .build(Vec::with_capacity(input.len() / 2 + 64))
        .context(error::CompressSnafu { path })?;
    encoder
        .write_all(input)
        .context(error::CompressSnafu { path })?;
    let (frame, result) = encoder.finish();
    result.context(error::CompressSnafu { path })?;
    ensure!(
        frame.len() >= HEADER + END_MARK.len()
            && frame[..4] == MAGIC
            && frame[frame.len() - 4..] == END_MARK,
        error::UnexpectedFrameSnafu { path }
    );
    Ok(ChunkFrame(frame))
}

/// Counts and hashes what goes through it.
struct HashingWriter<W> {
    inner: W,
    digest: Context,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(bytes)?;
        self.digest.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }
}

/// Compress `input` into the LZ4 frame file `output` using `threads` threads.
pub fn compress_file(
    input: &Path,
    output: &Path,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Written> {
    let source = File::open(input).context(error::ReadFileSnafu { path: input })?;
    let len = source
        .metadata()
        .context(error::ReadFileSnafu { path: input })?
        .len();
    let chunks = usize::try_from(len.div_ceil(CHUNK as u64))
        .ok()
        .context(error::TooLargeSnafu { path: input })?
        .max(1);
    let file = File::create(output).context(error::WriteFileSnafu { path: output })?;
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        digest: Context::new(&SHA256),
        size: 0,
    };
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, chunks);
    // A full chunk that is a hole compresses to these bytes: compute them once.
    let zero_chunk = if len >= CHUNK as u64 {
        Some(compress_chunk(&vec![0; CHUNK], input)?)
    } else {
        None
    };
    std::thread::scope(|scope| -> Result<()> {
        let (sender, receiver) = mpsc::sync_channel::<(usize, Result<ChunkFrame>)>(threads * 2);
        for _ in 0..threads {
            let sender = sender.clone();
            let (source, next, zero_chunk) = (&source, &next, &zero_chunk);
            scope.spawn(move || {
                let mut buffer = vec![0_u8; CHUNK];
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= chunks {
                        break;
                    }
                    let offset = index as u64 * CHUNK as u64;
                    let size = (len - offset.min(len)).min(CHUNK as u64) as usize;
                    let hole = crate::sparse::is_hole(source, offset, size as u64)
                        .context(error::ReadFileSnafu { path: input });
                    let result = match (hole, zero_chunk) {
                        (Ok(true), Some(zeros)) if size == CHUNK => Ok(zeros.clone()),
                        (Err(e), _) => Err(e),
                        _ => source
                            .read_exact_at(&mut buffer[..size], offset)
                            .context(error::ReadFileSnafu { path: input })
                            .and_then(|()| compress_chunk(&buffer[..size], input)),
                    };
                    progress.advance(size as u64);
                    let failed = result.is_err();
                    // The receiver only goes away after an error: stop quietly then.
                    if sender.send((index, result)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let mut pending = BTreeMap::new();
        let mut expected = 0;
        let mut header: Option<Vec<u8>> = None;
        for (index, result) in receiver.iter() {
            pending.insert(index, result?);
            while let Some(frame) = pending.remove(&expected) {
                match &header {
                    None => {
                        out.put(&header_with_content_size(frame.header(), len))
                            .context(error::WriteFileSnafu { path: output })?;
                        header = Some(frame.header().to_vec());
                    }
                    Some(first) => {
                        ensure!(
                            first == frame.header(),
                            error::UnexpectedFrameSnafu { path: input }
                        );
                    }
                }
                out.put(frame.blocks())
                    .context(error::WriteFileSnafu { path: output })?;
                expected += 1;
            }
        }
        // Every worker either sent all its chunks or stopped after sending an error.
        ensure!(
            expected == chunks,
            error::ThreadPanickedSnafu {
                task: "compression"
            }
        );
        Ok(())
    })?;
    out.put(&END_MARK)
        .context(error::WriteFileSnafu { path: output })?;
    let HashingWriter {
        inner,
        digest,
        size,
    } = out;
    let file = inner
        .into_inner()
        .map_err(|e| e.into_error())
        .context(error::WriteFileSnafu { path: output })?;
    file.sync_all()
        .context(error::WriteFileSnafu { path: output })?;
    Ok(Written {
        size,
        sha256: hex::encode(digest.finish().as_ref()),
    })
}

/// SHA-256 and size of an existing file (holes are hashed as zeros without reading them).
pub fn hash_file(path: &Path) -> Result<Written> {
    let file = File::open(path).context(error::ReadFileSnafu { path })?;
    let len = file
        .metadata()
        .context(error::ReadFileSnafu { path })?
        .len();
    let mut digest = Context::new(&SHA256);
    let mut buffer = vec![0_u8; 1 << 20];
    let zeros = vec![0_u8; 1 << 20];
    let mut position = 0;
    while position < len {
        let n = (len - position).min(buffer.len() as u64) as usize;
        if crate::sparse::is_hole(&file, position, n as u64)
            .context(error::ReadFileSnafu { path })?
        {
            digest.update(&zeros[..n]);
        } else {
            file.read_exact_at(&mut buffer[..n], position)
                .context(error::ReadFileSnafu { path })?;
            digest.update(&buffer[..n]);
        }
        position += n as u64;
    }
    Ok(Written {
        size: len,
        sha256: hex::encode(digest.finish().as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::{CHUNK, MAGIC, compress_file, hash_file};
    use crate::progress::NoProgress;
    use std::io::Read;

    fn round_trip(data: &[u8], threads: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("in"), dir.path().join("out.lz4"));
        std::fs::write(&input, data).unwrap();
        let written = compress_file(&input, &output, threads, &NoProgress).unwrap();
        let compressed = std::fs::read(&output).unwrap();
        assert_eq!(written.size, compressed.len() as u64);
        assert_eq!(written, hash_file(&output).unwrap());
        assert_eq!(compressed[..4], MAGIC);
        let mut decoded = Vec::new();
        lz4::Decoder::new(compressed.as_slice())
            .unwrap()
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, data);
        compressed
    }

    #[test]
    fn xxh32_matches_the_reference_vectors() {
        // Published xxHash32 test vectors (seed 0).
        assert_eq!(super::xxh32_short(b""), 0x02CC_5D05);
        assert_eq!(super::xxh32_short(b"a"), 0x550D_7456);
        assert_eq!(super::xxh32_short(b"abc"), 0x32D1_53FF);
    }

    #[test]
    fn frames_declare_their_content_size() {
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("in"), dir.path().join("out.lz4"));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&input, &data).unwrap();
        super::compress_file(&input, &output, 2, &crate::progress::NoProgress).unwrap();
        let frame = std::fs::read(&output).unwrap();
        assert_eq!(frame[4] & 0b0000_1000, 0b0000_1000, "content size flag");
        assert_eq!(
            u64::from_le_bytes(frame[6..14].try_into().unwrap()),
            data.len() as u64
        );
        // The lz4 tool checks the header checksum and the declared size.
        let decoded = std::process::Command::new("lz4")
            .args(["-d", "-c"])
            .arg(&output)
            .output()
            .unwrap();
        assert!(
            decoded.status.success(),
            "{}",
            String::from_utf8_lossy(&decoded.stderr)
        );
        assert_eq!(decoded.stdout, data);
    }

    #[test]
    fn one_frame_whatever_the_thread_count() {
        let mut data: Vec<u8> = (0..CHUNK * 2 + 12345)
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        data[CHUNK..CHUNK + 4096].fill(0);
        let single = round_trip(&data, 1);
        assert_eq!(round_trip(&data, 2), single);
        assert_eq!(round_trip(&data, 5), single);
    }

    #[test]
    fn holes_compress_like_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let (sparse, dense) = (dir.path().join("sparse"), dir.path().join("dense"));
        let mut data = vec![0_u8; CHUNK * 3 + 100];
        data[CHUNK + 5] = 7;
        std::fs::write(&dense, &data).unwrap();
        let file = std::fs::File::create(&sparse).unwrap();
        file.set_len(data.len() as u64).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[7], CHUNK as u64 + 5).unwrap();
        drop(file);
        let a = compress_file(&sparse, &dir.path().join("a.lz4"), 2, &NoProgress).unwrap();
        let b = compress_file(&dense, &dir.path().join("b.lz4"), 2, &NoProgress).unwrap();
        assert_eq!(a, b);
        assert_eq!(round_trip(&data, 2).len() as u64, b.size);
    }

    #[test]
    fn empty_and_small_inputs() {
        round_trip(&[], 2);
        round_trip(b"hello", 2);
    }
}
