//! `pubsys waves show`: what a wave schedule does to a fleet, computed by `update-metadata`
//! exactly as hosts will compute it.

use crate::error::{self, Result};
use clap::Args;
use jiff::Timestamp;
use serde::Serialize;
use snafu::ResultExt;
use std::fmt;
use std::path::PathBuf;
use update_metadata::{Eligibility, Seed, WaveSchedule};

/// Arguments of `pubsys waves show`.
#[derive(Debug, Args)]
pub struct WavesArgs {
    /// Wave schedule TOML file (e.g. waves/default-waves.toml)
    #[arg(value_name = "SCHEDULE")]
    pub schedule: PathBuf,

    /// Rollout start time (RFC 3339); defaults to now
    #[arg(long, value_name = "TIME")]
    pub start: Option<Timestamp>,

    /// Fleet shares to report, in percent (repeat or comma-separate)
    #[arg(long = "percent", value_name = "N", value_delimiter = ',', default_values_t = [1u8, 10, 50, 100],
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub percents: Vec<u8>,
}

/// One wave of the resolved schedule.
#[derive(Debug, Serialize)]
pub struct WaveRow {
    /// 1-based wave number.
    pub wave: usize,
    /// The schedule's `start_after`.
    pub start_after: String,
    /// The manifest key (seed threshold) this wave gets.
    pub seed_key: u32,
    /// Cumulative fleet share at the end of the wave.
    pub fleet_percentage: u8,
    /// Start time of the wave.
    pub starts_at: Timestamp,
}

/// When a share of the fleet is eligible.
#[derive(Debug, Serialize)]
pub struct Milestone {
    /// Share of the fleet, in percent.
    pub percent: u8,
    /// The last seed of that share.
    pub seed: Seed,
    /// When it becomes eligible.
    pub eligible_at: Timestamp,
    /// Seconds after the rollout start.
    pub after_seconds: i64,
}

/// The result of `pubsys waves show`.
#[derive(Debug, Serialize)]
pub struct WavesReport {
    /// The schedule file.
    pub schedule: PathBuf,
    /// Rollout start.
    pub start: Timestamp,
    /// The resolved waves.
    pub waves: Vec<WaveRow>,
    /// When each requested share of the fleet is eligible.
    pub milestones: Vec<Milestone>,
}

/// Resolve the schedule from the start time (`now` when none was given).
pub fn run(args: &WavesArgs, now: Timestamp) -> Result<WavesReport> {
    let schedule = WaveSchedule::load(&args.schedule).context(error::MetadataSnafu)?;
    let start = args.start.unwrap_or(now);
    let waves = schedule.resolve(start).context(error::MetadataSnafu)?;
    let rows = schedule
        .waves()
        .iter()
        .zip(&waves.0)
        .enumerate()
        .map(|(index, (spec, (key, time)))| WaveRow {
            wave: index + 1,
            start_after: spec.start_after.to_string(),
            seed_key: *key,
            fleet_percentage: spec.fleet_percentage,
            starts_at: *time,
        })
        .collect();
    let milestones = args
        .percents
        .iter()
        .map(|&percent| {
            let seed = Seed::for_fleet_percentage(percent);
            // Invariant: a resolved schedule has at least one wave, so eligibility has a time.
            let eligible_at = match waves.eligible_at(seed) {
                Eligibility::At(time) => time,
                Eligibility::Always => start,
            };
            Milestone {
                percent,
                seed,
                eligible_at,
                after_seconds: (eligible_at - start).get_seconds(),
            }
        })
        .collect();
    Ok(WavesReport {
        schedule: args.schedule.clone(),
        start,
        waves: rows,
        milestones,
    })
}

/// `1d 11h 56m`, `4h 00m`, `30m`.
fn human_duration(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let minutes = seconds.unsigned_abs() / 60;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{sign}{minutes}m"),
        (0, _) => format!("{sign}{hours}h {minutes:02}m"),
        _ => format!("{sign}{days}d {hours:02}h {minutes:02}m"),
    }
}

/// A time to the second, for tables (JSON keeps the exact value).
fn utc_seconds(time: Timestamp) -> impl fmt::Display {
    time.strftime("%Y-%m-%dT%H:%M:%SZ")
}

impl fmt::Display for WavesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Schedule {} starting {}",
            self.schedule.display(),
            self.start
        )?;
        writeln!(f)?;
        writeln!(f, "WAVE  START AFTER   SEED KEY   FLEET  STARTS (UTC)")?;
        for row in &self.waves {
            writeln!(
                f,
                "{:<5} {:<13} {:>8} {:>6}%  {}",
                row.wave,
                row.start_after,
                row.seed_key,
                row.fleet_percentage,
                utc_seconds(row.starts_at)
            )?;
        }
        writeln!(f)?;
        writeln!(f, "FLEET    SEED      ELIGIBLE  AT (UTC)")?;
        for m in &self.milestones {
            writeln!(
                f,
                "{:>5}% {:>6} {:>13}  {}",
                m.percent,
                m.seed.to_string(),
                format!("+{}", human_duration(m.after_seconds)),
                utc_seconds(m.eligible_at)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{WavesArgs, human_duration, run};
    use std::path::PathBuf;

    /// The eligibility table in waves/README.md is what this command computes.
    #[test]
    fn waves_readme_table_matches_the_library() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = std::fs::read_to_string(root.join("waves/README.md")).unwrap();
        let mut checked = 0;
        for line in readme
            .lines()
            .filter(|l| l.starts_with("| `") && l.matches('|').count() == 6)
        {
            let cells: Vec<&str> = line
                .split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            let file = cells[0].trim_matches('`');
            let args = WavesArgs {
                schedule: root.join("waves").join(file),
                start: None,
                percents: vec![1, 10, 50, 100],
            };
            let report = run(&args, jiff::Timestamp::UNIX_EPOCH).unwrap();
            let computed: Vec<String> = report
                .milestones
                .iter()
                .map(|m| human_duration(m.after_seconds))
                .collect();
            assert_eq!(cells[1..].to_vec(), computed, "{file}");
            checked += 1;
        }
        assert_eq!(checked, 4, "one row per standard schedule");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(1800), "30m");
        assert_eq!(human_duration(4 * 3600), "4h 00m");
        assert_eq!(human_duration(35 * 3600 + 56 * 60 + 30), "1d 11h 56m");
        assert_eq!(human_duration(-90), "-1m");
    }
}
