//! A TUF client, written from the specification's detailed client workflow (§5).
//!
//! * [`RepositoryLoader`] loads a [`Repository`]: the trusted root from the metadata folder
//!   (or the given root on first use), the root rotation chain (`N+1.root.json` until not
//!   found, each signed by the old and the new root's thresholds, version exactly `N+1`),
//!   expiry, recovery from a fast-forward attack (trusted timestamp and snapshot are forgotten
//!   when their keys rotate), timestamp (rollback checks; an unchanged version keeps the
//!   trusted copy), snapshot (length and hashes from timestamp, version, no role rollback or
//!   removal) and top-level targets. Every verified file is persisted as it passes, byte for
//!   byte, atomically; every verified root version is also kept in a root history
//!   ([`Repository::root_chain`]).
//! * [`Repository::find_target`] searches the delegation graph lazily: pre-order depth-first,
//!   terminating delegations, a visited set, a cap on the number of roles, `paths` patterns
//!   whose `*` never crosses `/`, `path_hash_prefixes` and succinct hash bins.
//! * [`Repository::fetch_target`] gives a [`TargetStream`] that enforces the length while
//!   streaming and checks every supported hash (sha256, sha512) at its end;
//!   [`Repository::download_target`] writes a verified file, skipping it when the file is
//!   already there with the right length and hashes.
//! * Signatures: ed25519, ecdsa-sha2-nistp256 (PEM SubjectPublicKeyInfo or hex point),
//!   rsassa-pss-sha256 and rsa-pkcs1v15-sha256 (PEM); keyids are taken as the metadata gives
//!   them; a threshold counts distinct keyids; unknown keys and schemes are ignored.
//! * [`Transport`] is the seam for fetching ([`DefaultTransport`]: reqwest and `file://`),
//!   [`Clock`] the one for time.
//!
//! [`conformance`] implements the tuf-conformance client CLI over this library.
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod clock;
pub mod conformance;
mod crypto;
pub mod error;
mod metadata;
mod repository;
mod schema;
mod search;
pub mod store;
pub mod transport;

pub use clock::{Clock, FixedClock, SystemClock};
pub use crypto::SUPPORTED_HASHES;
pub use error::{Error, Result};
pub use repository::target::{Downloaded, TargetInfo, TargetStream, target_file_name};
pub use repository::{Limits, Repository, RepositoryLoader, RoleMetadata};
pub use transport::{ByteStream, DefaultTransport, Transport, TransportError};
