//! The update metadata model shared by the publisher (`pubsys`) and the host (`updog`):
//!
//! * [`manifest`]: `manifest.json` — parse, write canonically, and edit (add/replace/remove an
//!   update, set waves, migrations and ceilings), keeping unknown fields;
//! * [`waves`]: wave schedules (TOML), their resolution into manifest waves, and the host-side
//!   gate ([`Waves::eligible_at`], [`Waves::is_ready`]) for a [`Seed`];
//! * [`select`]: which update a host takes (variant, arch, ceiling and "regret", version lock,
//!   forced version, latest);
//! * [`migrations`]: `Release.toml` and the shortest migration path between two versions;
//! * [`fs`]: atomic file writes.
//!
//! Synchronous and free of I/O except where a function takes a path. Clocks and seeds are
//! always passed in. Behaviour follows `reference/update-metadata.md` and its "Decisions".
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod error;
pub mod fs;
pub mod manifest;
pub mod migrations;
pub mod select;
pub mod time;
pub mod waves;

pub use error::{Error, Result};
pub use manifest::{Delta, Images, Manifest, NewUpdate, Update};
pub use migrations::{MigrationKey, Migrations, Release};
pub use select::{Arch, Host, Policy, VersionLock, parse_version};
pub use waves::{Eligibility, Offset, Seed, WaveSchedule, WaveSpec, Waves};
