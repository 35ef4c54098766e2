//! What providers say in their headers about waiting: `Retry-After`. Their limits
//! (`x-ratelimit-*`, `anthropic-ratelimit-*`) are read by core's [`RateLimitSnapshot`].
//!
//! [`RateLimitSnapshot`]: tollgate_core::RateLimitSnapshot

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// How long `Retry-After` says to wait: whole seconds (`"7"`) or an HTTP-date, read against `now`
/// (a date in the past means now). `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // Some servers send fractional seconds; read them rather than ignore the hint.
    if let Ok(seconds) = value.parse::<f64>() {
        // Negative, not a number, or too large for a `Duration`: no hint at all.
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}
