//! OpenAI's legacy text completions (`POST /v1/completions`), both ways: the API vLLM, Ollama
//! and other OpenAI-compatible servers still serve for base models.
//!
//! <https://platform.openai.com/docs/api-reference/completions>
//!
//! # In the stack's shape
//!
//! A request is an [`LlmRequest`](tollgate_core::LlmRequest) whose operation is
//! [`Completions`](tollgate_core::Operation::Completions). Each prompt is a user message, so the
//! token estimator, budgets and cache keys read it as they read a chat prompt: a text prompt as
//! its text, a token-array prompt as one part `{"type": "tokens", "tokens": [...]}`. The numbers
//! that set what a call may cost are read once, exactly: `max_tokens` (the bound the limiter
//! reserves and the upstream is sent), `n` and `best_of` (the answers billed, bounded by a
//! gateway's `max_choices`); `temperature`, `top_p`, `seed` and `stop` are the request's own
//! parameters; every other field (`echo`, `suffix`, `logprobs`, `logit_bias`, `user`,
//! `stream_options`, ...) is kept in [`Params::extra`](tollgate_core::Params::extra), in order.
//! An answer is an [`LlmResponse`] whose choices' content is each completed text, with its
//! finish reason and its `logprobs` as they came.
//!
//! # Pass-through
//!
//! The body a caller sent rides along as it came ([`CompletionsBody`]). An upstream that speaks
//! this API is sent those bytes ([`encode_request`]), with only what the stack settled written
//! over them: `model`, `max_tokens` (the bound reserved), `stream` and `stream_options` (a stream
//! always asks for its usage), and a role's `temperature` where the caller set none. The answer
//! comes back as it came: a whole one as its bytes ([`CompletionAnswer`]), a stream chunk by
//! chunk ([`StreamEvent::Verbatim`](tollgate_core::stream::StreamEvent::Verbatim)), while the
//! stack reads the text, finish reasons and usage from them ([`decode_answer`], [`TextChunks`]).
//! An answer that did not come as it came (a cache hit, a simulated provider) is written as a
//! `text_completion` ([`encode_answer`], [`CompletionEvents`]).
//!
//! ```
//! use tollgate_core::{Operation, Quirks};
//! use tollgate_wire::openai::completions;
//!
//! let body = br#"{"model": "m", "prompt": "Once upon", "max_tokens": 1e2, "echo": true}"#;
//! let mut request = completions::decode_request(bytes::Bytes::from_static(body)).unwrap();
//! assert_eq!(request.meta.operation, Operation::Completions);
//! assert_eq!(request.params.max_tokens, Some(100));
//! assert_eq!(request.messages[0].texts().collect::<String>(), "Once upon");
//! assert_eq!(request.params.extra["echo"], true);
//!
//! // Routed to a deployment's model: the caller's bytes, with the model and bound settled.
//! request.model = "llama-3-base".into();
//! let sent = completions::encode_request(&request, false, &Quirks::OPENAI).unwrap();
//! assert_eq!(sent, br#"{"model": "llama-3-base", "prompt": "Once upon", "max_tokens": 100, "echo": true}"#);
//! ```

mod answer;
mod request;
mod stream;

use std::ops::Range;

use bytes::Bytes;
use tollgate_core::LlmResponse;

pub use answer::{decode_answer, encode_answer};
pub use request::{decode_request, encode_request};
pub use stream::{CompletionEvents, TextChunks};

/// A request extension: the completions body a call arrived with, as it came. Its presence also
/// says the call came in this API.
#[derive(Debug, Clone)]
pub struct CompletionsBody {
    body: Bytes,
    fields: std::sync::Arc<[(String, Range<usize>)]>,
}

impl CompletionsBody {
    /// The field's value as it came, when the body has it.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, range)| &self.body[range.clone()])
    }
}

/// A response extension: an upstream's whole completions answer as it came, for a caller who
/// asked in this API.
#[derive(Debug, Clone)]
pub struct CompletionAnswer(pub Bytes);

impl CompletionAnswer {
    /// The answer's bytes, when `answer` carries them.
    pub fn of(answer: &LlmResponse) -> Option<&Bytes> {
        answer.extensions.get::<Self>().map(|Self(body)| body)
    }
}
