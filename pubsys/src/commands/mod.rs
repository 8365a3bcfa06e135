//! One module per subcommand; the path matches the command path.
pub mod ami;
pub mod build;
pub mod check_repo_expirations;
pub mod manifest;
pub mod promote_ssm;
pub mod publish_ami;
pub mod refresh_repo;
pub mod repo;
pub mod setup;
pub mod ssm;
pub mod upload_repo;
pub mod validate_ami;
pub mod validate_repo;
pub mod validate_ssm;
pub mod waves;
