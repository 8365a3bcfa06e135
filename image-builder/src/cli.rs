//! Command-line types (clap derive only, no logic).
use clap::Parser;

/// Turns a root filesystem tree into an A/B GPT disk image and the update artifacts
#[derive(Debug, Parser)]
#[command(name = "image-builder", version, help_expected = true)]
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
