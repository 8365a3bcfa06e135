//! `ssm-params.json`: region → parameter name → value (`pubsys.md` §7.2).

use crate::error::{self, Result};
use snafu::ResultExt;
use std::collections::BTreeMap;
use std::path::Path;

/// The whole file.
pub type ParamsFile = BTreeMap<String, BTreeMap<String, String>>;

/// Read a parameters file.
pub fn load(path: &Path) -> Result<ParamsFile> {
    let bytes = super::read(path)?;
    serde_json::from_slice(&bytes).context(error::ParseJsonSnafu { path })
}

/// Read a parameters file, or an empty one when it does not exist.
pub fn load_or_default(path: &Path) -> Result<ParamsFile> {
    if path.exists() {
        load(path)
    } else {
        Ok(ParamsFile::new())
    }
}

/// Write a parameters file atomically.
pub fn save(path: &Path, params: &ParamsFile) -> Result<()> {
    super::write_json(path, params, "SSM parameters")
}
