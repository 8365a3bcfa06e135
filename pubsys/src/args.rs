//! Argument groups several subcommands share (a leaf module: commands and the top-level CLI
//! both use it, it uses neither).

/// Which variant and architecture a command works on (the same flags everywhere).
#[derive(Debug, Clone, clap::Args)]
pub struct VariantArchArgs {
    /// Variant name, e.g. aws-k8s-1.28
    #[arg(long)]
    pub variant: String,

    /// Architecture: x86_64 (amd64) or aarch64 (arm64)
    #[arg(long)]
    pub arch: update_metadata::Arch,
}
