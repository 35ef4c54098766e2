//! The tollgate gateway: one binary, `tollgate`, that any OpenAI or Anthropic client can point its
//! base URL at, with tollgate's stack (cache, rate limits and budgets, retries, circuit breakers,
//! health) in front of every provider.
//!
//! This crate is the binary's library: [`GatewayConfig`] reads the configuration (the stack's
//! sections, plus `keys`, `gateway`, `database`, `logs`, `idempotency` and `passthrough`), [`Gateway`] builds it and gives its axum
//! [`Router`](Gateway::router), and [`serve`] runs it with header and body timeouts and a drain on
//! shutdown.
//!
//! | endpoint | what it does |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat completions, whole or streamed (`stream: true`) |
//! | `POST /v1/messages` | Anthropic Messages, whole or streamed, served by any provider |
//! | `POST /v1/embeddings` | OpenAI embeddings, from an OpenAI-compatible provider |
//! | `POST /v1/responses` | OpenAI Responses, whole or streamed (typed events): passed through to a provider that serves it (`responses_api: true`), translated through chat completions for any other; stored with a `database` section (`store`, default true) and continued by `previous_response_id` |
//! | `GET`, `DELETE /v1/responses/{id}` | a response the caller's key stored (another key's is a 404) |
//! | `POST /v1/completions` | OpenAI legacy text completions, whole or streamed: passed as they came to an OpenAI-compatible provider (vLLM, Ollama), answered by a simulated one |
//! | `POST /v1/messages/count_tokens` | Anthropic's token count: passed to an Anthropic provider; for others an estimate (`WordEstimator`, within 7 % of `o200k_base` on its samples), marked `x-tollgate-estimate: true` |
//! | `/v1/files[/{id}[/content]]`, `/v1/batches[/{id}[/cancel]]`, `POST /v1/images/generations`, `/v1/audio/transcriptions`, `/v1/audio/speech`, `/v1/moderations` | passed through as they came to the `passthrough` provider ([`PassthroughConfig`]): the key swapped for the provider's, the tenants the section names let in, request limits and the call log applied, bodies streamed up within `max_body_bytes` and answers back (one read for its price whole, up to 64 MiB); images (per image), transcriptions (per second) and moderations (free) billed from the answer, the rest logged unpriced; 404 without the section |
//! | `GET /v1/models` | the roles and `provider/model` names the caller's key may use |
//! | `GET /health`, `/health/live`, `/health/ready` | each provider's status (behind `metrics_key_hash` when set); liveness; readiness |
//! | `GET /metrics` | Prometheus text, when the process installed the recorder (behind `metrics_key_hash` when set) |
//! | `/admin/…` | keys, teams, spend, the call log and the audit log of the records ([`Gateway::open_records`]), behind the admin key; described by `GET /admin/openapi.json` |
//! | `GET /ui` | the live page, behind the admin key |
//!
//! Every number that sets what a call may cost is read once at the door and refused by name when
//! it is not a whole number in range; `max_output_tokens` and `max_choices` cap it. An upstream's
//! failure reaches the caller in the gateway's words, with the upstream's own explanation only
//! where it concerns the caller's request, redacted. `request_timeout` bounds every call, and a
//! caller's `x-tollgate-timeout` (or the official clients' `x-stainless-timeout`) may shorten it.
//!
//! A call with an `Idempotency-Key` header is answered once: its answer is kept for its retries
//! (the `idempotency` section, [`IdempotencyConfig`]: 24 h, in memory and in Redis with a `redis`
//! section), which get it again to the byte, with `x-tollgate-idempotent-replay: true`, billed
//! nothing; a duplicate under way waits for it, and the same key with another body is a 422.
//!
//! `POST /v1/responses` keeps its answers with a `database` section (`store`, true unless the
//! call says `false`): the Response object as the caller got it and the input items it
//! answered, under the caller's key, written off the call path. A call naming one in
//! `previous_response_id` continues that conversation on any provider (the gateway sends the
//! whole history); another key's response is a 404, and without a `database` section
//! `previous_response_id` is a 400 that says what is missing.
//!
//! With a `logs` section ([`LogsConfig`]), every call leaves one record in each sink (a JSON-lines
//! file, the database's `tg_calls` table, OTLP logs), written off the call path; the binary exports
//! its spans over OTLP when the standard `OTEL_*` variables name a collector ([`Telemetry`]).
//!
//! A call's `model` names a role of the configuration (`default`, `summarize`), or a
//! `provider/model` its key lists. Every call presents a virtual key (`Authorization: Bearer` or
//! `x-api-key`), stored in the configuration only as its SHA-256 hash ([`hash_key`]).
//!
//! ```
//! use tollgate_gateway::{Gateway, GatewayConfig, hash_key};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let yaml = format!(r#"
//! providers: {{ local: {{ kind: simulated }} }}
//! roles: {{ default: {{ provider: local, model: sim-small }} }}
//! keys: {{ demo: {{ hash: "{}", tenant: acme }} }}
//! "#, hash_key("tg-demo"));
//! let gateway = Gateway::new(GatewayConfig::from_yaml(&yaml).unwrap()).unwrap();
//!
//! let call = http::Request::post("/v1/chat/completions")
//!     .header("authorization", "Bearer tg-demo")
//!     .body(axum::body::Body::from(r#"{"model": "default", "messages": [{"role": "user", "content": "hi"}]}"#))
//!     .unwrap();
//! let answer = gateway.router().oneshot(call).await.unwrap();
//! assert_eq!(answer.status(), 200);
//! assert_eq!(answer.headers()["x-tollgate-cache"], "MISS");
//! # }
//! ```

mod admin;
mod call;
mod chat;
mod clients;
mod completions;
mod config;
mod count_tokens;
mod degrade;
mod embeddings;
mod error;
mod idempotency;
mod info;
mod keys;
mod logs;
mod messages;
mod metrics;
mod otel;
mod passthrough;
mod records;
mod responses;
mod restore;
mod server;
mod sse;
mod stamp;
mod state;
mod stored_responses;
mod ui;
mod upstream;

pub use clients::PassthroughConfig;
pub use config::{GatewayConfig, KeyConfig, ServerConfig};
pub use idempotency::{IdempotencyConfig, IdempotencyStore};
pub use logs::{DatabaseSinkConfig, LogsConfig, OtlpSinkConfig, SinkConfig};
pub use metrics::install_prometheus;
pub use otel::Telemetry;
pub use server::serve;
pub use state::{Caller, Gateway};
pub use tollgate_control::{HASH_PREFIX, KEY_PREFIX, hash_key, new_key};

/// The configuration `tollgate serve` runs on when given none: two simulated providers, a cache,
/// per-tenant limits, and one key, [`DEMO_KEY`], so a first call works at once.
pub const EMBEDDED_CONFIG: &str = include_str!("embedded.yaml");

/// The key [`EMBEDDED_CONFIG`] accepts. Never use it with a configuration of your own.
pub const DEMO_KEY: &str = "tg-demo";

/// The admin key of [`EMBEDDED_CONFIG`]: it opens the live page, `/ui?key=tg-demo-admin`.
pub const DEMO_ADMIN_KEY: &str = "tg-demo-admin";
