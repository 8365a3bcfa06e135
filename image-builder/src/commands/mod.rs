//! One module per subcommand.
pub mod build;
