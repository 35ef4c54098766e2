//! OpenAI's APIs: [`chat`] completions, [`embeddings`] and legacy text [`completions`]. Room is
//! left for the Responses API (`responses`).

pub mod chat;
pub mod completions;
pub mod embeddings;
