//! `HealthConfig`: how passive statistics are windowed and judged.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tollgate_core::{ConfigError, ErrorKind, duration};

/// How a [`HealthLayer`](crate::HealthLayer) windows and judges each component; unknown fields are
/// errors.
///
/// A component is **unhealthy** when any unhealthy threshold is reached, **degraded** when any
/// degraded one is, and healthy otherwise; rates and latency are judged once the window holds
/// `minimum_calls`.
///
/// ```
/// use tollgate_health::HealthConfig;
///
/// let config: HealthConfig = serde_json::from_str(r#"{
///     "window_calls": 500,
///     "window_span": "2m",
///     "degraded_p95": "2s",
///     "unhealthy_p95": "10s"
/// }"#).unwrap();
/// config.validate().unwrap();
///
/// let bad: HealthConfig = serde_json::from_str(r#"{ "degraded_error_rate": 60 }"#).unwrap();
/// assert_eq!(bad.validate().unwrap_err().path(), "degraded_error_rate");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// The window holds at most this many recent calls (default 1,000).
    pub window_calls: usize,
    /// ...and only calls this recent (default 5 min; `null` for no time limit).
    #[serde(with = "duration::option")]
    pub window_span: Option<Duration>,
    /// Rates and latency are judged once the window holds this many calls (default 20).
    pub minimum_calls: u32,
    /// Degraded at this error rate, in percent (default 5).
    pub degraded_error_rate: f64,
    /// Unhealthy at this error rate, in percent (default 25).
    pub unhealthy_error_rate: f64,
    /// Degraded after this many failures in a row (default 3).
    pub degraded_consecutive_failures: u32,
    /// Unhealthy after this many failures in a row (default 5).
    pub unhealthy_consecutive_failures: u32,
    /// Degraded when the window's p95 latency reaches this (default: not judged).
    #[serde(with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub degraded_p95: Option<Duration>,
    /// Unhealthy when the window's p95 latency reaches this (default: not judged).
    #[serde(with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub unhealthy_p95: Option<Duration>,
    /// Error kinds that say nothing about the component's health: counted by kind, but not as
    /// failures. Default: the [`Caller`](tollgate_core::Fault::Caller) faults but `auth`
    /// (`invalid_request`, `content_filter`, `context_window`): a refused key is the component's own problem.
    pub ignore: Vec<ErrorKind>,
    /// At most this many components are tracked (default 100).
    pub max_components: usize,
    /// Refuse calls with `Unavailable` while the component is unhealthy (default false). The
    /// status it reads is updated by every call; its latency part every 64 calls.
    pub fail_fast: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            window_calls: 1_000,
            window_span: Some(Duration::from_secs(300)),
            minimum_calls: 20,
            degraded_error_rate: 5.0,
            unhealthy_error_rate: 25.0,
            degraded_consecutive_failures: 3,
            unhealthy_consecutive_failures: 5,
            degraded_p95: None,
            unhealthy_p95: None,
            ignore: vec![
                ErrorKind::InvalidRequest,
                ErrorKind::ContentFilter,
                ErrorKind::ContextWindow,
            ],
            max_components: 100,
            fail_fast: false,
        }
    }
}

impl HealthConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field that is out of range or inconsistent.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window_calls == 0 {
            return Err(ConfigError::new("window_calls", "must be at least 1"));
        }
        if let Some(span) = self.window_span {
            tollgate_core::non_zero("window_span", span)?;
        }
        if self.minimum_calls == 0 {
            return Err(ConfigError::new("minimum_calls", "must be at least 1"));
        }
        for (path, rate) in [
            ("degraded_error_rate", self.degraded_error_rate),
            ("unhealthy_error_rate", self.unhealthy_error_rate),
        ] {
            if !(rate.is_finite() && rate > 0.0 && rate <= 100.0) {
                return Err(ConfigError::new(
                    path,
                    format!("must be a percentage above 0 and at most 100, got {rate}"),
                ));
            }
        }
        if self.degraded_error_rate > self.unhealthy_error_rate {
            return Err(ConfigError::new(
                "degraded_error_rate",
                format!(
                    "{} is above unhealthy_error_rate ({}): degraded must come first",
                    self.degraded_error_rate, self.unhealthy_error_rate
                ),
            ));
        }
        if self.degraded_consecutive_failures == 0 {
            return Err(ConfigError::new(
                "degraded_consecutive_failures",
                "must be at least 1",
            ));
        }
        if self.degraded_consecutive_failures > self.unhealthy_consecutive_failures {
            return Err(ConfigError::new(
                "degraded_consecutive_failures",
                "is above unhealthy_consecutive_failures: degraded must come first",
            ));
        }
        if let (Some(degraded), Some(unhealthy)) = (self.degraded_p95, self.unhealthy_p95)
            && degraded > unhealthy
        {
            return Err(ConfigError::new(
                "degraded_p95",
                "is above unhealthy_p95: degraded must come first",
            ));
        }
        if self.max_components == 0 {
            return Err(ConfigError::new("max_components", "must be at least 1"));
        }
        Ok(())
    }

    pub(crate) fn ignored(&self, kind: ErrorKind) -> bool {
        self.ignore.contains(&kind)
    }

    pub(crate) fn judges_latency(&self) -> bool {
        self.degraded_p95.is_some() || self.unhealthy_p95.is_some()
    }

    pub(crate) fn window_span_nanos(&self) -> Option<u64> {
        self.window_span
            .map(|span| u64::try_from(span.as_nanos()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use tollgate_core::{ErrorKind, Fault};

    #[test]
    fn the_default_ignores_the_caller_faults_but_a_refused_key() {
        let expected: Vec<ErrorKind> = ErrorKind::ALL
            .into_iter()
            .filter(|kind| kind.fault() == Fault::Caller && *kind != ErrorKind::Auth)
            .collect();
        assert_eq!(super::HealthConfig::default().ignore, expected);
    }
}
