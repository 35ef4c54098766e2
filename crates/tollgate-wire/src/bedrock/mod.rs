//! Amazon Bedrock's Converse and ConverseStream APIs
//! (`POST /model/{modelId}/converse`, `/model/{modelId}/converse-stream`), the client's side:
//! a request in the OpenAI shape written as Converse's ([`encode_request`]), a whole answer read
//! back ([`decode_answer`]), and a stream read from AWS's binary event stream
//! ([`ConverseEvents`]); and embeddings through `InvokeModel` for Titan and Cohere
//! ([`embeddings`]).
//!
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>,
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>
//!
//! # Translation, field by field
//!
//! | chat-completions field | to Converse |
//! |---|---|
//! | `model` | the path's `modelId`, percent-encoded ([`path`]): ids with `:`, inference profiles, ARNs |
//! | system and developer messages | `system` text blocks |
//! | user text and `image_url` parts with a `data:` URL | `text` and `image` blocks (`format`, `source.bytes`) |
//! | `image_url` with any other URL, other part types | refused by name: Converse takes an image's bytes |
//! | assistant text, signed reasoning (`reasoningContent.reasoningText`), tool calls (`toolUse`, arguments as the `input` object) | mapped |
//! | `tool` messages | `toolResult` blocks (`toolUseId`; `content` of text, images, and `{"type": "json", "json": ...}` parts as `json`; the message's `status`), in a user turn |
//! | turns of one role in a row (tool results and the user's next words) | one turn: Converse takes turns that alternate |
//! | `cache_control` on a part, a message or a tool | a `cachePoint` block after it |
//! | `max_tokens` (under either name), `temperature`, `top_p`, `stop` | `inferenceConfig` (`maxTokens`, `temperature`, `topP`, `stopSequences`); none when unset |
//! | function `tools`, `tool_choice` (`auto`, `required` as `any`, a function as `tool`) | `toolConfig` |
//! | `tool_choice: "none"` | the tools are left out (logged at debug level): Converse has no `none`; refused in a conversation that holds tool calls |
//! | `reasoning_effort` for Claude | `additionalModelRequestFields.thinking` with a budget (1024, 2048, 4096 tokens) |
//! | `top_k` for Amazon Nova | `additionalModelRequestFields.inferenceConfig.topK` |
//! | `guardrailConfig`, `performanceConfig`, `promptVariables`, `requestMetadata`, `additionalModelResponseFieldPaths`, `serviceTier` | passed as they came, but for a tier priced above the model's price (`serviceTier.type: priority`, `performanceConfig.latency: optimized`), refused by name: calls are billed at the model's price |
//! | `user` | `requestMetadata.user` |
//! | `additionalModelRequestFields`, and every other field (`top_k`, `thinking`, ...) | `additionalModelRequestFields`, for the model |
//! | `seed`, `stream`, `stream_options` | dropped: Converse has no seed, and the stack picks the endpoint |
//! | `response_format` other than `text`, `n` or `best_of` above 1, `top_logprobs`, `logprobs`, penalties, `logit_bias`, `parallel_tool_calls: false` | refused by name |
//!
//! | Converse answer | in tollgate's answer |
//! |---|---|
//! | `output.message.content`: `text` blocks | the content, joined |
//! | `reasoningContent.reasoningText` | the reasoning, its signature kept; redacted reasoning is not read |
//! | `toolUse` | tool calls, `input` as the arguments' JSON text |
//! | `stopReason` | the finish ([`finish_reason`]): `guardrail_intervened` and `content_filtered` are a content filter |
//! | `usage` | usage with the prompt whole ([`converse_usage`]) |
//! | `metrics` (`latencyMs`), `trace`, `additionalModelResponseFields`, `performanceConfig` | kept in the answer's `extra` |
//!
//! A stream's events map the same way: `contentBlockStart` opens a tool call (id and name),
//! `contentBlockDelta` carries text, `toolUse.input` pieces and reasoning text and signatures,
//! `messageStop` the finish, `metadata` the usage and metrics.

mod answer;
pub mod embeddings;
mod request;
mod stream;

use serde_json::Value;
use tollgate_core::ErrorKind;

pub use answer::{converse_usage, decode_answer, finish_reason};
pub use request::encode_request;
pub use stream::ConverseEvents;

/// The path of `model`'s Converse call (`/model/{modelId}/converse`, or `converse-stream` for a
/// stream), with the model id percent-encoded: every byte but letters, digits and `-._~`, so a
/// model id's `:` and an ARN's `/` stay inside the one segment.
///
/// ```
/// use tollgate_wire::bedrock::path;
///
/// assert_eq!(
///     path("anthropic.claude-3-5-sonnet-20241022-v2:0", "converse"),
///     "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
/// );
/// assert_eq!(
///     path("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0", "converse-stream"),
///     "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse-stream"
/// );
/// ```
pub fn path(model: &str, action: &str) -> String {
    let mut out = String::with_capacity(model.len() + action.len() + 16);
    out.push_str("/model/");
    for byte in model.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out.push('/');
    out.push_str(action);
    out
}

/// The kind of a Bedrock error or exception named `name`, in either spelling
/// (`ThrottlingException` in an `x-amzn-ErrorType` header, `throttlingException` in a stream).
pub fn error_kind(name: &str) -> Option<ErrorKind> {
    let mut chars = name.chars();
    let first = chars.next()?.to_ascii_uppercase();
    let name: String = std::iter::once(first).chain(chars).collect();
    Some(match name.as_str() {
        "ThrottlingException" | "ServiceQuotaExceededException" | "TooManyRequestsException" => {
            ErrorKind::RateLimited
        }
        "ServiceUnavailableException" | "ModelNotReadyException" => ErrorKind::Overloaded,
        "ModelTimeoutException" => ErrorKind::Timeout,
        "ValidationException" | "ResourceNotFoundException" | "ConflictException" => {
            ErrorKind::InvalidRequest
        }
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "ExpiredTokenException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "MissingAuthenticationTokenException"
        | "InvalidClientTokenId" => ErrorKind::Auth,
        "InternalServerException" | "ModelStreamErrorException" | "ModelErrorException" => {
            ErrorKind::Server
        }
        _ => return None,
    })
}

/// The error's name from an `x-amzn-ErrorType` header (`ThrottlingException:http://...`) or,
/// without one, the body's `__type` (`com.amazon.coral.validate#ValidationException`).
pub fn error_name<'a>(header: Option<&'a str>, body: &'a Value) -> Option<&'a str> {
    let raw = header.or_else(|| body.get("__type").and_then(Value::as_str))?;
    let name = raw.split(':').next().unwrap_or(raw);
    let name = name.rsplit('#').next().unwrap_or(name).trim();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_read_from_either_place() {
        let body = serde_json::json!({ "__type": "com.amazon.coral.validate#ValidationException" });
        assert_eq!(error_name(None, &body), Some("ValidationException"));
        let header = "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/";
        assert_eq!(error_name(Some(header), &body), Some("ThrottlingException"));
        assert_eq!(
            error_kind("throttlingException"),
            Some(ErrorKind::RateLimited)
        );
        assert_eq!(
            error_kind("ModelNotReadyException"),
            Some(ErrorKind::Overloaded)
        );
        assert_eq!(error_kind("SomethingElse"), None);
    }
}
