//! [`CallRecord`]: what one call was, as every sink writes it.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use tollgate_core::{ErrorKind, MicroUsd, Usage};

/// One call, from the moment it was in to the end of its answer (a stream's last event): who
/// made it, where it went, how it ended, what it used and cost, and how long it took.
///
/// Prompts and answers are kept only when the log is told to keep bodies, capped in size and
/// redacted before any sink sees them. Names are shared (`Arc<str>`), so a record costs the call
/// little more than the counts it carries.
///
/// ```
/// use tollgate_log::CallRecord;
///
/// let mut record = CallRecord::new("req_1", std::time::UNIX_EPOCH);
/// record.team = Some("search".into());
/// let json = serde_json::to_value(&record).unwrap();
/// assert_eq!(json["request_id"], "req_1");
/// assert_eq!(json["time"], "1970-01-01T00:00:00.000Z");
/// assert_eq!(json["team"], "search");
/// let back: CallRecord = serde_json::from_value(json).unwrap();
/// assert_eq!(back, record);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CallRecord {
    /// The call's id: the caller's `x-request-id`, or one the gateway made.
    pub request_id: Arc<str>,
    /// When the call was in (its body read).
    #[serde(rename = "time", with = "rfc3339")]
    pub at: SystemTime,
    /// The key's id (a configuration key's name, a database key's `key_…` id): the principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Arc<str>>,
    /// The key's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<Arc<str>>,
    /// The key's team: the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<Arc<str>>,
    /// `chat` or `embeddings`.
    pub operation: Cow<'static, str>,
    /// The role the call asked for (after a budget moved it, the role it moved to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Arc<str>>,
    /// The role a low budget moved the call from, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_from: Option<Arc<str>>,
    /// The deployment that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Arc<str>>,
    /// Its provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Arc<str>>,
    /// The model that answered (or, for a call that failed, the model asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Arc<str>>,
    /// Deployments the call moved past before one answered.
    #[serde(default)]
    pub moves: u32,
    /// Whether a second attempt was sent alongside the first (hedging).
    #[serde(default)]
    pub hedged: bool,
    /// Whether the cache answered; `None` where no cache looked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheStatus>,
    /// The HTTP status the caller got (the gateway's); a stream that failed midway keeps its 200
    /// and has an `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How the call failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorKind>,
    /// Whether the call was asked for as a stream.
    #[serde(default)]
    pub stream: bool,
    /// Whether the caller left before the answer's end.
    #[serde(default)]
    pub dropped: bool,
    /// The tokens every attempt the providers billed used, by type.
    #[serde(default)]
    pub usage: Usage,
    /// What those attempts cost; `None` when a model that answered has no price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<MicroUsd>,
    /// From the call being in to the end of its answer.
    #[serde(rename = "latency_ms", with = "millis")]
    pub latency: Duration,
    /// Of that, waiting on providers (every attempt's time to its answer, or to a stream's
    /// start).
    #[serde(default, rename = "upstream_ms", with = "millis")]
    pub upstream: Duration,
    /// For a stream, the time to its first event.
    #[serde(
        default,
        rename = "ttft_ms",
        with = "optional_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub time_to_first_token: Option<Duration>,
    /// tollgate's own time on the call: its answer's start less the time waiting on providers.
    #[serde(default, rename = "overhead_ms", with = "millis")]
    pub overhead: Duration,
    /// The W3C trace id (32 hex digits) of the call's spans, when they are exported: the caller's
    /// own when it sent a `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The caller's `user` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The caller's metadata tags (`metadata` in the body).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The prompt, when bodies are kept: capped and redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The answer, when bodies are kept: capped and redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl CallRecord {
    /// A record of the call `request_id`, in at `at`, with nothing known of it yet.
    pub fn new(request_id: impl Into<Arc<str>>, at: SystemTime) -> Self {
        Self {
            request_id: request_id.into(),
            at,
            key_id: None,
            key_name: None,
            team: None,
            operation: Cow::Borrowed("chat"),
            role: None,
            degraded_from: None,
            deployment: None,
            provider: None,
            model: None,
            moves: 0,
            hedged: false,
            cache: None,
            status: None,
            error: None,
            stream: false,
            dropped: false,
            usage: Usage::default(),
            cost: None,
            latency: Duration::ZERO,
            upstream: Duration::ZERO,
            time_to_first_token: None,
            overhead: Duration::ZERO,
            trace_id: None,
            user: None,
            tags: BTreeMap::new(),
            prompt: None,
            answer: None,
        }
    }

    /// Whether the call was answered: no error, and a status (if any) under 400.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_none_or(|status| status < 400)
    }
}

/// Whether the cache answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CacheStatus {
    /// The cache answered.
    Hit,
    /// The cache looked and a provider answered.
    Miss,
}

impl CacheStatus {
    /// `HIT` or `MISS`, as `x-tollgate-cache` says it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
        }
    }
}

/// A time as RFC 3339 in UTC, to the millisecond (always three digits, so times sort as text).
pub(crate) mod rfc3339 {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn format(at: SystemTime) -> String {
        let millis = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        jiff::Timestamp::from_millisecond(millis)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    }

    /// To the millisecond, as times are written: in nanoseconds a `u64` ends in 2554.
    pub(crate) fn parse(text: &str) -> Result<SystemTime, String> {
        let at: jiff::Timestamp = text.parse().map_err(|e| format!("{e}"))?;
        let millis = u64::try_from(at.as_millisecond()).map_err(|_| "before 1970".to_owned())?;
        Ok(UNIX_EPOCH + Duration::from_millis(millis))
    }

    pub(crate) fn serialize<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*at))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&text).map_err(D::Error::custom)
    }
}

/// A duration as milliseconds, to the microsecond.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(to_ms(*d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(from_ms(f64::deserialize(d)?))
    }

    pub(super) fn to_ms(d: Duration) -> f64 {
        // Whole microseconds, so a record written and read back is the same record.
        (d.as_micros() as f64) / 1_000.0
    }

    pub(super) fn from_ms(ms: f64) -> Duration {
        if ms.is_finite() && ms > 0.0 {
            Duration::from_micros((ms * 1_000.0).round() as u64)
        } else {
            Duration::ZERO
        }
    }
}

mod optional_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(super::millis::to_ms(*d)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map(super::millis::from_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_record_reads_back_as_it_was_written() {
        let mut record = CallRecord::new(
            "req_9",
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_472_000_250),
        );
        record.key_id = Some("key_1".into());
        record.model = Some("gpt-4o".into());
        record.cache = Some(CacheStatus::Miss);
        record.status = Some(429);
        record.error = Some(ErrorKind::RateLimited);
        record.usage = Usage::new(10, 5);
        record.cost = Some(MicroUsd(75));
        record.latency = Duration::from_micros(12_345);
        record.time_to_first_token = Some(Duration::from_micros(1_001));
        record.tags.insert("app".into(), "search".into());
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""latency_ms":12.345"#), "{json}");
        assert!(json.contains(r#""error":"rate_limited""#), "{json}");
        assert!(json.contains(r#""cache":"MISS""#), "{json}");
        assert!(
            json.contains(r#""time":"2026-12-05T12:00:00.250Z""#),
            "{json}"
        );
        let back: CallRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
        assert!(!back.succeeded());
    }
}
