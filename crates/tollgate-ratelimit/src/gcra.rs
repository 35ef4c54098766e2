//! The algorithm, apart from where its state lives: GCRA over one theoretical arrival time (TAT) per
//! tier, in nanoseconds of the limiter's clock.
//!
//! A tier's TAT is when its schedule would be empty again. A call of `n` units moves it to
//! `max(tat, now) + n × interval` and is admitted when that ends no further than `window` (the burst's
//! worth of schedule) ahead of now. A TAT at or before now means the tier is full, which is also
//! the state of a key never seen, so a store may forget such keys without changing any decision.

use crate::quota::{Amounts, Tier};

/// What a quota says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every tier admits.
    Admit,
    /// Tier `tier` admits no sooner than `after` nanoseconds from now (the longest wait of all tiers).
    Wait { tier: usize, after: u64 },
    /// Tier `tier` can never admit this call: it asks for more than the tier's burst.
    Never { tier: usize },
}

/// Decides a call of `amounts` against `tats` at `now`, changing nothing.
pub(crate) fn evaluate(tiers: &[Tier], tats: &[u64], amounts: &Amounts, now: u64) -> Verdict {
    let mut verdict = Verdict::Admit;
    let mut longest = 0;
    for (i, (tier, &tat)) in tiers.iter().zip(tats).enumerate() {
        let amount = amounts.get(tier.dimension());
        if amount == 0 {
            continue;
        }
        let cost = tier.cost_nanos(amount);
        if cost > tier.window_nanos() {
            return Verdict::Never { tier: i };
        }
        let ends = tat.max(now).saturating_add(cost);
        let ahead = ends - now;
        if ahead > tier.window_nanos() {
            let after = ahead - tier.window_nanos();
            if after > longest {
                longest = after;
                verdict = Verdict::Wait { tier: i, after };
            }
        }
    }
    verdict
}

/// Takes `amounts` from every tier, whether or not they admit it (a charge may run into debt).
pub(crate) fn charge(tiers: &[Tier], tats: &mut [u64], amounts: &Amounts, now: u64) {
    for (tier, tat) in tiers.iter().zip(tats) {
        let amount = amounts.get(tier.dimension());
        if amount != 0 {
            *tat = (*tat).max(now).saturating_add(tier.cost_nanos(amount));
        }
    }
}

/// Gives `amounts` back to every tier, never beyond full.
pub(crate) fn refund(tiers: &[Tier], tats: &mut [u64], amounts: &Amounts, now: u64) {
    for (tier, tat) in tiers.iter().zip(tats) {
        let amount = amounts.get(tier.dimension());
        if amount != 0 {
            *tat = tat.saturating_sub(tier.cost_nanos(amount)).max(now);
        }
    }
}

/// Whether every tier is full at `now`, i.e. the key is indistinguishable from one never seen.
pub(crate) fn is_full(tats: &[u64], now: u64) -> bool {
    tats.iter().all(|&tat| tat <= now)
}

/// Units a tier could admit at once now, and nanoseconds until it is full again.
pub(crate) fn remaining(tier: &Tier, tat: u64, now: u64) -> (u64, u64) {
    let used = tat.saturating_sub(now);
    let free = tier.window_nanos().saturating_sub(used);
    (free / tier.interval_nanos(), used)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::quota::Quota;

    const SEC: u64 = 1_000_000_000;

    fn quota(tiers: impl IntoIterator<Item = Tier>) -> Quota {
        Quota::new(tiers).unwrap()
    }

    #[test]
    fn burst_then_one_per_interval() {
        let q = quota([Tier::requests(60, Duration::from_secs(60)).with_burst(10)]);
        let mut tats = [0];
        let one = Amounts::requests(1);
        for _ in 0..10 {
            assert_eq!(evaluate(q.tiers(), &tats, &one, 0), Verdict::Admit);
            charge(q.tiers(), &mut tats, &one, 0);
        }
        assert_eq!(
            evaluate(q.tiers(), &tats, &one, 0),
            Verdict::Wait {
                tier: 0,
                after: SEC
            }
        );
        assert_eq!(evaluate(q.tiers(), &tats, &one, SEC), Verdict::Admit);
    }

    #[test]
    fn the_longest_wait_names_its_tier() {
        let q = quota([
            Tier::requests(2, Duration::from_secs(1)),
            Tier::requests(3, Duration::from_secs(60)),
        ]);
        let mut tats = [0, 0];
        let one = Amounts::requests(1);
        for _ in 0..2 {
            charge(q.tiers(), &mut tats, &one, 0);
        }
        // At once, only the second tier is out of room.
        assert_eq!(
            evaluate(q.tiers(), &tats, &one, 0),
            Verdict::Wait {
                tier: 0,
                after: SEC / 2
            }
        );
        // A second later it has room again, but the minute tier's 3 are spent: it names itself.
        charge(q.tiers(), &mut tats, &one, SEC);
        assert_eq!(
            evaluate(q.tiers(), &tats, &one, SEC),
            Verdict::Wait {
                tier: 1,
                after: 19 * SEC
            }
        );
    }

    #[test]
    fn too_large_is_never() {
        let q = quota([Tier::tokens(1_000, Duration::from_secs(60))]);
        assert_eq!(
            evaluate(q.tiers(), &[0], &Amounts::tokens(1_001), 0),
            Verdict::Never { tier: 0 }
        );
        // Other dimensions do not touch a token tier.
        assert_eq!(
            evaluate(q.tiers(), &[u64::MAX], &Amounts::requests(1), 0),
            Verdict::Admit
        );
    }

    #[test]
    fn refund_restores_exactly_and_stops_at_full() {
        let q = quota([Tier::tokens(1_000, Duration::from_secs(1))]);
        let mut tats = [0];
        charge(q.tiers(), &mut tats, &Amounts::tokens(600), 0);
        refund(q.tiers(), &mut tats, &Amounts::tokens(200), 0);
        assert_eq!(remaining(&q.tiers()[0], tats[0], 0).0, 600);
        refund(q.tiers(), &mut tats, &Amounts::tokens(5_000), 0);
        assert!(is_full(&tats, 0));
    }
}
