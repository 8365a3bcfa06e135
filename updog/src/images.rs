//! Streaming a verified, LZ4-compressed image from TUF into a partition.
//!
//! The pipeline is `TUF stream (length enforced while streaming, every listed hash checked at
//! its end) → channel → LZ4 frame decoder → bounded partition writer`, with constant memory.
//! The network side runs on the async runtime; the decoding and writing run on a blocking
//! thread. The partition writer refuses to write past the partition's end *before* writing the
//! offending bytes. The digest is only known at the end of the stream, so an image is trusted
//! only once the stream ended without error and the data was synced; until then the set it
//! was written to stays unbootable (cleared flags).
use crate::error::{self, Result};
use crate::progress::{Event, Progress};
use crate::repo::{fetch_target, open_target, read_error, target_info};
use bytes::Bytes;
use delta::io::{AlignedBuffer, DirectWriter};
use futures::StreamExt;
use signpost::{Access, DiskSource, SetId, State};
use snafu::{OptionExt, ResultExt};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tuf_client::Repository;

/// LZ4 frame magic number (little-endian bytes).
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
/// Bytes of an LZ4 frame header up to and including the content size field.
const LZ4_HEADER_WITH_SIZE: usize = 14;
/// Decompressed bytes written per system call: the largest LZ4 block (4 MiB, what `lz4 -9` and
/// image-builder use), so that liblz4 decodes whole blocks straight into the buffer instead of
/// through its own temporary block.
const WRITE_BUFFER: usize = 4 << 20;
/// Chunks buffered between the download and the decoder.
const CHANNEL_CHUNKS: usize = 32;

/// The decompressed size an LZ4 frame header declares, if it declares one.
pub fn lz4_content_size(header: &[u8]) -> Option<u64> {
    if header.len() < LZ4_HEADER_WITH_SIZE || header[..4] != LZ4_MAGIC {
        return None;
    }
    let flags = header[4];
    // Version 01 in bits 7-6; content-size flag in bit 3.
    if flags >> 6 != 1 || flags & 0x08 == 0 {
        return None;
    }
    let mut size = [0_u8; 8];
    size.copy_from_slice(&header[6..14]);
    Some(u64::from_le_bytes(size))
}

/// The three images in the order they are written (the delta path relies on it: see
/// `delta::for_fetch`).
pub const IMAGES: [&str; 3] = ["root", "boot", "hash"];

/// Where one image goes: a byte range of a file or block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTarget {
    /// Partition number (for messages).
    pub number: u32,
    /// The file or device to open.
    pub path: PathBuf,
    /// Byte offset of the partition in it.
    pub offset: u64,
    /// Partition size in bytes.
    pub capacity: u64,
}

/// Writes at most `capacity` bytes at `offset` of a file; refuses (without writing) anything
/// that would go past the end. Aligned writes bypass the page cache (see [`DirectWriter`]);
/// an unaligned tail, or a file system that refuses direct I/O, goes through it as usual.
struct PartitionWriter {
    out: DirectWriter,
    target: PartitionTarget,
    written: u64,
}

impl PartitionWriter {
    fn open(target: &PartitionTarget) -> io::Result<PartitionWriter> {
        let file = open_partition(target)?;
        let direct = open_direct(target).ok();
        Ok(PartitionWriter {
            out: DirectWriter::new(file, direct),
            target: target.clone(),
            written: 0,
        })
    }

    /// Flush everything written (through either handle) to the device.
    fn sync(&self) -> io::Result<()> {
        self.out.sync()
    }
}

fn is_block_device(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::FileTypeExt;
    Ok(std::fs::metadata(path)?.file_type().is_block_device())
}

/// Open a partition's file or device for reading and writing. A block device is opened
/// exclusively (O_EXCL): the kernel refuses (EBUSY) one that is mounted or held, e.g. by the
/// running root's dm-verity, so a wrong guess of the inactive set can never overwrite the
/// running one.
pub fn open_partition(target: &PartitionTarget) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let excl = if is_block_device(&target.path)? {
        rustix::fs::OFlags::EXCL
    } else {
        rustix::fs::OFlags::empty()
    };
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(excl.bits().cast_signed())
        .open(&target.path)
}

/// A second handle on a partition [`open_partition`] opened, with direct I/O (`O_DIRECT`).
/// Not exclusive: the first handle holds the device's exclusive claim, and a second
/// exclusive open of a block device fails (`EBUSY`), which left hosts writing through the
/// page cache.
pub fn open_direct(target: &PartitionTarget) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits().cast_signed())
        .open(&target.path)
}

/// The marker error of [`PartitionWriter`] for data past the partition's end.
#[derive(Debug)]
struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("image larger than partition")
    }
}

impl std::error::Error for TooLarge {}

impl Write for PartitionWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.written + buf.len() as u64;
        if end > self.target.capacity {
            return Err(io::Error::other(TooLarge));
        }
        self.out.write_at(buf, self.target.offset + self.written)?;
        self.written = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A blocking `Read` over the chunks the download sends.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(bytes) => self.current = bytes,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

impl ChannelReader {
    /// Whether any byte remains (blocks until one arrives or the stream ends).
    fn has_more(&mut self) -> bool {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(bytes) => self.current = bytes,
                None => return false,
            }
        }
        true
    }
}

/// Why decoding stopped.
#[derive(Debug)]
enum DecodeError {
    Decode(io::Error),
    Write(io::Error),
    TooLarge,
    Empty,
}

/// Decompressed buffers in flight between the decoder and the writer thread.
const WRITE_BUFFERS: usize = 3;

/// Decode every LZ4 frame from `reader` into `writer`; returns the decompressed length.
///
/// Decoding (LZ4 and its frame checksum) and writing (the kernel's copy into the page cache)
/// each take a good share of a core, so they run on two threads handing over a few 1 MiB
/// buffers: writes stay large and in order, and memory stays fixed.
fn decode_all(
    reader: &mut ChannelReader,
    writer: &mut PartitionWriter,
) -> Result<u64, DecodeError> {
    let (full_sender, full) =
        std::sync::mpsc::sync_channel::<(AlignedBuffer, usize)>(WRITE_BUFFERS);
    let (empty_sender, empty) = std::sync::mpsc::sync_channel::<AlignedBuffer>(WRITE_BUFFERS);
    for _ in 0..WRITE_BUFFERS {
        // Cannot fail: the channel has room for every buffer and its receiver is alive.
        let _ = empty_sender.send(AlignedBuffer::new(WRITE_BUFFER));
    }
    let partition = &mut *writer;
    let outcome = std::thread::scope(|scope| {
        let writing = scope.spawn(move || -> io::Result<()> {
            for (buffer, filled) in full {
                partition.write_all(&buffer.get()[..filled])?;
                // The decoder may have stopped; then the buffer is simply dropped.
                let _ = empty_sender.send(buffer);
            }
            Ok(())
        });
        let decoded = decode_frames(reader, &empty, &full_sender);
        drop(full_sender);
        let written = writing
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the partition writer thread panicked")));
        (decoded, written)
    });
    match outcome {
        // A write error explains a decoder that stopped for want of buffers.
        (_, Err(e)) => Err(
            if e.get_ref()
                .is_some_and(|inner| inner.downcast_ref::<TooLarge>().is_some())
            {
                DecodeError::TooLarge
            } else {
                DecodeError::Write(e)
            },
        ),
        (Err(e), Ok(())) => Err(e),
        (Ok(0), Ok(())) => Err(DecodeError::Empty),
        (Ok(_), Ok(())) => {
            writer.sync().map_err(DecodeError::Write)?;
            tracing::debug!(
                written = writer.written,
                direct = writer.out.written_direct(),
                "partition synced (bytes written bypassing the page cache: direct)"
            );
            Ok(writer.written)
        }
    }
}

/// The decoder side of [`decode_all`]: fills free buffers with decompressed bytes and hands
/// them to the writer, a buffer at a time: only the last one may be partly filled, even when
/// the image has several frames, so every write but the last stays aligned. Returns the number
/// of frames, or stops early (`Ok`) when the writer has gone away (its error is the one to
/// report).
fn decode_frames(
    reader: &mut ChannelReader,
    empty: &std::sync::mpsc::Receiver<AlignedBuffer>,
    full: &std::sync::mpsc::SyncSender<(AlignedBuffer, usize)>,
) -> Result<u64, DecodeError> {
    let mut frames = 0;
    let Ok(mut buffer) = empty.recv() else {
        return Ok(frames);
    };
    let mut filled = 0;
    while reader.has_more() {
        frames += 1;
        let mut decoder = lz4::Decoder::new(&mut *reader).map_err(DecodeError::Decode)?;
        loop {
            if filled == buffer.get().len() {
                if full.send((buffer, filled)).is_err() {
                    return Ok(frames);
                }
                let Ok(next) = empty.recv() else {
                    return Ok(frames);
                };
                buffer = next;
                filled = 0;
            }
            let n = decoder
                .read(&mut buffer.get_mut()[filled..])
                .map_err(DecodeError::Decode)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        let (_, result) = decoder.finish();
        result.map_err(DecodeError::Decode)?;
    }
    if filled > 0 {
        // The writer may have stopped; its error is reported.
        let _ = full.send((buffer, filled));
    }
    Ok(frames)
}

/// What writing one image did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageReport {
    /// `root`, `boot` or `hash`.
    pub image: String,
    /// TUF target name.
    pub target: String,
    /// Partition number.
    pub partition: u32,
    /// Compressed bytes downloaded and verified.
    pub downloaded: u64,
    /// Decompressed bytes written.
    pub written: u64,
    /// How it was written: `full` (the whole image downloaded) or `delta`.
    pub via: &'static str,
}

/// The decompressed size declared by the image's LZ4 header, read from the start of the
/// target (the transfer is dropped after the header).
pub async fn declared_size(repo: &Repository, name: &str) -> Result<Option<u64>> {
    let mut stream = open_target(repo, name).await?;
    let mut header = Vec::new();
    while header.len() < LZ4_HEADER_WITH_SIZE {
        match stream.next().await {
            Some(Ok(chunk)) => header.extend_from_slice(&chunk),
            Some(Err(source)) => return Err(read_error(name, source)),
            None => break,
        }
    }
    Ok(lz4_content_size(&header))
}

/// Download `name`, verify it, decompress it into `partition`, and sync.
pub async fn write_image(
    repo: &Repository,
    image: &str,
    name: &str,
    partition: &PartitionTarget,
    progress: &Progress,
) -> Result<ImageReport> {
    let info = target_info(repo, name).await?;
    let total = info.length;
    let mut stream = fetch_target(repo, &info).await?;
    progress.event(Event::ImageStart {
        image,
        target: name,
        total,
        partition: partition.number,
    });
    let mut writer = PartitionWriter::open(partition).context(error::OpenPartitionSnafu {
        path: &partition.path,
        number: partition.number,
    })?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let decoding = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            receiver,
            current: Bytes::new(),
        };
        decode_all(&mut reader, &mut writer)
    });
    let mut downloaded = 0_u64;
    let mut download_error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                downloaded += bytes.len() as u64;
                progress.event(Event::ImageProgress {
                    image,
                    downloaded,
                    total,
                });
                if sender.send(bytes).await.is_err() {
                    // The decoder stopped on an error. Read the rest, so that a verification
                    // failure (the likely cause) is reported as such.
                    while let Some(rest) = stream.next().await {
                        if let Err(source) = rest {
                            download_error = Some(source);
                            break;
                        }
                    }
                    break;
                }
            }
            Err(source) => {
                download_error = Some(source);
                break;
            }
        }
    }
    // The loop ended at the end of the stream (after its final length and hash checks) or at
    // the first error, which stays the one reported.
    drop(sender);
    let decoded = decoding.await.context(error::JoinSnafu)?;
    // A verification failure outranks whatever the decoder made of the bad bytes.
    if let Some(source) = download_error {
        return Err(error::Error::DownloadImage {
            image: image.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        });
    }
    let written = decoded.map_err(|e| decode_error(e, image, name, partition))?;
    progress.event(Event::ImageDone {
        image,
        downloaded,
        written,
    });
    tracing::info!(
        image,
        target = name,
        partition = partition.number,
        downloaded,
        written,
        "image written and verified"
    );
    Ok(ImageReport {
        image: image.to_owned(),
        target: name.to_owned(),
        partition: partition.number,
        downloaded,
        written,
        via: "full",
    })
}

fn decode_error(
    e: DecodeError,
    image: &str,
    name: &str,
    partition: &PartitionTarget,
) -> error::Error {
    match e {
        DecodeError::TooLarge => error::ImageTooLargeSnafu {
            image,
            name,
            number: partition.number,
            capacity: partition.capacity,
            size: None::<u64>,
        }
        .build(),
        DecodeError::Empty => error::EmptyImageSnafu { image, name }.build(),
        DecodeError::Decode(source) => error::Error::DecodeImage {
            image: image.to_owned(),
            name: name.to_owned(),
            source,
        },
        DecodeError::Write(source) => error::Error::WritePartition {
            path: partition.path.clone(),
            number: partition.number,
            source,
        },
    }
}

/// Where partition `number` of `disk` is: its own device node on a block device, a byte range
/// of the image file otherwise.
pub fn partition_target(
    state: &signpost::State,
    disk: &Path,
    number: u32,
) -> Result<PartitionTarget> {
    let table = state.table();
    let entry = usize::try_from(number)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|index| table.entries().get(index))
        .context(error::PartitionMissingSnafu { number })?;
    let sector = table.sector_size();
    let sectors = (entry.ending_lba + 1).saturating_sub(entry.starting_lba);
    let capacity = sectors * sector;
    let block_device = state.status().block_device;
    Ok(if block_device {
        PartitionTarget {
            number,
            path: signpost::host::partition_node(disk, number),
            offset: 0,
            capacity,
        }
    } else {
        PartitionTarget {
            number,
            path: disk.to_owned(),
            offset: entry.starting_lba * sector,
            capacity,
        }
    })
}

/// The running set, the inactive set's partitions (root, boot, hash) and the running set's.
pub async fn partitions(
    source: &DiskSource,
    timeout: Duration,
) -> Result<(SetId, Vec<PartitionTarget>, Vec<PartitionTarget>)> {
    let source = source.clone();
    crate::session::blocking(move || {
        let state =
            State::load_with_timeout(&source, Access::Read, timeout).context(error::DiskSnafu)?;
        let active = state.active().context(error::DiskSnafu)?;
        let disk = state.disk_path().to_owned();
        let of = |id: SetId| {
            let set = state.layout().set(id);
            [set.root, set.boot, set.hash]
                .into_iter()
                .map(|n| partition_target(&state, &disk, n))
                .collect::<Result<Vec<_>>>()
        };
        Ok((active, of(active.other())?, of(active)?))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::{
        ChannelReader, DecodeError, PartitionTarget, PartitionWriter, decode_all, lz4_content_size,
    };
    use bytes::Bytes;
    use std::io::Write;

    /// Decode `compressed` (sent in 100 KiB chunks) into a 24 MiB file pre-filled with 0xEE,
    /// at a 1 MiB partition offset; returns the outcome and the file's bytes.
    /// Also returns the bytes written with direct I/O, and whether this file system takes it.
    fn decode_into_file(
        compressed: Vec<u8>,
        capacity: u64,
    ) -> (Result<u64, DecodeError>, Vec<u8>, u64, bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        std::fs::write(&path, vec![0xEE_u8; 24 << 20]).unwrap();
        let target = PartitionTarget {
            number: 9,
            path: path.clone(),
            offset: 1 << 20,
            capacity,
        };
        let mut writer = PartitionWriter::open(&target).unwrap();
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
        let feeding = std::thread::spawn(move || {
            for chunk in compressed.chunks(100 << 10) {
                if sender.blocking_send(Bytes::copy_from_slice(chunk)).is_err() {
                    break;
                }
            }
        });
        let mut reader = ChannelReader {
            receiver,
            current: Bytes::new(),
        };
        let outcome = decode_all(&mut reader, &mut writer);
        drop(reader);
        feeding.join().unwrap();
        let direct_supported = writer.out.is_direct();
        (
            outcome,
            std::fs::read(&path).unwrap(),
            writer.out.written_direct(),
            direct_supported,
        )
    }

    /// Needs root and a free loop device (CI runs it: `scripts/test`): a mounted partition is
    /// refused, the same device unmounted is written.
    #[test]
    #[ignore = "needs root and loop devices; run by scripts/test"]
    fn a_block_device_in_use_is_refused() {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("part.img");
        std::fs::write(&image, vec![0u8; 16 << 20]).unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup: {out:?}");
        let loop_dev = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let detach = || Command::new("losetup").args(["-d", &loop_dev]).status();
        let mount_point = dir.path().join("mnt");
        std::fs::create_dir(&mount_point).unwrap();
        let run = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
        run(Command::new("mkfs.ext4").args(["-q", &loop_dev]));
        run(Command::new("mount").arg(&loop_dev).arg(&mount_point));
        let target = PartitionTarget {
            number: 9,
            path: loop_dev.clone().into(),
            offset: 0,
            capacity: 16 << 20,
        };
        let in_use = PartitionWriter::open(&target).err();
        run(Command::new("umount").arg(&mount_point));
        let free = PartitionWriter::open(&target).map(|_| ());
        let _ = detach();
        assert_eq!(
            in_use.map(|e| e.raw_os_error()),
            Some(Some(rustix::io::Errno::BUSY.raw_os_error())),
            "opening mounted {loop_dev} for writing must fail with EBUSY"
        );
        free.unwrap();
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from((i * 31 + usize::from(seed)) % 251).unwrap())
            .collect()
    }

    #[test]
    fn frames_and_an_unaligned_tail_land_exactly_in_the_partition() {
        // Two frames whose boundary falls inside a write buffer, and a length that is not a
        // multiple of the direct-I/O alignment: aligned writes go direct, the tail buffered.
        let first = pattern((4 << 20) + 100, 1);
        let second = pattern((5 << 20) + 12_345, 2);
        let mut compressed = compress(&first, None);
        compressed.extend(compress(&second, None));
        let (outcome, disk, direct, direct_supported) = decode_into_file(compressed, 16 << 20);
        let total = first.len() + second.len();
        assert_eq!(outcome.unwrap(), total as u64);
        // The two full 4 MiB buffers bypass the page cache; only the tail is buffered.
        if direct_supported {
            assert_eq!(direct, 8 << 20);
        }
        let start = 1 << 20;
        assert!(disk[..start].iter().all(|b| *b == 0xEE));
        assert!(disk[start..start + first.len()] == first[..]);
        assert!(disk[start + first.len()..start + total] == second[..]);
        assert!(disk[start + total..].iter().all(|b| *b == 0xEE));
    }

    #[test]
    fn nothing_is_written_past_the_partition() {
        let data = pattern(9 << 20, 3);
        let (outcome, disk, _, _) = decode_into_file(compress(&data, None), 6 << 20);
        assert!(matches!(outcome, Err(DecodeError::TooLarge)), "{outcome:?}");
        let end = (1 << 20) + (6 << 20);
        assert!(disk[end..].iter().all(|b| *b == 0xEE));
    }

    fn compress(data: &[u8], content_size: Option<u64>) -> Vec<u8> {
        let mut builder = lz4::EncoderBuilder::new();
        if let Some(size) = content_size {
            builder.content_size(size);
        }
        let mut encoder = builder.build(Vec::new()).unwrap();
        encoder.write_all(data).unwrap();
        let (out, result) = encoder.finish();
        result.unwrap();
        out
    }

    #[test]
    fn content_size_is_read_when_declared() {
        let data = vec![7_u8; 10_000];
        assert_eq!(
            lz4_content_size(&compress(&data, Some(10_000))),
            Some(10_000)
        );
        assert_eq!(lz4_content_size(&compress(&data, None)), None);
        assert_eq!(lz4_content_size(b"not lz4 at all!!"), None);
        assert_eq!(lz4_content_size(&[0x04, 0x22]), None);
    }
}
