//! What the router says on an answer, and what a caller may say on a request.

use std::sync::Arc;

/// Which deployment answered and how it came to: an extension on every answer the router gives.
///
/// The gateway sends it as the `x-tollgate-deployment` and `x-tollgate-moves` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Served {
    /// The deployment's name.
    pub deployment: Arc<str>,
    /// The provider it sets on requests, when it sets one.
    pub provider: Option<Arc<str>>,
    /// The group it belongs to that the call was in when it answered.
    pub group: Arc<str>,
    /// Calls sent before the one that answered: 0 when the first deployment answered.
    pub moves: u32,
    /// Whether it answered as a hedge, while an earlier call was still running.
    pub hedged: bool,
}

/// The latest time a call may end, all moves included: put it in a request's extensions to bound
/// that call more tightly than the router's `timeout`.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::{LlmRequest, Message};
/// use tollgate_router::Deadline;
///
/// let mut request = LlmRequest::new("", vec![Message::user("hi")]);
/// request.extensions.insert(Deadline::after(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub tokio::time::Instant);

impl Deadline {
    /// `after` from now.
    pub fn after(after: std::time::Duration) -> Self {
        Self(tokio::time::Instant::now() + after)
    }
}
