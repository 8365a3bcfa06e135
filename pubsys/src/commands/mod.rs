//! One module per subcommand; the path matches the command path.
pub mod build;
pub mod check_repo_expirations;
pub mod manifest;
pub mod refresh_repo;
pub mod repo;
pub mod setup;
pub mod upload_repo;
pub mod validate_repo;
pub mod waves;
