//! The bottom of the stack: each request to its provider's client, and each answer's usage to the
//! cost tracker.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tollgate_core::{ErrorKind, LlmError, LlmRequest, LlmResponse};
use tower::util::Oneshot;
use tower_service::Service;

use super::BoxedProvider;
use crate::cost::{CostTracker, Labels};

/// Sends each request to the client of its provider (set by role resolution above it).
#[derive(Clone)]
pub(super) struct Router {
    pub(super) providers: Arc<HashMap<Arc<str>, BoxedProvider>>,
    pub(super) costs: CostTracker,
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
            return RouteFuture::Failed {
                error: Some(LlmError::new(
                    ErrorKind::InvalidRequest,
                    format!("no provider named {:?}", request.provider),
                )),
            };
        };
        let labels = Labels {
            tenant: request.meta.tenant.clone(),
            provider,
            model: request.model.clone(),
            role: request.meta.role.clone().unwrap_or_default(),
        };
        RouteFuture::Called {
            call: Oneshot::new(client.clone(), request),
            record: Some((self.costs.clone(), labels)),
        }
    }
}

pin_project! {
    /// A routed call; adds the answer's usage to the cost tracker (a stream's, when it ends).
    #[project = RouteProj]
    pub(super) enum RouteFuture {
        Called {
            #[pin]
            call: Oneshot<BoxedProvider, LlmRequest>,
            record: Option<(CostTracker, Labels)>,
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
                if let Some((costs, labels)) = record.take() {
                    if response.is_stream() {
                        // A stream's usage is known at its end; an abandoned stream records
                        // nothing, as its usage is unknown.
                        response.on_stream_complete(move |done| costs.record(labels, done.usage));
                    } else {
                        costs.record(labels, response.usage);
                    }
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}
