//! Delta updates: a host writes a new release into its inactive partitions by copying what it
//! already has and fetching only the rest, and still checks every byte against signed data.
//!
//! * [`build`] (publisher, run by `pubsys repo`): cuts each raw image into 4 KiB blocks and
//!   writes an [`Index`] (a hash and a store location per block, a digest per image) and a
//!   store (one zstd frame per distinct non-zero block, in order). Both are TUF targets, so
//!   the index's bytes are signed.
//! * [`Plan`] (host, run by `updog`): finds every block of the new image in the running set's
//!   partitions or already in place, copies those, fetches the rest as plain HTTP byte ranges
//!   of the store (neighbours coalesced), checks each fetched block against the index before
//!   writing it, and finally checks the written image's digest (over every block's SHA-256).
//!
//! The index and the store work from any base version: nothing in them depends on what a host
//! runs.
#![warn(missing_docs)]

mod apply;
mod build;
pub mod error;
mod fetched;
mod index;
pub mod io;
pub mod verity;
mod write;

pub use apply::{Plan, Seed, Stats, StoreRange};
pub use build::{BuildOptions, Built, DEFAULT_LEVEL, Source, build, build_files};
pub use error::{Error, Result};
pub use index::{
    BLOCK_SIZE, Frame, ImageIndex, Index, block_hash, block_sha256, sha256, short_hash,
};
pub use io::Extent;
pub use write::{Written, panicked, yield_to_fetching};

/// Target names of the index and the store of an update, from its root image's name
/// (`NAME-root.ext4.lz4` → `NAME-delta.index`, `NAME-delta.store`).
pub fn target_names(root_image: &str) -> (String, String) {
    let prefix = root_image
        .rsplit_once("-root.")
        .map_or(root_image, |(prefix, _)| prefix);
    (
        format!("{prefix}-delta.index"),
        format!("{prefix}-delta.store"),
    )
}
