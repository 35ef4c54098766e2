//! tollgate's spans exported through OpenTelemetry: a stack's calls, with the `gen_ai.*`
//! attributes, sent over OTLP/HTTP to the collector that `OTEL_EXPORTER_OTLP_ENDPOINT` names.
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo run -p tollgate-examples --example otel
//! cargo run -p tollgate-examples --example otel     # no collector: the spans are kept in memory and printed
//! ```
//!
//! Each call is a span named `chat {model}` (from its `otel.name`), with a `deployment` span for
//! each deployment the router tried and an `attempt` span for each retry; prompts and answers are
//! never recorded.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tollgate::{Config, LlmRequest, Message, Stack};
use tower::ServiceExt;
use tracing_subscriber::prelude::*;

const CONFIG: &str = r#"
providers:
  fast: { kind: simulated, latency: 20ms, output_tokens: 12 }
  slow: { kind: simulated, latency: 80ms, output_tokens: 12 }
roles:
  default:
    model: sim-small
    strategy: latency
    targets: [{ provider: fast }, { provider: slow }]
caching: { store: memory }
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let collector = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok();
    let memory = InMemorySpanExporter::default();
    let provider = match &collector {
        // The exporter reads the endpoint (and any OTEL_EXPORTER_OTLP_HEADERS) itself.
        Some(_) => SdkTracerProvider::builder()
            .with_batch_exporter(
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .build()?,
            )
            .build(),
        None => SdkTracerProvider::builder()
            .with_simple_exporter(memory.clone())
            .build(),
    };
    let tracer = provider.tracer("tollgate");
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer)),
    )?;

    let stack = Stack::from_config(&Config::from_yaml(CONFIG)?)?;
    for question in [
        "What is a tollgate?",
        "Why charge tolls?",
        "What is a tollgate?",
    ] {
        let request = LlmRequest::new("", vec![Message::user(question)]).with_tenant("acme");
        stack.clone().oneshot(request).await?;
    }
    provider.force_flush()?;

    match collector {
        Some(endpoint) => println!("spans sent to {endpoint}"),
        None => {
            for span in memory.get_finished_spans()? {
                let attributes: Vec<String> = span
                    .attributes
                    .iter()
                    .filter(|kv| {
                        kv.key.as_str().starts_with("gen_ai.")
                            || kv.key.as_str().starts_with("tollgate.")
                    })
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                println!("{:<16} {}", span.name, attributes.join(" "));
            }
        }
    }
    provider.shutdown()?;
    Ok(())
}
