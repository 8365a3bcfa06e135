//! The error type of the `image_builder` crate.
use snafu::Snafu;
use std::path::PathBuf;

/// Everything that can go wrong in `image-builder`.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// The layout settings are not valid.
    #[snafu(display("invalid disk layout"))]
    Layout {
        /// What is wrong.
        source: crate::layout::LayoutError,
    },

    /// A setting is not valid.
    #[snafu(display("invalid setting: {reason}"))]
    InvalidSetting {
        /// What is wrong.
        reason: String,
    },

    /// Something does not fit in its partition.
    #[snafu(display(
        "{what} needs {needed} bytes ({needed_mib:.1} MiB) but the {partition} partition holds only {available} bytes ({available_mib:.1} MiB)",
        needed_mib = *needed as f64 / 1048576.0,
        available_mib = *available as f64 / 1048576.0
    ))]
    TooBig {
        /// What did not fit.
        what: String,
        /// Bytes it needs (at least).
        needed: u64,
        /// The partition's name.
        partition: String,
        /// Bytes the partition holds.
        available: u64,
    },

    /// No GRUB build where one was expected.
    #[snafu(display(
        "no GRUB build in {}: run bootloader/build (scripts/setup first), pass --bootloader DIR, or --bootloader none for an image that does not boot by itself",
        dir.display()
    ))]
    MissingBootloader {
        /// The folder.
        dir: PathBuf,
    },

    /// A file of the GRUB build could not be read.
    #[snafu(display("could not read the bootloader file {}", path.display()))]
    ReadBootloader {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The GRUB build is not usable.
    #[snafu(display("the GRUB build in {} is not usable: {reason}", dir.display()))]
    InvalidBootloader {
        /// The folder.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The boot tree has no kernel.
    #[snafu(display("the boot tree {} has no vmlinuz", path.display()))]
    MissingKernel {
        /// The boot tree.
        path: PathBuf,
    },

    /// Reading an input tree failed.
    #[snafu(display("could not read {}", path.display()))]
    ReadTree {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The boot tree holds something that is not a file, directory or symlink.
    #[snafu(display("{} is not a regular file, directory or symlink", path.display()))]
    UnsupportedFile {
        /// The path.
        path: PathBuf,
    },

    /// Creating a directory failed.
    #[snafu(display("could not create directory {}", path.display()))]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Reading a file failed.
    #[snafu(display("could not read {}", path.display()))]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Writing a file failed.
    #[snafu(display("could not write {}", path.display()))]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Moving the finished output into place failed.
    #[snafu(display("could not rename {} to {}", from.display(), to.display()))]
    Rename {
        /// Source path.
        from: PathBuf,
        /// Destination path.
        to: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A file is too large for this machine's address space.
    #[snafu(display("{} is too large", path.display()))]
    TooLarge {
        /// The file.
        path: PathBuf,
    },

    /// The data image is not a whole number of 4 KiB blocks.
    #[snafu(display("{} is {size} bytes, not a positive multiple of 4096", path.display()))]
    UnalignedData {
        /// The data image.
        path: PathBuf,
        /// Its size.
        size: u64,
    },

    /// An external tool could not be started.
    #[snafu(display("could not run {tool} (is it installed? see the README)"))]
    SpawnTool {
        /// The tool.
        tool: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// An external tool failed.
    #[snafu(display("{tool} failed (exit {status}): {stderr}"))]
    ToolFailed {
        /// The tool.
        tool: String,
        /// Its exit status.
        status: String,
        /// Its stderr.
        stderr: String,
    },

    /// A filesystem image has no valid ext4 superblock.
    #[snafu(display("{} has no valid ext4 superblock", path.display()))]
    BadSuperblock {
        /// The image.
        path: PathBuf,
    },

    /// Writing the partition table failed.
    #[snafu(display("could not write the partition table of {}", path.display()))]
    WriteGpt {
        /// The disk image.
        path: PathBuf,
        /// The gptman error.
        source: gptman::Error,
    },

    /// LZ4 compression failed.
    #[snafu(display("could not compress {}", path.display()))]
    Compress {
        /// The input file.
        path: PathBuf,
        /// The I/O error from liblz4.
        source: std::io::Error,
    },

    /// liblz4 produced a frame of an unexpected shape.
    #[snafu(display("liblz4 produced an unexpected frame header while compressing {}", path.display()))]
    UnexpectedFrame {
        /// The input file.
        path: PathBuf,
    },

    /// A worker thread panicked.
    #[snafu(display("a {task} thread panicked"))]
    ThreadPanicked {
        /// What the thread was doing.
        task: String,
    },

    /// The system random generator failed.
    #[snafu(display("the system random number generator failed"))]
    Random,

    /// Serialising the build report failed.
    #[snafu(display("could not serialise the build report"))]
    SerializeReport {
        /// The serde error.
        source: serde_json::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
