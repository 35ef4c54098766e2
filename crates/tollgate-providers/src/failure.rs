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
    let raw = body;
    let body = serde_json::from_slice::<Value>(raw).ok();
    // OpenAI's `{"error": {"message", "type", "code", "param"}}`, and Anthropic's
    // `{"type": "error", "error": {"type", "message"}}`.
    let error = body.as_ref().and_then(|body| body.get("error"));
    let field = |name: &str| error.and_then(|e| e.get(name)).and_then(Value::as_str);
    let message = field("message").or_else(|| error.and_then(Value::as_str));
    // Azure's content filter names itself in `innererror.code` too.
    let inner_code = error
        .and_then(|e| e.pointer("/innererror/code"))
        .and_then(Value::as_str);
    let filtered = [field("code"), field("type"), inner_code]
        .into_iter()
        .flatten()
        .any(is_content_filter);
    let said = Said {
        kind: ErrorKind::from_status(status),
        error_type: field("type"),
        code: field("code"),
        param: field("param"),
        message,
        retry_after: None,
        filtered,
    };
    refusal_said(status, headers, raw, provider, said)
}

/// What an upstream's error body said, as its provider's module read it.
pub(crate) struct Said<'a> {
    /// The kind the failure is: from the status, unless the body says more (a safety refusal).
    pub(crate) kind: ErrorKind,
    pub(crate) error_type: Option<&'a str>,
    pub(crate) code: Option<&'a str>,
    pub(crate) param: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
    /// The wait the body asks for, used when no `Retry-After` header says one.
    pub(crate) retry_after: Option<Duration>,
    /// The upstream said its content filter refused the request (in a 400, as Azure does).
    pub(crate) filtered: bool,
}

/// Whether an error `code` or `type` is a content filter's: Azure's `content_filter` and
/// `ResponsibleAIPolicyViolation`, OpenAI's `content_policy_violation`.
pub(crate) fn is_content_filter(name: &str) -> bool {
    [
        "content_filter",
        "content_policy_violation",
        "ResponsibleAIPolicyViolation",
    ]
    .iter()
    .any(|known| name.eq_ignore_ascii_case(known))
}

/// The error for a non-success answer whose body `said` what failed: its kind, made
/// `ContextWindow` or `ContentFilter` where the upstream said so (whatever status it came with),
/// a fixed sentence, what the upstream said as an [`UpstreamError`], the wait it asks for, and
/// the rate-limit snapshot when present.
pub(crate) fn refusal_said(
    status: StatusCode,
    headers: &HeaderMap,
    raw: &[u8],
    provider: &str,
    said: Said<'_>,
) -> LlmError {
    let mut kind = said.kind;
    let message = said.message.unwrap_or_default();
    let identified =
        UpstreamError::new(Some(status)).with_identifiers(said.error_type, said.code, said.param);
    let mut upstream = identified.clone().with_message(kind, message);
    if upstream.context_window {
        kind = ErrorKind::ContextWindow;
    } else if said.filtered && kind == ErrorKind::InvalidRequest {
        kind = ErrorKind::ContentFilter;
        upstream = identified.with_message(kind, message);
    }
    tracing::debug!(
        provider,
        status = status.as_u16(),
        body = %redact(&logged(raw)),
        "the upstream refused or failed a call"
    );
    let mut error = LlmError::new(kind, sentence(provider, kind, &upstream)).with_status(status);
    let now = SystemTime::now();
    if let Some(after) = retry_after(headers, now).or(said.retry_after) {
        error = error.with_retry_after(after);
    }
    if let Some(snapshot) = RateLimitSnapshot::from_headers(headers, now) {
        error = error.with_extension(snapshot);
    }
    error.with_extension(upstream)
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
