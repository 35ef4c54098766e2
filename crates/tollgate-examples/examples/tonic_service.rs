//! A gRPC service (tonic) whose handler calls through a tollgate stack.
//!
//! `Chat/Complete` answers a prompt through a per-tenant cache and a per-tenant limit of 3
//! requests a minute around the simulated provider. Stack errors become gRPC statuses:
//! `RateLimited` is `RESOURCE_EXHAUSTED` with a `retry-after-ms` metadata entry, `InvalidRequest`
//! is `INVALID_ARGUMENT`, provider trouble is `UNAVAILABLE`, timeouts `DEADLINE_EXCEEDED`.
//!
//! The gRPC code in `examples/generated/` is generated from `examples/proto/chat.proto` by
//! tonic-prost-build with `protoc` (Debian's `protobuf-compiler`, which `.ci/run` installs);
//! `tests/tonic_codegen.rs` regenerates it and fails when it is stale, so building this example
//! never needs `protoc`.
//!
//! `cargo run -p tollgate-examples --example tonic_service` starts the server on a free port, calls it five times with
//! the generated client, prints the answers and exits; `-- --serve` keeps serving on
//! 127.0.0.1:50051.

use std::time::Duration;

use tollgate::{
    ByTenant, ErrorKind, LlmError, LlmRequest, LlmResponse, Message, ServiceBuilderExt,
    SimulatedProvider,
    cache::{CacheConfig, CacheLayer, CacheStatus, MemoryStore},
    ratelimit::{Quota, RateLimitLayer, RateLimiter, Tier},
};
use tonic::{Request, Response, Status, transport::Server};
use tower::{ServiceBuilder, ServiceExt, util::BoxCloneSyncService};

#[allow(missing_docs, unreachable_pub, clippy::all)]
pub(crate) mod proto {
    include!("generated/tollgate.chat.v1.rs");
}

use proto::{
    CompleteReply, CompleteRequest,
    chat_server::{Chat, ChatServer},
};

/// The handler: each call goes through the stack.
pub(crate) struct ChatService {
    stack: BoxCloneSyncService<LlmRequest, LlmResponse, LlmError>,
}

/// The gRPC service over a cache and a limit of 3 requests a minute per tenant around `upstream`.
pub(crate) fn service<S>(upstream: S) -> ChatServer<ChatService>
where
    S: tower::Service<LlmRequest, Response = LlmResponse, Error = LlmError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let limiter = RateLimiter::new(
        Quota::new([Tier::requests(3, Duration::from_secs(60))]).expect("a valid quota"),
    );
    let stack = ServiceBuilder::new()
        .cache(
            CacheLayer::new(MemoryStore::new(16 << 20), CacheConfig::default())
                .expect("a valid cache configuration"),
        )
        .rate_limits(RateLimitLayer::new(limiter, ByTenant))
        .service(upstream);
    ChatServer::new(ChatService {
        stack: BoxCloneSyncService::new(stack),
    })
}

#[tonic::async_trait]
impl Chat for ChatService {
    async fn complete(
        &self,
        request: Request<CompleteRequest>,
    ) -> Result<Response<CompleteReply>, Status> {
        let ask = request.into_inner();
        if ask.tenant.is_empty() {
            return Err(Status::invalid_argument("tenant is required"));
        }
        let llm_request =
            LlmRequest::new(ask.model.as_str(), vec![Message::user(ask.prompt.as_str())])
                .with_tenant(ask.tenant.as_str());
        let answer = self
            .stack
            .clone()
            .oneshot(llm_request)
            .await
            .map_err(|error| status(&error))?;
        Ok(Response::new(CompleteReply {
            cached: matches!(
                answer.extensions.get::<CacheStatus>(),
                Some(CacheStatus::Hit { .. })
            ),
            content: answer.content().to_owned(),
            input_tokens: answer.usage.input_tokens,
            output_tokens: answer.usage.output_tokens,
        }))
    }
}

/// The gRPC status for a stack error, with how long to wait when the stack knows.
pub(crate) fn status(error: &LlmError) -> Status {
    let message = error.to_string();
    let mut status = match error.kind() {
        ErrorKind::RateLimited | ErrorKind::BudgetExceeded => Status::resource_exhausted(message),
        ErrorKind::InvalidRequest | ErrorKind::ContentFilter | ErrorKind::ContextWindow => {
            Status::invalid_argument(message)
        }
        ErrorKind::Timeout => Status::deadline_exceeded(message),
        ErrorKind::Overloaded
        | ErrorKind::CircuitOpen
        | ErrorKind::Unavailable
        | ErrorKind::Connect
        | ErrorKind::Server => Status::unavailable(message),
        _ => Status::internal(message),
    };
    if let Some(after) = error.retry_after() {
        let millis = after.as_millis().to_string();
        if let Ok(value) = millis.parse() {
            status.metadata_mut().insert("retry-after-ms", value);
        }
    }
    status
}

#[allow(dead_code)] // the test includes this file for `service` alone
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|a| a == "--serve");
    let address = if serve {
        "127.0.0.1:50051"
    } else {
        "127.0.0.1:0"
    };
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let server = tokio::spawn(
        Server::builder()
            .add_service(service(SimulatedProvider::new()))
            .serve_with_incoming(incoming),
    );
    if serve {
        println!("serving Chat on {local}");
        server.await??;
        return Ok(());
    }
    let mut client = proto::chat_client::ChatClient::connect(format!("http://{local}")).await?;
    for prompt in [
        "What is a tollgate?",
        "Who pays?",
        "Since when?",
        "Where?",
        "Who pays?",
    ] {
        let ask = CompleteRequest {
            tenant: "acme".into(),
            model: "sim".into(),
            prompt: prompt.into(),
        };
        match client.complete(ask).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                println!("{prompt:?}: {:?} (cached: {})", reply.content, reply.cached);
            }
            Err(status) => println!(
                "{prompt:?}: {:?} retry-after-ms={:?}",
                status.code(),
                status.metadata().get("retry-after-ms")
            ),
        }
    }
    server.abort();
    Ok(())
}
