//! OpenAI's APIs: [`chat`] completions, [`embeddings`], legacy text [`completions`] and
//! [`responses`].

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod responses;
