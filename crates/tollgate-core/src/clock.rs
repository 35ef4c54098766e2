//! Time as layers read it: tokio's clock by default, a manual one for code that runs without tokio.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A monotonic clock that reads nanoseconds since its own origin.
///
/// Layers that keep timestamps (the rate limiter's GCRA state, for one) read time through a
/// `Clock` so it can be faked. Three are provided:
///
/// - [`QuantaClock`], the default where a layer reads time on every call: the CPU's time-stamp
///   counter through `quanta`, a few nanoseconds a read where `std::time::Instant::now` costs 20–30.
/// - [`TokioClock`] follows tokio's clock, so tests on paused time
///   (`#[tokio::test(start_paused = true)]`) control it with `tokio::time::advance`.
/// - [`ManualClock`] moves only when told to, for code and benchmarks that run without a runtime.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Nanoseconds since this clock's origin; never decreases.
    fn now_nanos(&self) -> u64;
}

/// A shared clock is a clock: one `Arc` handed to every layer that reads time keeps them on the
/// same time.
impl Clock for Arc<dyn Clock> {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
}

/// Wall-clock milliseconds, read as a start time plus a monotonic [`Clock`]'s elapsed time, so
/// that stored entries carry real expiry times (which survive a restart) and tests on paused time
/// can still move them.
#[derive(Clone)]
pub struct WallClock {
    epoch_ms: u64,
    clock: Arc<dyn Clock>,
}

impl WallClock {
    /// The system time, advanced by the TSC clock.
    pub fn system() -> Self {
        Self::new(SystemTime::now(), QuantaClock::new())
    }

    /// `epoch` now, advancing as `clock` does.
    pub fn new(epoch: SystemTime, clock: impl Clock) -> Self {
        let epoch_ms = epoch
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            epoch_ms,
            clock: Arc::new(clock),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.epoch_ms + self.clock.now_nanos() / 1_000_000
    }
}

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WallClock")
            .field("now_ms", &self.now_ms())
            .finish()
    }
}

/// The machine's fastest monotonic clock (the time-stamp counter where it is reliable, calibrated
/// once per process by `quanta`), counted from when this value was created.
#[derive(Debug, Clone)]
pub struct QuantaClock {
    clock: quanta::Clock,
    origin: u64,
}

impl QuantaClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        Self { clock, origin }
    }
}

impl Default for QuantaClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for QuantaClock {
    fn now_nanos(&self) -> u64 {
        self.clock.delta_as_nanos(self.origin, self.clock.raw())
    }
}

/// tokio's clock (`tokio::time::Instant`), counted from when this value was created.
///
/// Outside a runtime it reads the system's monotonic clock; inside a runtime with paused time it
/// reads the paused clock.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_nanos(&self) -> u64 {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when [`advance`](ManualClock::advance) is called; clones share one time.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// shared.advance(Duration::from_millis(1_500));
/// assert_eq!(clock.now_nanos(), 1_500_000_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::Relaxed);
    }

    /// The time since the origin, as a `Duration`.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quanta_clock_never_goes_back() {
        let clock = QuantaClock::new();
        let mut last = clock.now_nanos();
        for _ in 0..10_000 {
            let now = clock.now_nanos();
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        assert_eq!(clock.now_nanos(), 0);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(clock.now_nanos(), 3_000_000_000);
    }
}
