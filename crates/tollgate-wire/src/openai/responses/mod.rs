//! OpenAI's Responses API (`POST /v1/responses`), both ways.
//!
//! <https://platform.openai.com/docs/api-reference/responses>,
//! <https://platform.openai.com/docs/api-reference/responses-streaming>
//!
//! ```
//! use tollgate_core::{LlmResponse, MaxTokensName};
//! use tollgate_wire::openai::{chat, responses};
//!
//! // A caller's Responses request, read at the door into the chat shape the stack speaks...
//! let body = br#"{"model": "gpt-5", "instructions": "Be brief.", "input": "Hi", "max_output_tokens": 64, "store": false}"#;
//! let request = responses::decode_request(bytes::Bytes::from_static(body), &Default::default()).unwrap();
//! assert_eq!(request.messages.len(), 2); // the instructions, then the input
//! assert_eq!(request.params.max_tokens_name, Some(MaxTokensName::MaxOutputTokens));
//!
//! // ...goes to a Responses upstream as it came, and to a chat-completions one translated.
//! assert_eq!(responses::encode_request(&request, false).unwrap(), &body[..]);
//! let chat: serde_json::Value = serde_json::from_slice(&chat::encode_request(&request, MaxTokensName::MaxTokens, false).unwrap()).unwrap();
//! assert_eq!(chat["max_tokens"], 64);
//!
//! // The stack's answer, written back as a Response object.
//! let asked = request.extensions.get::<responses::ResponsesBody>().unwrap();
//! let answer = LlmResponse::new("gpt-5", "Hello!");
//! let written: serde_json::Value = serde_json::from_slice(&responses::encode_answer(&answer, "resp_1", asked)).unwrap();
//! assert_eq!(written["output"][0]["content"][0]["text"], "Hello!");
//! assert_eq!(written["store"], false);
//! ```
//!
//! # Same API in and out: pass-through
//!
//! A call that arrives in this API ([`decode_request`]) carries its body as it came
//! ([`ResponsesBody`]). An upstream that serves this API is sent that body ([`encode_request`]),
//! unchanged but for `model`, the output bound the stack settled, a `temperature` its role set
//! where the caller set none, `stream`, and, once the gateway continued a stored conversation
//! ([`continue_from`]), `input` with the history first and no `previous_response_id`. The answer
//! comes back as it came: a whole one as its bytes ([`ResponsesAnswer`]), a stream event by event
//! ([`StreamEvent::Verbatim`](tollgate_core::stream::StreamEvent::Verbatim), read by
//! [`ResponsesStream`]); the stack reads its text, tool calls and usage from it all the same.
//!
//! # Translation, field by field
//!
//! Any other upstream gets the call in the chat shape:
//!
//! | Responses field | in the chat shape (to chat completions, Messages, Gemini, Bedrock) |
//! |---|---|
//! | `model`, `temperature`, `top_p`, `parallel_tool_calls`, `user` | mapped |
//! | `max_output_tokens` | the output bound, under its own name for errors ([`MaxTokensName::MaxOutputTokens`](tollgate_core::MaxTokensName::MaxOutputTokens)); each upstream is sent it under its own name |
//! | `instructions` | a system message, first |
//! | `input`: a string | a user message |
//! | `input`: `message` items (`input_text`, `input_image` by URL, `input_file` as a `file` part, `input_audio`; an assistant's `output_text` and `refusal`) | messages of the item's role |
//! | `input`: `function_call` items | assistant tool calls (one assistant turn for calls in a row) |
//! | `input`: `function_call_output` items | `tool` messages |
//! | `input`: `reasoning` items | left out (logged at debug level) |
//! | `input`: other items (built-in tools' calls, ...) | refused by name |
//! | function `tools` (`{type, name, description, parameters, strict}`) | chat's nested function tools |
//! | built-in `tools` (`web_search`, `file_search`, `computer_use_preview`, `mcp`, ...) | refused by name ([`ResponsesBody::hosted_tools`]) |
//! | `tool_choice` (`auto`, `none`, `required`, a function, `allowed_tools`) | mapped; a built-in tool's choice refused |
//! | `text.format` (`json_schema`, `json_object`, `text`) | `response_format` |
//! | `reasoning.effort` | `reasoning_effort` (to a Messages upstream, extended thinking at a budget: 1,024 tokens for minimal and low, 2,048 for medium, 4,096 for high, at most half the output bound) |
//! | `stream` | the stack's stream |
//! | `store`, `previous_response_id` | the gateway's ([`ResponsesBody::store`], [`continue_from`]) |
//! | `metadata`, `prompt_cache_key`, `prompt_cache_retention`, `prompt_cache_options`, `safety_identifier`, `stream_options`, `reasoning.summary` | not part of the answer: echoed in the Response, else dropped |
//! | `include`, `truncation`, `max_tool_calls`, `service_tier`, `text.verbosity`, `image`, `access_programs`, `background_options` | dropped (logged at debug level): they ask for more detail or another tier, not another answer |
//! | `prompt`, `top_logprobs` above 0, `context_management`, `moderation`, any field this module does not know | refused by name: the answer would not be the one asked for |
//! | `n`, `max_tokens`, `max_completion_tokens`, `best_of` | refused at the door: not this API's (one answer, bound by `max_output_tokens`) |
//! | `background: true`, `conversation`, `item_reference` items | refused at the door, whatever the provider: a background response runs at the provider unbilled and is fetched from there; a conversation or a referenced item is the provider account's, shared by every key (the gateway keeps `previous_response_id` per key) |
//!
//! What is refused is refused before anything is sent, by [`check_translatable`] (the providers
//! call it); what is dropped never reaches a translating encoder ([`untranslated`]). Both stay in
//! the request's parameters, so the cache tells apart two calls whose answers differ.
//!
//! The answer is written back ([`encode_answer`], [`ResponseEvents`]) as OpenAI writes it: a
//! `reasoning` item (its text as a summary), a `message` item with one `output_text` part, one
//! `function_call` item per tool call; `status` `completed`, or `incomplete` with
//! `incomplete_details.reason` `max_output_tokens` (or `content_filter`); usage with
//! `input_tokens_details.cached_tokens` and `output_tokens_details.reasoning_tokens`; and what
//! the call asked for (model, instructions, tools, sampling, metadata) echoed.

mod answer;
mod decode;
mod encode;
mod events;
mod stream;
mod translate;

use std::{ops::Range, sync::Arc};

use bytes::Bytes;
use serde_json::Value;

pub use answer::{decode_answer, encode_answer};
pub use decode::{continue_from, decode_request};
pub use encode::encode_request;
pub use events::ResponseEvents;
pub use stream::ResponsesStream;
pub(crate) use translate::drop_untranslated;
pub use translate::{check_translatable, untranslated};

/// A request extension: the Responses body a call arrived with, as it came. Its presence also
/// says the call came in this API.
///
/// The body is kept as its bytes and where each top-level field's value lies in them, so an
/// upstream that serves this API is sent the caller's own bytes, without a second parse.
#[derive(Debug, Clone)]
pub struct ResponsesBody {
    body: Bytes,
    fields: Arc<[(String, Range<usize>)]>,
    store: bool,
    previous_response_id: Option<Arc<str>>,
    hosted: Arc<[String]>,
    /// The history a stored conversation put first ([`continue_from`]).
    history: Option<Arc<[Value]>>,
}

impl ResponsesBody {
    /// The field's value as it came, when the body has it.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, range)| &self.body[range.clone()])
    }

    /// `store`: whether the response is kept (OpenAI's default: it is).
    pub fn store(&self) -> bool {
        self.store
    }

    /// `previous_response_id`: the stored response this call continues, when it names one.
    pub fn previous_response_id(&self) -> Option<&str> {
        self.previous_response_id.as_deref()
    }

    /// The call's input as a list of input items: a string `input` as one user `message` item
    /// (with one `input_text` part); after [`continue_from`], the history's items first.
    pub fn input_items(&self) -> Vec<Value> {
        let mut items: Vec<Value> = self.history.as_deref().unwrap_or_default().to_vec();
        match self
            .field("input")
            .and_then(|raw| serde_json::from_slice::<Value>(raw).ok())
        {
            Some(Value::String(text)) => items.push(decode::user_item(text)),
            Some(Value::Array(own)) => items.extend(own),
            _ => {}
        }
        items
    }

    /// The built-in tools the call offers (`web_search`, `file_search`, `computer_use_preview`,
    /// `code_interpreter`, `image_generation`, `mcp`, `local_shell`, ...: every tool whose type is
    /// not `function`), by type, in order. Only OpenAI's Responses API runs them.
    pub fn hosted_tools(&self) -> &[String] {
        &self.hosted
    }
}

/// A response extension: an upstream's whole Responses answer as it came, for a caller who asked
/// in this API.
#[derive(Debug, Clone)]
pub struct ResponsesAnswer(pub Bytes);

/// The Responses item id of kind `prefix` (`msg`, `fc`, `rs`) for the `index`th output item of
/// response `id`: one scheme for whole and streamed answers, so both name their items alike.
fn item_id(prefix: &str, id: &str, index: usize) -> String {
    let own = id.strip_prefix("resp_").unwrap_or(id);
    format!("{prefix}_{own}_{index}")
}
