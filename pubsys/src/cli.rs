//! Command-line types (clap derive only, no logic).
use clap::Parser;

/// The release CLI: build images, sign TUF repositories with waves, publish to S3, AMIs and SSM
#[derive(Debug, Parser)]
#[command(name = "pubsys", version, help_expected = true)]
pub struct Cli {
    /// Global flags shared by every binary.
    #[command(flatten)]
    pub global: cli_support::GlobalArgs,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
