//! Failures as `LlmError`s a caller can match on, and may show: the kind from what happened, and
//! a message in tollgate's own words. Where the upstream said something (an error status, an
//! error event), what it said is kept apart as an [`UpstreamError`] (its message only where it
//! explains the caller's own request, with secrets and addresses cut); its own words go to the
//! log, at debug level and redacted, and nowhere else. A failure on the wire never names the
//! URL it was sent to.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use serde_json::Value;
use tollgate_core::{
    ErrorKind, LlmError, NoRetry, RateLimitSnapshot, UpstreamError, redact, upstream_summary,
};

use crate::headers::retry_after;

/// How much of an upstream's error text the debug log keeps.
const LOGGED: usize = 2_048;

/// The error for a non-success answer (`status`, its `headers` and `body`): the kind from its
/// status, a fixed sentence, what the upstream said as an [`UpstreamError`], `Retry-After`, and
/// the rate-limit snapshot when present.
pub(crate) fn refusal(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    provider: &str,
) -> LlmError {
    let kind = ErrorKind::from_status(status);
    let raw = body;
    let body = serde_json::from_slice::<Value>(raw).ok();
    // OpenAI's `{"error": {"message", "type", "code", "param"}}`, and Anthropic's
    // `{"type": "error", "error": {"type", "message"}}`.
    let error = body.as_ref().and_then(|body| body.get("error"));
    let field = |name: &str| error.and_then(|e| e.get(name)).and_then(Value::as_str);
    let message = field("message").or_else(|| error.and_then(Value::as_str));
    let said = UpstreamError::new(Some(status))
        .with_identifiers(field("type"), field("code"), field("param"))
        .with_message(kind, message.unwrap_or_default());
    refused(status, headers, raw, provider, kind, said)
}

/// The error for a non-success answer whose kind and details the provider's client has read
/// itself (Bedrock's `x-amzn-ErrorType` and `{"message"}`), with `Retry-After` and the
/// rate-limit snapshot when present.
pub(crate) fn refused(
    status: StatusCode,
    headers: &HeaderMap,
    raw: &[u8],
    provider: &str,
    kind: ErrorKind,
    said: UpstreamError,
) -> LlmError {
    tracing::debug!(
        provider,
        status = status.as_u16(),
        body = %redact(&logged(raw)),
        "the upstream refused or failed a call"
    );
    let mut error = LlmError::new(kind, sentence(provider, kind, &said)).with_status(status);
    let now = SystemTime::now();
    if let Some(after) = retry_after(headers, now) {
        error = error.with_retry_after(after);
    }
    if let Some(snapshot) = RateLimitSnapshot::from_headers(headers, now) {
        error = error.with_extension(snapshot);
    }
    error.with_extension(said)
}

/// `Timeout` for a call that ran out of time, `Connect` for one that could not reach the provider
/// (or lost the connection), `Server` for anything else on the wire. The message never names the
/// URL: an internal address is not the caller's business.
pub(crate) fn transport_error(error: reqwest::Error, provider: &str) -> LlmError {
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_connect() || error.is_request() || error.is_body() {
        ErrorKind::Connect
    } else {
        ErrorKind::Server
    };
    let error = error.without_url();
    tracing::debug!(provider, error = %redact(&error.to_string()), "a call to the upstream failed on the wire");
    LlmError::new(kind, format!("{provider}: {}", upstream_summary(kind))).with_source(error)
}

/// An upstream that sent nothing within `waited`: a `Timeout` not retried on the same client.
pub(crate) fn silent(provider: &str, waited: Duration) -> LlmError {
    LlmError::new(
        ErrorKind::Timeout,
        format!(
            "{provider}: the upstream sent nothing within its first-byte timeout ({})",
            tollgate_core::duration::format(waited)
        ),
    )
    .with_extension(NoRetry)
}

/// An answer past `most` bytes: a `Server` error not retried, since the same call would bring
/// the same answer.
pub(crate) fn too_large(provider: &str, most: usize) -> LlmError {
    LlmError::new(
        ErrorKind::Server,
        format!("{provider}: the upstream's answer is over the limit of {most} bytes"),
    )
    .with_extension(NoRetry)
}

/// A body that is not the JSON a provider promised.
pub(crate) fn malformed(provider: &str, error: impl std::fmt::Display) -> LlmError {
    tracing::debug!(provider, %error, "the upstream's answer could not be read");
    LlmError::new(
        ErrorKind::Server,
        format!("{provider}: the upstream sent an answer that could not be read"),
    )
}

/// What a caller may read of a failure: the fixed sentence for its kind, and the upstream's own
/// explanation where it was kept.
fn sentence(provider: &str, kind: ErrorKind, said: &UpstreamError) -> String {
    let summary = if said.context_window {
        "the prompt is too long for the model's context window"
    } else {
        upstream_summary(kind)
    };
    let mut text = match said.status {
        Some(status) => format!("{provider}: {summary} (HTTP {})", status.as_u16()),
        None => format!("{provider}: {summary}"),
    };
    if let Some(message) = &said.message {
        text.push_str(": ");
        text.push_str(message);
    }
    text
}

/// The start of an upstream's text, for the log.
fn logged(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(LOGGED)]);
    text.trim().to_owned()
}
