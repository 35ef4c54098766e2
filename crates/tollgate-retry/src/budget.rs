//! A retry budget: retries as a fraction of recent requests.
//!
//! A fixed retry count multiplies load during an outage: with 3 retries, every failing request
//! becomes 4 upstream calls exactly when the upstream can least afford them. A budget instead lets
//! retries add at most `ratio` of the recent request rate (plus a small reserve so a quiet service
//! can still retry): each request deposits `ratio` of a retry, each retry withdraws a whole one, and
//! deposits and withdrawals older than the window are forgotten.

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tollgate_core::{ConfigError, duration};

const SLOTS: u64 = 10;
// At least this many deposits between two clock reads (at most twice as many).
const CLOCK_EVERY: u64 = 32;
// A retry costs this many units; a request deposits `ratio × UNIT` units.
const UNIT: i64 = 1_000;

/// Configuration of a [`RetryBudget`]. Defaults (as tower's `TpsBudget`): a 10 s window, a reserve
/// of 10 retries per second, and retries up to 20 % of requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// How long a deposit or withdrawal counts.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Retries per second always allowed, however few requests there were.
    pub min_per_second: u32,
    /// Retries allowed per request, e.g. `0.2` for 20 %.
    pub ratio: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            min_per_second: 10,
            ratio: 0.2,
        }
    }
}

impl BudgetConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.window < Duration::from_millis(SLOTS) {
            return Err(ConfigError::new("window", "must be at least 10ms"));
        }
        if !self.ratio.is_finite() || !(0.0..=10.0).contains(&self.ratio) {
            return Err(ConfigError::new(
                "ratio",
                format!("must be between 0.0 and 10.0, got {}", self.ratio),
            ));
        }
        Ok(())
    }
}

/// A retry budget shared by every clone (and every clone of the stack it sits in).
///
/// Lock-free on the request path: a deposit is one atomic add, and reads the clock only once in
/// 32 to 64 deposits (a clock read costs about as much as the rest of the retry layer's success
/// path).
/// Deposits in between are counted in the tenth of the window current at the last clock read, so
/// at low traffic a deposit may leave the window early — never late: the budget can only err
/// toward fewer retries. Withdrawals always read the clock. The window advances under a short lock
/// at most once per tenth of the window. Concurrent withdrawals may overdraw by at most one retry
/// per racing caller.
#[derive(Clone)]
pub struct RetryBudget {
    shared: Arc<Shared>,
}

struct Shared {
    slots: [AtomicI64; SLOTS as usize],
    generation: AtomicU64,
    rotate: Mutex<()>,
    start: Instant,
    slot_nanos: u64,
    reserve: i64,
    deposit: i64,
    // log2 of CLOCK_EVERY deposits, rounded up.
    clock_shift: u32,
}

impl RetryBudget {
    /// A budget from a configuration.
    ///
    /// # Errors
    ///
    /// When the window is shorter than 10 ms or the ratio is not within `0.0..=10.0`.
    pub fn new(config: BudgetConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let window_secs = config.window.as_secs_f64();
        let deposit = (config.ratio * UNIT as f64).round() as i64;
        Ok(Self {
            shared: Arc::new(Shared {
                slots: Default::default(),
                generation: AtomicU64::new(0),
                rotate: Mutex::new(()),
                start: Instant::now(),
                slot_nanos: (config.window.as_nanos() / u128::from(SLOTS)) as u64,
                reserve: (f64::from(config.min_per_second) * window_secs * UNIT as f64) as i64,
                deposit,
                clock_shift: (deposit.max(1).unsigned_abs() * CLOCK_EVERY)
                    .next_power_of_two()
                    .ilog2(),
            }),
        })
    }

    /// Records a request: it earns `ratio` of a retry.
    pub fn deposit(&self) {
        let shared = &*self.shared;
        if shared.deposit == 0 {
            return;
        }
        let slot = (shared.generation.load(Ordering::Acquire) % SLOTS) as usize;
        let before = shared.slots[slot].fetch_add(shared.deposit, Ordering::Relaxed);
        // The slot's own count says when to look at the clock, so a deposit is a single atomic
        // add: the deposits that carry it across a multiple of 2^clock_shift (one in every 32
        // to 64) read it.
        if (before + shared.deposit) >> shared.clock_shift != before >> shared.clock_shift {
            shared.current_slot();
        }
    }

    /// Takes one retry from the budget; `false` (and nothing taken) when there is not a whole one.
    pub fn withdraw(&self) -> bool {
        let shared = &*self.shared;
        let slot = shared.current_slot();
        if shared.balance() < UNIT {
            return false;
        }
        shared.slots[slot].fetch_sub(UNIT, Ordering::Relaxed);
        true
    }

    /// Whole retries available now.
    pub fn available(&self) -> u64 {
        self.shared.current_slot();
        u64::try_from(self.shared.balance() / UNIT).unwrap_or(0)
    }
}

impl Shared {
    fn balance(&self) -> i64 {
        self.reserve
            + self
                .slots
                .iter()
                .map(|slot| slot.load(Ordering::Relaxed))
                .sum::<i64>()
    }

    fn current_slot(&self) -> usize {
        let generation = (Instant::now()
            .saturating_duration_since(self.start)
            .as_nanos()
            / u128::from(self.slot_nanos)) as u64;
        if generation > self.generation.load(Ordering::Acquire) {
            let _guard = self
                .rotate
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let seen = self.generation.load(Ordering::Acquire);
            // Clear the slots that fell out of the window since the last rotation.
            for stale in (seen + 1..=generation).rev().take(SLOTS as usize) {
                self.slots[(stale % SLOTS) as usize].store(0, Ordering::Relaxed);
            }
            self.generation.fetch_max(generation, Ordering::Release);
        }
        (generation % SLOTS) as usize
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("available", &self.available())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(min_per_second: u32, ratio: f64) -> RetryBudget {
        RetryBudget::new(BudgetConfig {
            window: Duration::from_secs(10),
            min_per_second,
            ratio,
        })
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_earn_retries_and_withdrawals_spend_them() {
        let b = budget(0, 0.5);
        assert!(!b.withdraw());
        b.deposit();
        assert!(!b.withdraw(), "half a retry is not a retry");
        b.deposit();
        assert!(b.withdraw());
        assert!(!b.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_allows_retries_without_traffic_and_refills_with_the_window() {
        let b = budget(1, 0.0);
        assert_eq!(b.available(), 10);
        for _ in 0..10 {
            assert!(b.withdraw());
        }
        assert!(!b.withdraw());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            b.available(),
            10,
            "withdrawals older than the window are forgotten"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_deposits_expire() {
        let b = budget(0, 1.0);
        b.deposit();
        b.deposit();
        assert_eq!(b.available(), 2);
        tokio::time::advance(Duration::from_secs(5)).await;
        b.available(); // any clock read advances the window
        b.deposit();
        assert_eq!(b.available(), 3);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.available(), 1, "only the deposit from 6 s ago is left");
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_between_clock_reads_expire_early_never_late() {
        let b = budget(0, 1.0);
        b.deposit(); // reads the clock: window slot 0
        tokio::time::advance(Duration::from_secs(5)).await;
        b.deposit(); // no clock read: counted in slot 0 although it is 5 s later
        tokio::time::advance(Duration::from_secs(6)).await;
        // Both are gone at 11 s: the second left 4 s early, in the budget's safe direction.
        assert_eq!(b.available(), 0);
    }

    #[test]
    fn nonsense_is_refused() {
        let err = RetryBudget::new(BudgetConfig {
            ratio: -0.1,
            ..BudgetConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.path(), "ratio");
        let err = RetryBudget::new(BudgetConfig {
            window: Duration::ZERO,
            ..BudgetConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.path(), "window");
    }
}
