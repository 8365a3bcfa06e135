//! One module per command: clap `Args` plus a `run` that calls the library.
pub mod clone;
pub mod common;
pub mod create;
pub mod delegation;
pub mod download;
pub mod gen_key;
pub mod refresh;
pub mod root;
pub mod transfer_metadata;
pub mod update;
