//! What both clients share: the HTTP client, sending a JSON body, and turning failures into
//! `LlmError`s a caller can match on.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;
use tollgate_core::{ConfigError, ErrorKind, FinishReason, LlmError, LlmResponse};

use tollgate_core::RateLimitSnapshot;

use crate::headers::retry_after;

/// Default bound on a whole call: generations can take minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Default bound on opening a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings every client has.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) base_url: String,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) headers: HeaderMap,
    /// Headers the caller added, checked when the client is built.
    pub(crate) extra: Vec<(String, String)>,
    /// A client the caller built (proxies, mTLS, a shared pool), used instead of one of ours.
    pub(crate) http_client: Option<reqwest::Client>,
}

/// How a client reaches its provider: the HTTP client and what every call carries.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    /// Sent with each call when the client is the caller's (ours has them as defaults).
    headers: Option<HeaderMap>,
    /// Bounds each call when the client is the caller's (ours has it built in).
    timeout: Option<Duration>,
}

/// Headers to send with one call, on top of the client's: put them in the request's extensions.
///
/// ```
/// use tollgate_core::{LlmRequest, http::HeaderMap};
/// use tollgate_providers::RequestHeaders;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-trace-id", "trace-42".parse().unwrap());
/// let mut request = LlmRequest::new("gpt-4o-mini", vec![]);
/// request.extensions.insert(RequestHeaders(headers));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestHeaders(pub HeaderMap);

impl Settings {
    pub(crate) fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            headers: HeaderMap::new(),
            extra: Vec::new(),
            http_client: None,
        }
    }

    /// Adds a header every call carries; a bad name or value is a [`ConfigError`] at build time.
    pub(crate) fn header(
        &mut self,
        name: &str,
        value: &str,
        path: &str,
    ) -> Result<(), ConfigError> {
        let name: http::HeaderName = name
            .parse()
            .map_err(|_| ConfigError::new(path, format!("{name:?} is not a header name")))?;
        let mut value: http::HeaderValue = value
            .parse()
            .map_err(|_| ConfigError::new(path, "the value is not a valid header value"))?;
        if name == http::header::AUTHORIZATION || name.as_str().contains("key") {
            value.set_sensitive(true);
        }
        self.headers.insert(name, value);
        Ok(())
    }

    pub(crate) fn http(mut self) -> Result<Http, ConfigError> {
        for (i, (name, value)) in std::mem::take(&mut self.extra).iter().enumerate() {
            self.header(name, value, &format!("headers[{i}]"))?;
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "base_url",
                format!("{:?} must start with http:// or https://", self.base_url),
            ));
        }
        tollgate_core::non_zero("timeout", self.timeout)?;
        tollgate_core::non_zero("connect_timeout", self.connect_timeout)?;
        if let Some(client) = self.http_client {
            return Ok(Http {
                client,
                headers: Some(self.headers),
                timeout: Some(self.timeout),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .default_headers(self.headers)
            .build()
            .map_err(|e| ConfigError::new("client", e.to_string()))?;
        Ok(Http {
            client,
            headers: None,
            timeout: None,
        })
    }
}

/// A provider's answer before it is read: status, headers and body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// One call to send: where, what, and the call's own headers.
pub(crate) struct Call<'a> {
    pub(crate) url: &'a str,
    pub(crate) body: Vec<u8>,
    pub(crate) headers: Option<&'a RequestHeaders>,
    pub(crate) provider: &'a str,
}

/// POSTs the call's body as JSON; transport failures come back as `Connect` or `Timeout`.
pub(crate) async fn post(http: &Http, call: Call<'_>) -> Result<Answer, LlmError> {
    let provider = call.provider;
    let response = send(http, call, "application/json").await?;
    read(response, provider).await
}

async fn send(
    http: &Http,
    call: Call<'_>,
    accept: &'static str,
) -> Result<reqwest::Response, LlmError> {
    let mut builder = http.client.post(call.url);
    if let Some(headers) = &http.headers {
        builder = builder.headers(headers.clone());
    }
    if let Some(timeout) = http.timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(RequestHeaders(headers)) = call.headers {
        builder = builder.headers(headers.clone());
    }
    builder
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, accept)
        .body(call.body)
        .send()
        .await
        .map_err(|e| transport_error(e, call.provider))
}

async fn read(response: reqwest::Response, provider: &str) -> Result<Answer, LlmError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(e, provider))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// POSTs `body` asking for server-sent events; the response once the provider accepted the call,
/// or the error its status says.
pub(crate) async fn open_stream(
    http: &Http,
    call: Call<'_>,
) -> Result<reqwest::Response, LlmError> {
    let provider = call.provider;
    let response = send(http, call, "text/event-stream").await?;
    if response.status().is_success() {
        return Ok(response);
    }
    Err(status_error(&read(response, provider).await?, provider))
}

/// `Timeout` for a call that ran out of time, `Connect` for one that could not reach the provider
/// (or lost the connection), `Server` for anything else on the wire.
pub(crate) fn transport_error(error: reqwest::Error, provider: &str) -> LlmError {
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_connect() || error.is_request() || error.is_body() {
        ErrorKind::Connect
    } else {
        ErrorKind::Server
    };
    LlmError::new(kind, format!("{provider}: {error}")).with_source(error)
}

/// The error for a non-success answer: the kind from its status, the provider's own message,
/// `Retry-After`, and the rate-limit snapshot when present.
pub(crate) fn status_error(answer: &Answer, provider: &str) -> LlmError {
    let message = serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|body| {
            let error = body.get("error")?;
            error
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| error.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&answer.body);
            let text = text.trim();
            if text.is_empty() {
                answer
                    .status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_owned()
            } else {
                text.chars().take(500).collect()
            }
        });
    let mut error = LlmError::from_status(
        answer.status,
        format!("{provider} answered {}: {message}", answer.status.as_u16()),
    );
    let now = SystemTime::now();
    if let Some(after) = retry_after(&answer.headers, now) {
        error = error.with_retry_after(after);
    }
    if let Some(snapshot) = RateLimitSnapshot::from_headers(&answer.headers, now) {
        error = error.with_extension(snapshot);
    }
    error
}

/// The response for a successful answer: `response` with the provider's headers and the
/// rate-limit snapshot; or a `ContentFilter` error when the provider withheld the (first) answer.
pub(crate) fn answered(
    answer: Answer,
    mut response: LlmResponse,
    provider: &str,
) -> Result<LlmResponse, LlmError> {
    let snapshot = RateLimitSnapshot::from_headers(&answer.headers, SystemTime::now());
    if response.finish_reason() == Some(&FinishReason::ContentFilter) {
        let mut error = LlmError::new(
            ErrorKind::ContentFilter,
            format!("{provider} withheld the answer (its content filter stopped it)"),
        )
        .with_status(answer.status);
        if let Some(snapshot) = snapshot {
            error = error.with_extension(snapshot);
        }
        return Err(error);
    }
    response.headers = answer.headers;
    if let Some(snapshot) = snapshot {
        response.extensions.insert(snapshot);
    }
    Ok(response)
}

/// `Service<LlmRequest>` for a client with `stream(request)` and `inner.complete(request)`: a
/// streaming request answers with the stream, any other with one JSON answer.
macro_rules! provider_service {
    ($client:ty) => {
        impl tower_service::Service<tollgate_core::LlmRequest> for $client {
            type Response = tollgate_core::LlmResponse;
            type Error = tollgate_core::LlmError;
            type Future = crate::CallFuture;

            fn poll_ready(
                &mut self,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), tollgate_core::LlmError>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, request: tollgate_core::LlmRequest) -> crate::CallFuture {
                let client = self.clone();
                Box::pin(async move {
                    if request.meta.operation == tollgate_core::Operation::Embeddings {
                        return client.inner.embed(request).await;
                    }
                    if request.meta.stream {
                        let model = request.model.clone();
                        let stream = client.stream(request).await?;
                        return Ok(stream.into_response(&model));
                    }
                    client.inner.complete(request).await
                })
            }
        }
    };
}

pub(crate) use provider_service;

/// The builder methods every client has, over a `settings: Settings` field.
macro_rules! common_builder_methods {
    () => {
        /// Another header every call carries (a gateway's key, a tenant header, a beta flag).
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.settings.extra.push((name.into(), value.into()));
            self
        }

        /// Bound on a whole call (default [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT)); past it
        /// the call fails with `Timeout`.
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.timeout = timeout;
            self
        }

        /// Bound on opening a connection (default
        /// [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT)).
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.connect_timeout = timeout;
            self
        }

        /// Sends calls through `client`, one you built (proxies, mTLS, a pool shared with the
        /// rest of your program), instead of one of tollgate's. The client's own settings stand
        /// (its connect timeout among them); every call still carries this builder's headers and
        /// is bounded by its [`timeout`](Self::timeout).
        pub fn http_client(mut self, client: reqwest::Client) -> Self {
            self.settings.http_client = Some(client);
            self
        }
    };
}

pub(crate) use common_builder_methods;

/// A body that is not the JSON a provider promised.
pub(crate) fn malformed(provider: &str, error: impl std::fmt::Display) -> LlmError {
    LlmError::new(
        ErrorKind::Server,
        format!("{provider} sent a response that could not be read: {error}"),
    )
}
