//! The HTTP server: the routes, and a connection loop that bounds how long a client may take over
//! its headers and drains calls in flight on shutdown.

use std::{future::Future, io, time::Duration};

use axum::{
    Router,
    routing::{get, post},
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;

use crate::{
    call,
    chat::Chat,
    completions::Completions,
    embeddings::Embeddings,
    info,
    messages::Messages,
    responses::{self, Responses},
    state::Gateway,
    ui,
};

impl Gateway {
    /// The gateway's routes, as an axum `Router`: serve it with [`serve`], or nest it in your
    /// own server.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(call::handle::<Chat>))
            .route("/v1/messages", post(call::handle::<Messages>))
            .route(
                "/v1/messages/count_tokens",
                post(crate::count_tokens::handle),
            )
            .route("/v1/embeddings", post(call::handle::<Embeddings>))
            .route("/v1/responses", post(call::handle::<Responses>))
            .route(
                "/v1/responses/{id}",
                get(responses::read).delete(responses::delete),
            )
            .route("/v1/completions", post(call::handle::<Completions>))
            .route("/v1/models", get(info::models))
            .route("/health", get(info::health))
            .route("/health/live", get(info::live))
            .route("/health/ready", get(info::ready_probe))
            .route("/metrics", get(info::metrics))
            .route("/ui", get(ui::page))
            .route("/ui/data", get(ui::data))
            .merge(crate::admin::routes())
            .merge(crate::passthrough::routes())
            .fallback(info::not_found)
            .method_not_allowed_fallback(info::method_not_allowed)
            .layer(crate::stamp::StampLayer(self.clone()))
            .with_state(self.clone())
    }
}

/// How often the Prometheus recorder's histograms are drained into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Drains the recorder's histograms every [`METRICS_UPKEEP`] until the returned guard is dropped:
/// a recorder installed with `install_recorder` keeps every sample until then, so without a
/// scrape its memory would grow with every call.
fn keep_metrics(handle: metrics_exporter_prometheus::PrometheusHandle) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut every = tokio::time::interval(METRICS_UPKEEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    }))
}

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves `gateway` on `listener` until `shutdown` resolves; then stops accepting, lets calls in
/// flight (streams included) finish for up to `drain_timeout`, and returns.
///
/// While it serves, the Prometheus recorder the gateway renders `/metrics` from (if any) has its
/// histograms drained every five seconds, so its memory stays flat without scrapes.
///
/// A client gets `header_timeout` (from the configuration's `gateway` section) to send a
/// request's headers; its body has `body_timeout` once those are in.
///
/// # Errors
///
/// None once serving: a connection that fails is logged and dropped. The `Result` is for the
/// listener's address.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let settings = gateway.live().config.gateway.clone();
    let service = TowerToHyperService::new(gateway.router());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let graceful = GracefulShutdown::new();
    let _upkeep = gateway.metrics().cloned().map(keep_metrics);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors, most likely: wait a little rather than spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection = http.serve_connection(TokioIo::new(stream), service.clone());
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "a connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        drain_timeout = ?settings.drain_timeout,
        "stopped accepting; waiting for calls in flight"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("every call in flight finished"),
        () = tokio::time::sleep(settings.drain_timeout) => {
            tracing::warn!("the drain timeout passed with calls still in flight; closing them");
        }
    }
    Ok(())
}
