//! Property tests of the wave arithmetic on schedules the publisher could write.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken invariants

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::{Strategy, any, prop_assert, prop_assert_eq, proptest};
use update_metadata::{Eligibility, Offset, Seed, WaveSchedule, WaveSpec, Waves};

/// A valid schedule: 1–8 waves, strictly increasing percentages and start offsets.
fn schedules() -> impl Strategy<Value = WaveSchedule> {
    (1usize..=8)
        .prop_flat_map(|n| {
            (
                proptest::sample::subsequence((1u8..=100).collect::<Vec<_>>(), n),
                proptest::collection::btree_set(0i64..=60 * 24 * 30, n),
            )
        })
        .prop_map(|(percentages, minutes)| {
            let waves = percentages
                .into_iter()
                .zip(minutes)
                .map(|(fleet_percentage, m)| WaveSpec {
                    start_after: Offset::After(SignedDuration::from_mins(m)),
                    fleet_percentage,
                })
                .collect();
            WaveSchedule::new(waves).expect("generated schedules are valid")
        })
}

fn resolved() -> impl Strategy<Value = Waves> {
    (schedules(), 0i64..=4_000_000_000).prop_map(|(schedule, start)| {
        schedule
            .resolve(Timestamp::from_second(start).unwrap())
            .unwrap()
    })
}

fn seeds() -> impl Strategy<Value = Seed> {
    (0u64..2048).prop_map(|s| Seed::new(s).unwrap())
}

fn first_and_last(waves: &Waves) -> (Timestamp, Timestamp) {
    let times: Vec<Timestamp> = waves.gating().map(|(_, t)| t).collect();
    (times[0], *times.last().unwrap())
}

proptest! {
    #[test]
    fn eligibility_is_monotonic_in_time(waves in resolved(), seed in seeds(), a in any::<i32>(), b in any::<i32>()) {
        let (first, _) = first_and_last(&waves);
        let (early, late) = (a.min(b), a.max(b));
        let t1 = first + SignedDuration::from_secs(early.into());
        let t2 = first + SignedDuration::from_secs(late.into());
        if waves.is_ready(seed, t1) {
            prop_assert!(waves.is_ready(seed, t2));
        }
    }

    #[test]
    fn every_seed_is_eligible_at_the_last_wave(waves in resolved(), seed in seeds()) {
        let (_, last) = first_and_last(&waves);
        prop_assert!(waves.is_ready(seed, last));
    }

    #[test]
    fn no_seed_is_eligible_before_the_first_wave(waves in resolved(), seed in seeds(), early in 1i64..=1_000_000) {
        let (first, _) = first_and_last(&waves);
        prop_assert!(!waves.is_ready(seed, first - SignedDuration::from_secs(early)));
        match waves.eligible_at(seed) {
            Eligibility::At(time) => prop_assert!(time >= first),
            Eligibility::Always => prop_assert!(false, "waves exist, so eligibility has a time"),
        }
    }

    #[test]
    fn eligibility_never_decreases_with_the_seed(waves in resolved(), a in seeds(), b in seeds()) {
        let (low, high) = (a.min(b), a.max(b));
        prop_assert!(waves.eligible_at(low) <= waves.eligible_at(high));
    }

    #[test]
    fn keys_follow_the_percentages(schedule in schedules()) {
        let waves = schedule.resolve(Timestamp::UNIX_EPOCH).unwrap();
        let mut expected = vec![0u32];
        for wave in &schedule.waves()[..schedule.waves().len() - 1] {
            expected.push(u32::from(wave.fleet_percentage) * 2048 / 100);
        }
        prop_assert_eq!(waves.0.keys().copied().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn offsets_round_trip_through_text(count in 0u32..=1_000_000, unit in proptest::sample::select(vec!["minutes", "hours", "days", "weeks"]), prefix in proptest::bool::ANY) {
        let text = format!("{}{count} {unit}", if prefix { "in " } else { "" });
        let offset: Offset = text.parse().unwrap();
        prop_assert_eq!(offset.to_string().parse::<Offset>().unwrap(), offset);
    }

    #[test]
    fn arbitrary_text_never_panics_the_parsers(text in ".{0,40}") {
        let _ = text.parse::<Offset>();
        let _ = update_metadata::time::parse_lenient_rfc3339(&text);
        let _ = update_metadata::MigrationKey::parse(&text);
    }
}
