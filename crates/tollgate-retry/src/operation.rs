//! `retry`: the layer's decisions for a plain async operation, without tower.

use std::future::Future;

use tokio::time::Instant;
use tollgate_core::LlmError;

use crate::{
    RetryPolicy,
    future::{attempt_limit, finish, limit_error},
    policy::Decision,
};

/// Runs `operation` under `policy` without tower: the same decisions, delays, budget and hooks
/// as [`RetryLayer`](crate::RetryLayer), for plain async code.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::{ErrorKind, LlmError};
/// use tollgate_retry::{Jitter, RetryPolicy, retry};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let policy = RetryPolicy::builder().jitter(Jitter::None).build().unwrap();
/// let mut calls = 0;
/// let answer = retry(&policy, || {
///     calls += 1;
///     let n = calls;
///     async move {
///         if n < 3 { Err(LlmError::new(ErrorKind::Overloaded, "busy")) } else { Ok(n) }
///     }
/// })
/// .await;
/// assert_eq!(answer.unwrap(), 3); // failed twice, waited 1 s then 2 s
/// # }
/// ```
///
/// # Errors
///
/// The last attempt's error, carrying [`Attempts`](crate::Attempts) and a note saying why retrying
/// stopped.
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, mut operation: F) -> Result<T, LlmError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<LlmError>,
{
    policy.begin();
    let mut backoff = None;
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let result = match attempt_limit(policy, started.elapsed()) {
            Some((left, bound)) => match tokio::time::timeout(left, operation()).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(limit_error(attempt, policy, bound)),
            },
            None => operation().await.map_err(Into::into),
        };
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        match policy.decide(attempt, &error, started.elapsed(), &mut backoff) {
            Decision::Retry(delay) => tokio::time::sleep(delay).await,
            Decision::Stop(note) => return Err(finish(error, attempt, note)),
        }
        attempt += 1;
    }
}
