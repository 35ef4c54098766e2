//! The future of a [`Retry`](crate::Retry) call.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tollgate_core::{LlmError, duration};
use tower_service::Service;

use crate::{
    attempts::{Attempts, RecordAttempts},
    cap::RetryCap,
    policy::{Backoff, Decision, RetryPolicy},
};

pin_project! {
    /// Drives the attempts of one call: call, wait, call again, until success or the policy stops.
    /// Dropping it stops everything: no attempt is started after the drop.
    pub struct ResponseFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        state: State<S::Future>,
        retry: Option<(S, R)>,
        policy: RetryPolicy,
        // Only a policy with a time bound, or a call whose attempt failed, needs these: boxed, so
        // the future of a call that succeeds at once stays small (its moves were most of this
        // layer's cost).
        later: Option<Box<Later>>,
        attempt: u32,
        // The most retries this call may make here (the request's cap, else the policy's).
        retries: u32,
        // Whether the request set a cap: its caller has somewhere else to send it.
        movable: bool,
        // The running attempt's span (a child of the caller's), entered while it runs.
        span: tracing::Span,
    }
}

/// A call's time bounds and backoff.
#[derive(Default)]
struct Later {
    // Read from the clock only when a deadline needs it.
    started: Option<Instant>,
    // The running attempt's bound (attempt timeout or deadline), when one is configured.
    limit: Option<(Pin<Box<Sleep>>, Bound)>,
    backoff: Option<Backoff>,
}

impl Later {
    fn elapsed(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |s| s.elapsed())
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling {
            #[pin]
            future: F,
        },
        // Boxed like the limit: a sleep exists only between attempts.
        Waiting {
            sleep: Pin<Box<Sleep>>,
        },
        Readying,
    }
}

/// Which configured bound limits an attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bound {
    AttemptTimeout,
    Deadline,
}

impl Bound {
    fn name(self) -> &'static str {
        match self {
            Self::AttemptTimeout => "attempt timeout",
            Self::Deadline => "deadline",
        }
    }

    fn configured(self, policy: &RetryPolicy) -> Option<Duration> {
        match self {
            Self::AttemptTimeout => policy.attempt_timeout(),
            Self::Deadline => policy.deadline(),
        }
    }
}

#[inline]
fn limit_timer(limit: Option<(Duration, Bound)>) -> Option<(Pin<Box<Sleep>>, Bound)> {
    limit.map(|(left, bound)| (Box::pin(tokio::time::sleep(left)), bound))
}

/// The per-attempt bound: the attempt timeout, or what is left of the deadline, whichever is less.
#[inline]
pub(crate) fn attempt_limit(policy: &RetryPolicy, elapsed: Duration) -> Option<(Duration, Bound)> {
    let attempt = policy.attempt_timeout().map(|t| (t, Bound::AttemptTimeout));
    let deadline = policy
        .deadline()
        .map(|d| (d.saturating_sub(elapsed), Bound::Deadline));
    match (attempt, deadline) {
        (Some(a), Some(d)) => Some(if d.0 < a.0 { d } else { a }),
        (a, d) => a.or(d),
    }
}

pub(crate) fn limit_error(attempt: u32, policy: &RetryPolicy, bound: Bound) -> LlmError {
    LlmError::new(
        tollgate_core::ErrorKind::Timeout,
        format!(
            "attempt {attempt} exceeded the {} of {}",
            bound.name(),
            duration::format(bound.configured(policy).unwrap_or_default())
        ),
    )
}

/// Marks the final error with the number of attempts made.
pub(crate) fn finish(error: LlmError, attempts: u32, note: Option<String>) -> LlmError {
    let error = error.with_extension(Attempts(attempts));
    match note {
        Some(note) => error.with_note(note),
        None => error,
    }
}

impl<S, R> ResponseFuture<S, R>
where
    S: Service<R>,
{
    /// Calls `service` with `request`, keeping a clone of each for retries when the policy allows
    /// any.
    ///
    /// Out of line, so the future is written once into its caller's slot rather than assembled
    /// in the caller's frame and copied over (a future of some 460 bytes, most of it the request
    /// kept for a retry and the inner future: copies are most of this layer's cost).
    #[inline(never)]
    pub(crate) fn start(service: &mut S, request: R, policy: &RetryPolicy) -> Self
    where
        S: Clone,
        R: Clone + RetryCap,
    {
        policy.begin();
        // Taken first: a reference count is a locked instruction, which waits for every pending
        // store, and after the copies below there are hundreds of bytes of them.
        let kept = policy.clone();
        let span = attempt_span(1);
        // The first attempt's call is made inside its span; a clone enters it, since the span
        // itself moves into the future.
        let entered = span.clone();
        let _entered = entered.enter();
        let cap = request.retry_cap();
        let retries = cap.map_or(policy.max_retries(), |cap| cap.min(policy.max_retries()));
        Self {
            retry: if retries > 0 {
                Some((service.clone(), request.clone()))
            } else {
                None
            },
            state: State::Calling {
                future: service.call(request),
            },
            later: policy.time_bound().then(|| {
                Box::new(Later {
                    started: policy.deadline().map(|_| Instant::now()),
                    limit: limit_timer(attempt_limit(policy, Duration::ZERO)),
                    backoff: None,
                })
            }),
            policy: kept,
            attempt: 1,
            retries,
            movable: cap.is_some(),
            span,
        }
    }
}

/// The span of attempt `attempt`: `attempt`, with `tollgate.attempt`.
fn attempt_span(attempt: u32) -> tracing::Span {
    tracing::info_span!("attempt", tollgate.attempt = attempt)
}

impl<S, R> Future for ResponseFuture<S, R>
where
    S: Service<R>,
    S::Error: Into<LlmError>,
    S::Response: RecordAttempts,
    R: Clone,
{
    type Output = Result<S::Response, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    // The success arm returns the inner result as it came: re-wrapping a large
                    // response costs copies on the path every call takes.
                    let polled = {
                        let _entered = this.span.enter();
                        future.poll(cx)
                    };
                    let error = match polled {
                        Poll::Ready(Ok(mut response)) => {
                            // A first-attempt success is left unmarked: inserting into an empty
                            // extensions map allocates, which would double this layer's cost.
                            if *this.attempt > 1 {
                                response.record_attempts(*this.attempt);
                            }
                            return Poll::Ready(Ok(response));
                        }
                        Poll::Ready(Err(error)) => error.into(),
                        Poll::Pending => match this.later.as_mut().and_then(|l| l.limit.as_mut()) {
                            Some((timer, bound)) => {
                                ready!(timer.as_mut().poll(cx));
                                limit_error(*this.attempt, this.policy, *bound)
                            }
                            None => return Poll::Pending,
                        },
                    };
                    // A capped call that has used its retries goes back to its caller (a router
                    // with somewhere else to send it) with no note: it was not given up on.
                    let capped = *this.retries < this.policy.max_retries();
                    // A throttled call that can go elsewhere does: waiting out a provider's
                    // pause is what moving is for.
                    let throttled = *this.movable
                        && matches!(
                            error.kind(),
                            tollgate_core::ErrorKind::RateLimited
                                | tollgate_core::ErrorKind::Overloaded
                        );
                    if this.retry.is_none()
                        || throttled
                        || (capped && *this.attempt > *this.retries)
                    {
                        return Poll::Ready(Err(finish(error, *this.attempt, None)));
                    }
                    let later = this.later.get_or_insert_with(Box::default);
                    match this.policy.decide(
                        *this.attempt,
                        &error,
                        later.elapsed(),
                        &mut later.backoff,
                    ) {
                        Decision::Retry(delay) => {
                            later.limit = None;
                            this.state.set(State::Waiting {
                                sleep: Box::pin(tokio::time::sleep(delay)),
                            });
                        }
                        Decision::Stop(note) => {
                            return Poll::Ready(Err(finish(error, *this.attempt, note)));
                        }
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    let (service, request) = this.retry.as_mut().expect("retry state is kept");
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(finish(error.into(), *this.attempt, None)));
                    }
                    *this.attempt += 1;
                    *this.span = attempt_span(*this.attempt);
                    let future = {
                        let _entered = this.span.enter();
                        service.call(request.clone())
                    };
                    let later = this.later.as_mut().expect("made by the failed attempt");
                    later.limit = limit_timer(attempt_limit(this.policy, later.elapsed()));
                    this.state.set(State::Calling { future });
                }
            }
        }
    }
}
