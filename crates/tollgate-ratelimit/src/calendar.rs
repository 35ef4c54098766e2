//! Calendar periods: a budget's day, week or month, in UTC or a named time zone.
//!
//! A rolling tier (GCRA) refills continuously: "$100 per 30 days" lets $100 go at once and then
//! about $3.33 more each day, so up to about $200 can be spent within one 30-day span. A calendar
//! tier is what finance means instead: at most its limit within each calendar period, with
//! nothing refilled until the period ends, when it starts again from zero.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering, fence},
    time::SystemTime,
};

use jiff::{Timestamp, civil::Date, tz::TimeZone};
use serde::{Deserialize, Serialize};
use tollgate_core::ConfigError;

/// The most a calendar tier may hold per period: 2^44 − 1 units (for a budget, micro-dollars:
/// about $17.6 million).
pub(crate) const MAX_CALENDAR_LIMIT: u64 = (1 << 44) - 1;

const NANOS_PER_DAY: i128 = 86_400 * 1_000_000_000;

/// How long a calendar period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// From midnight to midnight.
    Day,
    /// From Monday's midnight to the next Monday's (ISO 8601 weeks).
    Week,
    /// From the first of the month's midnight to the next month's.
    Month,
}

impl Period {
    /// `day`, `week` or `month`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`Period`] in a time zone: where each period starts and ends.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tollgate_ratelimit::{Calendar, Period};
///
/// let month = Calendar::utc(Period::Month);
/// // 2026-12-05T12:00:00Z is in December, which ends at 2027-01-01T00:00:00Z.
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_472_000);
/// let ends = month.ends_after(now);
/// assert_eq!(ends, SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_600));
///
/// let paris = Calendar::in_zone(Period::Day, "Europe/Paris").unwrap();
/// assert_eq!(paris.to_string(), "day (Europe/Paris)");
/// assert!(Calendar::in_zone(Period::Day, "Mars/Olympus").is_err());
/// ```
pub struct Calendar {
    period: Period,
    zone: TimeZone,
    name: Option<std::sync::Arc<str>>,
    /// The period last worked out: a call inside it reads it instead of converting its time.
    last: LastSpan,
}

impl Clone for Calendar {
    fn clone(&self) -> Self {
        Self {
            period: self.period,
            zone: self.zone.clone(),
            name: self.name.clone(),
            last: LastSpan::default(),
        }
    }
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Self) -> bool {
        self.period == other.period && self.zone == other.zone && self.name == other.name
    }
}

impl Eq for Calendar {}

impl fmt::Debug for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Calendar")
            .field("period", &self.period)
            .field("zone", &self.zone_name())
            .finish()
    }
}

/// The last period a calendar worked out, read without a lock: a sequence lock over its start,
/// end and index (the version is odd while a writer is between its stores, and a reader that
/// sees it move tries again the slow way).
#[derive(Default)]
struct LastSpan {
    version: AtomicU64,
    starts: AtomicU64,
    ends: AtomicU64,
    index: AtomicU64,
}

impl LastSpan {
    fn get(&self, wall: u64) -> Option<Span> {
        let before = self.version.load(Ordering::Acquire);
        if before == 0 || before & 1 == 1 {
            return None;
        }
        let starts = self.starts.load(Ordering::Relaxed);
        let ends = self.ends.load(Ordering::Relaxed);
        let index = self.index.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if self.version.load(Ordering::Relaxed) != before {
            return None;
        }
        (starts <= wall && wall < ends).then_some(Span { index, ends })
    }

    fn put(&self, starts: u64, span: Span) {
        let version = self.version.load(Ordering::Relaxed);
        // Another writer is at it: its answer will do as well.
        if version & 1 == 1
            || self
                .version
                .compare_exchange(version, version + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        fence(Ordering::Release);
        self.starts.store(starts, Ordering::Relaxed);
        self.ends.store(span.ends, Ordering::Relaxed);
        self.index.store(span.index, Ordering::Relaxed);
        self.version.store(version + 2, Ordering::Release);
    }
}

/// One period of a calendar: which it is, and where it starts and ends, in nanoseconds since the
/// Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// Counts periods since 1970 (days, weeks or months): the same for every instant inside.
    pub(crate) index: u64,
    pub(crate) ends: u64,
}

impl Calendar {
    /// `period` in UTC.
    pub fn utc(period: Period) -> Self {
        Self {
            period,
            zone: TimeZone::UTC,
            name: None,
            last: LastSpan::default(),
        }
    }

    /// `period` in the IANA time zone `name` (`Europe/Paris`, `America/New_York`), from the time
    /// zone database built into the binary.
    ///
    /// # Errors
    ///
    /// When no time zone has that name.
    pub fn in_zone(period: Period, name: &str) -> Result<Self, ConfigError> {
        if name.eq_ignore_ascii_case("utc") {
            return Ok(Self::utc(period));
        }
        let zone = TimeZone::get(name).map_err(|_| {
            ConfigError::new(
                "",
                format!("no time zone named {name:?}; give an IANA name such as \"Europe/Paris\", or UTC"),
            )
        })?;
        Ok(Self {
            period,
            zone,
            name: Some(name.into()),
            last: LastSpan::default(),
        })
    }

    /// How long each period is.
    pub fn period(&self) -> Period {
        self.period
    }

    /// The time zone's name: `UTC` or the IANA name given.
    pub fn zone_name(&self) -> &str {
        self.name.as_deref().unwrap_or("UTC")
    }

    /// When the period `at` falls in ends, and the next begins.
    pub fn ends_after(&self, at: SystemTime) -> SystemTime {
        let nanos = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        instant(self.span(nanos).ends)
    }

    /// When the period `at` falls in began.
    pub fn starts_at(&self, at: SystemTime) -> SystemTime {
        let nanos = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        instant(self.work_out(nanos).0)
    }

    /// The period the instant `wall` (nanoseconds since the Unix epoch) falls in.
    pub(crate) fn span(&self, wall: u64) -> Span {
        if let Some(span) = self.last.get(wall) {
            return span;
        }
        let (starts, span) = self.work_out(wall);
        self.last.put(starts, span);
        span
    }

    /// The period `wall` falls in, from the time zone's rules: where it starts, and its span.
    fn work_out(&self, wall: u64) -> (u64, Span) {
        let at = Timestamp::from_nanosecond(i128::from(wall)).unwrap_or(Timestamp::MAX);
        let today = self.zone.to_datetime(at).date();
        let (first, next) = match self.period {
            Period::Day => (today, today.tomorrow()),
            Period::Week => {
                let monday = today
                    .checked_sub(
                        jiff::Span::new().days(i64::from(today.weekday().to_monday_zero_offset())),
                    )
                    .unwrap_or(today);
                (monday, monday.checked_add(jiff::Span::new().days(7)))
            }
            Period::Month => {
                let first = today.first_of_month();
                (first, first.last_of_month().tomorrow())
            }
        };
        let index = match self.period {
            Period::Day => days_since_epoch(first),
            // 1970-01-01 was a Thursday: the Monday before it is day −3.
            Period::Week => (days_since_epoch(first) + 3) / 7,
            Period::Month => (i64::from(first.year()) - 1970) * 12 + i64::from(first.month()) - 1,
        };
        // A midnight that a daylight-saving change skips begins when the clocks resume.
        let midnight = |date: Date| {
            self.zone
                .to_ambiguous_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
                .compatible()
                .ok()
                .and_then(|at| u64::try_from(at.as_nanosecond()).ok())
        };
        let ends = next.ok().and_then(midnight).unwrap_or(u64::MAX);
        // The period holds `wall`, whatever its midnight's rules said.
        let starts = midnight(first).unwrap_or(0).min(wall);
        let span = Span {
            index: u64::try_from(index).unwrap_or(0),
            ends,
        };
        (starts, span)
    }
}

/// `nanos` since the Unix epoch, as a `SystemTime`.
pub(crate) fn instant(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos)
}

fn days_since_epoch(date: Date) -> i64 {
    let midnight = TimeZone::UTC
        .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .map_or(0, Timestamp::as_nanosecond);
    i64::try_from(midnight.div_euclid(NANOS_PER_DAY)).unwrap_or(0)
}

impl fmt::Display for Calendar {
    /// `month (UTC)`, `day (Europe/Paris)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.period, self.zone_name())
    }
}

/// A calendar tier's state in one `u64`, as the in-process store keeps every tier's: the period's
/// index above, what it has spent below. A state from another period than now's has spent nothing
/// now.
pub(crate) mod spent {
    const SHIFT: u32 = 44;
    const MASK: u64 = (1 << SHIFT) - 1;

    /// What the period `index` has spent, read from `state`.
    pub(crate) fn in_period(state: u64, index: u64) -> u64 {
        if state >> SHIFT == index & (u64::MAX >> SHIFT) {
            state & MASK
        } else {
            0
        }
    }

    /// The state of period `index` having spent `amount` (held at the most a state can say).
    pub(crate) fn state(index: u64, amount: u64) -> u64 {
        ((index & (u64::MAX >> SHIFT)) << SHIFT) | amount.min(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(text: &str) -> u64 {
        let at: Timestamp = text.parse().unwrap();
        u64::try_from(at.as_nanosecond()).unwrap()
    }

    #[test]
    fn each_period_ends_at_the_next_ones_start() {
        let at = wall("2026-12-31T23:59:59.999999999Z");
        let month = Calendar::utc(Period::Month).span(at);
        assert_eq!(month.ends, wall("2027-01-01T00:00:00Z"));
        assert_eq!(month.index, (2026 - 1970) * 12 + 11);
        let next = Calendar::utc(Period::Month).span(month.ends);
        assert_eq!(next.index, month.index + 1);
        assert_eq!(next.ends, wall("2027-02-01T00:00:00Z"));

        let day = Calendar::utc(Period::Day).span(wall("1970-01-02T05:00:00Z"));
        assert_eq!((day.index, day.ends), (1, wall("1970-01-03T00:00:00Z")));

        // 2026-12-05 is a Saturday: its week began on Monday 2026-11-30.
        let week = Calendar::utc(Period::Week).span(wall("2026-12-05T12:00:00Z"));
        assert_eq!(week.ends, wall("2026-12-07T00:00:00Z"));
        let monday = Calendar::utc(Period::Week).span(wall("2026-12-07T00:00:00Z"));
        assert_eq!(monday.index, week.index + 1);
        let sunday = Calendar::utc(Period::Week).span(wall("2026-12-06T23:59:59Z"));
        assert_eq!(sunday.index, week.index);
    }

    #[test]
    fn a_named_zone_moves_the_boundary() {
        let paris = Calendar::in_zone(Period::Month, "Europe/Paris").unwrap();
        // 23:30 UTC on Dec 31 is already January in Paris.
        let new_year = paris.span(wall("2026-12-31T23:30:00Z"));
        assert_eq!(new_year.ends, wall("2027-01-31T23:00:00Z"));
        let before = paris.span(wall("2026-12-31T22:59:59Z"));
        assert_eq!(before.ends, wall("2026-12-31T23:00:00Z"));
        assert_eq!(new_year.index, before.index + 1);
        // A day across a daylight-saving change is 23 hours long.
        let spring = Calendar::in_zone(Period::Day, "Europe/Paris")
            .unwrap()
            .span(wall("2027-03-28T12:00:00Z"));
        assert_eq!(spring.ends, wall("2027-03-28T22:00:00Z"));
    }

    #[test]
    fn the_period_read_again_is_the_one_worked_out() {
        let paris = Calendar::in_zone(Period::Week, "Europe/Paris").unwrap();
        let start = wall("2026-12-05T12:00:00Z");
        // Every six hours for six weeks, across weeks and a clone's fresh memory.
        for hours in (0..6 * 7 * 24).step_by(6) {
            let at = start + hours * 3_600_000_000_000;
            assert_eq!(paris.span(at), paris.work_out(at).1, "{hours}");
            assert_eq!(paris.clone().span(at), paris.span(at));
        }
        // Going back in time (another limiter's clock) is answered the slow way, rightly.
        assert_eq!(paris.span(start), paris.work_out(start).1);
    }

    #[test]
    fn state_keeps_the_period_apart_from_its_spend() {
        let s = spent::state(684, 5_000_000);
        assert_eq!(spent::in_period(s, 684), 5_000_000);
        assert_eq!(spent::in_period(s, 685), 0);
        assert_eq!(spent::in_period(0, 684), 0);
        assert_eq!(
            spent::in_period(spent::state(3, u64::MAX), 3),
            MAX_CALENDAR_LIMIT
        );
    }
}
