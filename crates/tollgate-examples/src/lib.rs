//! Examples of tollgate inside services, each runnable with no network and no keys, and the tests
//! that drive them (not published):
//!
//! ```text
//! cargo run -p tollgate-examples --example health_server    # /health, /health/live, /health/ready, /health/stats with axum
//! cargo run -p tollgate-examples --example axum_per_route   # an OpenAI-compatible gateway, a stack per route, /metrics
//! cargo run -p tollgate-examples --example tonic_service    # a gRPC service calling through a stack
//! cargo run -p tollgate-examples --example otel             # the spans through OpenTelemetry
//! cargo run -p tollgate-examples --example openai_client    # the real reqwest client in the full stack
//! ```
//!
//! They live apart from the library's own example (`cargo run --example quickstart`), which needs
//! nothing beyond the library, so that it builds none of their servers, gRPC or OpenTelemetry.
