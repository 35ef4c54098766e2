//! OpenAI's chat completions (`POST /v1/chat/completions`), both ways.
//!
//! tollgate's own types are this API's shape: [`LlmRequest`](tollgate_core::LlmRequest) and
//! [`LlmResponse`](tollgate_core::LlmResponse) read and write it losslessly, every field they do
//! not model kept as it came. This module adds what is more than serde: the door's reading of a
//! caller's body ([`decode_request`]), the body an upstream is sent ([`encode_request`]), an
//! upstream's answer read ([`decode_answer`]; [`decode_kept_answer`] keeps its bytes for a caller
//! as [`ChatAnswer`]) and a caller's written ([`encode_answer`]), and the stream both ways ([`Chunks`], [`ChunkEvents`]).
//!
//! <https://platform.openai.com/docs/api-reference/chat>

mod answer;
mod request;
mod stream;

pub use answer::{ChatAnswer, decode_answer, decode_kept_answer, encode_answer, required_fields};
pub use request::{MESSAGES_ONLY, decode_request, encode_request, encode_request_with};
pub use stream::{ChunkEvents, ChunkWriter, Chunks};
