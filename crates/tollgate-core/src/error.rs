//! The one error type every tollgate layer returns, with kinds a caller can match on.

use std::{
    borrow::Cow, convert::Infallible, error::Error as StdError, fmt, sync::Arc, time::Duration,
};

use http::StatusCode;

/// A type-erased error, as tower's middleware uses.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// `count` of `noun`, for messages people read: `1 attempt`, `3 attempts`, `0 failures`.
///
/// ```
/// assert_eq!(tollgate_core::counted(1, "call"), "1 call");
/// assert_eq!(tollgate_core::counted(4, "attempt"), "4 attempts");
/// ```
pub fn counted(count: u64, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}

/// Whose doing a failed call was ([`ErrorKind::fault`]): one classification of every outcome,
/// on which each layer builds its own policy, as tower-http's classifiers do.
///
/// | fault | kinds | retry's default | breaker's default | health's default |
/// |---|---|---|---|---|
/// | `Upstream` | `Server`, `Timeout`, `Connect`, `Overloaded` | retried | a failure | a failure |
/// | `Throttled` | `RateLimited` | retried | ignored (or a failure, when configured) | a failure |
/// | `Caller` | `InvalidRequest`, `Auth`, `ContentFilter` | never | a success: the upstream answered | ignored, but `Auth` (a bad key is the component's) |
/// | `Tollgate` | `CircuitOpen`, `BudgetExceeded`, `Unavailable` | never | ignored | a failure |
/// | `Internal` | `Internal` | never | ignored | a failure |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The upstream failed in a way that may pass: it is broken, slow, unreachable or overloaded.
    Upstream,
    /// The upstream is limiting this caller: it works, and asks for less.
    Throttled,
    /// The request, its key or its content was refused: the upstream answered, and sending the
    /// same request again will not help.
    Caller,
    /// tollgate decided, not the upstream: a breaker open, a budget spent, a dependency away.
    Tollgate,
    /// A bug, or a failure nobody classified.
    Internal,
}

/// What went wrong, in terms a caller can act on.
///
/// [`ErrorKind::is_retryable`] is the one place that says which kinds are transient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Too many requests: the provider said 429, or a tollgate quota denied the call.
    RateLimited,
    /// The provider is overloaded (HTTP 529, 503).
    Overloaded,
    /// The call, or one attempt of it, took too long.
    Timeout,
    /// No connection could be made.
    Connect,
    /// The provider failed (HTTP 500, 502, 504 and other 5xx).
    Server,
    /// The credentials were refused (HTTP 401, 403).
    Auth,
    /// The request itself is wrong (HTTP 400, 404, 422); sending it again will not help.
    InvalidRequest,
    /// The provider's content filter blocked the prompt or the answer.
    ContentFilter,
    /// The prompt is too long for the model's context window: another model with a larger one
    /// may take it, the same model never will.
    ContextWindow,
    /// A circuit breaker is open: the call was not attempted.
    CircuitOpen,
    /// A token or cost budget is spent until its period resets.
    BudgetExceeded,
    /// A dependency tollgate needs (or the component itself) is unavailable.
    Unavailable,
    /// A bug or an unexpected failure inside tollgate or the inner service.
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 13] = [
        Self::RateLimited,
        Self::Overloaded,
        Self::Timeout,
        Self::Connect,
        Self::Server,
        Self::Auth,
        Self::InvalidRequest,
        Self::ContentFilter,
        Self::ContextWindow,
        Self::CircuitOpen,
        Self::BudgetExceeded,
        Self::Unavailable,
        Self::Internal,
    ];

    /// Whose doing a failure of this kind is: the one classification the retry, breaker and health
    /// layers each build their own policy on.
    pub const fn fault(self) -> Fault {
        match self {
            Self::Server | Self::Timeout | Self::Connect | Self::Overloaded => Fault::Upstream,
            Self::RateLimited => Fault::Throttled,
            Self::InvalidRequest | Self::Auth | Self::ContentFilter | Self::ContextWindow => {
                Fault::Caller
            }
            Self::CircuitOpen | Self::BudgetExceeded | Self::Unavailable => Fault::Tollgate,
            Self::Internal => Fault::Internal,
        }
    }

    /// Whether the same request may succeed if sent again later: an [`Upstream`](Fault::Upstream)
    /// or [`Throttled`](Fault::Throttled) fault.
    ///
    /// True for `RateLimited`, `Overloaded`, `Timeout`, `Connect` and `Server`. Never for caller
    /// mistakes (`Auth`, `InvalidRequest`, `ContentFilter`, `ContextWindow`), spent budgets (`BudgetExceeded`), or
    /// decisions tollgate made to protect the provider (`CircuitOpen`, `Unavailable`): retrying those
    /// would defeat them.
    pub const fn is_retryable(self) -> bool {
        matches!(self.fault(), Fault::Upstream | Fault::Throttled)
    }

    /// The kind an HTTP error status means.
    ///
    /// 429 → `RateLimited`; 503 and 529 → `Overloaded`; 408 → `Timeout`; other 5xx → `Server`;
    /// 401, 403 → `Auth`; other 4xx → `InvalidRequest`; anything else → `Internal`.
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            429 => Self::RateLimited,
            503 | 529 => Self::Overloaded,
            408 => Self::Timeout,
            500..=599 => Self::Server,
            401 | 403 => Self::Auth,
            400..=499 => Self::InvalidRequest,
            _ => Self::Internal,
        }
    }

    /// The kind's stable snake_case name, e.g. `rate_limited`: what configuration files,
    /// reports, metric labels and logs call it. Serde reads and writes a kind as its name.
    ///
    /// ```
    /// use tollgate_core::ErrorKind;
    ///
    /// assert_eq!(ErrorKind::InvalidRequest.name(), "invalid_request");
    /// assert_eq!(ErrorKind::from_name("circuit_open"), Some(ErrorKind::CircuitOpen));
    /// let kinds: Vec<ErrorKind> = serde_json::from_str(r#"["timeout", "server"]"#).unwrap();
    /// assert_eq!(kinds, [ErrorKind::Timeout, ErrorKind::Server]);
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Server => "server",
            Self::Auth => "auth",
            Self::InvalidRequest => "invalid_request",
            Self::ContentFilter => "content_filter",
            Self::ContextWindow => "context_window",
            Self::CircuitOpen => "circuit_open",
            Self::BudgetExceeded => "budget_exceeded",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The kind whose [`name`](Self::name) is `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// A short lowercase description, e.g. `rate limited`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate limited",
            Self::Overloaded => "provider overloaded",
            Self::Timeout => "timed out",
            Self::Connect => "connection failed",
            Self::Server => "provider error",
            Self::Auth => "authentication failed",
            Self::InvalidRequest => "invalid request",
            Self::ContentFilter => "blocked by content filter",
            Self::ContextWindow => "prompt too long for the context window",
            Self::CircuitOpen => "circuit open",
            Self::BudgetExceeded => "budget exceeded",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal error",
        }
    }
}

impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|kind| kind.name()).collect();
            serde::de::Error::custom(format!(
                "unknown error kind {name:?}; known: {}",
                known.join(", ")
            ))
        })
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Marks a failure that sending the same call to the same upstream again would only repeat,
/// whatever its kind: an answer past the client's size bound, an upstream silent past its
/// first-byte timeout. [`LlmError::is_retryable`] is false for it, so a retry layer leaves it
/// alone; a router may still send the call to another deployment.
///
/// ```
/// use tollgate_core::{ErrorKind, LlmError, NoRetry};
///
/// let silent = LlmError::new(ErrorKind::Timeout, "no first byte in 60s").with_extension(NoRetry);
/// assert!(!silent.is_retryable());
/// assert!(LlmError::new(ErrorKind::Timeout, "slow").is_retryable());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoRetry;

/// An [`LlmError`] extension: the usage the provider billed for a call it answered and that
/// still failed (a content filter stopped the answer, a guardrail intervened). A rate limiter
/// settles the call's tokens and cost with it, and a cost tracker counts it, as for an answer.
///
/// ```
/// use tollgate_core::{BilledUsage, ErrorKind, LlmError, Usage};
///
/// let filtered = LlmError::new(ErrorKind::ContentFilter, "withheld")
///     .with_extension(BilledUsage(Usage::new(1_000, 12)));
/// assert_eq!(BilledUsage::of(&filtered), Some(Usage::new(1_000, 12)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BilledUsage(pub crate::Usage);

impl BilledUsage {
    /// What `error` says the provider billed, when it says.
    pub fn of(error: &LlmError) -> Option<crate::Usage> {
        error.extensions().get::<Self>().map(|billed| billed.0)
    }
}

/// The error of an LLM call through tollgate.
///
/// Cheap to move (one pointer) and to clone (a cache's single-flight hands one failure to every
/// waiter). Layers attach typed details to [`LlmError::extensions`] — which quota denied, how many
/// attempts were made — so callers never parse messages.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::{ErrorKind, LlmError};
///
/// let err = LlmError::new(ErrorKind::RateLimited, "tokens per minute exhausted for gpt-4o")
///     .with_status(http::StatusCode::TOO_MANY_REQUESTS)
///     .with_retry_after(Duration::from_secs(7));
///
/// assert!(err.is_retryable());
/// assert_eq!(
///     err.to_string(),
///     "rate limited (HTTP 429, retry after 7s): tokens per minute exhausted for gpt-4o"
/// );
/// ```
#[derive(Clone)]
pub struct LlmError {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
    extensions: http::Extensions,
}

impl LlmError {
    /// An error of `kind` with a message saying what happened.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                status: None,
                retry_after: None,
                source: None,
                extensions: http::Extensions::new(),
            }),
        }
    }

    /// An error for an HTTP error status, with the kind [`ErrorKind::from_status`] gives.
    pub fn from_status(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::from_status(status), message).with_status(status)
    }

    /// Records the HTTP status the provider answered with.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.inner.status = Some(status);
        self
    }

    /// Records how long to wait before trying again.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.inner.retry_after = Some(retry_after);
        self
    }

    /// Records the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(Arc::from(source.into()));
        self
    }

    /// Attaches a typed detail (replacing one of the same type).
    #[must_use]
    pub fn with_extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.inner.extensions.insert(value);
        self
    }

    /// Appends a note to the message (`...; gave up after 4 attempts`), keeping everything else.
    #[must_use]
    pub fn with_note(mut self, note: impl fmt::Display) -> Self {
        self.inner.message = if self.inner.message.is_empty() {
            note.to_string().into()
        } else {
            format!("{}; {note}", self.inner.message).into()
        };
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The human-readable message, without the kind.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The provider's HTTP status, when there was one.
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.status
    }

    /// How long to wait before trying again, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// Whether the call may succeed if sent again: its kind's [`ErrorKind::is_retryable`],
    /// unless it is marked [`NoRetry`].
    pub fn is_retryable(&self) -> bool {
        self.inner.kind.is_retryable() && self.inner.extensions.get::<NoRetry>().is_none()
    }

    /// Typed details attached by layers.
    pub fn extensions(&self) -> &http::Extensions {
        &self.inner.extensions
    }

    /// Mutable access to the typed details.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.inner.extensions
    }
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.write_str(inner.kind.as_str())?;
        // Whole milliseconds: a wait of 14.24144795s reads better as 14.241s, and nobody waits less.
        let retry_after = inner
            .retry_after
            .map(|after| Duration::from_millis(after.as_nanos().div_ceil(1_000_000) as u64));
        match (inner.status, retry_after) {
            (Some(status), Some(after)) => {
                write!(f, " (HTTP {}, retry after {after:?})", status.as_u16())?
            }
            (Some(status), None) => write!(f, " (HTTP {})", status.as_u16())?,
            (None, Some(after)) => write!(f, " (retry after {after:?})")?,
            (None, None) => {}
        }
        if !inner.message.is_empty() {
            write!(f, ": {}", inner.message)?;
        }
        Ok(())
    }
}

impl fmt::Debug for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("LlmError")
            .field("kind", &inner.kind)
            .field("message", &inner.message)
            .field("status", &inner.status)
            .field("retry_after", &inner.retry_after)
            .field("source", &inner.source)
            .finish_non_exhaustive()
    }
}

impl StdError for LlmError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

impl From<Infallible> for LlmError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

impl From<tokio::time::error::Elapsed> for LlmError {
    fn from(elapsed: tokio::time::error::Elapsed) -> Self {
        Self::new(ErrorKind::Timeout, "deadline elapsed").with_source(elapsed)
    }
}

/// Recovers an [`LlmError`] from a boxed error (as tower's own middleware produces); a tokio or
/// tower timeout becomes `Timeout`, anything else `Internal` with the original as its source.
impl From<BoxError> for LlmError {
    fn from(error: BoxError) -> Self {
        match error.downcast::<Self>() {
            Ok(llm) => *llm,
            Err(error) => match error.downcast::<tokio::time::error::Elapsed>() {
                Ok(elapsed) => Self::from(*elapsed),
                Err(error) if is_tower_elapsed(&*error) => {
                    Self::new(ErrorKind::Timeout, error.to_string()).with_source(error)
                }
                Err(error) => Self::new(ErrorKind::Internal, error.to_string()).with_source(error),
            },
        }
    }
}

// tower's `timeout::error::Elapsed` lives behind a feature we do not want to force on users, so
// it is recognized by its message ("request timed out") rather than by type.
fn is_tower_elapsed(error: &(dyn StdError + 'static)) -> bool {
    error.to_string() == "request timed out"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrying_follows_the_fault() {
        for kind in ErrorKind::ALL {
            let transient = matches!(kind.fault(), Fault::Upstream | Fault::Throttled);
            assert_eq!(kind.is_retryable(), transient, "{kind:?}");
        }
        assert_eq!(ErrorKind::RateLimited.fault(), Fault::Throttled);
        assert_eq!(ErrorKind::Auth.fault(), Fault::Caller);
        assert_eq!(ErrorKind::BudgetExceeded.fault(), Fault::Tollgate);
    }

    #[test]
    fn every_kind_has_its_own_name_and_comes_back_from_it() {
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|kind| kind.name()).collect();
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(kind.name()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<ErrorKind>(&json).unwrap(), kind);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert_eq!(ErrorKind::from_name("Timeout"), None);
    }

    #[test]
    fn every_kind_has_a_deliberate_retry_classification() {
        let table = [
            (ErrorKind::RateLimited, true),
            (ErrorKind::Overloaded, true),
            (ErrorKind::Timeout, true),
            (ErrorKind::Connect, true),
            (ErrorKind::Server, true),
            (ErrorKind::Auth, false),
            (ErrorKind::InvalidRequest, false),
            (ErrorKind::ContentFilter, false),
            (ErrorKind::ContextWindow, false),
            (ErrorKind::CircuitOpen, false),
            (ErrorKind::BudgetExceeded, false),
            (ErrorKind::Unavailable, false),
            (ErrorKind::Internal, false),
        ];
        assert_eq!(
            table.len(),
            ErrorKind::ALL.len(),
            "a kind is missing from the table"
        );
        for ((kind, retryable), declared) in table.into_iter().zip(ErrorKind::ALL) {
            assert_eq!(kind, declared);
            assert_eq!(kind.is_retryable(), retryable, "{kind:?}");
            assert_eq!(
                LlmError::new(kind, "x").is_retryable(),
                retryable,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        let table = [
            (400, ErrorKind::InvalidRequest),
            (401, ErrorKind::Auth),
            (403, ErrorKind::Auth),
            (404, ErrorKind::InvalidRequest),
            (408, ErrorKind::Timeout),
            (422, ErrorKind::InvalidRequest),
            (429, ErrorKind::RateLimited),
            (500, ErrorKind::Server),
            (502, ErrorKind::Server),
            (503, ErrorKind::Overloaded),
            (504, ErrorKind::Server),
            (529, ErrorKind::Overloaded),
            (302, ErrorKind::Internal),
        ];
        for (code, kind) in table {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(ErrorKind::from_status(status), kind, "{code}");
            let err = LlmError::from_status(status, "body");
            assert_eq!(err.status(), Some(status));
        }
    }

    #[test]
    fn display_says_what_to_do() {
        let err = LlmError::new(ErrorKind::Overloaded, "try later")
            .with_retry_after(Duration::from_millis(1500));
        assert_eq!(
            err.to_string(),
            "provider overloaded (retry after 1.5s): try later"
        );
        // Printed in whole milliseconds, rounded up; the value itself stays exact.
        let exact = Duration::from_nanos(14_241_447_950);
        let err = LlmError::new(ErrorKind::RateLimited, "").with_retry_after(exact);
        assert_eq!(err.to_string(), "rate limited (retry after 14.242s)");
        assert_eq!(err.retry_after(), Some(exact));
        assert_eq!(
            LlmError::new(ErrorKind::Auth, "").to_string(),
            "authentication failed"
        );
        let noted = LlmError::new(ErrorKind::Server, "boom").with_note("gave up after 4 attempts");
        assert_eq!(
            noted.to_string(),
            "provider error: boom; gave up after 4 attempts"
        );
    }

    #[test]
    fn boxed_errors_come_back_typed() {
        let original = LlmError::new(ErrorKind::Auth, "bad key").with_extension(7_u32);
        let boxed: BoxError = Box::new(original);
        let back = LlmError::from(boxed);
        assert_eq!(back.kind(), ErrorKind::Auth);
        assert_eq!(back.extensions().get::<u32>(), Some(&7));

        let io: BoxError = Box::new(std::io::Error::other("disk on fire"));
        let back = LlmError::from(io);
        assert_eq!(back.kind(), ErrorKind::Internal);
        assert!(back.source().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn elapsed_is_a_timeout() {
        let elapsed = tokio::time::timeout(Duration::from_secs(1), std::future::pending::<()>())
            .await
            .unwrap_err();
        let boxed: BoxError = Box::new(elapsed);
        assert_eq!(LlmError::from(boxed).kind(), ErrorKind::Timeout);
    }

    #[test]
    fn error_is_one_pointer() {
        assert_eq!(
            std::mem::size_of::<LlmError>(),
            std::mem::size_of::<usize>()
        );
    }
}
