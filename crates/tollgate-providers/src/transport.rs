//! What both clients share: the HTTP client, sending a JSON body, and turning failures into
//! `LlmError`s a caller can match on.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;
use tollgate_core::{ConfigError, ErrorKind, FinishReason, LlmError, LlmResponse};

use tollgate_core::RateLimitSnapshot;

pub(crate) use crate::failure::{malformed, silent, too_large, transport_error};

/// Default bound on a whole call: generations can take minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Default bound on opening a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time a streamed call waits for its first byte: an upstream silent this long is taken
/// for stuck, not slow.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default longest silence between two pieces of a stream once it has begun.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Default bound on an answer's size: a whole answer's body, or everything a stream sends.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 << 20;

/// Default bound on one server-sent event (or line) of a stream.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;

/// What a client accepts of an upstream: how long it waits, how much it reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Set: the bound on every attempt's first byte (a whole answer's first byte is all of it).
    /// Unset: [`DEFAULT_FIRST_BYTE_TIMEOUT`] for streams, and only `timeout` for whole answers.
    pub(crate) first_byte_timeout: Option<Duration>,
    pub(crate) stream_idle_timeout: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            first_byte_timeout: None,
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

impl Limits {
    /// How long a stream waits for its first byte.
    pub(crate) fn stream_first_byte(&self) -> Duration {
        self.first_byte_timeout
            .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if let Some(wait) = self.first_byte_timeout {
            tollgate_core::non_zero("first_byte_timeout", wait)?;
        }
        tollgate_core::non_zero("stream_idle_timeout", self.stream_idle_timeout)?;
        let positive = |field: &str, value: usize| {
            if value == 0 {
                Err(ConfigError::new(field, "must be > 0"))
            } else {
                Ok(())
            }
        };
        positive("max_response_bytes", self.max_response_bytes)?;
        positive("max_event_bytes", self.max_event_bytes)
    }
}

/// The settings every client has.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) base_url: String,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) limits: Limits,
    pub(crate) headers: HeaderMap,
    /// Headers the caller added, checked when the client is built.
    pub(crate) extra: Vec<(String, String)>,
    /// A client the caller built (proxies, mTLS, a shared pool), used instead of one of ours.
    pub(crate) http_client: Option<reqwest::Client>,
}

/// How a client reaches its provider: the HTTP client and what every call carries.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    pub(crate) limits: Limits,
    client: reqwest::Client,
    /// Sent with each call when the client is the caller's (ours has them as defaults).
    headers: Option<HeaderMap>,
    /// Bounds each call when the client is the caller's (ours has it built in).
    timeout: Option<Duration>,
    /// The client's fixed URLs, parsed once: reqwest parses a URL given as text on every call.
    known: Vec<reqwest::Url>,
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
            limits: Limits::default(),
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
        self.limits.check()?;
        if let Some(client) = self.http_client {
            return Ok(Http {
                limits: self.limits,
                client,
                headers: Some(self.headers),
                timeout: Some(self.timeout),
                known: Vec::new(),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .default_headers(self.headers)
            .build()
            .map_err(|e| ConfigError::new("client", e.to_string()))?;
        Ok(Http {
            limits: self.limits,
            client,
            headers: None,
            timeout: None,
            known: Vec::new(),
        })
    }
}

impl Http {
    /// Parses `urls` now, for the calls that go to them (one that does not parse is left to be
    /// parsed, and refused, when a call goes to it).
    pub(crate) fn knowing<'a>(mut self, urls: impl IntoIterator<Item = &'a str>) -> Self {
        self.known.extend(
            urls.into_iter()
                .filter_map(|url| reqwest::Url::parse(url).ok()),
        );
        self
    }

    /// A request to `url` with what every call of the client carries (its key, headers and
    /// timeout); `url` goes to reqwest parsed already when it is one of the client's fixed URLs.
    pub(crate) fn request(&self, method: http::Method, url: &str) -> reqwest::RequestBuilder {
        let mut builder = match self.known.iter().find(|known| known.as_str() == url) {
            Some(known) => self.client.request(method, known.clone()),
            None => self.client.request(method, url),
        };
        if let Some(headers) = &self.headers {
            builder = builder.headers(headers.clone());
        }
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        builder
    }
}

/// A provider's answer before it is read: status, headers and body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// The error an answer with a failure status means.
pub(crate) fn status_error(answer: &Answer, provider: &str) -> LlmError {
    crate::failure::refusal(answer.status, &answer.headers, &answer.body, provider)
}

/// One call to send: where, what, and the call's own headers.
pub(crate) struct Call<'a> {
    pub(crate) url: &'a str,
    pub(crate) body: Vec<u8>,
    pub(crate) headers: Option<&'a RequestHeaders>,
    pub(crate) provider: &'a str,
    /// The last hand on the request before it goes (a signature over what it carries).
    pub(crate) sign: Option<&'a Sign>,
}

/// What signs a request that is ready to go: it sees the method, URL, headers and body as sent.
pub(crate) type Sign = dyn Fn(&mut reqwest::Request) -> Result<(), LlmError> + Send + Sync;

/// POSTs the call's body as JSON and reads the whole answer, within the client's bounds: the
/// first byte within `first_byte_timeout` when one is set, and at most `max_response_bytes`.
/// Transport failures come back as `Connect` or `Timeout`.
pub(crate) async fn post(http: &Http, call: Call<'_>) -> Result<Answer, LlmError> {
    let provider = call.provider;
    let sent = send(http, call, "application/json");
    let Some(wait) = http.limits.first_byte_timeout else {
        return read(sent.await?, provider, http.limits.max_response_bytes, None).await;
    };
    let due = Instant::now() + wait;
    let response = tokio::time::timeout_at(due, sent)
        .await
        .map_err(|_| silent(provider, wait))??;
    read(
        response,
        provider,
        http.limits.max_response_bytes,
        Some((due, wait)),
    )
    .await
}

async fn send(
    http: &Http,
    call: Call<'_>,
    accept: &'static str,
) -> Result<reqwest::Response, LlmError> {
    let mut builder = http.request(http::Method::POST, call.url);
    if let Some(RequestHeaders(headers)) = call.headers {
        builder = builder.headers(headers.clone());
    }
    let builder = builder
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, accept)
        .body(call.body);
    let Some(sign) = call.sign else {
        return builder
            .send()
            .await
            .map_err(|e| transport_error(e, call.provider));
    };
    let mut request = builder
        .build()
        .map_err(|e| transport_error(e, call.provider))?;
    sign(&mut request)?;
    http.client
        .execute(request)
        .await
        .map_err(|e| transport_error(e, call.provider))
}

/// The answer's body, refused past `most` bytes: at once when its length says so, else as soon
/// as what arrived passes it, so a huge answer is never held whole.
async fn read(
    mut response: reqwest::Response,
    provider: &str,
    most: usize,
    mut first_byte: Option<(Instant, Duration)>,
) -> Result<Answer, LlmError> {
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    // An error's body is read for its message only: the first part of it will do.
    let keep = if status.is_success() {
        most
    } else {
        most.min(MAX_ERROR_BODY)
    };
    if status.is_success()
        && response
            .content_length()
            .is_some_and(|len| len > most as u64)
    {
        return Err(too_large(provider, most));
    }
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0;
    loop {
        let next = match first_byte.take() {
            // Headers are not an answer: the body's first byte is due by then too.
            Some((due, wait)) => tokio::time::timeout_at(due, response.chunk())
                .await
                .map_err(|_| silent(provider, wait))?,
            None => response.chunk().await,
        };
        let Some(chunk) = next.map_err(|e| transport_error(e, provider))? else {
            break;
        };
        total += chunk.len();
        if total > keep {
            if status.is_success() {
                return Err(too_large(provider, most));
            }
            let room = chunk.len() - (total - keep);
            chunks.push(chunk.slice(..room));
            break;
        }
        chunks.push(chunk);
    }
    let body = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => chunks.concat().into(),
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The tokens of an embeddings request's `input` (a text or a list of texts), by tollgate's
/// character estimate: for an upstream that bills them and does not say how many.
pub(crate) fn estimated_input(request: &tollgate_core::LlmRequest) -> u64 {
    use tollgate_core::TokenEstimator as _;
    let estimator = tollgate_core::CharEstimator;
    match request.params.extra.get("input") {
        Some(serde_json::Value::String(text)) => estimator.estimate_text(text),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(serde_json::Value::as_str)
            .map(|text| estimator.estimate_text(text))
            .fold(0, u64::saturating_add),
        _ => 0,
    }
}

/// How much of an error answer's body is read: enough for any provider's error JSON.
const MAX_ERROR_BODY: usize = 64 << 10;

/// POSTs `body` asking for server-sent events; the response once the provider accepted the call,
/// or the error its status says. The provider has `first_byte_timeout` to start answering.
pub(crate) async fn open_stream(
    http: &Http,
    call: Call<'_>,
) -> Result<(reqwest::Response, Instant), LlmError> {
    open_stream_with(http, call, status_error).await
}

/// As [`open_stream`], with a failure read by `refuse` (a provider whose errors have their own
/// shape).
pub(crate) async fn open_stream_with(
    http: &Http,
    call: Call<'_>,
    refuse: fn(&Answer, &str) -> LlmError,
) -> Result<(reqwest::Response, Instant), LlmError> {
    let provider = call.provider;
    let wait = http.limits.stream_first_byte();
    let deadline = Instant::now() + wait;
    let response = tokio::time::timeout_at(deadline, send(http, call, "text/event-stream"))
        .await
        .map_err(|_| silent(provider, wait))??;
    if response.status().is_success() {
        return Ok((response, deadline));
    }
    Err(refuse(
        &read(response, provider, http.limits.max_response_bytes, None).await?,
        provider,
    ))
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
        // The provider billed the call all the same.
        let mut error = LlmError::new(
            ErrorKind::ContentFilter,
            format!("{provider} withheld the answer (its content filter stopped it)"),
        )
        .with_status(answer.status)
        .with_extension(tollgate_core::BilledUsage(response.usage));
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
/// streaming request answers with the stream, any other with one JSON answer; embeddings go to
/// `inner.embed(request)`. Legacy text completions go to `client.completions(request)` for a
/// client written `provider_service!(Client, completions)`, and are refused by name, before
/// anything is sent, by every other.
macro_rules! provider_service {
    ($client:ty) => {
        crate::transport::provider_service!(@service $client, |_client, _request| Err(
            crate::transport::no_completions(stringify!($client))
        ));
    };
    ($client:ty, completions) => {
        crate::transport::provider_service!(@service $client, |client, request| client
            .completions(request)
            .await);
    };
    (@service $client:ty, |$c:ident, $r:ident| $completions:expr) => {
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
                    match request.meta.operation {
                        tollgate_core::Operation::Embeddings => {
                            return client.inner.embed(request).await;
                        }
                        tollgate_core::Operation::Completions => {
                            let ($c, $r) = (client, request);
                            return $completions;
                        }
                        _ => {}
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

/// The refusal of a legacy text completion by a provider whose API has none (`client`, the
/// client's type name).
pub(crate) fn no_completions(client: &str) -> LlmError {
    LlmError::new(
        ErrorKind::InvalidRequest,
        format!(
            "{}: legacy text completions (/v1/completions) are served only by OpenAI-compatible providers",
            client.to_ascii_lowercase()
        ),
    )
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

        /// Bound on the wait for an attempt's first byte, separate from
        /// [`stream_idle_timeout`](Self::stream_idle_timeout): an upstream silent this long is
        /// taken for stuck, and the attempt fails with a `Timeout` that is not retried on this
        /// client (a router may still move the call). Unset, a stream waits
        /// [`DEFAULT_FIRST_BYTE_TIMEOUT`](crate::DEFAULT_FIRST_BYTE_TIMEOUT) and a whole answer,
        /// whose first byte comes only once all of it is written, [`timeout`](Self::timeout).
        pub fn first_byte_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.limits.first_byte_timeout = Some(timeout);
            self
        }

        /// The longest silence between two pieces of a stream once it has begun (default
        /// [`DEFAULT_STREAM_IDLE_TIMEOUT`](crate::DEFAULT_STREAM_IDLE_TIMEOUT)); past it the
        /// stream ends with a `Timeout` error.
        pub fn stream_idle_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.limits.stream_idle_timeout = timeout;
            self
        }

        /// The largest answer read, in bytes: a whole answer's body, or all a stream sends
        /// (default [`DEFAULT_MAX_RESPONSE_BYTES`](crate::DEFAULT_MAX_RESPONSE_BYTES)). A larger
        /// one fails the call with a `Server` error that is not retried, without being read
        /// whole.
        pub fn max_response_bytes(mut self, bytes: usize) -> Self {
            self.settings.limits.max_response_bytes = bytes;
            self
        }

        /// The largest server-sent event (or line) of a stream, in bytes (default
        /// [`DEFAULT_MAX_EVENT_BYTES`](crate::DEFAULT_MAX_EVENT_BYTES)); a larger one ends the
        /// stream with a `Server` error.
        pub fn max_event_bytes(mut self, bytes: usize) -> Self {
            self.settings.limits.max_event_bytes = bytes;
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
