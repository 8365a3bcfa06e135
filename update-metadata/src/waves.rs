//! Staged rollouts ("waves").
//!
//! * [`WaveSchedule`]: the publisher's TOML file (`[[waves]] start_after, fleet_percentage`).
//! * [`WaveSchedule::resolve`]: schedule + start time → the manifest's [`Waves`] map
//!   (`seed threshold → UTC time`), as the reference `set_waves` does.
//! * [`Waves::eligible_at`] / [`Waves::is_ready`]: the host-side gate for a [`Seed`].
//!
//! Differences from the reference, all from `reference/update-metadata.md` "Decisions":
//! (a) hosts are spread linearly by their position inside their wave; (b) nobody is eligible
//! before the first wave's time; (c) seeds are `0..=2047` and checked when parsed;
//! (d) offsets accept minutes and absolute RFC 3339 times; (e) fleet percentages must strictly
//! increase.

use crate::error::{self, Error, Result};
use crate::time::parse_lenient_rfc3339;
use jiff::{SignedDuration, Timestamp};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Number of seeds: a host's seed is in `0..SEED_COUNT`.
pub const SEED_COUNT: u32 = 2048;
/// Largest wave key the gate looks at; larger keys parse but are ignored.
pub const MAX_WAVE_KEY: u32 = 2048;

/// A host's position in the fleet for wave gating, `0..=2047`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Seed(u16);

impl Seed {
    /// The largest valid seed.
    pub const MAX: Seed = Seed((SEED_COUNT - 1) as u16);

    /// A seed from a configured value; values above 2047 are an error naming the value.
    pub fn new(value: u64) -> Result<Seed> {
        ensure!(
            value < u64::from(SEED_COUNT),
            error::SeedOutOfRangeSnafu { value }
        );
        // Invariant: value < 2048 fits in u16.
        Ok(Seed(value as u16))
    }

    /// The seed as a number.
    pub const fn get(self) -> u32 {
        self.0 as u32
    }

    /// The highest seed among the first `percent` % of the fleet: once this seed is eligible,
    /// at least `percent` % of all seeds are (eligibility never decreases with the seed).
    /// `percent` is clamped to 1..=100.
    pub fn for_fleet_percentage(percent: u8) -> Seed {
        let percent = u32::from(percent.clamp(1, 100));
        let seeds_needed = (percent * SEED_COUNT).div_ceil(100);
        Seed((seeds_needed - 1) as u16)
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Seed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u64::deserialize(deserializer)?;
        Seed::new(value).map_err(serde::de::Error::custom)
    }
}

/// When a wave starts: a duration after the rollout start, or an absolute time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// `[in] <n> <unit>`, unit one of minute(s), hour(s), day(s), week(s).
    After(SignedDuration),
    /// An absolute RFC 3339 time, used as is.
    At(Timestamp),
}

impl Offset {
    /// The time this offset names for a rollout that starts at `start`.
    pub fn resolve(&self, start: Timestamp) -> Result<Timestamp> {
        match self {
            Offset::At(time) => Ok(*time),
            Offset::After(duration) => {
                start
                    .checked_add(*duration)
                    .ok()
                    .context(error::OffsetOverflowSnafu {
                        offset: self.to_string(),
                    })
            }
        }
    }
}

impl FromStr for Offset {
    type Err = Error;

    fn from_str(text: &str) -> Result<Offset> {
        let bad = || error::BadOffsetSnafu { text }.build();
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let (count, unit) = match tokens.as_slice() {
            ["in", count, unit] | [count, unit] => (*count, *unit),
            _ => return parse_lenient_rfc3339(text).map(Offset::At).ok_or_else(bad),
        };
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let count: i64 = count.parse::<u32>().map_err(|_| bad())?.into();
        let unit_seconds = match unit {
            "minute" | "minutes" => 60,
            "hour" | "hours" => 3_600,
            "day" | "days" => 86_400,
            "week" | "weeks" => 604_800,
            _ => return Err(bad()),
        };
        Ok(Offset::After(SignedDuration::from_secs(
            count * unit_seconds,
        )))
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offset::At(time) => time.fmt(f),
            Offset::After(duration) => {
                let seconds = duration.as_secs();
                let (count, unit) = [
                    (604_800, "week"),
                    (86_400, "day"),
                    (3_600, "hour"),
                    (60, "minute"),
                ]
                .into_iter()
                .find(|(size, _)| seconds % size == 0)
                .map_or((seconds, "second"), |(size, unit)| (seconds / size, unit));
                write!(f, "{count} {unit}{}", if count == 1 { "" } else { "s" })
            }
        }
    }
}

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Offset {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One entry of a wave schedule file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveSpec {
    /// When this wave starts, relative to the rollout start (or absolute).
    pub start_after: Offset,
    /// Cumulative share of the fleet (1–100) that has the update by the end of this wave.
    pub fleet_percentage: u8,
}

/// A validated wave schedule: at least one wave, percentages in 1..=100 and strictly
/// increasing, relative offsets strictly increasing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaveSchedule {
    waves: Vec<WaveSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaveScheduleFile {
    waves: Vec<WaveSpec>,
}

impl WaveSchedule {
    /// Validate a list of waves.
    pub fn new(waves: Vec<WaveSpec>) -> Result<WaveSchedule> {
        ensure!(!waves.is_empty(), error::EmptyScheduleSnafu);
        for (index, wave) in waves.iter().enumerate() {
            ensure!(
                (1..=100).contains(&wave.fleet_percentage),
                error::WavePercentageSnafu {
                    wave: index + 1,
                    percentage: wave.fleet_percentage
                }
            );
        }
        for (index, pair) in waves.windows(2).enumerate() {
            ensure!(
                pair[0].fleet_percentage < pair[1].fleet_percentage,
                error::WavePercentagesNotIncreasingSnafu {
                    first: index + 1,
                    first_percentage: pair[0].fleet_percentage,
                    second: index + 2,
                    second_percentage: pair[1].fleet_percentage,
                }
            );
            if let (Offset::After(a), Offset::After(b)) = (pair[0].start_after, pair[1].start_after)
            {
                ensure!(
                    a < b,
                    error::WaveStartsNotIncreasingSnafu {
                        first: index + 1,
                        first_start: pair[0].start_after.to_string(),
                        second: index + 2,
                        second_start: pair[1].start_after.to_string(),
                    }
                );
            }
        }
        Ok(WaveSchedule { waves })
    }

    /// Parse and validate a wave schedule TOML document. `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<WaveSchedule> {
        let file: WaveScheduleFile =
            toml::from_str(text).context(error::ParseWaveScheduleSnafu { origin })?;
        WaveSchedule::new(file.waves).map_err(|source| Error::InvalidWaveSchedule {
            origin: origin.to_owned(),
            source: Box::new(source),
        })
    }

    /// Read, parse and validate a wave schedule file.
    pub fn load(path: &Path) -> Result<WaveSchedule> {
        let text = std::fs::read_to_string(path).context(error::ReadFileSnafu { path })?;
        WaveSchedule::from_toml(&text, &path.display().to_string())
    }

    /// The waves, in file order.
    pub fn waves(&self) -> &[WaveSpec] {
        &self.waves
    }

    /// The manifest waves for a rollout starting at `start`: the first wave gets key 0, and
    /// each following wave the seed threshold `floor(previous percentage × 2048 / 100)`.
    /// Errors when the resolved start times do not strictly increase (possible with absolute
    /// times), naming both waves.
    pub fn resolve(&self, start: Timestamp) -> Result<Waves> {
        let mut waves = BTreeMap::new();
        let mut key = 0;
        let mut previous: Option<(usize, Timestamp)> = None;
        for (index, wave) in self.waves.iter().enumerate() {
            let time = wave.start_after.resolve(start)?;
            if let Some((previous_index, previous_time)) = previous {
                ensure!(
                    previous_time < time,
                    error::WaveStartsNotIncreasingSnafu {
                        first: previous_index + 1,
                        first_start: previous_time.to_string(),
                        second: index + 1,
                        second_start: time.to_string(),
                    }
                );
            }
            waves.insert(key, time);
            key = u32::from(wave.fleet_percentage) * SEED_COUNT / 100;
            previous = Some((index, time));
        }
        Ok(Waves(waves))
    }
}

/// When a host becomes eligible for an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "time", rename_all = "snake_case")]
pub enum Eligibility {
    /// The update has no waves (or only keys above 2048): every host, at any time.
    Always,
    /// From this instant on.
    At(Timestamp),
}

impl Eligibility {
    /// Whether a host with this eligibility may take the update at `now`.
    pub fn is_ready(self, now: Timestamp) -> bool {
        match self {
            Eligibility::Always => true,
            Eligibility::At(time) => now >= time,
        }
    }
}

/// The waves of one update in `manifest.json`: seed threshold → UTC start time.
///
/// Keys parse as `u32` (leading zeros accepted, signs and other characters rejected with
/// `Bad bound field: <key>`, duplicates rejected with `Duplicate key ID: <n>`); keys above
/// 2048 are kept but ignored by the gate. Serialised in numeric key order with canonical UTC
/// times.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Waves(pub BTreeMap<u32, Timestamp>);

impl Waves {
    /// Whether the map holds no waves at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The waves the gate uses: keys `0..=2048`.
    pub fn gating(&self) -> impl DoubleEndedIterator<Item = (u32, Timestamp)> + '_ {
        self.0
            .range(..=MAX_WAVE_KEY)
            .map(|(key, time)| (*key, *time))
    }

    /// When the host with `seed` becomes eligible (decisions a and b):
    /// * no gating waves → [`Eligibility::Always`];
    /// * seed at or below the smallest key → that key's time;
    /// * seed above the largest key → the largest key's time;
    /// * otherwise, with `k_l < seed <= k_u`: `t_l + (t_u − t_l) × (seed − k_l) / (k_u − k_l)`,
    ///   in integer nanoseconds, rounded down.
    pub fn eligible_at(&self, seed: Seed) -> Eligibility {
        let seed = seed.get();
        let below = self.0.range(..seed).next_back().map(|(k, t)| (*k, *t));
        let above = self
            .0
            .range(seed..=MAX_WAVE_KEY)
            .next()
            .map(|(k, t)| (*k, *t));
        match (below, above) {
            (None, None) => Eligibility::Always,
            (None, Some((_, first))) => Eligibility::At(first),
            (Some((_, last)), None) => Eligibility::At(last),
            (Some((k_l, t_l)), Some((k_u, t_u))) => {
                let span = t_u.as_nanosecond() - t_l.as_nanosecond();
                let position = i128::from(seed - k_l);
                let width = i128::from(k_u - k_l);
                let offset = (span * position).div_euclid(width);
                // Invariant: offset lies between 0 and span (or span and 0), so the result lies
                // between t_l and t_u, which are both valid timestamps.
                let time = Timestamp::from_nanosecond(t_l.as_nanosecond() + offset).unwrap_or(t_u);
                Eligibility::At(time)
            }
        }
    }

    /// Whether the host with `seed` may take the update at `now`.
    pub fn is_ready(&self, seed: Seed, now: Timestamp) -> bool {
        self.eligible_at(seed).is_ready(now)
    }

    /// The first pair of keys whose times do not strictly increase, if any.
    pub fn first_disorder(&self) -> Option<((u32, Timestamp), (u32, Timestamp))> {
        let entries: Vec<(u32, Timestamp)> = self.0.iter().map(|(k, t)| (*k, *t)).collect();
        entries
            .windows(2)
            .find(|pair| pair[0].1 >= pair[1].1)
            .map(|pair| (pair[0], pair[1]))
    }

    /// When `percent` % of the fleet is eligible (see [`Seed::for_fleet_percentage`]).
    pub fn fleet_eligible_at(&self, percent: u8) -> Eligibility {
        self.eligible_at(Seed::for_fleet_percentage(percent))
    }
}

impl Serialize for Waves {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, time) in &self.0 {
            map.serialize_entry(&key.to_string(), &time.to_string())?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Waves {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(WavesVisitor)
    }
}

struct WavesVisitor;

impl<'de> Visitor<'de> for WavesVisitor {
    type Value = Waves;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of decimal seed keys to RFC 3339 times")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Waves, A::Error> {
        use serde::de::Error as _;
        let mut waves = BTreeMap::new();
        while let Some(key_text) = access.next_key::<String>()? {
            let key = parse_wave_key(&key_text)
                .ok_or_else(|| A::Error::custom(format!("Bad bound field: {key_text}")))?;
            let time_text: String = access.next_value()?;
            let time = parse_lenient_rfc3339(&time_text).ok_or_else(|| {
                A::Error::custom(format!("Bad wave time for key {key_text}: '{time_text}' is not an RFC 3339 time with an offset"))
            })?;
            if waves.insert(key, time).is_some() {
                return Err(A::Error::custom(format!("Duplicate key ID: {key}")));
            }
        }
        Ok(Waves(waves))
    }
}

/// A wave key: ASCII digits only (leading zeros allowed), fitting in `u32`.
fn parse_wave_key(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{Eligibility, Offset, Seed, WaveSchedule, WaveSpec, Waves, parse_wave_key};
    use jiff::{SignedDuration, Timestamp};
    use std::collections::BTreeMap;

    fn t(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn hours(waves: &Waves, start: Timestamp, seed: u64) -> f64 {
        match waves.eligible_at(Seed::new(seed).unwrap()) {
            Eligibility::At(time) => (time - start).get_seconds() as f64 / 3600.0,
            Eligibility::Always => panic!("expected a time"),
        }
    }

    #[test]
    fn offsets_parse_every_unit_and_absolute_times() {
        let cases = [
            ("1 hour", 3_600),
            ("in 7 days", 604_800),
            ("30 minutes", 1_800),
            ("1 minute", 60),
            ("2 weeks", 1_209_600),
            ("0 hours", 0),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                text.parse::<Offset>().unwrap(),
                Offset::After(SignedDuration::from_secs(seconds)),
                "{text}"
            );
        }
        assert_eq!(
            "2024-01-02T03:04:05Z".parse::<Offset>().unwrap(),
            Offset::At(t("2024-01-02T03:04:05Z"))
        );
        for bad in [
            "1",
            "hour",
            "1 fortnight",
            "-1 hours",
            "+1 hours",
            "in 1",
            "at 1 hour",
            "1 hour ago",
            "99999999999 days",
        ] {
            let error = bad.parse::<Offset>().unwrap_err().to_string();
            assert!(error.contains("expected RFC 3339"), "{bad}: {error}");
        }
    }

    #[test]
    fn offsets_display_in_their_largest_whole_unit() {
        for (text, shown) in [
            ("90 minutes", "90 minutes"),
            ("120 minutes", "2 hours"),
            ("1 day", "1 day"),
            ("14 days", "2 weeks"),
        ] {
            assert_eq!(text.parse::<Offset>().unwrap().to_string(), shown);
        }
    }

    #[test]
    fn wave_keys_accept_digits_only() {
        assert_eq!(parse_wave_key("07"), Some(7));
        assert_eq!(parse_wave_key("4294967295"), Some(u32::MAX));
        for bad in ["", "+7", "-7", " 7", "7 ", "234ab32", "4294967296", "0x10"] {
            assert_eq!(parse_wave_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn seeds_above_2047_are_rejected_with_the_range() {
        assert_eq!(Seed::new(2047).unwrap(), Seed::MAX);
        let error = Seed::new(2048).unwrap_err().to_string();
        assert!(
            error.contains("2048") && error.contains("0..=2047"),
            "{error}"
        );
    }

    #[test]
    fn fleet_percentages_map_to_the_last_seed_needed() {
        assert_eq!(Seed::for_fleet_percentage(1).get(), 20);
        assert_eq!(Seed::for_fleet_percentage(10).get(), 204);
        assert_eq!(Seed::for_fleet_percentage(50).get(), 1023);
        assert_eq!(Seed::for_fleet_percentage(100).get(), 2047);
    }

    #[test]
    fn reference_millisecond_waves() {
        // {0: t, 2048: t + 2048 ms}: seed s is ready at exactly t + s ms.
        let start = t("2020-01-01T00:00:00Z");
        let end = start + SignedDuration::from_millis(2048);
        let waves = Waves(BTreeMap::from([(0, start), (2048, end)]));
        for seed in [0, 1, 2, 100, 1024, 2047] {
            let at = start + SignedDuration::from_millis(seed as i64);
            assert_eq!(
                waves.eligible_at(Seed::new(seed).unwrap()),
                Eligibility::At(at),
                "seed {seed}"
            );
            assert!(!waves.is_ready(Seed::new(seed).unwrap(), at - SignedDuration::from_nanos(1)));
            assert!(waves.is_ready(Seed::new(seed).unwrap(), at));
        }
    }

    #[test]
    fn project_timing_table_for_default_waves() {
        // reference/update-metadata.md §5.1, "This project" row (hours after start).
        let start = t("2024-05-01T00:00:00Z");
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../waves/default-waves.toml"
        ))
        .unwrap();
        let waves = WaveSchedule::from_toml(&text, "default")
            .unwrap()
            .resolve(start)
            .unwrap();
        let expected = [
            (0, 1.0),
            (1, 1.15),
            (10, 2.5),
            (20, 4.0),
            (21, 4.24),
            (50, 11.32),
            (82, 19.12),
            (102, 24.0),
            (103, 24.12),
            (200, 35.47),
            (307, 48.0),
            (500, 66.09),
            (819, 96.0),
            (1000, 106.62),
            (1228, 120.0),
            (1500, 130.61),
            (1843, 144.0),
            (1844, 144.0),
            (2047, 144.0),
        ];
        for (seed, want) in expected {
            let got = hours(&waves, start, seed);
            assert!(
                (got - want).abs() < 0.006,
                "seed {seed}: got {got:.3} h, want {want} h"
            );
        }
    }

    #[test]
    fn seed_2000_waits_while_the_waves_are_in_the_future() {
        let start = t("2024-05-01T00:00:00Z");
        let waves = Waves(BTreeMap::from([
            (0, start + SignedDuration::from_hours(1)),
            (1024, start + SignedDuration::from_hours(2)),
        ]));
        assert!(!waves.is_ready(Seed::new(2000).unwrap(), start));
        assert!(waves.is_ready(
            Seed::new(2000).unwrap(),
            start + SignedDuration::from_hours(2)
        ));
        // Decision (b): seed 0 waits for the first wave too.
        assert!(!waves.is_ready(Seed::new(0).unwrap(), start));
    }

    #[test]
    fn no_waves_or_only_huge_keys_means_always() {
        let now = t("2024-05-01T00:00:00Z");
        assert_eq!(Waves::default().eligible_at(Seed::MAX), Eligibility::Always);
        let huge = Waves(BTreeMap::from([(2049, now), (858_993_459, now)]));
        assert_eq!(huge.eligible_at(Seed::new(0).unwrap()), Eligibility::Always);
        // A key of exactly 2048 still gates.
        let edge = Waves(BTreeMap::from([(2048, now)]));
        assert_eq!(edge.eligible_at(Seed::MAX), Eligibility::At(now));
    }

    #[test]
    fn schedules_reject_bad_percentages_and_times() {
        let wave = |start: &str, pct: u8| WaveSpec {
            start_after: start.parse().unwrap(),
            fleet_percentage: pct,
        };
        let equal = WaveSchedule::new(vec![
            wave("1 hour", 10),
            wave("2 hours", 10),
            wave("3 hours", 100),
        ])
        .unwrap_err();
        assert!(
            equal.to_string().contains("wave 1 (10%)")
                && equal.to_string().contains("wave 2 (10%)"),
            "{equal}"
        );
        assert!(WaveSchedule::new(vec![wave("1 hour", 50), wave("2 hours", 40)]).is_err());
        assert!(WaveSchedule::new(vec![wave("1 hour", 0)]).is_err());
        assert!(WaveSchedule::new(vec![wave("1 hour", 101)]).is_err());
        assert!(WaveSchedule::new(vec![]).is_err());
        let same_time =
            WaveSchedule::new(vec![wave("1 hour", 10), wave("60 minutes", 20)]).unwrap_err();
        assert!(same_time.to_string().contains("wave 2"), "{same_time}");
        // Absolute times are checked when resolved.
        let schedule =
            WaveSchedule::new(vec![wave("2 days", 10), wave("2024-05-01T12:00:00Z", 100)]).unwrap();
        assert!(schedule.resolve(t("2024-05-01T00:00:00Z")).is_err());
        assert!(schedule.resolve(t("2024-04-01T00:00:00Z")).is_ok());
        let unknown = WaveSchedule::from_toml(
            "[[waves]]\nstart_after = '1 hour'\nfleet_percentage = 1\nspeed = 2\n",
            "x",
        );
        assert!(unknown.is_err());
    }
}
