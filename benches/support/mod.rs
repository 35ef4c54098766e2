//! What every bench drives its stacks with: a service that answers at once, and polling once.

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use tollgate::{LlmError, LlmRequest, LlmResponse};
use tower::Service;

/// The floor: a service that answers every request at once, with `answer` as the content (an
/// empty, default response when `None`).
#[derive(Clone, Copy)]
pub(crate) struct Bare(pub(crate) Option<&'static str>);

impl Service<LlmRequest> for Bare {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = std::future::Ready<Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        std::future::ready(Ok(match self.0 {
            Some(answer) => LlmResponse::new(&*request.model, answer),
            None => LlmResponse::default(),
        }))
    }
}

/// Drives a future that must complete without waiting.
pub(crate) fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benched stack must answer at once"),
    }
}

/// One call of a clone of `request` through readiness, expected to succeed. The clone is part of
/// every figure: a tower service consumes its request.
pub(crate) fn one_call<S, E>(service: &mut S, request: &LlmRequest) -> LlmResponse
where
    S: Service<LlmRequest, Response = LlmResponse, Error = E>,
    E: std::fmt::Debug,
{
    one_owned_call(service, request.clone())
}

/// One call with a request the caller hands over, expected to succeed.
pub(crate) fn one_owned_call<S, E>(service: &mut S, request: LlmRequest) -> LlmResponse
where
    S: Service<LlmRequest, Response = LlmResponse, Error = E>,
    E: std::fmt::Debug,
{
    poll_now(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
    poll_now(service.call(request)).expect("success")
}
