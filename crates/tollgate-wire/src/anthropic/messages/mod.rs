//! Anthropic's Messages API (`POST /v1/messages`), both ways.
//!
//! <https://docs.anthropic.com/en/api/messages>, <https://docs.anthropic.com/en/api/messages-streaming>
//!
//! # Same API in and out: pass-through
//!
//! A call that arrives in this API ([`decode_request`]) carries its body as it came
//! ([`MessagesBody`]). When it goes to an upstream that speaks this API too, that body is what
//! the upstream is sent ([`encode_request`]), unchanged but for `model`, the `max_tokens` the
//! stack settled, a `temperature` its role set where the caller set none, and `stream`; and the
//! `anthropic-version` and `anthropic-beta` headers the caller sent go with it. The answer comes
//! back as it came too: a whole one as its bytes ([`MessagesAnswer`]), a stream event by event
//! ([`StreamEvent::Verbatim`](tollgate_core::stream::StreamEvent::Verbatim)). The stack still
//! reads what it needs from them (usage with cache reads and writes, the stop reason, text and
//! tool calls for the cache and the cost report).
//!
//! # Translation, field by field
//!
//! Where the caller's API and the upstream's differ, each field is kept, mapped or dropped:
//!
//! | Messages field | to a chat-completions upstream |
//! |---|---|
//! | `model`, `max_tokens`, `temperature`, `top_p`, `stop_sequences` (as `stop`) | mapped |
//! | `system` (a string, or text blocks) | a system message (blocks as text parts) |
//! | `messages`: text, image blocks (as `image_url` parts), `tool_use` (as tool calls), `tool_result` (as tool messages), `thinking` (as reasoning, signed) | mapped |
//! | `tools` (as function tools), `tool_choice` (`any` as `required`; `disable_parallel_tool_use` as `parallel_tool_calls`) | mapped |
//! | `metadata.user_id` | `user` |
//! | `stream` | the stack's stream |
//! | `top_k`, `thinking`, `cache_control` (anywhere), `metadata` beyond `user_id`, `container`, `mcp_servers`, `service_tier` | dropped (logged at debug level): chat-completions servers refuse arguments they do not know |
//! | `n`, `best_of` above 1, `top_logprobs`, `max_completion_tokens`, `max_output_tokens` | refused at the door, by name |
//! | `redacted_thinking` blocks and other blocks of an assistant turn with no OpenAI form | dropped (logged) |
//!
//! | chat-completions field | to a Messages upstream |
//! |---|---|
//! | system and developer messages | `system`: one string, or text blocks where a part carries `cache_control` |
//! | user content: text, `image_url` (as image blocks), any other part | kept, with its `cache_control` (LiteLLM's convention) |
//! | assistant text (parts with `cache_control` as blocks of their own), signed reasoning (`thinking`), tool calls (`tool_use`) | mapped |
//! | `tool` messages | `tool_result` blocks, one user turn per turn of calls; parts (images) kept |
//! | function `tools` (with `cache_control`), Anthropic's own tools | mapped; passed as they are |
//! | `tool_choice`, `parallel_tool_calls: false` | `tool_choice` (`required` as `any`; `disable_parallel_tool_use`) |
//! | `user` | `metadata.user_id` |
//! | `stop` | `stop_sequences` |
//! | `max_tokens` (either name; a default when none) | `max_tokens` |
//! | `reasoning_effort` | `thinking` at a budget (1,024 tokens for `minimal` and `low`, 2,048 for `medium`, 4,096 for `high`; none for `none`), at most half the output bound, none where that half is under 1,024; unless the call sets `thinking` |
//! | `seed` | dropped: the API has none |
//! | `response_format` other than `text`, `n` or `best_of` above 1, `top_logprobs` | refused by name |
//! | every other field (`top_k`, `thinking`, `metadata`, ...) | passed as it came |

mod answer;
mod decode;
mod encode;
mod stream;

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderName};

pub use answer::{anthropic_usage, decode_answer, encode_answer};
pub use decode::decode_request;
pub(crate) use encode::effort_budget;
pub use encode::encode_request;
pub use stream::{MessageEvents, MessageStream};

/// The request headers of this API a caller's call passes on to an upstream that speaks it.
pub const FORWARDED_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("anthropic-version"),
    HeaderName::from_static("anthropic-beta"),
];

/// A request extension: the Messages body a call arrived with, as it came, and the
/// [`FORWARDED_HEADERS`] its caller sent. Its presence also says the call came in this API.
///
/// The body is kept as its bytes and where each top-level field's value lies in them, so an
/// upstream that speaks this API is sent the caller's own bytes, without a second parse.
#[derive(Debug, Clone)]
pub struct MessagesBody {
    body: Bytes,
    fields: std::sync::Arc<[(String, Range<usize>)]>,
    headers: HeaderMap,
}

impl MessagesBody {
    /// The headers to send with the call.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The field's value as it came, when the body has it.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, range)| &self.body[range.clone()])
    }
}

/// A response extension: an upstream's whole Messages answer as it came, for a caller who asked
/// in this API.
#[derive(Debug, Clone)]
pub struct MessagesAnswer(pub Bytes);
