//! The end of the update's fetch: what a kill loses there (the requests in flight, sent by the
//! server and not spooled yet) is compared with what is left of the whole update, so the last
//! image's ranges are cut finer and fewer of them run at once.
use super::PARALLEL;

/// The floor of the ranges at the end of the last image's fetch (see
/// `delta::Plan::with_tail_floor`): the hash image is written last, and a kill near the end
/// of its fetch lost up to 1.17× what was left with 16 KiB ranges in flight.
const LAST_TAIL_FLOOR: u64 = 4 << 10;

/// Whether image `role`'s fetch ends the update's (the last image written): its tail is cut
/// finer ([`LAST_TAIL_FLOOR`], [`tail_permits`]), since what a kill loses there is compared
/// with what is left of the whole update.
pub(super) fn ends_update(role: &str) -> bool {
    crate::images::IMAGES.last() == Some(&role)
}

/// The plan's ranges: the last image's fetch ends the update (see [`LAST_TAIL_FLOOR`]).
pub(super) fn for_fetch<'a>(plan: delta::Plan<'a>, role: &str) -> delta::Plan<'a> {
    if ends_update(role) {
        plan.with_tail_floor(LAST_TAIL_FLOOR)
    } else {
        plan
    }
}

/// At the end of the update's fetch (the last image's), the bytes of the requests in flight
/// stay under this share of what is left to fetch: a kill loses what is in flight (sent by
/// the server, not spooled yet), and the next run fetches it again. Measured on a patch
/// release with four 4 KiB requests in flight to the end: killed with 0.2–0.3 MB left, the
/// next run fetched 1.07–1.10× that.
const IN_FLIGHT_SHARE: u64 = 16;

/// How many of the [`PARALLEL`] slots each range takes: one, except at the end of the
/// update's fetch (`last`: these are the last image's ranges), where fewer requests run at
/// once (see [`IN_FLIGHT_SHARE`]), down to one at a time for the last few.
pub(super) fn tail_permits(ranges: &[delta::StoreRange], last: bool) -> Vec<u32> {
    let mut left: u64 = if last { 0 } else { u64::MAX };
    let mut permits: Vec<u32> = ranges
        .iter()
        .rev()
        .map(|range| {
            left = left.saturating_add(range.len);
            let budget = (left / IN_FLIGHT_SHARE).max(1);
            let wanted = (PARALLEL as u64 * range.len).div_ceil(budget);
            wanted.clamp(1, PARALLEL as u64) as u32
        })
        .collect();
    permits.reverse();
    permits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(lens: &[u64]) -> Vec<delta::StoreRange> {
        let mut offset = 0;
        lens.iter()
            .map(|&len| {
                let range = delta::StoreRange { offset, len };
                offset += len;
                range
            })
            .collect()
    }

    #[test]
    fn requests_in_flight_shrink_at_the_end_of_the_update() {
        // 8 MiB in ranges shaped as a plan shapes the last image's: at most 1/64 of what is
        // left, 128 KiB to 4 KiB.
        let mut lens = Vec::new();
        let mut left: u64 = 8 << 20;
        while left > 0 {
            let len = (left / 64).clamp(4 << 10, 128 << 10).min(left);
            lens.push(len);
            left -= len;
        }
        let permits = tail_permits(&ranges(&lens), true);
        // The body runs PARALLEL at once; the last requests one at a time.
        assert!(permits[..100].iter().all(|p| *p == 1), "{permits:?}");
        assert_eq!(permits[permits.len() - 16..], [PARALLEL as u32; 16]);
        // Never more in flight than the share of what is left, once one range is more than it.
        let mut left: u64 = lens.iter().sum();
        for (len, p) in lens.iter().zip(&permits) {
            let in_flight = len * PARALLEL as u64 / u64::from(*p);
            assert!(
                in_flight <= (left / IN_FLIGHT_SHARE).max(*len),
                "{in_flight} in flight with {left} left"
            );
            left -= len;
        }
        // Not the last image: what follows it is unknown, so no limit.
        assert!(tail_permits(&ranges(&lens), false).iter().all(|p| *p == 1));
    }
}
