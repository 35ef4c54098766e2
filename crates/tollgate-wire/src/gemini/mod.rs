//! Google's Gemini API (`generateContent`, `streamGenerateContent`, `batchEmbedContents`), the
//! upstream's side: tollgate's OpenAI-shaped request as a Gemini body ([`encode_request`]), a
//! Gemini answer ([`decode_answer`]) and stream ([`GenerateStream`]) as tollgate's, and
//! embeddings both ways ([`embeddings`]). Vertex AI's Gemini models take the same bodies.
//!
//! <https://ai.google.dev/api/generate-content>, <https://ai.google.dev/api/embeddings>,
//! <https://ai.google.dev/gemini-api/docs/function-calling>,
//! <https://ai.google.dev/gemini-api/docs/thinking>,
//! <https://ai.google.dev/gemini-api/docs/structured-output>
//!
//! # The request, field by field
//!
//! | chat-completions field | Gemini field |
//! |---|---|
//! | system and developer messages | `systemInstruction.parts` (their text) |
//! | user messages: text, `image_url` (a `data:` URL as `inlineData`; a `gs://` or `https://` URL as `fileData`, its MIME type guessed from its extension where it can be), `input_audio` (`inlineData`), `file` with `file_data` | `contents[]` with role `user` |
//! | assistant messages: text, `tool_calls` (each a `functionCall` part, its arguments as an object, with the `thoughtSignature` its id carries) | `contents[]` with role `model` |
//! | `tool` messages | `functionResponse` parts (the function's name found from the earlier call with the same `tool_call_id`; the content as the `response` object when it is a JSON object, else `{"content": ...}`), a turn's results in one `user` turn |
//! | function `tools` | `tools[].functionDeclarations` (`parameters` with `$schema`, `$id`, `$comment` and `additionalProperties` dropped, which Gemini refuses; a `["T", "null"]` type as `T` with `nullable`; `strict` dropped) |
//! | Gemini's own tools in `tools` (`{"googleSearch": {}}`, `codeExecution`, `urlContext`, ...) | passed as they came |
//! | `tool_choice` | `toolConfig.functionCallingConfig`: `auto` → `AUTO`, `required` → `ANY`, `none` → `NONE`, a named function → `ANY` with `allowedFunctionNames` |
//! | `temperature`, `top_p`, `top_k`, `max_tokens` or `max_completion_tokens`, `stop`, `n`, `seed`, `presence_penalty`, `frequency_penalty` | `generationConfig`: `temperature`, `topP`, `topK`, `maxOutputTokens`, `stopSequences`, `candidateCount`, `seed`, `presencePenalty`, `frequencyPenalty` |
//! | `response_format`: `json_object`, `json_schema` | `generationConfig.responseMimeType: application/json`, and `responseSchema` (the schema cleaned as tools' parameters are) |
//! | `reasoning_effort` | `generationConfig.thinkingConfig` with `includeThoughts`: `thinkingLevel` for `gemini-3*` models, else a `thinkingBudget` (`none` 0, `minimal` 128, `low` 1024, `medium` 2048, `high` 4096, LiteLLM's figures) |
//! | `thinking_config` / `thinkingConfig`, `generationConfig`, `safetySettings` / `safety_settings`, `cachedContent` / `cached_content`, `toolConfig`, `labels` (Vertex) | Gemini's own fields, passed as they came (a `generationConfig` field also set by a mapped one is refused) |
//! | a call from the Messages door: `top_k`, `thinking` (its `budget_tokens` as `thinkingBudget`, with `includeThoughts`; `disabled` as a budget of 0) | mapped as above |
//! | `stream`, `stream_options`, `user`, `store`, `metadata`, `service_tier`, `parallel_tool_calls: true`; from the Messages door, `cache_control` (anywhere), `container`, `mcp_servers` | dropped (logged at debug level), as a chat-completions upstream drops them |
//! | `parallel_tool_calls: false`, `best_of` above 1, `logprobs`, `top_logprobs`, `logit_bias`, JSON-schema `$ref` / `$defs`, image URLs of another scheme, content parts with no Gemini form, any other field | refused, by name |
//! | an assistant's `reasoning_content` text and `reasoning_signature` (which may be another provider's: Gemini refuses a signature not its own, and needs back only its calls'), an `image_url`'s `detail` | dropped |
//!
//! # The answer
//!
//! | Gemini field | tollgate's answer |
//! |---|---|
//! | `candidates[]` | `choices[]` at the candidate's `index` |
//! | text parts, `thought: true` parts | the content (joined), the reasoning |
//! | `functionCall` parts | tool calls, their `args` as JSON text; the id Gemini gave, else `call_<responseId>_<candidate>_<n>`; a part's `thoughtSignature` rides in the id after `__thought__` (LiteLLM's convention) and goes back on the call |
//! | `thoughtSignature` on other parts | the message's `reasoning_signature` |
//! | `finishReason` | `STOP` → `stop` (`tool_calls` when the candidate calls functions), `MAX_TOKENS` → `length`, `SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`, `IMAGE_SAFETY`, `IMAGE_PROHIBITED_CONTENT`, `IMAGE_RECITATION` → `content_filter` (the client's `ContentFilter` error), others as they came, lowercased |
//! | `promptFeedback.blockReason` and no candidates | one choice finished by `content_filter` |
//! | `usageMetadata` | `promptTokenCount` (which counts cached content) plus `toolUsePromptTokenCount` as input; `cachedContentTokenCount` as cached input; `candidatesTokenCount` plus `thoughtsTokenCount` as output, the thoughts as reasoning tokens (Gemini counts thoughts apart from the candidates: its `totalTokenCount` is the sum) |
//! | `modelVersion`, `responseId` | `model`, `id` |
//! | other candidate fields (`safetyRatings`, `citationMetadata`, `groundingMetadata`, ...), other answer fields (`promptFeedback`, ...) | kept as they came, in the choice's and the answer's `extra` |
//! | parts with no OpenAI form (`inlineData` output, `executableCode`, `codeExecutionResult`) | not in the answer |
//!
//! # The stream
//!
//! `streamGenerateContent?alt=sse` sends each chunk as a whole `GenerateContentResponse` with
//! the new parts, cumulative usage, and finish reasons, and no end event: the stream's proper end
//! is the body's close after a chunk has carried a `finishReason` for every candidate (or a
//! `blockReason`). The finish reasons are held until then (some models repeat them on every
//! chunk), so each choice finishes once. A stream closed before is a `Server` error. A
//! `functionCall` part arrives whole in one chunk, and is one tool-call event.

pub mod embeddings;

mod answer;
mod config;
mod request;
mod stream;

pub use answer::{decode_answer, gemini_usage};
pub use request::encode_request;
pub use stream::GenerateStream;

use serde_json::Value;
use tollgate_core::FinishReason;

/// What joins a tool call's id and the `thoughtSignature` of its `functionCall` part, so an
/// OpenAI client that sends the id back sends the signature too.
pub const THOUGHT_SIGNATURE_SEPARATOR: &str = "__thought__";

/// `value` as JSON text at the end of `out`, as the request's body is written.
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("JSON text writes to memory");
}

/// A candidate's finish reason, `called` when it called functions (Gemini says `STOP` then).
pub(crate) fn finish_reason(reason: &str, called: bool) -> FinishReason {
    match reason {
        "STOP" if called => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_ascii_lowercase().into()),
    }
}

/// One part of a candidate's content, as tollgate reads it.
pub(crate) enum Part<'a> {
    Text(&'a str),
    Thought(&'a str),
    Call {
        name: &'a str,
        args: String,
        id: Option<&'a str>,
    },
    Other,
}

impl<'a> Part<'a> {
    pub(crate) fn of(part: &'a Value) -> Self {
        if let Some(call) = part.get("functionCall") {
            let field = |key: &str| call.get(key).and_then(Value::as_str);
            let args = match call.get("args") {
                None | Some(Value::Null) => "{}".to_owned(),
                Some(args) => args.to_string(),
            };
            return Self::Call {
                name: field("name").unwrap_or_default(),
                args,
                id: field("id").filter(|id| !id.is_empty()),
            };
        }
        match part.get("text").and_then(Value::as_str) {
            Some(text) if part.get("thought").and_then(Value::as_bool) == Some(true) => {
                Self::Thought(text)
            }
            Some(text) => Self::Text(text),
            None => Self::Other,
        }
    }
}

/// A part's `thoughtSignature`.
pub(crate) fn signature(part: &Value) -> Option<&str> {
    part.get("thoughtSignature")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The id of a candidate's `n`th function call: Gemini's own, else one made from the answer's
/// id, so a stream and a whole answer name a call alike; with the part's signature.
pub(crate) fn call_id(
    own: Option<&str>,
    response: Option<&str>,
    candidate: u32,
    n: u32,
    signature: Option<&str>,
) -> String {
    let mut id = match own {
        Some(own) => own.to_owned(),
        None => format!("call_{}_{candidate}_{n}", response.unwrap_or("gemini")),
    };
    if let Some(signature) = signature {
        id.push_str(THOUGHT_SIGNATURE_SEPARATOR);
        id.push_str(signature);
    }
    id
}

/// A candidate's place among the answers.
pub(crate) fn candidate_index(candidate: &Value, position: usize) -> u32 {
    candidate
        .get("index")
        .and_then(Value::as_u64)
        .map_or(position as u32, |i| i as u32)
}
