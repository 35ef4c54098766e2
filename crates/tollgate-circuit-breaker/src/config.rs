//! `CircuitBreakerConfig`: every knob, with resilience4j's defaults, validated once.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tollgate_core::{ConfigError, duration};

use crate::window::WindowKind;

/// The sliding window a breaker judges over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SlidingWindow {
    /// The last N calls (`{ count: 100 }`).
    Count(u32),
    /// The calls of the last span of time (`{ time: "60s" }`).
    Time(#[serde(with = "duration")] Duration),
}

/// How a breaker decides; unknown fields are errors.
///
/// Defaults follow resilience4j: a count window of 100 calls judged once 100 calls are in it,
/// opening at a 50 % failure rate or a 100 % rate of calls slower than 60 s, waiting 60 s in open,
/// then letting 10 probes through.
///
/// ```
/// use tollgate_circuit_breaker::CircuitBreakerConfig;
///
/// let config: CircuitBreakerConfig = serde_json::from_str(r#"{
///     "window": { "time": "30s" },
///     "failure_rate_threshold": 25,
///     "minimum_calls": 20,
///     "wait_in_open": "10s",
///     "wait_multiplier": 2.0,
///     "max_wait_in_open": "5m"
/// }"#).unwrap();
/// config.validate().unwrap();
///
/// let bad: CircuitBreakerConfig = serde_json::from_str(r#"{ "failure_rate_threshold": 0 }"#).unwrap();
/// assert_eq!(bad.validate().unwrap_err().path(), "failure_rate_threshold");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// The window outcomes are counted over (default: the last 100 calls).
    pub window: SlidingWindow,
    /// Open when at least this percent of the window's calls failed (default 50; judged to a
    /// hundredth of a percent).
    pub failure_rate_threshold: f64,
    /// A call slower than this is slow, whether it succeeded or not (default 60 s).
    #[serde(with = "duration")]
    pub slow_call_duration: Duration,
    /// Open when at least this percent of the window's calls were slow (default 100).
    pub slow_call_rate_threshold: f64,
    /// Judge only once the window holds this many calls (default 100; a count window never needs
    /// more than its size).
    pub minimum_calls: u32,
    /// How long to stay open before probing (default 60 s).
    #[serde(with = "duration")]
    pub wait_in_open: Duration,
    /// Each open in a row waits this many times longer than the last (default 1: constant).
    pub wait_multiplier: f64,
    /// The longest wait in open, however many opens in a row (default 10 min).
    #[serde(with = "duration")]
    pub max_wait_in_open: Duration,
    /// Probe calls let through in half-open; the rest fail fast (default 10).
    pub permitted_calls_in_half_open: u32,
    /// Count 429s as failures (default false: see [`DefaultClassifier`](crate::DefaultClassifier)).
    pub rate_limited_is_failure: bool,
    /// At most this many keys have a breaker at once (default 1,000).
    pub max_keys: usize,
    /// A closed breaker unused this long may be forgotten to make room for a new key (default 1 h).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            window: SlidingWindow::Count(100),
            failure_rate_threshold: 50.0,
            slow_call_duration: Duration::from_secs(60),
            slow_call_rate_threshold: 100.0,
            minimum_calls: 100,
            wait_in_open: Duration::from_secs(60),
            wait_multiplier: 1.0,
            max_wait_in_open: Duration::from_secs(600),
            permitted_calls_in_half_open: 10,
            rate_limited_is_failure: false,
            max_keys: 1_000,
            idle_timeout: Duration::from_secs(3_600),
        }
    }
}

/// The validated decision rules a breaker runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) window: WindowKind,
    /// Thresholds in basis points: compared with integer arithmetic on every call.
    pub(crate) failure_bp: u64,
    pub(crate) slow_call_nanos: u64,
    pub(crate) slow_call_bp: u64,
    pub(crate) minimum_calls: u64,
    pub(crate) wait: Duration,
    pub(crate) wait_multiplier: f64,
    pub(crate) max_wait: Duration,
    pub(crate) half_open_calls: u32,
}

impl Settings {
    /// The wait after the `opens`-th open in a row.
    pub(crate) fn wait_after(&self, opens: u32) -> Duration {
        let factor = self.wait_multiplier.powi(opens.saturating_sub(1) as i32);
        let wait = self.wait.as_secs_f64() * factor;
        if wait >= self.max_wait.as_secs_f64() {
            self.max_wait
        } else {
            Duration::from_secs_f64(wait)
        }
    }
}

/// A percentage in hundredths of a percent, the precision thresholds are judged at.
fn basis_points(percent: f64) -> u64 {
    (percent * 100.0).round().max(1.0) as u64
}

fn percent(path: &str, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && value > 0.0 && value <= 100.0 {
        Ok(value)
    } else {
        Err(ConfigError::new(
            path,
            format!("must be a percentage above 0 and at most 100, got {value}"),
        ))
    }
}

fn at_least_one(path: &str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        Err(ConfigError::new(path, "must be at least 1"))
    } else {
        Ok(value)
    }
}

impl CircuitBreakerConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.settings().map(|_| ())
    }

    pub(crate) fn settings(&self) -> Result<Settings, ConfigError> {
        let window = match self.window {
            SlidingWindow::Count(size) => {
                WindowKind::Count(at_least_one("window.count", u64::from(size))? as u32)
            }
            SlidingWindow::Time(span) => {
                if span < Duration::from_secs(1) {
                    return Err(ConfigError::new(
                        "window.time",
                        "must be at least 1s (outcomes are kept in buckets of at least a second)",
                    ));
                }
                WindowKind::Time(span)
            }
        };
        let mut minimum_calls = at_least_one("minimum_calls", u64::from(self.minimum_calls))?;
        if let SlidingWindow::Count(size) = self.window {
            // A window of 10 can never hold 100 calls: judge it when it is full.
            minimum_calls = minimum_calls.min(u64::from(size));
        }
        let failure_rate = percent("failure_rate_threshold", self.failure_rate_threshold)?;
        let slow_call_rate = percent("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        let slow_call_duration =
            tollgate_core::non_zero("slow_call_duration", self.slow_call_duration)?;
        let wait = tollgate_core::non_zero("wait_in_open", self.wait_in_open)?;
        if !(self.wait_multiplier.is_finite() && self.wait_multiplier >= 1.0) {
            return Err(ConfigError::new(
                "wait_multiplier",
                format!(
                    "must be at least 1.0 (1 keeps the wait constant), got {}",
                    self.wait_multiplier
                ),
            ));
        }
        if self.max_wait_in_open < wait {
            return Err(ConfigError::new(
                "max_wait_in_open",
                format!(
                    "{} is shorter than wait_in_open ({})",
                    duration::format(self.max_wait_in_open),
                    duration::format(wait)
                ),
            ));
        }
        let half_open_calls = at_least_one(
            "permitted_calls_in_half_open",
            u64::from(self.permitted_calls_in_half_open),
        )? as u32;
        at_least_one("max_keys", self.max_keys as u64)?;
        tollgate_core::non_zero("idle_timeout", self.idle_timeout)?;
        Ok(Settings {
            window,
            failure_bp: basis_points(failure_rate),
            slow_call_nanos: u64::try_from(slow_call_duration.as_nanos()).unwrap_or(u64::MAX),
            slow_call_bp: basis_points(slow_call_rate),
            minimum_calls,
            wait,
            wait_multiplier: self.wait_multiplier,
            max_wait: self.max_wait_in_open,
            half_open_calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(json: &str) -> String {
        let config: CircuitBreakerConfig = serde_json::from_str(json).expect("parses");
        config.validate().unwrap_err().path().to_owned()
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        assert_eq!(
            path(r#"{ "failure_rate_threshold": 101 }"#),
            "failure_rate_threshold"
        );
        assert_eq!(
            path(r#"{ "slow_call_rate_threshold": -1 }"#),
            "slow_call_rate_threshold"
        );
        assert_eq!(path(r#"{ "window": { "count": 0 } }"#), "window.count");
        assert_eq!(path(r#"{ "window": { "time": "500ms" } }"#), "window.time");
        assert_eq!(path(r#"{ "minimum_calls": 0 }"#), "minimum_calls");
        assert_eq!(path(r#"{ "wait_in_open": "0s" }"#), "wait_in_open");
        assert_eq!(path(r#"{ "wait_multiplier": 0.5 }"#), "wait_multiplier");
        assert_eq!(path(r#"{ "wait_in_open": "20m" }"#), "max_wait_in_open");
        assert_eq!(
            path(r#"{ "permitted_calls_in_half_open": 0 }"#),
            "permitted_calls_in_half_open"
        );
        assert_eq!(path(r#"{ "max_keys": 0 }"#), "max_keys");
    }

    #[test]
    fn unknown_fields_do_not_parse() {
        for json in [
            r#"{ "failure_threshold": 50 }"#,
            r#"{ "window": { "calls": 10 } }"#,
            r#"{ "wait_in_open": 60 }"#,
        ] {
            assert!(
                serde_json::from_str::<CircuitBreakerConfig>(json).is_err(),
                "{json}"
            );
        }
    }

    #[test]
    fn waits_grow_and_stop_at_the_cap() {
        let config = CircuitBreakerConfig {
            wait_in_open: Duration::from_secs(10),
            wait_multiplier: 2.0,
            max_wait_in_open: Duration::from_secs(60),
            ..Default::default()
        };
        let settings = config.settings().unwrap();
        let waits: Vec<u64> = (1..=5).map(|n| settings.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60]);
    }
}
