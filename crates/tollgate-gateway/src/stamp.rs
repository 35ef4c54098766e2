//! The layer under every route: each request gets an id before any handler runs (the caller's,
//! or one made here), and each answer its id and overhead headers when no handler set them
//! (health, 404s). A tower layer rather than an axum `from_fn` middleware: that boxes a service
//! and a future for every request.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use axum::{extract::Request, response::Response};
use http::HeaderValue;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::{
    call::{OVERHEAD_NAME, REQUEST_ID_NAME, RequestId, overhead_value, request_id},
    state::Gateway,
};

/// Stamps every request and answer for `gateway`.
#[derive(Clone)]
pub(crate) struct StampLayer(pub(crate) Gateway);

impl<S> Layer<S> for StampLayer {
    type Service = Stamp<S>;

    fn layer(&self, inner: S) -> Stamp<S> {
        Stamp {
            inner,
            gateway: self.0.clone(),
        }
    }
}

/// The service [`StampLayer`] makes.
#[derive(Clone)]
pub(crate) struct Stamp<S> {
    inner: S,
    gateway: Gateway,
}

impl<S> Service<Request> for Stamp<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Stamped<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let id = request_id(request.headers()).unwrap_or_else(|| {
            HeaderValue::from_str(&self.gateway.next_id())
                .expect("an id made here is a valid header")
        });
        request.extensions_mut().insert(RequestId(id.clone()));
        Stamped {
            inner: self.inner.call(request),
            id: Some(id),
            started,
        }
    }
}

pin_project! {
    /// A request's answer, stamped when it is ready.
    pub(crate) struct Stamped<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
        started: Instant,
    }
}

impl<F, E> Future for Stamped<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        let headers = response.headers_mut();
        if !headers.contains_key(REQUEST_ID_NAME)
            && let Some(id) = this.id.take()
        {
            headers.insert(REQUEST_ID_NAME, id);
            headers.insert(OVERHEAD_NAME, overhead_value(this.started.elapsed()));
        }
        Poll::Ready(Ok(response))
    }
}
