//! The on-host A/B partition switch: reads and flips the ChromeOS-style "gptprio" bits
//! (priority, tries left, successful) of the two partition sets on the OS disk, and the
//! PRIVATE partition's "boot has ever succeeded" bit. updog links this library; boot-time
//! services run the `signpost` binary.
//!
//! * [`State`] is the API: [`State::load`] a disk (the running host's, or a given image or
//!   block device) under an advisory lock, call the commands' methods
//!   ([`State::clear_inactive`], [`State::mark_inactive_valid`],
//!   [`State::upgrade_to_inactive`], ...), then [`State::write`].
//! * [`ab`] holds the decision logic alone, free of I/O ([`ab::AbState`]).
//! * [`gpt`] reads the table (512/4096-byte sectors, backup fallback) and writes it
//!   crash-safely (backup copy first, each copy synced).
//! * [`layout`] finds the sets by type GUID; [`host`] finds the running disk through sysfs.
//! * [`commands`] runs one CLI command and returns an [`Outcome`]; [`output`] prints it.
//!
//! The A/B state diagram and each command's precondition and effect are in the crate
//! README.
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod ab;
pub mod cli;
pub mod commands;
pub mod disk;
pub mod error;
pub mod gpt;
/// The on-disk contract (type GUIDs, gptprio bits), from its own crate.
pub use gpt_contract as gpt_types;
pub mod host;
pub mod layout;
pub mod output;
pub mod state;

pub use ab::{AbState, SetId};
pub use commands::{Outcome, execute, run};
pub use disk::{Access, DEFAULT_LOCK_TIMEOUT};
pub use error::{Error, Result};
pub use gpt_types::BootFlags;
pub use host::HostPaths;
pub use state::{ActiveSource, DiskSource, State, Status};
