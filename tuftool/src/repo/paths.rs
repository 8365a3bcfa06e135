//! Names and paths: role file names, consistent-snapshot names, and TUF's delegated path
//! patterns.

use crate::error::{self, Result};
use snafu::ensure;
use std::num::NonZeroU64;
use tough::TargetName;
use tough::schema::Targets;

/// Percent-encode a role name for a file name (everything but ASCII alphanumerics and
/// `_ . - ~`), as tough and python-tuf do.
pub fn encode_role_filename(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// File name of a targets-type role (`targets` or a delegated role) in the metadata folder.
pub fn targets_filename(name: &str, version: NonZeroU64, consistent: bool) -> String {
    let base = if name == "targets" {
        "targets".to_owned()
    } else {
        encode_role_filename(name)
    };
    if consistent {
        format!("{version}.{base}.json")
    } else {
        format!("{base}.json")
    }
}

// ---------------------------------------------------------------------------------------------
// The signing core.
/// Checks on a whole targets tree after an edit.
pub(crate) trait ValidatePaths {
    /// Every delegated role's targets lie within its delegated paths.
    fn validate_paths(&self) -> Result<()>;
}

impl ValidatePaths for Targets {
    fn validate_paths(&self) -> Result<()> {
        let Some(delegations) = &self.delegations else {
            return Ok(());
        };
        for role in &delegations.roles {
            if let Some(targets) = &role.targets {
                for name in targets.signed.targets.keys() {
                    ensure!(
                        role_matches(role, name),
                        error::TargetOutsideDelegationSnafu {
                            name: name.raw().to_owned(),
                            role: role.name.clone()
                        }
                    );
                }
                targets.signed.validate_paths()?;
            }
        }
        Ok(())
    }
}

/// Whether `role` may sign `name`. Path patterns follow the TUF spec (and python-tuf): the
/// pattern and the name have the same number of `/`-separated segments and each segment
/// matches, where `*` and `?` never match `/`. tough's globs let `*` match `/`, which would let
/// tuftool publish targets that spec clients never find, so the stricter rule is used here.
fn role_matches(role: &tough::schema::DelegatedRole, name: &TargetName) -> bool {
    match &role.paths {
        tough::schema::PathSet::Paths(patterns) => patterns
            .iter()
            .any(|p| spec_path_match(p.value(), name.resolved())),
        tough::schema::PathSet::PathHashPrefixes(_) => {
            let mut d = tough::schema::Delegations::new();
            let mut r = role.clone();
            r.targets = None;
            d.roles.push(r);
            d.target_is_delegated(name)
        }
    }
}

/// The spec's path-pattern match: equal segment counts, each segment matched with `*` (any
/// run of characters) and `?` (one character).
pub fn spec_path_match(pattern: &str, name: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    p.len() == n.len()
        && p.iter()
            .zip(&n)
            .all(|(p, n)| segment_match(p.as_bytes(), n.as_bytes()))
}

fn segment_match(p: &[u8], n: &[u8]) -> bool {
    match (p.first(), n.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            segment_match(&p[1..], n) || (!n.is_empty() && segment_match(p, &n[1..]))
        }
        (Some(b'?'), Some(_)) => segment_match(&p[1..], &n[1..]),
        (Some(a), Some(b)) if a == b => segment_match(&p[1..], &n[1..]),
        _ => false,
    }
}
