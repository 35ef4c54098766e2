//! Health reports in the `pass | warn | fail` style of the health-check response format draft
//! (`application/health+json`), with liveness and readiness views.

use std::{collections::BTreeMap, time::SystemTime};

use serde::{Serialize, Serializer, ser::SerializeMap};

use crate::status::Status;

/// One check's state in a report.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CheckReport {
    /// The check's status after its thresholds.
    pub status: Status,
    /// Whether its failure fails the whole report.
    pub critical: bool,
    /// The last run's message.
    pub output: String,
    /// How long the last run took, in milliseconds.
    pub observed_ms: f64,
    /// Runs so far.
    pub runs: u64,
    /// Failed runs in a row, up to the last.
    pub consecutive_failures: u32,
    /// When the last run finished (`None` before the first).
    pub time: Option<SystemTime>,
    /// When a run last passed.
    pub last_success: Option<SystemTime>,
    /// When the status last changed (or the registry was built).
    pub last_change: SystemTime,
}

/// Every check's state and the overall status.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HealthReport {
    /// Unhealthy if a critical check is; degraded if any check is degraded or a non-critical one
    /// is unhealthy; healthy otherwise.
    pub status: Status,
    /// By name.
    pub checks: BTreeMap<String, CheckReport>,
}

/// A yes/no view of a report, for a load balancer or an orchestrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Probe {
    /// `pass` or `fail`.
    pub status: Status,
    /// The checks that make it fail.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
}

impl Probe {
    /// Whether the probe passes.
    pub fn is_ready(&self) -> bool {
        self.status != Status::Unhealthy
    }

    /// The HTTP status to answer with: 200, or 503 when it fails.
    pub fn http_status(&self) -> u16 {
        if self.is_ready() { 200 } else { 503 }
    }
}

impl HealthReport {
    /// The HTTP status to answer with: 200 when healthy or degraded, 503 when unhealthy.
    pub fn http_status(&self) -> u16 {
        if self.status == Status::Unhealthy {
            503
        } else {
            200
        }
    }

    /// Liveness: the process is up and answering, whatever its dependencies say. Restarting a
    /// process because its provider is down would not bring the provider back.
    pub fn liveness(&self) -> Probe {
        Probe {
            status: Status::Healthy,
            failing: Vec::new(),
        }
    }

    /// Readiness: fails while a critical check is unhealthy, so traffic goes elsewhere.
    pub fn readiness(&self) -> Probe {
        let failing: Vec<String> = self
            .checks
            .iter()
            .filter(|(_, c)| c.critical && c.status == Status::Unhealthy)
            .map(|(name, _)| name.clone())
            .collect();
        Probe {
            status: if failing.is_empty() {
                Status::Healthy
            } else {
                Status::Unhealthy
            },
            failing,
        }
    }
}

struct Rfc3339(SystemTime);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&rfc3339(self.0))
    }
}

/// `2026-11-23T15:04:05.123Z`, from the days-since-epoch civil calendar conversion
/// (Howard Hinnant's `civil_from_days`), so no date crate is needed.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

impl Serialize for CheckReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("status", &self.status)?;
        map.serialize_entry("critical", &self.critical)?;
        map.serialize_entry("output", &self.output)?;
        map.serialize_entry("observedValue", &((self.observed_ms * 1e3).round() / 1e3))?;
        map.serialize_entry("observedUnit", "ms")?;
        map.serialize_entry("runs", &self.runs)?;
        map.serialize_entry("consecutiveFailures", &self.consecutive_failures)?;
        if let Some(time) = self.time {
            map.serialize_entry("time", &Rfc3339(time))?;
        }
        if let Some(time) = self.last_success {
            map.serialize_entry("lastSuccess", &Rfc3339(time))?;
        }
        map.serialize_entry("lastChange", &Rfc3339(self.last_change))?;
        map.end()
    }
}

impl Serialize for HealthReport {
    /// `{"status": "warn", "checks": {"openai": [{"status": "pass", ...}], ...}}`: each check is a
    /// one-element list, as the draft format keys measurements.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("status", &self.status)?;
        let checks: BTreeMap<&str, [&CheckReport; 1]> = self
            .checks
            .iter()
            .map(|(name, check)| (name.as_str(), [check]))
            .collect();
        map.serialize_entry("checks", &checks)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::rfc3339;

    #[test]
    fn formats_dates_across_leap_years() {
        let at = |secs: u64, millis: u64| {
            rfc3339(
                std::time::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis),
            )
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_795_446_245, 123), "2026-11-23T15:04:05.123Z");
    }
}
