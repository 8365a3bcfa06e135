//! What every networked command starts with: the run lock, the settings, the host's identity,
//! the verified TUF repository and its manifest.
use crate::cli::{Cli, SelectArgs};
use crate::config::{self, OsRelease, Settings};
use crate::error::{self, Result};
use crate::lock::RunLock;
use crate::repo;
use crate::transport::UpdogTransport;
use signpost::DiskSource;
use snafu::ResultExt;
use tuf_client::Repository;
use update_metadata::{Arch, Host, Manifest, Policy};

/// The disk to work on, from the flags: which one, and how long to wait for its lock.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The host's disk, or `--disk` (with `--active-set`).
    pub source: DiskSource,
    /// How long to wait for another signpost or updog holding the disk lock.
    pub lock_timeout: std::time::Duration,
}

/// Everything a command takes from the command line, resolved once in [`crate::run`] and
/// passed down (no command reads the clap types or the configuration file itself).
#[derive(Debug)]
pub struct Inputs {
    /// The configuration file checked and merged with the path flags.
    pub settings: Settings,
    /// The disk.
    pub disk: Disk,
    /// The clock for wave gating and metadata expiry.
    pub now: jiff::Timestamp,
}

impl Disk {
    /// The disk the flags of `cli` say.
    pub fn from_cli(cli: &Cli) -> Disk {
        Disk {
            source: DiskSource::new(cli.disk.disk.as_deref(), cli.disk.active_set),
            lock_timeout: cli.disk.lock_timeout,
        }
    }
}

impl Inputs {
    /// Read the configuration the flags of `cli` name (networked commands need it).
    pub fn from_cli(cli: &Cli, now: jiff::Timestamp) -> Result<Inputs> {
        Ok(Inputs {
            settings: config::load_settings(&cli.paths)?,
            disk: Disk::from_cli(cli),
            now,
        })
    }
}

/// A loaded session.
#[derive(Debug)]
pub struct Session {
    /// Held for the whole run.
    pub lock: RunLock,
    /// Validated settings.
    pub settings: Settings,
    /// VERSION_ID and VARIANT_ID.
    pub os: OsRelease,
    /// This binary's architecture.
    pub arch: Arch,
    /// The transport (query parameters are added to it as the update proceeds).
    pub transport: UpdogTransport,
    /// The verified repository.
    pub repo: Repository,
    /// The verified manifest.
    pub manifest: Manifest,
}

impl Session {
    /// Lock, read os-release, load TUF (expiry checked at `now`) and the manifest.
    pub async fn open(settings: Settings, now: jiff::Timestamp) -> Result<Session> {
        let lock = RunLock::acquire(&settings.paths.lock_file)?;
        let os = config::load_os_release(&settings.paths.os_release)?;
        let arch = config::host_arch()?;
        let transport = UpdogTransport::new(&settings.network)?;
        transport.set_param("version", &os.version.to_string());
        transport.set_param("seed", &settings.seed.get().to_string());
        let repo = repo::load(&settings, &transport, now).await?;
        let manifest = repo::manifest(&repo).await?;
        Ok(Session {
            lock,
            settings,
            os,
            arch,
            transport,
            repo,
            manifest,
        })
    }

    /// This host, for selection.
    pub fn host(&self) -> Host {
        Host {
            variant: self.os.variant.clone(),
            arch: self.arch,
            version: self.os.version.clone(),
            seed: self.settings.seed,
        }
    }

    /// The update this host should take at `now` under `args`, if any.
    pub fn select(
        &self,
        args: &SelectArgs,
        now: jiff::Timestamp,
    ) -> Option<update_metadata::Update> {
        self.manifest
            .select_update(&self.host(), now, &self.policy(args))
            .cloned()
    }

    /// The selection policy from the configuration and `args`.
    pub fn policy(&self, args: &SelectArgs) -> Policy {
        Policy {
            lock: self.settings.version_lock.clone(),
            forced: args.image.clone(),
            ignore_waves: args.now || self.settings.ignore_waves,
        }
    }
}

/// Run blocking signpost work off the async thread.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context(error::JoinSnafu)?
}
