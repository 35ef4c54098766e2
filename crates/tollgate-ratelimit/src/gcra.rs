//! The algorithm, apart from where its state lives: GCRA over one theoretical arrival time (TAT) per
//! tier, in nanoseconds of the limiter's clock.
//!
//! A tier's TAT is when its schedule would be empty again. A call of `n` units moves it to
//! `max(tat, now) + n × interval` and is admitted when that ends no further than `window` (the burst's
//! worth of schedule) ahead of now. A TAT at or before now means the tier is full, which is also
//! the state of a key never seen, so a store may forget such keys without changing any decision.

use crate::{
    calendar::spent,
    quota::{Amounts, Tier},
};

/// When a decision is made: the limiter's clock (nanoseconds since its origin), and the wall
/// clock (nanoseconds since the Unix epoch) that calendar tiers count their periods by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct At {
    pub(crate) now: u64,
    pub(crate) wall: u64,
}

impl At {
    /// A time with no wall clock behind it, for stores without calendar tiers' periods to read.
    #[cfg(test)]
    pub(crate) const fn mono(now: u64) -> Self {
        Self { now, wall: now }
    }
}

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

/// Decides a call of `amounts` against `tats` at `at`, changing nothing.
pub(crate) fn evaluate(tiers: &[Tier], tats: &[u64], amounts: &Amounts, at: At) -> Verdict {
    let now = at.now;
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
        let after = match tier.calendar_period() {
            // Room comes back only when the next period begins.
            Some(calendar) => {
                let span = calendar.span(at.wall);
                let spent = spent::in_period(tat, span.index);
                if spent.saturating_add(cost) <= tier.window_nanos() {
                    continue;
                }
                span.ends.saturating_sub(at.wall).max(1)
            }
            None => {
                let ends = tat.max(now).saturating_add(cost);
                let ahead = ends - now;
                if ahead <= tier.window_nanos() {
                    continue;
                }
                ahead - tier.window_nanos()
            }
        };
        if after > longest {
            longest = after;
            verdict = Verdict::Wait { tier: i, after };
        }
    }
    verdict
}

/// Takes `amounts` from every tier, whether or not they admit it (a charge may run into debt).
pub(crate) fn charge(tiers: &[Tier], tats: &mut [u64], amounts: &Amounts, at: At) {
    for (tier, tat) in tiers.iter().zip(tats) {
        let amount = amounts.get(tier.dimension());
        if amount == 0 {
            continue;
        }
        *tat = match tier.calendar_period() {
            Some(calendar) => {
                let index = calendar.span(at.wall).index;
                spent::state(index, spent::in_period(*tat, index).saturating_add(amount))
            }
            None => (*tat).max(at.now).saturating_add(tier.cost_nanos(amount)),
        };
    }
}

/// Gives `amounts` back to every tier, never beyond full. A calendar tier's period that has
/// ended keeps what it spent: what is given back after it ends is not the new period's.
pub(crate) fn refund(tiers: &[Tier], tats: &mut [u64], amounts: &Amounts, at: At) {
    for (tier, tat) in tiers.iter().zip(tats) {
        let amount = amounts.get(tier.dimension());
        if amount == 0 {
            continue;
        }
        *tat = match tier.calendar_period() {
            Some(calendar) => {
                let index = calendar.span(at.wall).index;
                spent::state(index, spent::in_period(*tat, index).saturating_sub(amount))
            }
            None => tat.saturating_sub(tier.cost_nanos(amount)).max(at.now),
        };
    }
}

/// Whether every tier is full at `at`, i.e. the key is indistinguishable from one never seen.
pub(crate) fn is_full(tiers: &[Tier], tats: &[u64], at: At) -> bool {
    tiers
        .iter()
        .zip(tats)
        .all(|(tier, &tat)| match tier.calendar_period() {
            Some(calendar) => spent::in_period(tat, calendar.span(at.wall).index) == 0,
            None => tat <= at.now,
        })
}

/// Units a tier could admit at once now, and nanoseconds until it is full again.
pub(crate) fn remaining(tier: &Tier, tat: u64, at: At) -> (u64, u64) {
    if let Some(calendar) = tier.calendar_period() {
        let span = calendar.span(at.wall);
        let spent = spent::in_period(tat, span.index);
        let resets = if spent == 0 {
            0
        } else {
            span.ends.saturating_sub(at.wall)
        };
        return (tier.limit().saturating_sub(spent), resets);
    }
    let used = tat.saturating_sub(at.now);
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
            assert_eq!(
                evaluate(q.tiers(), &tats, &one, At::mono(0)),
                Verdict::Admit
            );
            charge(q.tiers(), &mut tats, &one, At::mono(0));
        }
        assert_eq!(
            evaluate(q.tiers(), &tats, &one, At::mono(0)),
            Verdict::Wait {
                tier: 0,
                after: SEC
            }
        );
        assert_eq!(
            evaluate(q.tiers(), &tats, &one, At::mono(SEC)),
            Verdict::Admit
        );
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
            charge(q.tiers(), &mut tats, &one, At::mono(0));
        }
        // At once, only the second tier is out of room.
        assert_eq!(
            evaluate(q.tiers(), &tats, &one, At::mono(0)),
            Verdict::Wait {
                tier: 0,
                after: SEC / 2
            }
        );
        // A second later it has room again, but the minute tier's 3 are spent: it names itself.
        charge(q.tiers(), &mut tats, &one, At::mono(SEC));
        assert_eq!(
            evaluate(q.tiers(), &tats, &one, At::mono(SEC)),
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
            evaluate(q.tiers(), &[0], &Amounts::tokens(1_001), At::mono(0)),
            Verdict::Never { tier: 0 }
        );
        // Other dimensions do not touch a token tier.
        assert_eq!(
            evaluate(q.tiers(), &[u64::MAX], &Amounts::requests(1), At::mono(0)),
            Verdict::Admit
        );
    }

    #[test]
    fn refund_restores_exactly_and_stops_at_full() {
        let q = quota([Tier::tokens(1_000, Duration::from_secs(1))]);
        let mut tats = [0];
        charge(q.tiers(), &mut tats, &Amounts::tokens(600), At::mono(0));
        refund(q.tiers(), &mut tats, &Amounts::tokens(200), At::mono(0));
        assert_eq!(remaining(&q.tiers()[0], tats[0], At::mono(0)).0, 600);
        refund(q.tiers(), &mut tats, &Amounts::tokens(5_000), At::mono(0));
        assert!(is_full(q.tiers(), &tats, At::mono(0)));
    }
}
