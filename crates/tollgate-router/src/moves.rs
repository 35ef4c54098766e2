//! Which failures move a call, and where to.

use tollgate_core::{ErrorKind, LlmError, UpstreamError};

/// Where a failed call goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// To the next deployment of its group, then the group's `fallbacks`.
    Next,
    /// To the group's `context_window_fallbacks`: the prompt is too long for this model.
    ContextWindow,
    /// To the group's `content_policy_fallbacks`: the provider's filter refused it.
    ContentPolicy,
    /// Nowhere: the request itself is wrong (or a budget is spent), and another deployment
    /// would say the same.
    Stop,
}

impl Move {
    /// Where a call that failed with `error` goes, in a group that also moves on the upstream
    /// statuses in `on_status`.
    pub(crate) fn after(error: &LlmError, on_status: &[u16]) -> Self {
        if error
            .status()
            .is_some_and(|status| on_status.contains(&status.as_u16()))
        {
            return Self::Next;
        }
        match error.kind() {
            ErrorKind::Overloaded
            | ErrorKind::RateLimited
            | ErrorKind::CircuitOpen
            | ErrorKind::Server
            | ErrorKind::Timeout
            | ErrorKind::Connect
            | ErrorKind::Unavailable
            // The deployment's key was refused, not the request: another key may do.
            | ErrorKind::Auth => Self::Next,
            ErrorKind::ContextWindow => Self::ContextWindow,
            // A service of the caller's own may say so only in words.
            ErrorKind::InvalidRequest if is_context_window(error) => Self::ContextWindow,
            ErrorKind::ContentFilter => Self::ContentPolicy,
            _ => Self::Stop,
        }
    }
}

/// Whether a refused request was refused for its length: as the provider client read the
/// upstream's answer ([`UpstreamError::context_window`]), or as the message says it (OpenAI's
/// `context_length_exceeded`, vLLM's and Ollama's "maximum context length", Anthropic's "prompt
/// is too long").
pub(crate) fn is_context_window(error: &LlmError) -> bool {
    error
        .extensions()
        .get::<UpstreamError>()
        .is_some_and(|said| said.context_window)
        || tollgate_core::is_context_window(error.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_move_as_the_issue_says() {
        let moves = |kind| Move::after(&LlmError::new(kind, "no"), &[]);
        for kind in [
            ErrorKind::Overloaded,
            ErrorKind::RateLimited,
            ErrorKind::CircuitOpen,
            ErrorKind::Server,
            ErrorKind::Timeout,
            ErrorKind::Connect,
            ErrorKind::Unavailable,
            ErrorKind::Auth,
        ] {
            assert_eq!(moves(kind), Move::Next, "{kind:?}");
        }
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::BudgetExceeded,
            ErrorKind::Internal,
        ] {
            assert_eq!(moves(kind), Move::Stop, "{kind:?}");
        }
        assert_eq!(moves(ErrorKind::ContentFilter), Move::ContentPolicy);
        assert_eq!(moves(ErrorKind::ContextWindow), Move::ContextWindow);
    }

    #[test]
    fn context_window_errors_are_recognised_by_their_words() {
        for message in [
            "This model's maximum context length is 8192 tokens. (context_length_exceeded)",
            "prompt is too long: 210000 tokens > 200000 maximum",
            "Input is too long for requested model.",
        ] {
            let error = LlmError::new(ErrorKind::InvalidRequest, message);
            assert_eq!(Move::after(&error, &[]), Move::ContextWindow, "{message}");
        }
        let other = LlmError::new(ErrorKind::InvalidRequest, "temperature must be <= 2");
        assert_eq!(Move::after(&other, &[]), Move::Stop);
    }
}
