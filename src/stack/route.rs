//! The bottom of the stack: each request to its provider's own layers and client, and each
//! answer's usage to the cost tracker.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tollgate_circuit_breaker::CircuitBreaker;
use tollgate_core::{
    ErrorKind, LlmError, LlmRequest, LlmResponse, TokenEstimator, stream::StreamEnd,
};
use tollgate_health::Health;
use tollgate_retry::Retry;
use tower::util::{Either, Oneshot};
use tower_service::Service;

use super::BoxedProvider;
use crate::cost::{CostTracker, Labels, Route};

/// A provider's client with its statistics, breaker and retries, each when configured.
pub(super) type ProviderStack = Either<Retry<Guarded>, Guarded>;
type Guarded = Either<CircuitBreaker<Observed>, Observed>;
type Observed = Either<Health<BoxedProvider>, BoxedProvider>;

/// Each provider's stack, by name: what the router sends to, and what role resolution checks a
/// request's provider against before the cache and the limiter spend anything on it. The names
/// come from the configuration, so a fast hash needs no protection from keys chosen to collide.
pub(super) type Providers = HashMap<Arc<str>, ProviderStack, foldhash::fast::RandomState>;

/// The error for a request naming a provider the configuration does not have.
pub(super) fn unknown_provider(name: &str) -> LlmError {
    LlmError::new(
        ErrorKind::InvalidRequest,
        format!("no provider named {name:?} in the configuration"),
    )
}

/// Sends each request to its provider's stack (the provider is set, and checked, by role
/// resolution above it).
#[derive(Clone)]
pub(super) struct Router {
    pub(super) providers: Arc<Providers>,
    pub(super) costs: CostTracker,
    /// The limiter's estimator, so an unfinished stream is counted as the limiter counted it.
    pub(super) estimator: Arc<dyn TokenEstimator>,
}

impl Service<LlmRequest> for Router {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        // Each call readies its own provider's client (a clone), so the router itself always is.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LlmRequest) -> RouteFuture {
        let client = request
            .provider
            .as_deref()
            .and_then(|provider| self.providers.get(provider));
        let (Some(client), Some(provider)) = (client, request.provider.clone()) else {
            // Only a router used without role resolution in front of it gets here.
            let name = request.provider.as_deref().unwrap_or_default();
            return RouteFuture::Failed {
                error: Some(unknown_provider(name)),
            };
        };
        let record = Record {
            costs: self.costs.clone(),
            labels: Labels {
                tenant: request.meta.tenant.clone(),
                route: Route {
                    provider,
                    model: request.model.clone(),
                    role: request.meta.role.clone().unwrap_or_default(),
                },
            },
            // Estimated now, while the request is at hand, in case the stream ends before the
            // provider reports the prompt's size.
            // Only a stream can end unfinished, so only a stream carries the estimator.
            stream: request.meta.stream.then(|| Unfinished {
                prompt_estimate: self.estimator.estimate_prompt(&request),
                estimator: self.estimator.clone(),
            }),
        };
        RouteFuture::Called {
            call: Oneshot::new(client.clone(), request),
            record: Some(record),
        }
    }
}

/// What a routed call adds to the cost tracker once it is answered.
struct Record {
    costs: CostTracker,
    labels: Labels,
    stream: Option<Unfinished>,
}

/// What a stream that ends before its answer does is counted with.
struct Unfinished {
    prompt_estimate: u64,
    estimator: Arc<dyn TokenEstimator>,
}

impl Record {
    fn answered(self, response: &mut LlmResponse) {
        let Self {
            costs,
            labels,
            stream,
        } = self;
        if !response.is_stream() {
            costs.record(labels, response.usage, false);
            return;
        }
        // A stream's usage is known at its end. One the caller drops, or that fails midway, is
        // billed all the same: it counts with what the provider reported by then, estimated
        // where it reported nothing by the limiter's estimator, so both count it alike. (A
        // service that streams unasked has no estimate: it counts what it reported.)
        response.on_stream_end(move |answer, end| match (end, stream) {
            (StreamEnd::Complete, _) => costs.record(labels, answer.usage, false),
            (_, Some(unfinished)) => {
                let read = unfinished.estimator.estimate_answer(answer);
                let usage = answer
                    .usage
                    .of_unfinished_stream(unfinished.prompt_estimate, read);
                costs.record(labels, usage, true);
            }
            (_, None) => costs.record(labels, answer.usage, true),
        });
    }
}

pin_project! {
    /// A routed call; adds the answer's usage to the cost tracker (a stream's, when it ends).
    #[project = RouteProj]
    pub(super) enum RouteFuture {
        Called {
            #[pin]
            call: Oneshot<ProviderStack, LlmRequest>,
            record: Option<Record>,
        },
        Failed {
            error: Option<LlmError>,
        },
    }
}

impl Future for RouteFuture {
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RouteProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
            RouteProj::Called { call, record } => {
                let mut response = std::task::ready!(call.poll(cx))?;
                if let Some(record) = record.take() {
                    record.answered(&mut response);
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}
