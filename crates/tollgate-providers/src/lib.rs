//! LLM provider clients as tower services: [`OpenAiCompatible`] (OpenAI, Azure OpenAI, vLLM,
//! Ollama and any server speaking chat completions), [`Anthropic`] (the Messages API, mapped
//! both ways from the OpenAI shape), [`Gemini`] (Google's Gemini API, natively: its
//! `generateContent`, stream and embeddings, mapped both ways), [`Vertex`] (Google Cloud's
//! Vertex AI: Gemini models in the Gemini API's shape and Claude models in the Messages API's,
//! with OAuth tokens from a service account or the environment) and [`Bedrock`] (Amazon
//! Bedrock's Converse API, signed with SigV4 or sent with a Bedrock API key), over reqwest with
//! rustls and the system's root certificates, or a client of your own.
//!
//! The `aws-config` feature (on by default) gives [`Bedrock`] the standard AWS credential chain
//! (environment, shared profile files, web identity, containers, instance metadata); without it,
//! a client with no credentials of its own reads the environment only.
//!
//! A call that came in OpenAI's Responses API passes through to a server that serves it
//! ([`OpenAiCompatibleBuilder::responses_api`]: `POST {base_url}/responses`, the answer and the
//! stream's events as they came); every other provider translates it through the chat shape and
//! refuses, by name and before anything is sent, a built-in tool only OpenAI runs
//! ("anthropic: the built-in tool `web_search_preview` runs only at OpenAI's Responses API").
//!
//! Answers are kept whole: every choice with its tool calls, refusal, reasoning and
//! log-probabilities, usage with cached and reasoning tokens, and every field tollgate does not
//! model (see [`LlmResponse`](tollgate_core::LlmResponse)).
//!
//! Each is a `Service<LlmRequest, Response = LlmResponse, Error = LlmError>` that the tollgate
//! layers wrap like any other. What every layer needs from a provider is filled in: `usage` for
//! token and cost limits, the provider's headers, a [`RateLimitSnapshot`] of its rate-limit
//! headers, and errors whose [`ErrorKind`](tollgate_core::ErrorKind) says what went wrong:
//!
//! | what happened | kind |
//! |---|---|
//! | 429 | `RateLimited`, with `retry_after` from `Retry-After` (seconds or an HTTP date; for Gemini, else its error's `retryDelay`) |
//! | 503, 529 | `Overloaded` (with `retry_after` when sent) |
//! | 500, 502, 504 and other 5xx | `Server` |
//! | 401, 403 | `Auth` |
//! | 400, 404, 422 and other 4xx | `InvalidRequest` |
//! | a `content_filter` finish, a `refusal` stop; Gemini's safety finishes, a prompt it blocked, a 400 about safety | `ContentFilter` |
//! | no connection (refused, reset, DNS) | `Connect` |
//! | no answer within the timeout | `Timeout` |
//! | no first byte within `first_byte_timeout` | `Timeout`, not retried ([`NoRetry`](tollgate_core::NoRetry)) |
//! | a stream silent past `stream_idle_timeout` | `Timeout` |
//! | an answer past `max_response_bytes`, an event past `max_event_bytes` | `Server`, the answer never held whole (not retried) |
//! | a stream closed before its proper end (a finish for every answer and `[DONE]`; `message_stop`; for Gemini, which sends no end event, a finish for every candidate before the close; Bedrock's `messageStop` and `metadata`) | `Server`, billed as incomplete through a stack |
//!
//! An error's message is tollgate's own sentence (`openai: the upstream refused the credentials
//! it was sent (HTTP 401)`), never the upstream's text, which can echo the key it was sent or name
//! internal addresses, and never the URL. What the upstream said rides along as an
//! [`UpstreamError`](tollgate_core::UpstreamError): its status, its error's `type`, `code` and
//! `param` when they are short identifiers, and its message only where it explains the caller's
//! own request (a 400, a content filter, a context window), redacted and at most 512 bytes. The
//! whole text is logged at debug level, redacted too.
//!
//! ```
//! use std::time::Duration;
//! use tollgate_core::{LlmRequest, Message};
//! use tollgate_providers::OpenAiCompatible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A compatible server for the example to talk to (Ollama would be at localhost:11434).
//! # let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(|| async {
//! #     axum::Json(serde_json::json!({ "model": "llama3.2", "choices": [ { "message":
//! #         { "role": "assistant", "content": "Hi!" }, "finish_reason": "stop" } ],
//! #         "usage": { "prompt_tokens": 8, "completion_tokens": 2 } }))
//! # }));
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let base_url = format!("http://{}/v1", listener.local_addr()?);
//! # tokio::spawn(async move { axum::serve(listener, app).await });
//! let ollama = OpenAiCompatible::builder(&base_url) // e.g. http://localhost:11434/v1
//!     .name("ollama")
//!     .timeout(Duration::from_secs(120))
//!     .build()?;
//! // The innermost service of a stack: tollgate's layers go around it.
//! let stack = ServiceBuilder::new().service(ollama);
//! let answer = stack.oneshot(LlmRequest::new("llama3.2", vec![Message::user("Say hi")])).await?;
//! assert_eq!(answer.content(), "Hi!");
//! assert_eq!(answer.usage.total(), 10);
//! # Ok(()) }
//! ```
//!
//! # Streaming
//!
//! A request marked [`LlmRequest::streaming`](tollgate_core::LlmRequest::streaming) is sent
//! with `stream: true`, and the service answers as soon as the provider accepts it, with a response
//! whose [`LlmStream`] the caller takes ([`LlmResponse::take_stream`](tollgate_core::LlmResponse::take_stream)):
//! [`StreamEvent`]s (model, the answer's fields, each choice's text, reasoning, refusal and
//! tool-call pieces, finish reasons, usage) read from the provider's server-sent events as they
//! arrive, whatever their chunking. Through a tollgate stack, the layers treat the stream as
//! [`tollgate_core::stream`] describes (retried only before it starts; cached once complete and
//! replayed; usage settled when it ends). Other requests get one JSON answer (a `stream` field
//! in their `extra` is removed). [`OpenAiCompatible::stream`], [`Anthropic::stream`] and
//! [`Gemini::stream`], [`Vertex::stream`] and [`Bedrock::stream`] open a [`ChatStream`]
//! directly, outside any stack; Bedrock's comes as AWS's binary event stream, read within the
//! same bounds.

mod anthropic;
mod aws;
mod bedrock;
mod failure;
mod gemini;
mod headers;
mod openai;
mod stream;
mod translated;
mod transport;
mod vertex;

pub use anthropic::{Anthropic, AnthropicBuilder, DEFAULT_ANTHROPIC_VERSION, DEFAULT_MAX_TOKENS};
pub use aws_credential_types::{Credentials, provider::ProvideCredentials};
pub use bedrock::{BEDROCK_API_KEY_ENV, Bedrock, BedrockBuilder};
pub use gemini::{DEFAULT_GEMINI_BASE_URL, Gemini, GeminiBuilder};
pub use headers::retry_after;
pub use openai::{CallFuture, OpenAiCompatible, OpenAiCompatibleBuilder};
pub use stream::ChatStream;
pub use tollgate_core::stream::{LlmStream, StreamEvent};
pub use tollgate_core::{LimitWindow, RateLimitSnapshot};
pub use transport::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_FIRST_BYTE_TIMEOUT, DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_STREAM_IDLE_TIMEOUT, DEFAULT_TIMEOUT, RequestHeaders,
};
pub use vertex::{Publisher, VERTEX_ANTHROPIC_VERSION, Vertex, VertexBuilder};
