//! `Anthropic`: the Messages API (`POST /v1/messages`).

use std::{fmt, sync::Arc};

use tollgate_core::{ConfigError, ErrorKind, LlmError, LlmRequest, LlmResponse};
use tollgate_wire::anthropic::messages::{self, MessagesAnswer, MessagesBody};

use crate::{
    RequestHeaders,
    stream::ChatStream,
    transport::{
        Call, Http, Settings, answered, common_builder_methods, malformed, open_stream, post,
        provider_service, status_error,
    },
};

/// The API version sent as `anthropic-version` unless another is set.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` sent for a request that sets none (the Messages API requires one): core's
/// [`DEFAULT_MAX_TOKENS`](tollgate_core::DEFAULT_MAX_TOKENS).
pub const DEFAULT_MAX_TOKENS: u32 = tollgate_core::DEFAULT_MAX_TOKENS;

/// A client for Anthropic's Messages API, as a `Service<LlmRequest>`.
///
/// The request is mapped from the OpenAI shape: system (and developer) messages become the
/// top-level `system` prompt; assistant `tool_calls` become `tool_use` blocks and `tool` messages
/// `tool_result` blocks answering their `tool_call_id` (a turn's results in one user turn);
/// `image_url` parts become image blocks (a `data:` URL as base64, others as URL sources);
/// function `tools` get their `parameters` as `input_schema`; `tool_choice` (`auto`, `required` →
/// `any`, `none`, or a named function → `tool`) and `parallel_tool_calls: false` become
/// Anthropic's `tool_choice`; `user` becomes `metadata.user_id`; `stop` becomes `stop_sequences`;
/// `max_tokens` (under whichever name it came, or [`DEFAULT_MAX_TOKENS`]) is always sent; `seed`
/// is dropped (the API has none) and every other `extra` field is passed through (`top_k`,
/// `thinking`, ...). What the API cannot do is an `InvalidRequest` naming it, never silently
/// dropped: a `response_format` other than `text` (the Messages API has none: describe the schema
/// as a tool and force it with `tool_choice`), `n` or `best_of` above 1, `top_logprobs`,
/// tool-call arguments that are not JSON. The answer comes back in the OpenAI shape: text blocks
/// joined as the content, `thinking` as the reasoning, `tool_use` blocks as tool calls (their
/// `input` as the arguments' JSON text), `stop_reason` as the finish reason (`tool_use` →
/// `tool_calls`, `max_tokens` → `length`; `refusal` is a `ContentFilter` error), the message id as
/// `id`, and usage with the prompt counted whole (cache reads and writes included, and counted
/// apart); headers and the `anthropic-ratelimit-*` snapshot are kept. Failures map like
/// [`OpenAiCompatible`](crate::OpenAiCompatible)'s (529 `overloaded_error` → `Overloaded`).
///
/// ```no_run
/// use tollgate_core::{LlmRequest, Message};
/// use tollgate_providers::Anthropic;
/// use tower::ServiceExt;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let claude = Anthropic::builder(std::env::var("ANTHROPIC_API_KEY")?).build()?;
/// let request = LlmRequest::new(
///     "claude-sonnet-4-5",
///     vec![Message::system("Be brief."), Message::user("Say hi")],
/// );
/// println!("{}", claude.oneshot(request).await?.content());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Anthropic {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    url: String,
    default_max_tokens: u32,
}

impl Anthropic {
    /// Sends a Messages request `body` (JSON, as the caller wrote it) to
    /// `POST {base_url}/v1/messages/count_tokens` with the client's key and `headers` (the
    /// caller's `anthropic-version` and `anthropic-beta`), and returns the answer's body as it
    /// came (`{"input_tokens": N}`).
    ///
    /// # Errors
    ///
    /// A failure's answer in tollgate's words, as for a call (`RateLimited` with its
    /// `Retry-After`, `Auth`, `InvalidRequest`, ...); `Connect` or `Timeout` when the server
    /// cannot be reached or does not answer in time.
    pub async fn count_tokens(
        &self,
        body: Vec<u8>,
        headers: http::HeaderMap,
    ) -> Result<bytes::Bytes, LlmError> {
        let url = format!("{}/count_tokens", self.inner.url);
        let answer = self
            .inner
            .http
            .request(http::Method::POST, &url)
            .headers(headers)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| crate::transport::transport_error(e, NAME))?;
        let (status, answered) = (answer.status(), answer.headers().clone());
        let body = answer
            .bytes()
            .await
            .map_err(|e| crate::transport::transport_error(e, NAME))?;
        if !status.is_success() {
            return Err(crate::failure::refusal(status, &answered, &body, NAME));
        }
        Ok(body)
    }
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anthropic")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Anthropic {
    /// A builder for `api.anthropic.com` with `api_key` (sent as `x-api-key`).
    pub fn builder(api_key: impl Into<String>) -> AnthropicBuilder {
        AnthropicBuilder {
            settings: Settings::new("https://api.anthropic.com"),
            api_key: api_key.into(),
            version: DEFAULT_ANTHROPIC_VERSION.to_owned(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

impl Anthropic {
    /// Sends `request` with `stream: true` and returns the stream once Anthropic has accepted it.
    ///
    /// # Errors
    ///
    /// The same errors as a call, for everything that happens before the stream starts.
    pub async fn stream(&self, request: LlmRequest) -> Result<ChatStream, LlmError> {
        let body = body(&request, self.inner.default_max_tokens, true)?;
        let headers = headers(&request);
        let call = Call {
            url: &self.inner.url,
            body,
            headers: headers.as_ref(),
            provider: NAME,
            sign: None,
        };
        let (response, first_byte) = open_stream(&self.inner.http, call).await?;
        // A caller in the Messages API gets the events as they came.
        let verbatim = request.extensions.get::<MessagesBody>().is_some();
        Ok(ChatStream::new(
            response,
            messages::MessageStream::default(),
            verbatim,
            NAME,
            self.inner.http.limits,
            first_byte,
        ))
    }
}

/// The body for `request`, or why the Messages API cannot take it.
fn body(request: &LlmRequest, default_max_tokens: u32, stream: bool) -> Result<Vec<u8>, LlmError> {
    crate::translated::refuse_untranslatable(NAME, request)?;
    messages::encode_request(request, default_max_tokens, stream)
        .map_err(|reason| LlmError::new(ErrorKind::InvalidRequest, format!("{NAME}: {reason}")))
}

/// The call's own headers, with the Messages headers its caller sent (`anthropic-version`,
/// `anthropic-beta`) when it came in this API: those win over the client's.
fn headers(request: &LlmRequest) -> Option<RequestHeaders> {
    let own = request.extensions.get::<RequestHeaders>();
    let forwarded = request
        .extensions
        .get::<MessagesBody>()
        .map(MessagesBody::headers)
        .filter(|headers| !headers.is_empty());
    match (own, forwarded) {
        (own, None) => own.cloned(),
        (own, Some(forwarded)) => {
            let mut headers = own.map(|own| own.0.clone()).unwrap_or_default();
            for (name, value) in forwarded {
                headers.insert(name, value.clone());
            }
            Some(RequestHeaders(headers))
        }
    }
}

provider_service!(Anthropic);

const NAME: &str = "anthropic";

impl Inner {
    /// Anthropic has no embeddings API: refused before anything is sent.
    async fn embed(&self, _: LlmRequest) -> Result<LlmResponse, LlmError> {
        Err(LlmError::new(
            ErrorKind::InvalidRequest,
            "anthropic: the Messages API has no embeddings; use an OpenAI-compatible provider",
        ))
    }

    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let headers = headers(&request);
        let call = Call {
            url: &self.url,
            body: body(&request, self.default_max_tokens, false)?,
            headers: headers.as_ref(),
            provider: NAME,
            sign: None,
        };
        let answer = post(&self.http, call).await?;
        if !answer.status.is_success() {
            return Err(status_error(&answer, NAME));
        }
        let mut response = messages::decode_answer(&answer.body, &request.model)
            .map_err(|e| malformed(NAME, e))?;
        if request.extensions.get::<MessagesBody>().is_some() {
            // A caller in the Messages API gets the answer as it came.
            response
                .extensions
                .insert(MessagesAnswer(answer.body.clone()));
        }
        answered(answer, response, NAME)
    }
}

/// Builds an [`Anthropic`] client; checks everything in [`build`](Self::build).
#[must_use]
pub struct AnthropicBuilder {
    settings: Settings,
    api_key: String,
    version: String,
    default_max_tokens: u32,
}

impl std::fmt::Debug for AnthropicBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicBuilder")
            .field("api_key", &"<redacted>")
            .field("version", &self.version)
            .field("default_max_tokens", &self.default_max_tokens)
            .finish_non_exhaustive()
    }
}

impl AnthropicBuilder {
    /// Another server speaking the Messages API (a proxy, a test server), the part before
    /// `/v1/messages` (default `https://api.anthropic.com`).
    pub fn base_url(mut self, base_url: &str) -> Self {
        self.settings.base_url = base_url.trim_end_matches('/').to_owned();
        self
    }

    /// The `anthropic-version` header (default [`DEFAULT_ANTHROPIC_VERSION`]).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// `max_tokens` for requests that set none (default [`DEFAULT_MAX_TOKENS`]).
    pub fn default_max_tokens(mut self, tokens: u32) -> Self {
        self.default_max_tokens = tokens;
        self
    }

    common_builder_methods!();

    /// The client.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an empty key, a zero `default_max_tokens` or timeout, a base URL that
    /// is not `http(s)://`, or a header that is not valid HTTP.
    pub fn build(mut self) -> Result<Anthropic, ConfigError> {
        if self.api_key.trim().is_empty() {
            return Err(ConfigError::new("api_key", "must not be empty"));
        }
        if self.default_max_tokens == 0 {
            return Err(ConfigError::new("default_max_tokens", "must be at least 1"));
        }
        self.settings
            .header("x-api-key", &self.api_key, "api_key")?;
        self.settings
            .header("anthropic-version", &self.version, "version")?;
        let url = format!("{}/v1/messages", self.settings.base_url);
        let http = self.settings.http()?.knowing([&*url]);
        Ok(Anthropic {
            inner: Arc::new(Inner {
                http,
                url,
                default_max_tokens: self.default_max_tokens,
            }),
        })
    }
}
