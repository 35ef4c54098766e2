//! Where a call goes below the cache and the limits: to the router, which picks among its
//! role's deployments, or straight to the provider it names. The choice is made here, once
//! ([`route`]), and read here ([`Dispatch`]).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tollgate_core::{ErrorKind, LlmError, LlmRequest, LlmResponse};
use tollgate_router::{RouteFuture, Router};
use tower::util::Oneshot;
use tower_service::Service;

use super::billing::{ProviderStack, Providers};
use crate::ResolvedRole;

/// Where [`route`] sent a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// Straight to the provider it names.
    Direct,
    /// To the router, which picks among the role's deployments; `moves` when another model than
    /// the role's first may answer it.
    Routed { moves: bool },
}

/// Points `request` at what serves it under `role`: a provider it names goes straight there (if
/// the configuration has it), as does a model its role does not give (to the role's first
/// provider); any other call goes to the router, which picks among the role's deployments (the
/// limiter and the cache see the role's first model, and its provider when the call cannot move
/// elsewhere).
pub(super) fn route(
    request: &mut LlmRequest,
    role: &ResolvedRole,
    providers: &Providers,
) -> Result<Route, LlmError> {
    match &request.provider {
        Some(provider) => {
            if !providers.contains_key(provider) {
                return Err(unknown_provider(provider));
            }
            request.extensions.insert(Direct);
            Ok(Route::Direct)
        }
        None if !request.model.is_empty() && request.model != role.model => {
            request.provider = Some(role.provider.clone());
            request.extensions.insert(Direct);
            Ok(Route::Direct)
        }
        None => {
            request.model = role.model.clone();
            if !role.moves {
                request.provider = Some(role.provider.clone());
            }
            Ok(Route::Routed { moves: role.moves })
        }
    }
}

/// The error for a request naming a provider the configuration does not have.
fn unknown_provider(name: &str) -> LlmError {
    LlmError::new(
        ErrorKind::InvalidRequest,
        format!("no provider named {name:?} in the configuration"),
    )
}

/// Marks a call [`route`] sent straight to its provider: through the cache and the limits, the
/// mark rides with the request to [`Dispatch`].
#[derive(Debug, Clone, Copy)]
struct Direct;

/// Sends each request to the router, or, marked [`Direct`], straight to its provider's stack.
#[derive(Clone)]
pub(super) struct Dispatch {
    pub(super) router: Router<ProviderStack>,
    pub(super) providers: Arc<Providers>,
}

impl Service<LlmRequest> for Dispatch {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = DispatchFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        // Each call readies its own client (a clone), so this is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LlmRequest) -> DispatchFuture {
        if request.extensions.get::<Direct>().is_none() {
            return DispatchFuture::Routed {
                call: self.router.call(request),
            };
        }
        let client = request
            .provider
            .as_deref()
            .and_then(|provider| self.providers.get(provider));
        match client {
            Some(client) => DispatchFuture::Direct {
                call: Oneshot::new(client.clone(), request),
            },
            None => DispatchFuture::Failed {
                error: Some(unknown_provider(
                    request.provider.as_deref().unwrap_or_default(),
                )),
            },
        }
    }
}

pin_project! {
    /// A dispatched call.
    #[project = DispatchProj]
    pub(super) enum DispatchFuture {
        Routed {
            #[pin]
            call: RouteFuture<ProviderStack>,
        },
        Direct {
            #[pin]
            call: Oneshot<ProviderStack, LlmRequest>,
        },
        Failed {
            error: Option<LlmError>,
        },
    }
}

impl Future for DispatchFuture {
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DispatchProj::Routed { call } => call.poll(cx),
            DispatchProj::Direct { call } => call.poll(cx),
            DispatchProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
        }
    }
}
