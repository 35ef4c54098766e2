//! OpenAI's APIs: [`chat`] completions and [`embeddings`]. Room is left for the Responses API
//! (`responses`).

pub mod chat;
pub mod embeddings;
