//! Quotas: the tiers a key is limited by, validated once when built.

use std::{fmt, sync::Arc, time::Duration};

use tollgate_core::{ConfigError, MicroUsd, duration};

use crate::calendar::{Calendar, MAX_CALENDAR_LIMIT, Period};

/// Most keys one call may name (user, organization, pool, provider, ... with room to spare).
pub(crate) const MAX_TARGETS: usize = 8;

/// What a tier counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// Calls: every request counts 1.
    Requests,
    /// LLM tokens, prompt plus completion: estimated before the call, reconciled after it.
    Tokens,
    /// Money in micro-dollars, priced from a [`PricingTable`](tollgate_core::PricingTable).
    /// A cost tier that denies is a spent budget ([`ErrorKind::BudgetExceeded`](tollgate_core::ErrorKind::BudgetExceeded)).
    Cost,
}

impl Dimension {
    pub(crate) const COUNT: usize = 3;

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn unit(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::Cost => "µ$",
        }
    }
}

/// How much one call draws from each [`Dimension`].
///
/// ```
/// use tollgate_core::MicroUsd;
/// use tollgate_ratelimit::{Amounts, Dimension};
///
/// let call = Amounts::requests(1).with_tokens(1_200).with_cost(MicroUsd(3_000));
/// assert_eq!(call.get(Dimension::Tokens), 1_200);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Amounts([u64; Dimension::COUNT]);

impl Amounts {
    /// Nothing in any dimension.
    pub const ZERO: Self = Self([0; Dimension::COUNT]);

    /// `n` requests and nothing else.
    pub const fn requests(n: u64) -> Self {
        Self([n, 0, 0])
    }

    /// `n` tokens and nothing else.
    pub const fn tokens(n: u64) -> Self {
        Self([0, n, 0])
    }

    /// `cost` and nothing else.
    pub const fn cost(cost: MicroUsd) -> Self {
        Self([0, 0, cost.0])
    }

    /// These amounts with `n` tokens.
    #[must_use]
    pub const fn with_tokens(mut self, n: u64) -> Self {
        self.0[Dimension::Tokens.index()] = n;
        self
    }

    /// These amounts with `cost`.
    #[must_use]
    pub const fn with_cost(mut self, cost: MicroUsd) -> Self {
        self.0[Dimension::Cost.index()] = cost.0;
        self
    }

    /// The amount in one dimension.
    pub const fn get(&self, dimension: Dimension) -> u64 {
        self.0[dimension.index()]
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0.iter().all(|&n| n == 0)
    }

    /// Per dimension, what `self` has beyond `other` (zero where it has less).
    pub(crate) fn saturating_sub(&self, other: &Self) -> Self {
        Self(std::array::from_fn(|i| {
            self.0[i].saturating_sub(other.0[i])
        }))
    }
}

/// One limit: `limit` units of a [`Dimension`] per `period`, of which up to `burst` may be taken at
/// once.
///
/// A tier is a GCRA: one unit every `period / limit` (rounded up to a whole nanosecond), with room
/// for `burst` units ahead of that schedule. `burst` defaults to `limit`, which lets the whole
/// period's allowance go at once after a quiet period; a smaller burst spreads it out. Tiers are
/// checked when collected into a [`Quota`].
///
/// A calendar tier ([`Tier::calendar`]) is a hard cap per calendar period instead: at most
/// `limit` within each day, week or month, refilled only when the next period begins.
///
/// ```
/// use std::time::Duration;
/// use tollgate_ratelimit::Tier;
///
/// let per_minute = Tier::requests(60, Duration::from_secs(60)).with_burst(10);
/// assert_eq!(per_minute.to_string(), "60 requests per 1m (burst 10)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    dimension: Dimension,
    limit: u64,
    period: Duration,
    burst: Option<u64>,
    // Behind a pointer: a rolling tier, the one every call checks, stays small.
    calendar: Option<Arc<Calendar>>,
    // Derived by `Quota::new`: nanoseconds per unit, and the burst as nanoseconds of schedule. A
    // calendar tier counts units instead: one per unit, and its limit.
    interval: u64,
    window: u64,
}

impl Tier {
    /// `limit` requests per `period`.
    pub const fn requests(limit: u64, period: Duration) -> Self {
        Self::new(Dimension::Requests, limit, period)
    }

    /// `limit` tokens per `period`.
    pub const fn tokens(limit: u64, period: Duration) -> Self {
        Self::new(Dimension::Tokens, limit, period)
    }

    /// A spending budget of `limit` per `period`.
    pub const fn cost(limit: MicroUsd, period: Duration) -> Self {
        Self::new(Dimension::Cost, limit.0, period)
    }

    /// A tier of any dimension.
    pub const fn new(dimension: Dimension, limit: u64, period: Duration) -> Self {
        Self {
            dimension,
            limit,
            period,
            burst: None,
            calendar: None,
            interval: 0,
            window: 0,
        }
    }

    /// At most `limit` per period of `calendar`, whatever the concurrency; nothing comes back
    /// until the next period begins, when the whole limit does.
    ///
    /// ```
    /// use tollgate_core::MicroUsd;
    /// use tollgate_ratelimit::{Calendar, Dimension, Period, Tier};
    ///
    /// let monthly = Tier::calendar(Dimension::Cost, MicroUsd::from_dollars(500).0, Calendar::utc(Period::Month));
    /// assert_eq!(monthly.to_string(), "$500.000000 per month (UTC)");
    /// ```
    pub fn calendar(dimension: Dimension, limit: u64, calendar: Calendar) -> Self {
        let period = match calendar.period() {
            Period::Day => Duration::from_secs(86_400),
            Period::Week => Duration::from_secs(7 * 86_400),
            Period::Month => Duration::from_secs(31 * 86_400),
        };
        Self {
            calendar: Some(Arc::new(calendar)),
            ..Self::new(dimension, limit, period)
        }
    }

    /// Whether a key's count in this tier still means the same in `other`, so it carries over
    /// when the key's quota changes: the same tier, or a calendar budget of the same dimension
    /// and calendar (what the period has spent holds whatever the new limit).
    pub(crate) fn carries_to(&self, other: &Self) -> bool {
        self == other
            || (self.dimension == other.dimension
                && self.calendar.is_some()
                && self.calendar == other.calendar)
    }

    /// The calendar of a calendar tier; `None` for a rolling one.
    pub fn calendar_period(&self) -> Option<&Calendar> {
        self.calendar.as_deref()
    }

    /// At most `burst` units at once (default: `limit`).
    #[must_use]
    pub const fn with_burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// What this tier counts.
    pub const fn dimension(&self) -> Dimension {
        self.dimension
    }

    /// Units per period.
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The period; for a calendar tier, its longest (a day, 7 days, 31 days).
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// Units that may be taken at once.
    pub const fn burst(&self) -> u64 {
        match self.burst {
            Some(burst) => burst,
            None => self.limit,
        }
    }

    /// Nanoseconds of schedule one unit costs.
    pub(crate) const fn interval_nanos(&self) -> u64 {
        self.interval
    }

    /// How far ahead of now the schedule may run: `burst` units' worth.
    pub(crate) const fn window_nanos(&self) -> u64 {
        self.window
    }

    /// Nanoseconds of schedule for `amount` units (saturating: a huge amount simply never fits).
    pub(crate) const fn cost_nanos(&self, amount: u64) -> u64 {
        amount.saturating_mul(self.interval)
    }

    fn validate(mut self, path: &str) -> Result<Self, ConfigError> {
        if self.calendar.is_some() {
            return self.validate_calendar(path);
        }
        if self.limit == 0 {
            return Err(ConfigError::new(
                format!("{path}.limit"),
                "must be at least 1; to block a key entirely, give it a tier with limit 1 and a long period, or refuse it before the limiter",
            ));
        }
        if self.period.is_zero() {
            return Err(ConfigError::new(
                format!("{path}.per"),
                "must be longer than zero",
            ));
        }
        let burst = self.burst();
        if burst == 0 {
            return Err(ConfigError::new(
                format!("{path}.burst"),
                "must be at least 1",
            ));
        }
        if burst > self.limit {
            return Err(ConfigError::new(
                format!("{path}.burst"),
                format!(
                    "{burst} is more than the limit ({}): the tier would admit more than its limit within one period",
                    self.limit
                ),
            ));
        }
        let period = self.period.as_nanos();
        let interval = period.div_ceil(u128::from(self.limit));
        if period / u128::from(self.limit) == 0 {
            return Err(ConfigError::new(
                format!("{path}.limit"),
                format!(
                    "{} per {} is more than one unit per nanosecond; use a longer period",
                    self.limit,
                    duration::format(self.period)
                ),
            ));
        }
        let window = interval * u128::from(burst);
        self.interval = u64::try_from(interval).map_err(|_| too_long(path))?;
        self.window = u64::try_from(window).map_err(|_| too_long(path))?;
        Ok(self)
    }
}

impl Tier {
    fn validate_calendar(mut self, path: &str) -> Result<Self, ConfigError> {
        if self.limit == 0 {
            return Err(ConfigError::new(
                format!("{path}.limit"),
                "must be at least 1",
            ));
        }
        if self.limit > MAX_CALENDAR_LIMIT {
            return Err(ConfigError::new(
                format!("{path}.limit"),
                format!("must be at most {MAX_CALENDAR_LIMIT} per period"),
            ));
        }
        if self.burst.is_some_and(|burst| burst != self.limit) {
            return Err(ConfigError::new(
                format!("{path}.burst"),
                "a calendar tier has no burst: its whole limit is there from the period's start",
            ));
        }
        self.burst = None;
        self.interval = 1;
        self.window = self.limit;
        Ok(self)
    }
}

fn too_long(path: &str) -> ConfigError {
    ConfigError::new(
        format!("{path}.per"),
        "is too long (at most about 584 years of schedule)",
    )
}

impl fmt::Display for Tier {
    /// `60 requests per 1m (burst 10)`; costs print in dollars; `$500.000000 per month (UTC)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = match &self.calendar {
            Some(calendar) => calendar.to_string(),
            None => duration::format(self.period),
        };
        match self.dimension {
            Dimension::Cost => write!(f, "{} per {per}", MicroUsd(self.limit))?,
            dimension => write!(f, "{} {} per {per}", self.limit, dimension.unit())?,
        }
        if self.burst() != self.limit {
            match self.dimension {
                Dimension::Cost => write!(f, " (burst {})", MicroUsd(self.burst()))?,
                _ => write!(f, " (burst {})", self.burst())?,
            }
        }
        Ok(())
    }
}

/// The tiers one key is limited by; a call is admitted only when every tier admits it.
///
/// ```
/// use std::time::Duration;
/// use tollgate_ratelimit::{Quota, Tier};
///
/// const MINUTE: Duration = Duration::from_secs(60);
/// const HOUR: Duration = Duration::from_secs(3_600);
/// const DAY: Duration = Duration::from_secs(86_400);
///
/// let provider = Quota::new([
///     Tier::requests(60, MINUTE),
///     Tier::requests(1_000, HOUR),
///     Tier::requests(10_000, DAY),
/// ])
/// .unwrap();
/// assert_eq!(provider.tiers().len(), 3);
///
/// // A longer tier that allows more than the shorter one ever could is a typo, not a limit.
/// let err = Quota::new([Tier::requests(60, MINUTE), Tier::requests(100_000, HOUR)]).unwrap_err();
/// assert_eq!(err.path(), "tiers[1].limit");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    tiers: Arc<[Tier]>,
}

impl Quota {
    /// A quota of one or more tiers.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the tier (`tiers[i]`) when there are no tiers, a limit, period or
    /// burst is zero, a burst exceeds its limit, or two tiers of one dimension contradict each
    /// other: the same period twice, a longer period with a limit no larger than a shorter one's
    /// (the shorter could never deny), or a longer period whose rate is no lower than a shorter
    /// one's (the longer could never deny).
    pub fn new(tiers: impl IntoIterator<Item = Tier>) -> Result<Self, ConfigError> {
        let tiers = tiers
            .into_iter()
            .enumerate()
            .map(|(i, tier)| tier.validate(&format!("tiers[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if tiers.is_empty() {
            return Err(ConfigError::new("tiers", "a quota needs at least one tier"));
        }
        for (j, long) in tiers.iter().enumerate() {
            for (i, short) in tiers.iter().enumerate().take(j) {
                check_pair(i, short, j, long)?;
            }
        }
        Ok(Self {
            tiers: tiers.into(),
        })
    }

    /// A quota of no tier: the default of an open scope with no entry yet, which limits only
    /// keys with a quota of their own, so no call is ever decided by it.
    pub(crate) fn unreached() -> Self {
        Self {
            tiers: Arc::from([]),
        }
    }

    /// The tiers, in the order given.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// Whether any tier counts `dimension`.
    pub fn counts(&self, dimension: Dimension) -> bool {
        self.tiers.iter().any(|tier| tier.dimension == dimension)
    }
}

/// Rejects two tiers of one dimension where one can never deny (almost always a typo).
fn check_pair(i: usize, a: &Tier, j: usize, b: &Tier) -> Result<(), ConfigError> {
    if a.dimension != b.dimension {
        return Ok(());
    }
    match (&a.calendar, &b.calendar) {
        (None, None) => {}
        (Some(first), Some(second)) if first == second => {
            return Err(ConfigError::new(
                format!("tiers[{j}]"),
                format!(
                    "tiers[{i}] already limits {} per {first}; keep one",
                    a.dimension.unit()
                ),
            ));
        }
        // A calendar cap and a rolling rate limit different things: both may hold.
        _ => return Ok(()),
    }
    let (si, short, li, long) = if a.period <= b.period {
        (i, a, j, b)
    } else {
        (j, b, i, a)
    };
    if short.period == long.period {
        return Err(ConfigError::new(
            format!("tiers[{j}].per"),
            format!(
                "tiers[{i}] already limits {} per {}; merge them into one tier",
                short.dimension.unit(),
                duration::format(short.period)
            ),
        ));
    }
    if long.limit <= short.limit {
        return Err(ConfigError::new(
            format!("tiers[{li}].limit"),
            format!(
                "{long} allows no more than tiers[{si}] ({short}) over a longer period, so tiers[{si}] could never deny"
            ),
        ));
    }
    // Rates compared without division: long.limit / long.period >= short.limit / short.period.
    if u128::from(long.limit) * short.period.as_nanos()
        >= u128::from(short.limit) * long.period.as_nanos()
    {
        return Err(ConfigError::new(
            format!("tiers[{li}].limit"),
            format!(
                "{long} is no slower than tiers[{si}] ({short}), so it could never deny; lower it or drop it"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3_600);

    fn err(tiers: impl IntoIterator<Item = Tier>) -> ConfigError {
        Quota::new(tiers).unwrap_err()
    }

    #[test]
    fn zero_values_name_the_field() {
        assert_eq!(err([Tier::requests(0, MINUTE)]).path(), "tiers[0].limit");
        assert_eq!(
            err([Tier::requests(1, Duration::ZERO)]).path(),
            "tiers[0].per"
        );
        assert_eq!(
            err([Tier::requests(5, MINUTE).with_burst(0)]).path(),
            "tiers[0].burst"
        );
        assert_eq!(err([]).path(), "tiers");
    }

    #[test]
    fn burst_above_limit_is_refused() {
        let e = err([Tier::requests(5, MINUTE).with_burst(6)]);
        assert_eq!(e.path(), "tiers[0].burst");
        assert!(e.reason().contains("more than the limit"), "{e}");
    }

    #[test]
    fn contradicting_tiers_are_refused() {
        assert_eq!(
            err([Tier::requests(10, MINUTE), Tier::requests(20, MINUTE)]).path(),
            "tiers[1].per"
        );
        // A longer tier no larger than a shorter one makes the shorter one dead.
        assert_eq!(
            err([Tier::requests(100, HOUR), Tier::requests(100, MINUTE)]).path(),
            "tiers[0].limit"
        );
        // Different dimensions never conflict.
        Quota::new([Tier::requests(10, MINUTE), Tier::tokens(5, HOUR)]).unwrap();
    }

    #[test]
    fn interval_rounds_up_and_window_is_whole_units() {
        let q = Quota::new([Tier::requests(7, Duration::from_secs(1)).with_burst(2)]).unwrap();
        let tier = q.tiers()[0].clone();
        assert_eq!(tier.interval_nanos(), 142_857_143);
        assert_eq!(tier.window_nanos(), 2 * 142_857_143);
    }

    #[test]
    fn more_than_one_unit_per_nanosecond_is_refused() {
        let e = err([Tier::tokens(2_000_000_000, Duration::from_secs(1))]);
        assert_eq!(e.path(), "tiers[0].limit");
    }

    #[test]
    fn display_is_readable() {
        let t = Tier::cost(MicroUsd::from_dollars(5), Duration::from_secs(86_400));
        assert_eq!(t.to_string(), "$5.000000 per 1d");
        assert_eq!(
            Tier::tokens(100_000, HOUR).to_string(),
            "100000 tokens per 1h"
        );
    }
}
