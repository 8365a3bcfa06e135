//! Command-line types (clap derive only, no logic).
use clap::{Parser, Subcommand};

/// The on-host A/B partition switch: reads and flips the GPT priority, tries and successful
/// bits of the two partition sets (A and B) on the OS disk.
///
/// Without --disk, the disk holding the running root is found through sysfs and the running
/// set is the one the root device sits on. With --disk (an image file or a block device), the
/// running set is --active-set, or the only set that is bootable and marked successful.
#[derive(Debug, Parser)]
#[command(name = "signpost", version, help_expected = true)]
pub struct Cli {
    /// Global flags shared by every binary.
    #[command(flatten)]
    pub global: cli_support::GlobalArgs,

    /// Which disk, and which set is running.
    #[command(flatten)]
    pub disk: cli_support::DiskArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands. Each loads the state under the disk lock; commands that change it write both
/// copies of the table (backup first) before exiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Show both sets, the running one and the one that boots next
    Status,
    /// Mark the running set as successfully booted (and set the PRIVATE "boot has ever
    /// succeeded" bit)
    MarkSuccessfulBoot,
    /// Make the inactive set unbootable (priority, tries and successful to 0) before writing
    /// new images to it
    ClearInactive,
    /// Give the inactive set one try, after its images were written
    MarkInactiveValid,
    /// Boot the inactive set next (priority 2; running set priority 1); needs a cleared and
    /// valid inactive set
    UpgradeToInactive,
    /// Undo upgrade-to-inactive: the running set boots next again (inactive tries are kept)
    CancelUpgrade,
    /// Boot the inactive set next, if it is bootable (e.g. go back to the previous version)
    RollbackToInactive,
    /// Print "true" if a boot was ever marked successful on this disk, nothing otherwise
    HasBootEverSucceeded,
    /// Rewrite both copies of the table with fresh checksums (repairs a damaged copy)
    RewriteTable,
    /// Do what the bootloader does: pick the next set, spend one of its tries, save, and print
    /// the chosen set (for images without the patched bootloader, tests and demos)
    SelectBoot,
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
