//! `Gemini`: Google's Gemini API (`generateContent`, `streamGenerateContent`,
//! `batchEmbedContents`), natively rather than through its OpenAI shim; built so Vertex AI's
//! Gemini models reuse it with another URL prefix and OAuth tokens.

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use http::{HeaderValue, StatusCode};
use serde_json::Value;
use tollgate_core::{ConfigError, ErrorKind, LlmError, LlmRequest, LlmResponse};
use tollgate_wire::gemini::{self, GenerateStream, embeddings};

use crate::{
    RequestHeaders,
    failure::{Said, refusal_said},
    stream::ChatStream,
    transport::{
        Answer, Call, Http, Settings, answered, common_builder_methods, malformed,
        open_stream_with, post, provider_service,
    },
};

/// Where Google's Gemini API is served.
pub const DEFAULT_GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// A client for Google's Gemini API, as a `Service<LlmRequest>`.
///
/// Calls go to `POST {base_url}/v1beta/models/{model}:generateContent` (a stream to
/// `:streamGenerateContent?alt=sse`, embeddings to `:batchEmbedContents`) with the key in the
/// `x-goog-api-key` header, never in the URL. The request is mapped from the OpenAI shape and the
/// answer back as [`tollgate_wire::gemini`] tabulates: messages as `contents` and
/// `systemInstruction`, tools as `functionDeclarations` (and tool calls and results both ways),
/// images, `response_format` as a response schema, `reasoning_effort` as a thinking config;
/// candidates as choices with their reasoning and tool calls, usage with cached and thinking
/// tokens. What Gemini cannot take is an `InvalidRequest` naming the field.
///
/// Failures: 429 `RESOURCE_EXHAUSTED` is `RateLimited`, waiting for `Retry-After` or else the
/// error's `google.rpc.RetryInfo` `retryDelay`; 503 `UNAVAILABLE` is `Overloaded`; 401 and 403 are
/// `Auth`; a 400 over the model's input limit ("The input token count (N) exceeds the maximum
/// number of tokens allowed (M)") is an `InvalidRequest` marked as a context-window refusal
/// ([`UpstreamError::context_window`](tollgate_core::UpstreamError::context_window)); a 400 about
/// safety, a safety finish, and a prompt Gemini blocked are `ContentFilter`.
///
/// ```
/// use tollgate_core::{LlmRequest, Message};
/// use tollgate_providers::Gemini;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # // A server speaking the Gemini API for the example to talk to.
/// # let app = axum::Router::new().route("/v1beta/models/{call}", axum::routing::post(|| async {
/// #     axum::Json(serde_json::json!({ "candidates": [{ "content": { "role": "model",
/// #         "parts": [{ "text": "Hi!" }] }, "finishReason": "STOP" }],
/// #         "usageMetadata": { "promptTokenCount": 8, "candidatesTokenCount": 2 },
/// #         "modelVersion": "gemini-2.5-flash", "responseId": "r1" }))
/// # }));
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let base_url = format!("http://{}", listener.local_addr()?);
/// # tokio::spawn(async move { axum::serve(listener, app).await });
/// let gemini = Gemini::builder("my-gemini-key") // e.g. std::env::var("GEMINI_API_KEY")?
///     .base_url(&base_url) // the default is Google's
///     .build()?;
/// let request = LlmRequest::new("gemini-2.5-flash", vec![Message::user("Say hi")]);
/// let answer = gemini.oneshot(request).await?;
/// assert_eq!(answer.content(), "Hi!");
/// assert_eq!(answer.usage.total(), 10);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Gemini {
    pub(crate) inner: Arc<Inner>,
}

/// A source of OAuth access tokens, asked before each call (it caches and refreshes them).
pub(crate) trait TokenSource: Send + Sync {
    /// A token valid for a call made now.
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<String, LlmError>> + Send + '_>>;
}

/// How calls prove who sends them.
#[derive(Clone)]
pub(crate) enum Auth {
    /// An API key, already among the client's headers.
    ApiKey,
    /// `Authorization: Bearer` with a token from the source.
    Bearer(Arc<dyn TokenSource>),
}

/// Where a model's methods live: `{prefix}{model}:{method}`.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) prefix: String,
}

impl Endpoint {
    /// The URL of `model`'s `method`, or an `InvalidRequest` for a model name that does not fit
    /// in a URL path.
    pub(crate) fn url(
        &self,
        model: &str,
        method: &str,
        provider: &str,
    ) -> Result<String, LlmError> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        let plain = !model.is_empty()
            && !model.starts_with('.')
            && model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if !plain {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "{provider}: model: must be a name of letters, digits, '-', '_', '.' or '@'"
                ),
            ));
        }
        Ok(format!("{}{model}:{method}", self.prefix))
    }
}

pub(crate) struct Inner {
    pub(crate) http: Http,
    pub(crate) endpoint: Endpoint,
    pub(crate) auth: Auth,
    pub(crate) name: String,
    /// Whether `batchEmbedContents` is served (the Gemini API; not Vertex AI).
    pub(crate) embeddings: bool,
}

impl fmt::Debug for Gemini {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gemini")
            .field("name", &self.inner.name)
            .field("prefix", &self.inner.endpoint.prefix)
            .finish_non_exhaustive()
    }
}

impl Gemini {
    /// A builder for Google's Gemini API with `api_key` (sent as `x-goog-api-key`).
    pub fn builder(api_key: impl Into<String>) -> GeminiBuilder {
        GeminiBuilder {
            settings: Settings::new(DEFAULT_GEMINI_BASE_URL),
            api_key: api_key.into(),
            name: "gemini".to_owned(),
        }
    }

    /// Sends `request` to `streamGenerateContent?alt=sse` and returns the stream once Gemini has
    /// accepted it. It ends well only when the body closes after every candidate has finished.
    ///
    /// # Errors
    ///
    /// The same errors as a call, for everything that happens before the stream starts.
    pub async fn stream(&self, request: LlmRequest) -> Result<ChatStream, LlmError> {
        self.inner.stream(request).await
    }
}

provider_service!(Gemini);

impl Inner {
    pub(crate) async fn stream(&self, request: LlmRequest) -> Result<ChatStream, LlmError> {
        let name = &self.name;
        crate::translated::refuse_untranslatable(name, &request)?;
        let body = gemini::encode_request(&request).map_err(|e| invalid(name, &e))?;
        let url = self
            .endpoint
            .url(&request.model, "streamGenerateContent?alt=sse", name)?;
        let headers = self.headers(&request).await?;
        let call = Call {
            url: &url,
            body,
            headers: headers.as_ref(),
            provider: name,
            sign: None,
        };
        let (response, first_byte) = open_stream_with(&self.http, call, refusal).await?;
        Ok(ChatStream::new(
            response,
            GenerateStream::default(),
            false,
            name,
            self.http.limits,
            first_byte,
        ))
    }

    pub(crate) async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let name = &self.name;
        crate::translated::refuse_untranslatable(name, &request)?;
        let body = gemini::encode_request(&request).map_err(|e| invalid(name, &e))?;
        let url = self.endpoint.url(&request.model, "generateContent", name)?;
        let answer = self.post(&request, &url, body).await?;
        let response =
            gemini::decode_answer(&answer.body, &request.model).map_err(|e| malformed(name, e))?;
        answered(answer, response, name)
    }

    pub(crate) async fn embed(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let name = &self.name;
        if !self.embeddings {
            return Err(invalid(
                name,
                "this client serves no embeddings; use the Gemini API's (batchEmbedContents)",
            ));
        }
        let body = embeddings::encode_request(&request).map_err(|e| invalid(name, &e))?;
        let url = self
            .endpoint
            .url(&request.model, "batchEmbedContents", name)?;
        let answer = self.post(&request, &url, body).await?;
        let mut response = embeddings::decode_answer(&answer.body, &request.model)
            .map_err(|e| malformed(name, e))?;
        if response.usage.input_tokens == 0 {
            // batchEmbedContents says nothing of tokens, which Google bills all the same:
            // estimated, so the call is never counted as free.
            response.usage.input_tokens = crate::transport::estimated_input(&request);
        }
        answered(answer, response, name)
    }

    async fn post(
        &self,
        request: &LlmRequest,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Answer, LlmError> {
        let headers = self.headers(request).await?;
        let call = Call {
            url,
            body,
            headers: headers.as_ref(),
            provider: &self.name,
            sign: None,
        };
        let answer = post(&self.http, call).await?;
        if !answer.status.is_success() {
            return Err(refusal(&answer, &self.name));
        }
        Ok(answer)
    }

    /// The call's own headers, with a fresh bearer token when the client uses them.
    pub(crate) async fn headers(
        &self,
        request: &LlmRequest,
    ) -> Result<Option<RequestHeaders>, LlmError> {
        let own = request.extensions.get::<RequestHeaders>();
        let Auth::Bearer(source) = &self.auth else {
            return Ok(own.cloned());
        };
        let token = source.token().await?;
        let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
            LlmError::new(
                ErrorKind::Auth,
                format!(
                    "{}: the access token is not a valid header value",
                    self.name
                ),
            )
        })?;
        value.set_sensitive(true);
        let mut headers = own.map(|own| own.0.clone()).unwrap_or_default();
        headers.insert(http::header::AUTHORIZATION, value);
        Ok(Some(RequestHeaders(headers)))
    }
}

pub(crate) fn invalid(provider: &str, reason: &str) -> LlmError {
    LlmError::new(ErrorKind::InvalidRequest, format!("{provider}: {reason}"))
}

/// The error for a failed answer in Google's shape, `{"error": {"code", "message", "status",
/// "details"}}`: the kind from the status (a 400 about safety is `ContentFilter`), the status
/// name as the error's type, and `google.rpc.RetryInfo`'s `retryDelay` as the wait when no
/// `Retry-After` says one.
pub(crate) fn refusal(answer: &Answer, provider: &str) -> LlmError {
    let body = serde_json::from_slice::<Value>(&answer.body).ok();
    // Google wraps some errors in a list of one.
    let body = match body {
        Some(Value::Array(mut items)) if !items.is_empty() => Some(items.swap_remove(0)),
        other => other,
    };
    let error = body.as_ref().and_then(|body| body.get("error"));
    let field = |name: &str| error.and_then(|e| e.get(name)).and_then(Value::as_str);
    let message = field("message");
    let mut kind = ErrorKind::from_status(answer.status);
    if answer.status == StatusCode::BAD_REQUEST && message.is_some_and(is_safety) {
        kind = ErrorKind::ContentFilter;
    }
    // Google answers a dead key with a 400 whose `ErrorInfo` says so: the client's
    // credentials, not the caller's request.
    let reason = |detail: &Value| {
        detail
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let key_refused = error
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(reason)
        .any(|reason| reason.starts_with("API_KEY_"));
    if key_refused {
        kind = ErrorKind::Auth;
    }
    let retry_after = error
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|detail| {
            detail
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|detail| detail.get("retryDelay")?.as_str().and_then(duration));
    let said = Said {
        kind,
        error_type: field("status").or_else(|| field("type")),
        code: None,
        param: None,
        message,
        retry_after,
        filtered: false,
    };
    refusal_said(answer.status, &answer.headers, &answer.body, provider, said)
}

/// Whether a 400's message says the request was refused for safety.
fn is_safety(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["safety", "prohibited content", "blocklist", "blocked"]
        .iter()
        .any(|mark| message.contains(mark))
}

/// A protobuf JSON duration (`"17s"`, `"0.5s"`).
fn duration(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    // An upstream's number: one too large for a `Duration` is no hint at all.
    Duration::try_from_secs_f64(seconds).ok()
}

/// Builds a [`Gemini`] client; checks everything in [`build`](Self::build).
#[must_use]
pub struct GeminiBuilder {
    settings: Settings,
    api_key: String,
    name: String,
}

impl fmt::Debug for GeminiBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiBuilder")
            .field("base_url", &self.settings.base_url)
            .field("api_key", &"<redacted>")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl GeminiBuilder {
    /// Another server speaking the Gemini API (a proxy, a test server), the part before
    /// `/v1beta/models/...` (default [`DEFAULT_GEMINI_BASE_URL`]).
    pub fn base_url(mut self, base_url: &str) -> Self {
        self.settings.base_url = base_url.trim_end_matches('/').to_owned();
        self
    }

    /// The name errors use for this provider (default `gemini`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    common_builder_methods!();

    /// The client.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an empty key, a base URL that is not `http(s)://`, a zero timeout
    /// or bound, or a header that is not valid HTTP.
    pub fn build(mut self) -> Result<Gemini, ConfigError> {
        if self.api_key.trim().is_empty() {
            return Err(ConfigError::new("api_key", "must not be empty"));
        }
        self.settings
            .header("x-goog-api-key", &self.api_key, "api_key")?;
        let prefix = format!("{}/v1beta/models/", self.settings.base_url);
        let http = self.settings.http()?;
        Ok(Gemini {
            inner: Arc::new(Inner {
                http,
                endpoint: Endpoint { prefix },
                auth: Auth::ApiKey,
                name: self.name,
                embeddings: true,
            }),
        })
    }
}
