//! Running the external filesystem tools (e2fsprogs, erofs-utils) with a fixed environment.
use crate::error::{self, Result};
use snafu::{ResultExt, ensure};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The environment every tool of one build runs with.
#[derive(Debug, Clone)]
pub struct ToolEnv {
    /// `SOURCE_DATE_EPOCH`, also given as `E2FSPROGS_FAKE_TIME` (mke2fs, debugfs, resize2fs) and
    /// `E2FSCK_TIME` (e2fsck).
    pub epoch: Option<i64>,
    /// Our pinned `mke2fs.conf`, so host defaults do not change the filesystems.
    pub mke2fs_config: std::path::PathBuf,
}

impl ToolEnv {
    /// A command for `tool` with the build environment applied.
    pub fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(tool);
        command
            .env("MKE2FS_CONFIG", &self.mke2fs_config)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        if let Some(epoch) = self.epoch {
            command
                .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
                .env("E2FSCK_TIME", epoch.to_string())
                .env("SOURCE_DATE_EPOCH", epoch.to_string());
        }
        command
    }
}

/// Run `command` (named `tool` in errors), failing on a non-zero exit with its stderr.
pub fn run(tool: &str, command: &mut Command) -> Result<Output> {
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .context(error::SpawnToolSnafu { tool })?;
    ensure!(
        output.status.success(),
        error::ToolFailedSnafu {
            tool,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }
    );
    Ok(output)
}

/// `args` as displayable text for logs.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The size of the file at `path` (an error if a tool "succeeded" without writing it).
pub fn file_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .context(error::ReadFileSnafu { path })?
        .len())
}
