//! Sliding windows of call outcomes, with running totals so recording and reading are O(1).

use std::time::Duration;

/// How one finished call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failure: bool,
    pub(crate) slow: bool,
}

/// Calls, failures and slow calls currently in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Totals {
    pub(crate) fn add_sample(&mut self, sample: Sample) {
        self.calls += 1;
        self.failures += u64::from(sample.failure);
        self.slow += u64::from(sample.slow);
    }
}

pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(kind: WindowKind) -> Self {
        match kind {
            WindowKind::Count(size) => Self::Count(CountWindow::new(size)),
            WindowKind::Time(span) => Self::Time(TimeWindow::new(span)),
        }
    }

    pub(crate) fn record(&mut self, sample: Sample, now: u64) {
        match self {
            Self::Count(window) => window.record(sample),
            Self::Time(window) => window.record(sample, now),
        }
    }

    pub(crate) fn totals(&mut self, now: u64) -> Totals {
        match self {
            Self::Count(window) => window.totals,
            Self::Time(window) => window.totals(now),
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            Self::Count(window) => *window = CountWindow::new(window.outcomes.len() as u32),
            Self::Time(window) => window.clear(),
        }
    }
}

/// The kind and size of a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowKind {
    /// The last N calls.
    Count(u32),
    /// The calls of the last span of time, kept in at most 60 buckets (one per second for a
    /// window of up to a minute), so a call's outcome leaves the window at most one bucket late.
    Time(Duration),
}

/// The last N outcomes as a ring of flags.
pub(crate) struct CountWindow {
    outcomes: Box<[u8]>,
    next: usize,
    filled: usize,
    totals: Totals,
}

const FAILURE: u8 = 1;
const SLOW: u8 = 2;

impl CountWindow {
    fn new(size: u32) -> Self {
        Self {
            outcomes: vec![0; size as usize].into_boxed_slice(),
            next: 0,
            filled: 0,
            totals: Totals::default(),
        }
    }

    fn record(&mut self, sample: Sample) {
        if self.filled == self.outcomes.len() {
            let old = self.outcomes[self.next];
            self.totals.calls -= 1;
            self.totals.failures -= u64::from(old & FAILURE != 0);
            self.totals.slow -= u64::from(old & SLOW != 0);
        } else {
            self.filled += 1;
        }
        self.outcomes[self.next] =
            if sample.failure { FAILURE } else { 0 } | if sample.slow { SLOW } else { 0 };
        self.totals.add_sample(sample);
        // A branch, not `%`: a division would cost more than the rest of the call.
        self.next += 1;
        if self.next == self.outcomes.len() {
            self.next = 0;
        }
    }
}

/// Outcomes per time bucket, oldest dropped as time moves on.
///
/// Bucket `e` (time `e × width` to `(e + 1) × width`) lives at index `e % len`. Moving from the
/// newest bucket seen to a later one clears exactly the buckets in between, at most `len` of them,
/// so each call costs O(1) amortized and never more than `len` steps.
pub(crate) struct TimeWindow {
    buckets: Box<[Totals]>,
    width: u64,
    newest: Option<u64>,
    totals: Totals,
}

const MAX_BUCKETS: u64 = 60;

impl TimeWindow {
    fn new(span: Duration) -> Self {
        let span = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        let count = (span / 1_000_000_000).clamp(1, MAX_BUCKETS);
        Self {
            buckets: vec![Totals::default(); count as usize].into_boxed_slice(),
            width: span.div_ceil(count),
            newest: None,
            totals: Totals::default(),
        }
    }

    /// Moves the window to `now` and returns the index of the current bucket. A `now` older than
    /// the newest bucket (a caller that read the clock just before another) counts in the newest.
    fn advance(&mut self, now: u64) -> usize {
        let len = self.buckets.len() as u64;
        let current = now / self.width;
        let steps = match self.newest {
            Some(newest) if current <= newest => return (newest % len) as usize,
            Some(newest) => (current - newest).min(len),
            None => len,
        };
        for epoch in (current + 1).saturating_sub(steps)..=current {
            let old = std::mem::take(&mut self.buckets[(epoch % len) as usize]);
            self.totals.calls -= old.calls;
            self.totals.failures -= old.failures;
            self.totals.slow -= old.slow;
        }
        self.newest = Some(current);
        (current % len) as usize
    }

    fn record(&mut self, sample: Sample, now: u64) {
        let index = self.advance(now);
        self.buckets[index].add_sample(sample);
        self.totals.add_sample(sample);
    }

    fn totals(&mut self, now: u64) -> Totals {
        self.advance(now);
        self.totals
    }

    fn clear(&mut self) {
        self.buckets.fill(Totals::default());
        self.newest = None;
        self.totals = Totals::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Sample = Sample {
        failure: false,
        slow: false,
    };
    const FAIL: Sample = Sample {
        failure: true,
        slow: false,
    };

    #[test]
    fn count_window_keeps_the_last_n() {
        let mut window = Window::new(WindowKind::Count(3));
        for sample in [FAIL, FAIL, OK, OK] {
            window.record(sample, 0);
        }
        assert_eq!(
            window.totals(0),
            Totals {
                calls: 3,
                failures: 1,
                slow: 0
            }
        );
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        const SEC: u64 = 1_000_000_000;
        let mut window = Window::new(WindowKind::Time(Duration::from_secs(10)));
        window.record(FAIL, 0);
        window.record(FAIL, 5 * SEC);
        assert_eq!(window.totals(9 * SEC).failures, 2);
        // The first bucket (0–1 s) leaves the window at 10 s, the second at 15 s.
        assert_eq!(window.totals(10 * SEC).failures, 1);
        window.record(OK, 12 * SEC);
        assert_eq!(window.totals(15 * SEC).calls, 1);
        assert_eq!(window.totals(100 * SEC).calls, 0);
    }
}
