//! The spans through OpenTelemetry, as `examples/otel.rs` exports them, caught by an in-memory
//! exporter: names from `otel.name`, the `gen_ai.*` attributes, parents, and no prompt.

use opentelemetry::{Value, trace::TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tollgate::{Config, LlmRequest, Message, Stack};
use tower::ServiceExt;
use tracing_subscriber::prelude::*;

#[tokio::test]
async fn calls_export_with_their_generative_ai_attributes() {
    let memory = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(memory.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tollgate")));
    let _default = tracing::subscriber::set_default(subscriber);

    let config = Config::from_yaml(
        r#"
providers:
  sim: { kind: simulated, output_tokens: 12 }
roles:
  default: { provider: sim, model: sim-small }
"#,
    )
    .unwrap();
    let stack = Stack::from_config(&config).unwrap();
    let request = LlmRequest::new("", vec![Message::user("a private question")]);
    stack.oneshot(request).await.unwrap();
    provider.force_flush().unwrap();

    let spans = memory.get_finished_spans().unwrap();
    let call = spans.iter().find(|s| s.name == "chat sim-small").unwrap();
    let attribute = |key: &str| {
        call.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    };
    assert_eq!(
        attribute("gen_ai.operation.name"),
        Some(Value::from("chat"))
    );
    assert_eq!(
        attribute("gen_ai.request.model"),
        Some(Value::from("sim-small"))
    );
    assert_eq!(attribute("gen_ai.provider.name"), Some(Value::from("sim")));
    assert_eq!(
        attribute("gen_ai.response.model"),
        Some(Value::from("sim-small"))
    );
    assert_eq!(
        attribute("gen_ai.usage.output_tokens"),
        Some(Value::I64(12))
    );
    assert_eq!(
        attribute("tollgate.deployment"),
        Some(Value::from("sim/sim-small"))
    );
    assert_eq!(
        attribute("tollgate.cache"),
        None,
        "no cache in this stack: no verdict"
    );
    let deployment = spans.iter().find(|s| s.name == "deployment").unwrap();
    assert_eq!(deployment.parent_span_id, call.span_context.span_id());
    let everything = format!("{spans:?}");
    assert!(!everything.contains("private"), "a prompt was recorded");
    provider.shutdown().unwrap();
}
