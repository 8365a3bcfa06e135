//! Command-line types (clap derive only, no logic).
use clap::{Args, Parser, Subcommand};
use semver::Version;
use std::path::PathBuf;

/// The on-host update client: finds an update in a TUF repository, verifies it, writes it to
/// the inactive partition set and flips the boot flags (through signpost).
///
/// Exit codes: 0 success (and "no update" for check-update), 100 check-update found an update,
/// 1 failure, 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "updog", version, help_expected = true)]
pub struct Cli {
    /// Global flags shared by every binary.
    #[command(flatten)]
    pub global: cli_support::GlobalArgs,

    /// Which disk, and which set is running (the same flags as signpost).
    #[command(flatten)]
    pub disk: cli_support::DiskArgs,

    /// Paths to the configuration and state files.
    #[command(flatten)]
    pub paths: PathArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Overridable system paths (global). Each defaults to the configuration file's value, then to
/// the standard path.
#[derive(Debug, Clone, Default, Args)]
pub struct PathArgs {
    /// The configuration file
    #[arg(long, global = true, value_name = "PATH", default_value = crate::defaults::DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// The trusted TUF root.json [default: /usr/share/updog/root.json]
    #[arg(long, global = true, value_name = "PATH")]
    pub trusted_root: Option<PathBuf>,

    /// The os-release file giving VERSION_ID and VARIANT_ID [default: /usr/lib/os-release]
    #[arg(long, global = true, value_name = "PATH")]
    pub os_release: Option<PathBuf>,

    /// Persistent TUF datastore directory (rollback protection across runs)
    /// [default: /var/lib/updog/tuf]
    #[arg(long, global = true, value_name = "DIR")]
    pub datastore: Option<PathBuf>,

    /// Where verified TUF metadata is cached for the boot-time migrator
    /// [default: /var/cache/bottlerocket-metadata]
    #[arg(long, global = true, value_name = "DIR")]
    pub metadata_cache: Option<PathBuf>,

    /// Where the migrations (and manifest.json) are cached for the boot-time migrator
    /// [default: /var/lib/bottlerocket-migrations]
    #[arg(long, global = true, value_name = "DIR")]
    pub migrations_cache: Option<PathBuf>,

    /// The lock file that keeps two updog runs apart [default: /run/lock/updog.lock]
    #[arg(long, global = true, value_name = "PATH")]
    pub lock_file: Option<PathBuf>,
}

/// How to choose the update.
#[derive(Debug, Clone, Default, Args)]
pub struct SelectArgs {
    /// Take exactly this version (even a downgrade or a reinstall); waves still apply unless
    /// --now
    #[arg(short = 'i', long = "image", value_name = "VERSION")]
    pub image: Option<Version>,

    /// Ignore the wave schedule (take the update now)
    #[arg(short = 'n', long = "now", visible_alias = "ignore-waves")]
    pub now: bool,

    /// Download the full images even when the update has a delta (see the README's "Delta
    /// updates")
    #[arg(long)]
    pub no_delta: bool,
}

/// The commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Is an update available? Exit 100 if so, 0 if not
    #[command(visible_alias = "whats")]
    CheckUpdate(CheckArgs),
    /// Download and write the update to the inactive set, then boot it next
    Update(UpdateArgs),
    /// Download and write the update to the inactive set (marked valid, not yet chosen to boot)
    UpdateImage(SelectArgs),
    /// Boot the staged inactive set next (no network needed)
    UpdateApply(RebootArgs),
    /// Undo update-apply: the running set boots next again (no network needed)
    UpdateRevert,
    /// Refresh the TUF metadata and cache the migrations the chosen update needs, without
    /// touching the disk's partitions
    Prepare(SelectArgs),
    /// Show this host's seed, its wave and when it becomes eligible for each available update
    Explain,
}

/// `check-update` flags.
#[derive(Debug, Clone, Default, Args)]
pub struct CheckArgs {
    /// List every applicable update (ignores the version lock and "newer than running"; waves
    /// still apply unless --now)
    #[arg(short = 'a', long = "all")]
    pub all: bool,

    /// How to choose the update.
    #[command(flatten)]
    pub select: SelectArgs,
}

/// `update` flags.
#[derive(Debug, Clone, Default, Args)]
pub struct UpdateArgs {
    /// How to choose the update.
    #[command(flatten)]
    pub select: SelectArgs,

    /// Reboot after the update is applied
    #[command(flatten)]
    pub reboot: RebootArgs,
}

/// The reboot flag.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct RebootArgs {
    /// Reboot into the new set when done (runs `shutdown -r now`)
    #[arg(short = 'r', long = "reboot")]
    pub reboot: bool,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::{CommandFactory, Parser};

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn whats_is_check_update_and_flags_are_global() {
        let cli = Cli::try_parse_from(["updog", "whats", "--all", "--json", "--disk", "d.img"])
            .expect("parses");
        assert!(cli.global.json);
        assert!(matches!(cli.command, super::Command::CheckUpdate(ref a) if a.all));
        let cli = Cli::try_parse_from(["updog", "update", "-i", "1.2.3", "--ignore-waves", "-r"])
            .expect("parses");
        match cli.command {
            super::Command::Update(args) => {
                assert!(args.select.now && args.reboot.reboot);
                assert_eq!(args.select.image, Some("1.2.3".parse().expect("version")));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(Cli::try_parse_from(["updog", "update", "-i", "v1.2.3"]).is_err());
    }
}
