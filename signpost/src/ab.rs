//! The A/B decision logic, free of I/O: which set boots next, and what each command does to
//! the gptprio bits of the two sets (`reference/signpost.md` §4). Every function here is pure,
//! so the whole state machine is tested exhaustively below.

#[cfg(doc)]
use crate::Error;
use crate::Result;
use crate::error::{
    InactiveAlreadyMarkedSnafu, InactiveInvalidRollbackSnafu, InactiveNotValidSnafu,
    NoBootableSetSnafu,
};
use crate::gpt_types::BootFlags;
pub use crate::gpt_types::SetId;

/// The gptprio flags of both sets plus the PRIVATE partition's "boot has ever succeeded" bit:
/// everything the A/B logic reads and changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AbState {
    /// Flags of set A's BOOT partition.
    pub a: BootFlags,
    /// Flags of set B's BOOT partition.
    pub b: BootFlags,
    /// Bit 57 of the PRIVATE partition.
    pub boot_ever_succeeded: bool,
}

impl AbState {
    /// The flags of `set`.
    pub const fn flags(&self, set: SetId) -> BootFlags {
        match set {
            SetId::A => self.a,
            SetId::B => self.b,
        }
    }

    fn flags_mut(&mut self, set: SetId) -> &mut BootFlags {
        match set {
            SetId::A => &mut self.a,
            SetId::B => &mut self.b,
        }
    }

    /// The set the bootloader picks next: if both will boot, the higher priority wins and a
    /// tie goes to A; if only one will boot, that one; otherwise none.
    pub fn next(&self) -> Option<SetId> {
        match (self.a.will_boot(), self.b.will_boot()) {
            (true, true) if self.b.priority > self.a.priority => Some(SetId::B),
            (true, _) => Some(SetId::A),
            (false, true) => Some(SetId::B),
            (false, false) => None,
        }
    }

    /// The running set of a disk image, when the flags alone tell: exactly one set is
    /// bootable and marked successful.
    pub fn infer_active(&self) -> Option<SetId> {
        let candidates: Vec<SetId> = SetId::BOTH
            .into_iter()
            .filter(|set| {
                let flags = self.flags(*set);
                flags.will_boot() && flags.successful
            })
            .collect();
        match candidates.as_slice() {
            // Not when the other set was flipped to and has been booted (higher priority, no
            // tries left, not successful): it may be running right now, not yet marked, or it
            // may have failed and the firmware fell back; the disk alone cannot tell.
            [only] => {
                let (this, other) = (self.flags(*only), self.flags(only.other()));
                let tried_upgrade =
                    other.priority > this.priority && other.tries_left == 0 && !other.successful;
                (!tried_upgrade).then_some(*only)
            }
            _ => None,
        }
    }

    /// `clear-inactive`: the inactive set gets P=0, T=0, S=0 and will no longer boot.
    pub fn clear_inactive(&self, active: SetId) -> AbState {
        let mut next = *self;
        *next.flags_mut(active.other()) = BootFlags::default();
        next
    }

    /// `mark-inactive-valid`: the inactive set gets one try (priority unchanged).
    pub fn mark_inactive_valid(&self, active: SetId) -> AbState {
        let mut next = *self;
        next.flags_mut(active.other()).tries_left = 1;
        next
    }

    /// `upgrade-to-inactive`: the inactive set boots next (P=2, S=0), the active one stays as
    /// the fallback (P=1).
    ///
    /// Refused with [`Error::InactiveAlreadyMarked`] unless the inactive set has P=0 and S=0
    /// (it was cleared first), and with [`Error::InactiveNotValid`] unless it has tries left
    /// (it was marked valid).
    pub fn upgrade_to_inactive(&self, active: SetId) -> Result<AbState> {
        let inactive = active.other();
        let flags = self.flags(inactive);
        if flags.priority != 0 || flags.successful {
            return InactiveAlreadyMarkedSnafu {
                set: inactive,
                priority: flags.priority,
                successful: flags.successful,
            }
            .fail();
        }
        if flags.tries_left == 0 {
            return InactiveNotValidSnafu { set: inactive }.fail();
        }
        let mut next = *self;
        let target = next.flags_mut(inactive);
        target.priority = 2;
        target.successful = false;
        next.flags_mut(active).priority = 1;
        Ok(next)
    }

    /// `cancel-upgrade`: the inactive set gets P=0 (tries kept, so it can be upgraded to again
    /// without re-validating), the active set P=2.
    pub fn cancel_upgrade(&self, active: SetId) -> AbState {
        let mut next = *self;
        next.flags_mut(active.other()).priority = 0;
        next.flags_mut(active).priority = 2;
        next
    }

    /// `rollback-to-inactive`: the inactive set boots next (P=2), the active set P=1; the
    /// successful bits are unchanged.
    ///
    /// Refused with [`Error::InactiveInvalidRollback`] unless the inactive set will boot.
    pub fn rollback_to_inactive(&self, active: SetId) -> Result<AbState> {
        let inactive = active.other();
        let flags = self.flags(inactive);
        if !flags.will_boot() {
            return InactiveInvalidRollbackSnafu {
                set: inactive,
                priority: flags.priority,
                tries_left: flags.tries_left,
                successful: flags.successful,
            }
            .fail();
        }
        let mut next = *self;
        next.flags_mut(inactive).priority = 2;
        next.flags_mut(active).priority = 1;
        Ok(next)
    }

    /// `mark-successful-boot`: the active set is marked successful and the PRIVATE bit 57
    /// ("boot has ever succeeded") is set.
    pub fn mark_successful_boot(&self, active: SetId) -> AbState {
        let mut next = *self;
        next.flags_mut(active).successful = true;
        next.boot_ever_succeeded = true;
        next
    }

    /// `select-boot`, what the patched GRUB's `gptprio.next` does: pick [`AbState::next`] and,
    /// if it has tries left, spend one.
    ///
    /// Fails with [`Error::NoBootableSet`] when neither set will boot.
    pub fn select_boot(&self) -> Result<(SetId, AbState)> {
        let Some(chosen) = self.next() else {
            return NoBootableSetSnafu.fail();
        };
        let mut next = *self;
        let flags = next.flags_mut(chosen);
        flags.tries_left = flags.tries_left.saturating_sub(1);
        Ok((chosen, next))
    }
}

#[cfg(test)]
mod tests {
    use super::{AbState, SetId};
    use crate::Error;
    use crate::gpt_types::BootFlags;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};

    fn flags(priority: u8, tries_left: u8, successful: bool) -> BootFlags {
        BootFlags {
            priority,
            tries_left,
            successful,
        }
    }

    fn state(a: BootFlags, b: BootFlags) -> AbState {
        AbState {
            a,
            b,
            boot_ever_succeeded: false,
        }
    }

    /// Every combination of flags of one set (priority and tries limited to 0–3, which covers
    /// every branch of the logic).
    fn all_flags() -> Vec<BootFlags> {
        let mut out = Vec::new();
        for priority in 0..4 {
            for tries_left in 0..4 {
                for successful in [false, true] {
                    out.push(flags(priority, tries_left, successful));
                }
            }
        }
        out
    }

    fn all_states() -> Vec<AbState> {
        let mut out = Vec::new();
        for a in all_flags() {
            for b in all_flags() {
                for boot_ever_succeeded in [false, true] {
                    out.push(AbState {
                        a,
                        b,
                        boot_ever_succeeded,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn next_prefers_higher_priority_and_a_on_ties() {
        for s in all_states() {
            let expected = match (s.a.will_boot(), s.b.will_boot()) {
                (false, false) => None,
                (true, false) => Some(SetId::A),
                (false, true) => Some(SetId::B),
                (true, true) => {
                    if s.b.priority > s.a.priority {
                        Some(SetId::B)
                    } else {
                        Some(SetId::A)
                    }
                }
            };
            assert_eq!(s.next(), expected, "{s:?}");
        }
    }

    #[test]
    fn commands_touch_only_what_the_reference_says() {
        for s in all_states() {
            for active in SetId::BOTH {
                let inactive = active.other();
                let cleared = s.clear_inactive(active);
                assert_eq!(cleared.flags(inactive), BootFlags::default());
                assert_eq!(cleared.flags(active), s.flags(active));

                let valid = s.mark_inactive_valid(active);
                assert_eq!(
                    valid.flags(inactive),
                    BootFlags {
                        tries_left: 1,
                        ..s.flags(inactive)
                    }
                );
                assert_eq!(valid.flags(active), s.flags(active));

                let cancelled = s.cancel_upgrade(active);
                assert_eq!(
                    cancelled.flags(inactive),
                    BootFlags {
                        priority: 0,
                        ..s.flags(inactive)
                    }
                );
                assert_eq!(
                    cancelled.flags(active),
                    BootFlags {
                        priority: 2,
                        ..s.flags(active)
                    }
                );

                let marked = s.mark_successful_boot(active);
                assert!(marked.flags(active).successful && marked.boot_ever_succeeded);
                assert_eq!(marked.flags(inactive), s.flags(inactive));
                for next in [cleared, valid, cancelled, marked] {
                    if next != marked {
                        assert_eq!(next.boot_ever_succeeded, s.boot_ever_succeeded);
                    }
                }
            }
        }
    }

    #[test]
    fn upgrade_preconditions_and_effect() {
        for s in all_states() {
            for active in SetId::BOTH {
                let inactive = s.flags(active.other());
                match s.upgrade_to_inactive(active) {
                    Ok(next) => {
                        assert!(inactive.priority == 0 && !inactive.successful);
                        assert!(inactive.tries_left > 0);
                        assert_eq!(
                            next.flags(active.other()),
                            flags(2, inactive.tries_left, false)
                        );
                        assert_eq!(
                            next.flags(active),
                            BootFlags {
                                priority: 1,
                                ..s.flags(active)
                            }
                        );
                        assert_eq!(next.next(), Some(active.other()));
                    }
                    Err(Error::InactiveAlreadyMarked { set, .. }) => {
                        assert_eq!(set, active.other());
                        assert!(inactive.priority != 0 || inactive.successful);
                    }
                    Err(Error::InactiveNotValid { set }) => {
                        assert_eq!(set, active.other());
                        assert!(inactive.priority == 0 && !inactive.successful);
                        assert_eq!(inactive.tries_left, 0);
                    }
                    Err(other) => panic!("unexpected error {other:?}"),
                }
            }
        }
    }

    #[test]
    fn rollback_preconditions_and_effect() {
        for s in all_states() {
            for active in SetId::BOTH {
                let inactive = s.flags(active.other());
                match s.rollback_to_inactive(active) {
                    Ok(next) => {
                        assert!(inactive.will_boot());
                        assert_eq!(
                            next.flags(active.other()),
                            BootFlags {
                                priority: 2,
                                ..inactive
                            }
                        );
                        assert_eq!(
                            next.flags(active),
                            BootFlags {
                                priority: 1,
                                ..s.flags(active)
                            }
                        );
                        assert_eq!(next.next(), Some(active.other()));
                    }
                    Err(Error::InactiveInvalidRollback {
                        set,
                        priority,
                        tries_left,
                        successful,
                    }) => {
                        assert_eq!(set, active.other());
                        assert!(!inactive.will_boot());
                        assert_eq!(flags(priority, tries_left, successful), inactive);
                    }
                    Err(other) => panic!("unexpected error {other:?}"),
                }
            }
        }
    }

    #[test]
    fn select_boot_spends_one_try_of_the_next_set() {
        for s in all_states() {
            match s.select_boot() {
                Ok((chosen, next)) => {
                    assert_eq!(Some(chosen), s.next());
                    let before = s.flags(chosen);
                    assert_eq!(
                        next.flags(chosen),
                        BootFlags {
                            tries_left: before.tries_left.saturating_sub(1),
                            ..before
                        }
                    );
                    assert_eq!(next.flags(chosen.other()), s.flags(chosen.other()));
                }
                Err(Error::NoBootableSet) => assert_eq!(s.next(), None),
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
    }

    #[test]
    fn infer_active_needs_exactly_one_successful_set() {
        let good = flags(1, 0, true);
        let staged = flags(2, 1, false);
        assert_eq!(
            state(good, BootFlags::default()).infer_active(),
            Some(SetId::A)
        );
        assert_eq!(state(staged, good).infer_active(), Some(SetId::B));
        assert_eq!(state(good, flags(2, 0, true)).infer_active(), None);
        assert_eq!(state(staged, staged).infer_active(), None);
        // Right after a flip was booted (B 2/0/0): B may be running unmarked, or A may be
        // running after a fallback. Guessing A would make B, perhaps the running set, the
        // "inactive" one that an update overwrites.
        let tried = flags(2, 0, false);
        assert_eq!(state(good, tried).infer_active(), None);
        assert_eq!(state(tried, good).infer_active(), None);
        // Staged but not booted yet (a try left): the successful set is still running.
        assert_eq!(
            state(good, flags(2, 1, false)).infer_active(),
            Some(SetId::A)
        );
        // A lower-priority set that was tried long ago does not make it ambiguous.
        assert_eq!(
            state(flags(2, 0, true), flags(1, 0, false)).infer_active(),
            Some(SetId::A)
        );
    }

    /// The lifecycle table of `reference/signpost.md` §4.1, step by step.
    #[test]
    fn reference_lifecycle() {
        let fresh = state(flags(1, 0, true), BootFlags::default());
        let a = SetId::A;
        let cleared = fresh.clear_inactive(a);
        assert_eq!(cleared.b, flags(0, 0, false));
        let valid = cleared.mark_inactive_valid(a);
        assert_eq!(valid.b, flags(0, 1, false));
        let upgraded = valid.upgrade_to_inactive(a).expect("valid upgrade");
        assert_eq!(
            (upgraded.a, upgraded.b),
            (flags(1, 0, true), flags(2, 1, false))
        );
        let cancelled = upgraded.cancel_upgrade(a);
        assert_eq!(
            (cancelled.a, cancelled.b),
            (flags(2, 0, true), flags(0, 1, false))
        );
        let again = cancelled.upgrade_to_inactive(a).expect("upgrade again");
        let (chosen, booted) = again.select_boot().expect("bootable");
        assert_eq!(chosen, SetId::B);
        assert_eq!(booted.b, flags(2, 0, false));
        // A boot that never gets marked successful falls back to A.
        let (fallback, _) = booted.select_boot().expect("A still boots");
        assert_eq!(fallback, SetId::A);
        let good = booted.mark_successful_boot(SetId::B);
        assert_eq!(good.b, flags(2, 0, true));
        assert!(good.boot_ever_succeeded);
        assert_eq!(good.next(), Some(SetId::B));
    }

    proptest! {
        #[test]
        fn transitions_keep_values_in_range(pa in 0u8..16, ta in 0u8..16, sa in any::<bool>(),
                                            pb in 0u8..16, tb in 0u8..16, sb in any::<bool>()) {
            let s = state(flags(pa, ta, sa), flags(pb, tb, sb));
            for active in SetId::BOTH {
                let mut results = vec![
                    s.clear_inactive(active),
                    s.mark_inactive_valid(active),
                    s.cancel_upgrade(active),
                    s.mark_successful_boot(active),
                ];
                results.extend(s.upgrade_to_inactive(active).ok());
                results.extend(s.rollback_to_inactive(active).ok());
                results.extend(s.select_boot().ok().map(|(_, next)| next));
                for next in results {
                    for set in SetId::BOTH {
                        prop_assert!(next.flags(set).priority <= 15);
                        prop_assert!(next.flags(set).tries_left <= 15);
                    }
                }
            }
            prop_assert_eq!("a".parse::<SetId>(), Ok(SetId::A));
        }
    }
}
