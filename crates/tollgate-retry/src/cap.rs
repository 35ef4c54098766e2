//! How a request caps the retries made for it.

/// A request that may cap the retries made for it, below what the policy allows. A request
/// that sets a cap (even one above the policy's count) says its caller can send it elsewhere, so
/// a throttled failure (`RateLimited`, `Overloaded`) is given back at once rather than waited
/// out.
///
/// An [`LlmRequest`](tollgate_core::LlmRequest) reads its
/// [`meta.retry_cap`](tollgate_core::RequestMeta::retry_cap); another request type caps nothing
/// unless it says otherwise:
///
/// ```
/// use tollgate_retry::RetryCap;
///
/// #[derive(Clone)]
/// struct Job;
/// impl RetryCap for Job {}
///
/// assert_eq!(Job.retry_cap(), None);
/// ```
pub trait RetryCap {
    /// The most retries this request may have, if it sets a bound.
    fn retry_cap(&self) -> Option<u32> {
        None
    }
}

impl RetryCap for tollgate_core::LlmRequest {
    #[inline]
    fn retry_cap(&self) -> Option<u32> {
        self.meta.retry_cap
    }
}

impl<B> RetryCap for http::Request<B> {}
