//! One module per command: clap `Args` plus a `run` that calls the library.
pub mod common;
pub mod delegation;
pub mod fetch;
pub mod gen_key;
pub mod repo;
pub mod root;
