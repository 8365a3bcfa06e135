//! One module per subcommand; the path matches the command path.
pub mod manifest;
pub mod waves;
