//! Anthropic's APIs: the [`messages`] API. Room is left for Bedrock's and Vertex's forms of it.

pub mod messages;
