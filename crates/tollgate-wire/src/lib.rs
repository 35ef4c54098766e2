//! The wire formats tollgate speaks, one home per API: each module reads and writes its API both
//! ways, to and from tollgate's [`LlmRequest`], [`LlmResponse`] and
//! [`StreamEvent`](tollgate_core::stream::StreamEvent), server-sent events included.
//!
//! | module | API | the caller's side (a gateway's door) | the upstream's side (a client) |
//! |---|---|---|---|
//! | [`openai::chat`] | chat completions | [`decode_request`](openai::chat::decode_request), [`encode_answer`](openai::chat::encode_answer), [`ChunkEvents`](openai::chat::ChunkEvents) | [`encode_request`](openai::chat::encode_request), [`decode_answer`](openai::chat::decode_answer), [`Chunks`](openai::chat::Chunks) |
//! | [`openai::embeddings`] | embeddings | [`decode_request`](openai::embeddings::decode_request), [`encode_answer`](openai::embeddings::encode_answer) | [`encode_request`](openai::embeddings::encode_request), [`decode_answer`](openai::embeddings::decode_answer) |
//! | [`openai::completions`] | legacy text completions | [`decode_request`](openai::completions::decode_request), [`encode_answer`](openai::completions::encode_answer), [`CompletionEvents`](openai::completions::CompletionEvents) | [`encode_request`](openai::completions::encode_request), [`decode_answer`](openai::completions::decode_answer), [`TextChunks`](openai::completions::TextChunks) |
//! | [`gemini`] | Gemini `generateContent` (and Vertex AI's Gemini models) | — | [`encode_request`](gemini::encode_request), [`decode_answer`](gemini::decode_answer), [`GenerateStream`](gemini::GenerateStream) |
//! | [`gemini::embeddings`] | Gemini `batchEmbedContents` | — | [`encode_request`](gemini::embeddings::encode_request), [`decode_answer`](gemini::embeddings::decode_answer) |
//! | [`openai::responses`] | Responses (`/v1/responses`), passed through or translated through the chat shape | [`decode_request`](openai::responses::decode_request), [`continue_from`](openai::responses::continue_from), [`encode_answer`](openai::responses::encode_answer), [`ResponseEvents`](openai::responses::ResponseEvents) | [`encode_request`](openai::responses::encode_request), [`decode_answer`](openai::responses::decode_answer), [`ResponsesStream`](openai::responses::ResponsesStream) |
//! | [`anthropic::messages`] | Messages | [`decode_request`](anthropic::messages::decode_request), [`encode_answer`](anthropic::messages::encode_answer), [`MessageEvents`](anthropic::messages::MessageEvents) | [`encode_request`](anthropic::messages::encode_request), [`decode_answer`](anthropic::messages::decode_answer), [`MessageStream`](anthropic::messages::MessageStream) |
//! | [`bedrock`] | Bedrock Converse, ConverseStream (AWS event stream), InvokeModel embeddings | — | [`encode_request`](bedrock::encode_request), [`decode_answer`](bedrock::decode_answer), [`ConverseEvents`](bedrock::ConverseEvents), [`embeddings`](bedrock::embeddings) |
//!
//! [`sse`] holds what every stream shares: the framing, a [`Decoder`](sse::Decoder) that reads
//! an API's [`Format`](sse::Format) within its bounds until its proper end, and the writers. A
//! call that comes in one API and goes to an upstream of the same API passes through: see
//! [`anthropic::messages`] for the Messages API, [`openai::completions`] for legacy text
//! completions and [`openai::responses`] for the Responses API, and for each pair of APIs the
//! table of what is kept, mapped or dropped.
//!
//! ```
//! use tollgate_wire::{anthropic::messages, openai::chat};
//!
//! // A caller's Messages request, read at the door...
//! let body = br#"{"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}], "top_k": 3}"#;
//! let request = messages::decode_request(bytes::Bytes::from_static(body), &Default::default()).unwrap();
//! // ...goes to a Messages upstream as it came, and to a chat-completions one without what only
//! // the Messages API means.
//! let same = messages::encode_request(&request, 4096, false).unwrap();
//! assert_eq!(same, &body[..]);
//! let translated = chat::encode_request(&request, tollgate_core::MaxTokensName::MaxTokens, false).unwrap();
//! let translated: serde_json::Value = serde_json::from_slice(&translated).unwrap();
//! assert_eq!(translated["max_tokens"], 64);
//! assert!(translated.get("top_k").is_none());
//! ```

pub mod anthropic;
pub mod bedrock;
mod body;
pub mod gemini;
pub mod openai;
mod refusal;
pub mod sse;

pub use refusal::Refusal;
#[doc(no_inline)]
pub use tollgate_core::{LlmRequest, LlmResponse};
