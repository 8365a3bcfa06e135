//! `explain`: this host's seed, the wave it belongs to, and when it becomes eligible for each
//! available update (UTC and local time).
use crate::Outcome;
use crate::cli::SelectArgs;
use crate::error::Result;
use crate::session::{Inputs, Session};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;
use update_metadata::{Eligibility, Seed, Waves};

/// A wave boundary: a seed key and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bound {
    /// The seed key.
    pub key: u32,
    /// Its time (UTC).
    pub time: Timestamp,
}

/// Where a seed falls in an update's waves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WavePosition {
    /// The update has no waves: every host, any time.
    NoWaves,
    /// At or below the first key: eligible at the first wave's time.
    First {
        /// The first wave.
        upper: Bound,
    },
    /// In the wave `lower.key < seed <= upper.key`, spread linearly between the two times.
    Between {
        /// The wave's lower bound.
        lower: Bound,
        /// The wave's upper bound.
        upper: Bound,
    },
    /// Above the last key: eligible at the last wave's time.
    AfterLast {
        /// The last wave.
        lower: Bound,
    },
}

/// One update, seen from this host.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateTiming {
    /// The update's version.
    pub version: String,
    /// Its ceiling.
    pub max_version: String,
    /// This host's wave.
    pub wave: WavePosition,
    /// When this host becomes eligible (UTC); `null` means always.
    pub eligible_at: Option<Timestamp>,
    /// The same instant in the host's local time zone.
    pub eligible_at_local: Option<String>,
    /// Eligible now.
    pub ready: bool,
    /// The update `update` would take now.
    pub selected: bool,
    /// For the update this host takes once eligible (the one `update --now` would take): bytes
    /// to download in full and by the delta path.
    pub download: Option<crate::delta::Download>,
}

/// What `explain` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainReport {
    /// The host's seed.
    pub seed: u32,
    /// Running variant.
    pub variant: String,
    /// Running version.
    pub version: String,
    /// Waves ignored by configuration.
    pub ignore_waves: bool,
    /// The time the report was made for (UTC).
    pub now: Timestamp,
    /// Every update for this variant and architecture (within its ceiling), newest first.
    pub updates: Vec<UpdateTiming>,
}

/// The wave `seed` falls in.
pub fn position(waves: &Waves, seed: Seed) -> WavePosition {
    let seed = seed.get();
    let bound = |(key, time): (u32, Timestamp)| Bound { key, time };
    let below = waves.gating().rfind(|(k, _)| *k < seed).map(bound);
    let above = waves.gating().find(|(k, _)| *k >= seed).map(bound);
    match (below, above) {
        (None, None) => WavePosition::NoWaves,
        (None, Some(upper)) => WavePosition::First { upper },
        (Some(lower), None) => WavePosition::AfterLast { lower },
        (Some(lower), Some(upper)) => WavePosition::Between { lower, upper },
    }
}

/// An instant as a person reads it: to the second, in the host's time zone, the zone named
/// once (`2026-12-11 12:57:17 UTC`, `2026-12-11 13:57:17 CET (+01:00)`).
pub fn local(time: Timestamp) -> String {
    readable(time, &TimeZone::system())
}

/// [`local`] in the zone `zone`.
pub fn readable(time: Timestamp, zone: &TimeZone) -> String {
    let zoned = time.to_zoned(zone.clone());
    if zoned.offset().seconds() == 0
        && zone
            .iana_name()
            .is_none_or(|n| n == "UTC" || n == "Etc/UTC")
    {
        zoned.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
    } else {
        zoned.strftime("%Y-%m-%d %H:%M:%S %Z (%:z)").to_string()
    }
}

/// Build the report.
pub async fn run(inputs: Inputs) -> Result<Outcome> {
    let now = inputs.now;
    let disk = inputs.disk.clone();
    let session = Session::open(inputs.settings, now).await?;
    let host = session.host();
    let policy = session.policy(&SelectArgs::default());
    let selected = session
        .manifest
        .select_update(&host, now, &policy)
        .map(|u| u.version.clone());
    // The update this host takes once its wave comes.
    let next = session
        .manifest
        .select_update(
            &host,
            now,
            &session.policy(&SelectArgs {
                now: true,
                ..SelectArgs::default()
            }),
        )
        .map(|u| u.version.clone());
    let mut updates = Vec::new();
    for update in session.manifest.applicable_updates(&host, now, true) {
        let is_selected = selected.as_ref() == Some(&update.version);
        let download = if next.as_ref() == Some(&update.version) {
            crate::delta::estimate(&session, update, &disk, true).await
        } else {
            None
        };
        updates.push({
            let eligibility = update.waves.eligible_at(host.seed);
            let eligible_at = match eligibility {
                Eligibility::Always => None,
                Eligibility::At(time) => Some(time),
            };
            UpdateTiming {
                version: update.version.to_string(),
                max_version: update.max_version.to_string(),
                wave: position(&update.waves, host.seed),
                eligible_at,
                eligible_at_local: eligible_at.map(local),
                ready: eligibility.is_ready(now),
                selected: is_selected,
                download,
            }
        });
    }
    Ok(Outcome::Explained(ExplainReport {
        seed: host.seed.get(),
        variant: host.variant,
        version: host.version.to_string(),
        ignore_waves: policy.ignore_waves,
        now,
        updates,
    }))
}

#[cfg(test)]
mod tests {
    use super::{WavePosition, position, readable};
    use jiff::Timestamp;
    use jiff::tz::{Offset, TimeZone};

    #[test]
    fn times_read_to_the_second_with_the_zone_once() {
        let t: Timestamp = "2026-12-11T12:57:17.696821515Z".parse().unwrap();
        assert_eq!(readable(t, &TimeZone::UTC), "2026-12-11 12:57:17 UTC");
        let plus_one = TimeZone::fixed(Offset::constant(1));
        let text = readable(t, &plus_one);
        assert!(text.starts_with("2026-12-11 13:57:17 "), "{text}");
        assert!(text.ends_with("(+01:00)"), "{text}");
        assert!(!text.contains("UTC") && !text.contains(".69"), "{text}");
    }
    use std::collections::BTreeMap;
    use update_metadata::{Seed, Waves};

    #[test]
    fn positions() {
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        let waves = Waves(BTreeMap::from([(100, t(10)), (500, t(20)), (9999, t(30))]));
        let seed = |n| Seed::new(n).unwrap();
        assert!(
            matches!(position(&waves, seed(0)), WavePosition::First { upper } if upper.key == 100)
        );
        assert!(matches!(
            position(&waves, seed(100)),
            WavePosition::First { .. }
        ));
        assert!(
            matches!(position(&waves, seed(101)), WavePosition::Between { lower, upper } if lower.key == 100 && upper.key == 500)
        );
        assert!(
            matches!(position(&waves, seed(2047)), WavePosition::AfterLast { lower } if lower.key == 500)
        );
        assert_eq!(position(&Waves::default(), seed(5)), WavePosition::NoWaves);
    }
}
