//! One call to one deployment, from its place in the bulkhead until it answers: for a stream,
//! until its first event, since a stream may move only before the caller has a byte of it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use futures_core::Stream;
use pin_project_lite::pin_project;
use tollgate_core::{LlmError, LlmRequest, LlmResponse, stream::LlmStream};
use tower_service::Service;

/// A deployment's place in its bulkhead, which the route future gives back when the call ends
/// however it ends (by index, so holding it costs no reference count).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub(crate) index: usize,
    /// Clock nanoseconds when the call was sent.
    pub(crate) sent: u64,
}

/// How an attempt ended.
pub(crate) type Ended = (Result<LlmResponse, LlmError>, Ticket);

pin_project! {
    /// An attempt's progress. Only the call's own future is kept inline: the states most calls
    /// never reach are boxed, so the route future every call carries stays small.
    #[project = AttemptProj]
    #[project_replace = AttemptTake]
    pub(crate) enum Attempt<S>
    where
        S: Service<LlmRequest>,
    {
        Idle,
        // The deployment's service was not ready when the call started.
        Readying {
            parts: Box<(S, Option<LlmRequest>)>,
            ticket: Ticket,
        },
        Calling {
            #[pin]
            call: S::Future,
            ticket: Ticket,
        },
        // A stream has started; its first event decides whether it counts as an answer.
        Opening {
            opening: Box<(LlmResponse, LlmStream)>,
            ticket: Ticket,
        },
        // The service failed to get ready.
        Refused {
            error: Option<LlmError>,
            ticket: Ticket,
        },
    }
}

impl<S: Service<LlmRequest>> Attempt<S> {
    pub(crate) fn is_running(&self) -> bool {
        !matches!(self, Self::Idle)
    }

    /// The place a running attempt holds.
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        match self {
            Self::Idle => None,
            Self::Readying { ticket, .. }
            | Self::Calling { ticket, .. }
            | Self::Opening { ticket, .. }
            | Self::Refused { ticket, .. } => Some(*ticket),
        }
    }
}

impl<S> Attempt<S>
where
    S: Service<LlmRequest, Response = LlmResponse>,
    S::Error: Into<LlmError>,
{
    /// Sends `request` to `service` at once if it is ready, as most are.
    pub(crate) fn start(
        mut service: S,
        request: LlmRequest,
        ticket: Ticket,
        cx: &mut Context<'_>,
    ) -> Self {
        match service.poll_ready(cx) {
            Poll::Ready(Ok(())) => Self::Calling {
                call: service.call(request),
                ticket,
            },
            Poll::Ready(Err(error)) => Self::Refused {
                error: Some(error.into()),
                ticket,
            },
            Poll::Pending => Self::Readying {
                parts: Box::new((service, Some(request))),
                ticket,
            },
        }
    }

    /// Leaves the attempt idle, dropping whatever it was doing in place; returns the place it
    /// held.
    pub(crate) fn end(mut self: Pin<&mut Self>) -> Ticket {
        let ticket = self.ticket().expect("an idle attempt has not ended");
        self.set(Self::Idle);
        ticket
    }

    /// Drives the attempt; once it has ended it is idle again.
    pub(crate) fn poll_end(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Ended>> {
        loop {
            match self.as_mut().project() {
                AttemptProj::Idle => return Poll::Ready(None),
                AttemptProj::Refused { error, .. } => {
                    let error = error.take().expect("refused once");
                    return Poll::Ready(Some((Err(error), self.end())));
                }
                AttemptProj::Readying { parts, .. } => {
                    let (service, request) = &mut **parts;
                    match ready!(service.poll_ready(cx)) {
                        Ok(()) => {
                            let request = request.take().expect("sent once");
                            let call = service.call(request);
                            let ticket = self.as_mut().end();
                            self.set(Self::Calling { call, ticket });
                        }
                        Err(error) => return Poll::Ready(Some((Err(error.into()), self.end()))),
                    }
                }
                AttemptProj::Calling { call, .. } => {
                    let result = ready!(call.poll(cx)).map_err(Into::into);
                    match result {
                        Ok(mut response) => match response.take_stream() {
                            Some(stream) => {
                                let ticket = self.as_mut().end();
                                self.set(Self::Opening {
                                    opening: Box::new((response, stream)),
                                    ticket,
                                });
                            }
                            None => return Poll::Ready(Some((Ok(response), self.end()))),
                        },
                        Err(error) => return Poll::Ready(Some((Err(error), self.end()))),
                    }
                }
                AttemptProj::Opening { opening, .. } => {
                    let first = ready!(Pin::new(&mut opening.1).poll_next(cx));
                    let AttemptTake::Opening { opening, ticket } =
                        self.as_mut().project_replace(Self::Idle)
                    else {
                        unreachable!("was opening")
                    };
                    let (response, stream) = *opening;
                    let result = match first {
                        Some(Err(error)) => Err(error),
                        first => Ok(response.with_stream(LlmStream::new(Opened {
                            rest: first.is_some().then_some(stream),
                            first,
                        }))),
                    };
                    return Poll::Ready(Some((result, ticket)));
                }
            }
        }
    }
}

/// A stream whose first event was read to see that it started: that event, then the rest.
struct Opened {
    first: Option<Result<tollgate_core::stream::StreamEvent, LlmError>>,
    // `None` once the stream has ended, so the inner one is dropped (and its watchers told) on time.
    rest: Option<LlmStream>,
}

impl Stream for Opened {
    type Item = Result<tollgate_core::stream::StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let next = ready!(Pin::new(rest).poll_next(cx));
        if next.is_none() {
            self.rest = None;
        }
        Poll::Ready(next)
    }
}
