//! [`StreamEvent`]: one thing a streamed answer said.

use crate::{FinishReason, JsonMap, Usage};

/// One thing a streamed answer said. Pieces name the choice they belong to (`0` unless the request
/// asked for several with `n`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// The model that answers (sent once, first).
    Model(String),
    /// Fields of the answer tollgate does not model (`id`, `created`, `system_fingerprint`, ...),
    /// sent once, as the provider's first chunk had them.
    Meta(JsonMap),
    /// The next piece of a choice's text.
    Text {
        /// The choice it belongs to.
        choice: u32,
        /// The piece.
        text: String,
    },
    /// The next piece of a choice's reasoning (`reasoning_content`, Anthropic's `thinking`).
    Reasoning {
        /// The choice it belongs to.
        choice: u32,
        /// The piece.
        text: String,
    },
    /// The signature that lets a choice's reasoning be sent back to its provider (Anthropic's
    /// `signature_delta`), kept as the message's `reasoning_signature`.
    ReasoningSignature {
        /// The choice it belongs to.
        choice: u32,
        /// The signature.
        signature: String,
    },
    /// The next piece of a choice's refusal.
    Refusal {
        /// The choice it belongs to.
        choice: u32,
        /// The piece.
        text: String,
    },
    /// The next piece of one of a choice's tool calls.
    ToolCall {
        /// The choice it belongs to.
        choice: u32,
        /// The piece.
        call: ToolCallDelta,
    },
    /// Why a choice stopped.
    Finish {
        /// The choice that stopped.
        choice: u32,
        /// Why.
        reason: FinishReason,
    },
    /// Tokens consumed so far (the last one sent is the total).
    Usage(Usage),
    /// One server-sent event exactly as the upstream sent it (without its closing blank line),
    /// handed out before what it says, when the caller speaks the upstream's own API and the
    /// events pass through unchanged. Every other reader passes it by.
    Verbatim(bytes::Bytes),
}

impl StreamEvent {
    /// A piece of the first choice's text.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text {
            choice: 0,
            text: text.into(),
        }
    }

    /// The first choice's finish.
    pub fn finish(reason: FinishReason) -> Self {
        Self::Finish { choice: 0, reason }
    }
}

/// A piece of a tool call: the call's place among the choice's calls, its id and function name
/// (in the first piece), and the next piece of its arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolCallDelta {
    /// The call's place among the choice's tool calls.
    pub index: u32,
    /// The call's id, in its first piece.
    pub id: Option<String>,
    /// The function's name, in its first piece.
    pub name: Option<String>,
    /// The next piece of the arguments (JSON text, concatenated in order).
    pub arguments: String,
}

impl ToolCallDelta {
    /// The piece at `index` carrying `arguments`, with the call's `id` and `name` when given.
    pub fn new(
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            index,
            id,
            name,
            arguments: arguments.into(),
        }
    }
}
