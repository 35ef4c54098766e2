//! How a response was served, as the cache marks it: the `x-cache` header and an extension.

use std::time::Duration;

use http::HeaderValue;
use tollgate_core::LlmResponse;

/// The header a response carries to say where it came from: `HIT` or `MISS`.
pub const X_CACHE: http::HeaderName = http::HeaderName::from_static("x-cache");

/// How the cache served a response, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// From the store; `age` is how long ago it was stored.
    Hit {
        /// Time since the answer was stored.
        age: Duration,
    },
    /// Answered by the same upstream call as an identical request that was already in flight.
    Coalesced,
    /// Called upstream (and stored, if it could be).
    Miss,
}

/// `response`, marked as served by `status`.
pub(crate) fn mark(mut response: LlmResponse, status: CacheStatus) -> LlmResponse {
    let value = match status {
        CacheStatus::Miss => "MISS",
        CacheStatus::Hit { .. } | CacheStatus::Coalesced => "HIT",
    };
    response
        .headers
        .insert(X_CACHE, HeaderValue::from_static(value));
    response.extensions.insert(status);
    response
}
