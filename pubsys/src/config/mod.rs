//! Configuration files pubsys reads: `Infra.toml` ([`infra`]) and the repository expiration
//! policy ([`expiration`]). Loaded once at the edge and passed down as references.
pub mod expiration;
pub mod infra;
pub mod region;
