//! OpenAI's APIs: [`chat`] completions, [`embeddings`] and [`responses`].

pub mod chat;
pub mod embeddings;
pub mod responses;
