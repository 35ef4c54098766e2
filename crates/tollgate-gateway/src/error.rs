//! Errors as clients expect them: OpenAI's error JSON (Anthropic's on `/v1/messages`), the status
//! official clients map to their exception types, and the headers they back off by.

use std::{borrow::Cow, time::Duration};

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};
use tollgate::{ErrorKind, LlmError, UpstreamError, ratelimit::Denial, upstream_summary};
use tollgate_core::{MicroUsd, duration};

/// Which error shape a front door answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}`.
    Anthropic,
}

/// An error on its way to a client (boxed: it travels in `Result`s on the request path).
#[derive(Debug)]
pub(crate) struct ApiError(Box<Detail>);

#[derive(Debug)]
struct Detail {
    status: StatusCode,
    /// OpenAI's `type`.
    kind: Cow<'static, str>,
    code: Option<Cow<'static, str>>,
    /// The field at fault, when one is.
    param: Option<String>,
    message: String,
    headers: HeaderMap,
    /// What an upstream that failed the call said of it, by its identifiers only: `status`,
    /// `type`, `code`.
    upstream: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(Detail {
            status,
            kind: Cow::Borrowed(kind),
            code: None,
            param: None,
            message: message.into(),
            headers: HeaderMap::new(),
            upstream: None,
        }))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message.into(),
        )
    }

    pub(crate) fn with_code(mut self, code: &'static str) -> Self {
        self.0.code = Some(Cow::Borrowed(code));
        self
    }

    pub(crate) fn with_param(mut self, param: impl Into<String>) -> Self {
        self.0.param = Some(param.into());
        self
    }

    /// A caller's body its API's reader refused: a 400 naming the field at fault.
    pub(crate) fn refused(refusal: tollgate_wire::Refusal) -> Self {
        let mut api = Self::invalid(refusal.message);
        api.0.param = refusal.field;
        api.0.code = refusal.code.map(Cow::Borrowed);
        api
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing or unknown API key: send a tollgate key as `Authorization: Bearer <key>` or \
             `x-api-key`",
        )
        .with_code("invalid_api_key")
    }

    /// The error a failed call becomes: its status from its kind, the limiter's denial as
    /// OpenAI's rate-limit headers.
    ///
    /// An upstream's failure is told, never relayed: a fixed sentence per kind, the upstream's
    /// own explanation only where its client kept it as safe (a content filter's, a context
    /// window's, a 400 about the caller's request; secrets and addresses cut), and its `type`,
    /// `code` and `param` where they describe the caller's own request.
    pub(crate) fn from_llm(error: &LlmError) -> Self {
        use ErrorKind as K;
        let (status, kind, code) = match error.kind() {
            K::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limit_exceeded",
            ),
            K::BudgetExceeded => (
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "budget_exceeded",
            ),
            K::InvalidRequest => (
                // A provider's own 4xx (404, 413, 422, ...) keeps its status.
                error
                    .status()
                    .filter(|s| s.is_client_error() && *s != StatusCode::TOO_MANY_REQUESTS)
                    .unwrap_or(StatusCode::BAD_REQUEST),
                "invalid_request_error",
                "invalid_request",
            ),
            K::ContentFilter => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "content_filter",
            ),
            // OpenAI's own code for it, which its clients and agent frameworks match on.
            K::ContextWindow => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
            ),
            K::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded_error",
                "upstream_overloaded",
            ),
            K::CircuitOpen => (StatusCode::SERVICE_UNAVAILABLE, "api_error", "circuit_open"),
            K::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "api_error", "unavailable"),
            K::Timeout => (StatusCode::GATEWAY_TIMEOUT, "api_error", "upstream_timeout"),
            K::Connect | K::Server => (StatusCode::BAD_GATEWAY, "api_error", "upstream_error"),
            // The gateway's own key for the provider was refused: the caller can do nothing.
            K::Auth => (StatusCode::BAD_GATEWAY, "api_error", "upstream_auth"),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "internal_error",
            ),
        };
        let mut api = match error.extensions().get::<UpstreamError>() {
            Some(said) => Self::from_upstream(status, kind, code, error.kind(), said),
            None => Self::new(status, kind, error.message()).with_code(code),
        };
        if let Some(wait) = error.retry_after() {
            api.retry_after(wait);
        }
        if error.kind() == K::BudgetExceeded {
            // Retrying a spent budget cannot help within any client's patience.
            api.header("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Some(denial) = error.extensions().get::<Denial>() {
            api.denial_headers(denial);
        }
        api
    }

    /// An upstream's failure of `kind`, as the gateway tells it.
    fn from_upstream(
        status: StatusCode,
        openai_type: &'static str,
        code: &'static str,
        kind: ErrorKind,
        said: &UpstreamError,
    ) -> Self {
        let mut message = if said.context_window {
            "the prompt is too long for the model's context window".to_owned()
        } else {
            upstream_summary(kind).to_owned()
        };
        if let Some(explained) = &said.message {
            message.push_str(": ");
            message.push_str(explained);
        }
        let mut api = Self::new(status, openai_type, message).with_code(code);
        let mut identifiers = serde_json::Map::new();
        if let Some(status) = said.status {
            identifiers.insert("status".into(), status.as_u16().into());
        }
        for (name, value) in [("type", &said.error_type), ("code", &said.code)] {
            if let Some(value) = value {
                identifiers.insert(name.into(), value.as_str().into());
            }
        }
        api.0.upstream = (!identifiers.is_empty()).then_some(Value::Object(identifiers));
        // The caller's own request: the upstream's names for what is wrong with it are theirs.
        if matches!(
            kind,
            ErrorKind::InvalidRequest | ErrorKind::ContentFilter | ErrorKind::ContextWindow
        ) {
            if let Some(upstream_type) = &said.error_type {
                api.0.kind = Cow::Owned(upstream_type.clone());
            }
            if let Some(upstream_code) = &said.code {
                api.0.code = Some(Cow::Owned(upstream_code.clone()));
            }
            api.0.param.clone_from(&said.param);
        }
        api
    }

    fn header(&mut self, name: &'static str, value: HeaderValue) {
        self.0.headers.insert(HeaderName::from_static(name), value);
    }

    /// `Retry-After` in whole seconds (rounded up) and `retry-after-ms`, which OpenAI's clients
    /// read first.
    fn retry_after(&mut self, wait: Duration) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.header("retry-after", HeaderValue::from(secs));
        // Rounded up too: a client that waits exactly this long must find room.
        let millis = wait.as_nanos().div_ceil(1_000_000);
        self.header(
            "retry-after-ms",
            HeaderValue::from(u64::try_from(millis).unwrap_or(u64::MAX)),
        );
    }

    /// OpenAI's `x-ratelimit-*` headers for the tier that refused.
    fn denial_headers(&mut self, denial: &Denial) {
        use tollgate::ratelimit::Dimension;
        let Some((_, tier)) = denial.tier() else {
            return;
        };
        let names = match tier.dimension() {
            Dimension::Requests => [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            Dimension::Tokens => [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
            Dimension::Cost => return self.budget_headers(denial, tier),
        };
        self.header(names[0], HeaderValue::from(tier.limit()));
        self.header(names[1], HeaderValue::from(0u64));
        if let Some(reset) = denial.retry_after()
            && let Ok(value) = HeaderValue::from_str(&duration::format(reset))
        {
            self.header(names[2], value);
        }
    }

    /// The budget that refused, in the `x-ratelimit-*` style: its limit and what is left in
    /// dollars, the wait until it has room, and for a calendar budget its period and the instant
    /// the period resets.
    fn budget_headers(&mut self, denial: &Denial, tier: &tollgate::ratelimit::Tier) {
        let dollars = |micros: u64| HeaderValue::from_str(&MicroUsd(micros).to_string()[1..]);
        if let Ok(limit) = dollars(tier.limit()) {
            self.header("x-ratelimit-limit-budget-usd", limit);
        }
        let spent = denial.period().map(|(spent, _)| spent);
        let remaining = spent.map_or(0, |spent| tier.limit().saturating_sub(spent));
        if let Ok(remaining) = dollars(remaining) {
            self.header("x-ratelimit-remaining-budget-usd", remaining);
        }
        if let Some(reset) = denial.retry_after()
            && let Ok(value) = HeaderValue::from_str(&duration::format(reset))
        {
            self.header("x-ratelimit-reset-budget", value);
        }
        if let Some(calendar) = tier.calendar_period()
            && let Ok(period) = HeaderValue::from_str(&calendar.to_string())
        {
            self.header("x-ratelimit-budget-period", period);
        }
        let resets_at = denial
            .period()
            .and_then(|(_, at)| jiff::Timestamp::try_from(at).ok());
        if let Some(Ok(at)) = resets_at.map(|at| HeaderValue::from_str(&at.to_string())) {
            self.header("x-ratelimit-budget-resets-at", at);
        }
    }

    /// The response in `dialect`'s shape, with `extra` headers (request id, overhead) added.
    pub(crate) fn into_response(self, dialect: Dialect) -> Response {
        let body = self.body(dialect, true);
        let detail = *self.0;
        (detail.status, detail.headers, Json(body)).into_response()
    }

    /// The error as the `error` object of an event in a stream that already began.
    pub(crate) fn stream_event(&self, dialect: Dialect) -> Value {
        self.body(dialect, false)
    }

    /// The error in `dialect`'s shape (with `param`, or `null` for a stream's event), and what
    /// the upstream said of it, when one did.
    fn body(&self, dialect: Dialect, param: bool) -> Value {
        let detail = &*self.0;
        let mut body = match dialect {
            Dialect::OpenAi => json!({
                "error": {
                    "message": detail.message,
                    "type": detail.kind,
                    "param": if param { detail.param.as_deref() } else { None },
                    "code": detail.code,
                }
            }),
            Dialect::Anthropic => json!({
                "type": "error",
                "error": { "type": anthropic_type(detail.status), "message": detail.message },
            }),
        };
        if let Some(upstream) = &detail.upstream {
            body["error"]["upstream"] = upstream.clone();
        }
        body
    }
}

/// Anthropic's error type for a status, as its API documents them.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 408 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}
