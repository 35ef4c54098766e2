//! Health endpoints for an LLM service, with axum: `/health` (every check, `application/health+json`),
//! `/health/live`, `/health/ready`, and `/health/stats` (the passive call statistics).
//!
//! `cargo run -p tollgate-examples --example health_server` starts the server on a free port, fetches each endpoint
//! once and prints what it answered; add `-- --serve` to keep serving.

use std::net::SocketAddr;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate::{
    LlmRequest, Message, ServiceBuilderExt, SimulatedProvider,
    health::{
        CheckOptions, CheckOutcome, HealthConfig, HealthLayer, HealthRegistry, HealthStats,
        ProviderCheck, StatsCheck, check_fn,
    },
};
use tower::{ServiceBuilder, ServiceExt};

#[derive(Clone)]
struct Health {
    registry: HealthRegistry,
    stats: HealthStats,
}

/// JSON with the health media type and the status code a load balancer reads.
fn health_json(status: u16, body: impl serde::Serialize) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (code, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/health+json"),
    );
    response
}

async fn report(State(health): State<Health>) -> Response {
    let report = health.registry.report();
    health_json(report.http_status(), &report)
}

async fn live(State(health): State<Health>) -> Response {
    let probe = health.registry.report().liveness();
    health_json(probe.http_status(), &probe)
}

async fn ready(State(health): State<Health>) -> Response {
    let probe = health.registry.report().readiness();
    health_json(probe.http_status(), &probe)
}

async fn passive_stats(State(health): State<Health>) -> Response {
    (StatusCode::OK, Json(health.stats.snapshot())).into_response()
}

/// A tiny HTTP/1.1 GET, so the example checks itself without an HTTP client crate.
async fn fetch(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default();
    Ok(format!("{status}\n{body}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = SimulatedProvider::builder()
        .latency(std::time::Duration::from_millis(40))
        .build();

    // Passive statistics from real traffic through the stack.
    let stats = HealthStats::new(HealthConfig::default())?;
    let stack = ServiceBuilder::new()
        .health(HealthLayer::new(stats.clone()))
        .service(provider.clone());
    for i in 0..5 {
        let request = LlmRequest::new("sim-small", vec![Message::user(format!("question {i}"))]);
        stack.clone().oneshot(request).await?;
    }

    // Active checks, every 30 s: the provider itself, its passive status, and a non-critical
    // dependency that is down (it degrades the report but keeps the service ready).
    let registry = HealthRegistry::builder()
        .check(
            ProviderCheck::new("sim-provider", "sim-small", provider),
            CheckOptions::default(),
        )
        .check(
            StatsCheck::new("sim-provider:calls", stats.clone(), "*"),
            CheckOptions::default(),
        )
        .check(
            check_fn("semantic-cache", || async {
                CheckOutcome::unhealthy("connection refused")
            }),
            CheckOptions::non_critical().thresholds(1, 1),
        )
        .build()?;
    registry.run_all().await;
    registry.start();

    let app = Router::new()
        .route("/health", get(report))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/stats", get(passive_stats))
        .with_state(Health {
            registry: registry.clone(),
            stats,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;

    if std::env::args().any(|arg| arg == "--serve") {
        println!("serving http://{addr}/health (and /health/live, /health/ready, /health/stats)");
        axum::serve(listener, app).await?;
        return Ok(());
    }
    tokio::spawn(async move { axum::serve(listener, app).await });
    for path in ["/health", "/health/live", "/health/ready", "/health/stats"] {
        println!("GET {path}\n{}\n", fetch(addr, path).await?);
    }
    Ok(())
}
