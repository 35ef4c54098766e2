//! How many attempts a call took, as the answer records it.

/// How many attempts a call took.
///
/// Every final error carries it. A response carries it when it took more than one attempt; a
/// response without it succeeded on the first (marking every first-try success would allocate an
/// extensions map per call and double the layer's cost). [`Attempts::of`] reads either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempts(pub u32);

impl Attempts {
    /// The attempts behind a response that went through a [`Retry`](crate::Retry): 1 when unmarked.
    pub fn of(response: &tollgate_core::LlmResponse) -> u32 {
        response
            .extensions
            .get::<Self>()
            .map_or(1, |attempts| attempts.0)
    }
}

/// A response that can record how many attempts produced it.
pub trait RecordAttempts {
    /// Records the attempt count (usually as an [`Attempts`] extension).
    fn record_attempts(&mut self, attempts: u32);
}

impl RecordAttempts for tollgate_core::LlmResponse {
    fn record_attempts(&mut self, attempts: u32) {
        self.extensions.insert(Attempts(attempts));
    }
}

impl<B> RecordAttempts for http::Response<B> {
    fn record_attempts(&mut self, attempts: u32) {
        self.extensions_mut().insert(Attempts(attempts));
    }
}
