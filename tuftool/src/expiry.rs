//! Expiry times and metadata versions, parsed at the edge into domain types.
//!
//! An expiry is RFC 3339 (`2030-01-01T00:00:00Z`) or relative, `in N minutes|hours|days|weeks`
//! (singular units and a missing `in` are accepted too): the toolchain's one offset grammar,
//! parsed by `update_metadata::Offset`. Every expiry is truncated to whole seconds before it is
//! signed, because python-tuf (and the TUF spec's format) accept only `YYYY-MM-DDTHH:MM:SSZ`.
use crate::error::{self, Result};
use jiff::{SignedDuration, Timestamp};
use snafu::{OptionExt, ResultExt, ensure};
use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

/// An expiry as given on the command line; resolve it with [`Expiry::resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// An absolute time.
    At(Timestamp),
    /// A duration after "now".
    In(SignedDuration),
}

impl FromStr for Expiry {
    type Err = crate::Error;

    /// The toolchain's one offset grammar (`update_metadata::Offset`): `[in] N
    /// minutes|hours|days|weeks`, or an RFC 3339 time.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().parse::<update_metadata::Offset>() {
            Ok(update_metadata::Offset::After(duration)) => Ok(Expiry::In(duration)),
            Ok(update_metadata::Offset::At(time)) => Ok(Expiry::At(time)),
            Err(_) => error::ExpirySyntaxSnafu { text: s }.fail(),
        }
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expiry::At(t) => write!(f, "{t}"),
            Expiry::In(d) => write!(f, "in {}", update_metadata::Offset::After(*d)),
        }
    }
}

impl Expiry {
    /// The absolute time, relative to `now`, truncated to whole seconds.
    pub fn resolve(&self, now: Timestamp) -> Result<Timestamp> {
        let t = match self {
            Expiry::At(t) => *t,
            Expiry::In(d) => now.checked_add(*d).ok().context(error::ExpiryRangeSnafu)?,
        };
        whole_seconds(t)
    }

    /// Like [`Expiry::resolve`], but the result must be later than `now` (for repository roles:
    /// signing metadata that is already expired is a mistake).
    pub fn resolve_future(&self, now: Timestamp, role: &str) -> Result<Timestamp> {
        let t = self.resolve(now)?;
        ensure!(
            t > now,
            error::ExpiryInPastSnafu {
                role,
                expires: t.to_string()
            }
        );
        Ok(t)
    }
}

/// Truncate to whole seconds.
pub fn whole_seconds(t: Timestamp) -> Result<Timestamp> {
    Timestamp::from_second(t.as_second()).context(error::TimeSnafu)
}

/// The version to sign next: `given` if it is greater than `current`, else an error; without
/// `given`, `current + 1` (or 1 when there is no current version).
pub fn next_version(
    role: &str,
    current: Option<NonZeroU64>,
    given: Option<NonZeroU64>,
) -> Result<NonZeroU64> {
    match (current, given) {
        (None, Some(v)) => Ok(v),
        (None, None) => Ok(NonZeroU64::MIN),
        (Some(cur), Some(v)) => {
            ensure!(
                v > cur,
                error::VersionNotIncreasingSnafu {
                    role,
                    current: cur.get(),
                    given: v.get()
                }
            );
            Ok(v)
        }
        (Some(cur), None) => cur
            .checked_add(1)
            .context(error::VersionOverflowSnafu { role }),
    }
}

#[cfg(test)]
mod tests {
    use super::{Expiry, next_version};
    use jiff::Timestamp;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};
    use std::num::NonZeroU64;
    use std::str::FromStr;

    fn nz(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap()
    }

    #[test]
    fn accepts_the_toolchain_offset_grammar() {
        let now = Timestamp::from_str("2026-01-01T00:00:00Z").unwrap();
        let e = Expiry::from_str("in 90 minutes").unwrap();
        assert_eq!(e.resolve(now).unwrap().to_string(), "2026-01-01T01:30:00Z");
        assert_eq!(e.to_string(), "in 90 minutes");
        assert!(Expiry::from_str("in 2 fortnights").is_err());
    }

    #[test]
    fn parses_and_truncates() {
        let now = Timestamp::from_str("2026-01-01T00:00:00.75Z").unwrap();
        let e = Expiry::from_str("in 2 days").unwrap();
        assert_eq!(e.resolve(now).unwrap().to_string(), "2026-01-03T00:00:00Z");
        let e = Expiry::from_str("2030-05-06T07:08:09.123456789Z").unwrap();
        assert_eq!(e.resolve(now).unwrap().to_string(), "2030-05-06T07:08:09Z");
        assert!(Expiry::from_str("in 3 months").is_err());
        assert!(Expiry::from_str("tomorrow").is_err());
        assert!(Expiry::from_str("in -1 days").is_err());
        assert!(
            Expiry::from_str("2020-01-01T00:00:00Z")
                .unwrap()
                .resolve_future(now, "x")
                .is_err()
        );
    }

    #[test]
    fn versions_increase() {
        assert_eq!(next_version("t", None, None).unwrap(), nz(1));
        assert_eq!(next_version("t", None, Some(nz(7))).unwrap(), nz(7));
        assert_eq!(next_version("t", Some(nz(7)), None).unwrap(), nz(8));
        assert!(next_version("t", Some(nz(7)), Some(nz(7))).is_err());
        assert!(next_version("t", Some(nz(u64::MAX)), None).is_err());
    }

    proptest! {
        #[test]
        fn next_version_is_always_greater(cur in 1u64..u64::MAX, given in proptest::option::of(1u64..=u64::MAX)) {
            match next_version("t", Some(nz(cur)), given.map(nz)) {
                Ok(v) => prop_assert!(v.get() > cur),
                Err(_) => prop_assert!(given.is_some_and(|g| g <= cur)),
            }
        }

        #[test]
        fn relative_expiries_are_whole_seconds(n in 0u32..100_000, nanos in 0i32..1_000_000_000) {
            let now = Timestamp::new(1_700_000_000, nanos).unwrap();
            let t = Expiry::from_str(&format!("in {n} hours")).unwrap().resolve(now).unwrap();
            prop_assert_eq!(t.subsec_nanosecond(), 0);
            prop_assert_eq!(t.as_second(), 1_700_000_000 + i64::from(n) * 3600);
        }
    }
}
