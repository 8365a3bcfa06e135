//! Command-line types (clap derive only, no logic).
use clap::Parser;

/// The on-host A/B partition switch: GPT priority, tries and successful bits, rollback
#[derive(Debug, Parser)]
#[command(name = "signpost", version, help_expected = true)]
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
