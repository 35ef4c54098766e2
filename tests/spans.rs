//! The span tree of calls through a stack: one `chat` span per call with OpenTelemetry's
//! generative-AI attributes, a `deployment` span per deployment the router tried, an `attempt`
//! span per attempt the retry layer made, and the cache's, limiter's and breaker's decisions.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tollgate::{Config, LlmRequest, Message, Outcome, SimulatedProvider, Stack, clock::TokioClock};
use tower::ServiceExt;
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{Layer, layer::Context, prelude::*, registry::LookupSpan};

/// A closed span: its name, its parent's name, and its fields.
#[derive(Debug, Clone, PartialEq)]
struct Closed {
    name: String,
    parent: Option<String>,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// An event: the name of the span it happened in, and its fields.
type Seen = (Option<String>, BTreeMap<String, String>);

/// Keeps every closed span and every event.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<Closed>>>,
    events: Arc<Mutex<Vec<Seen>>>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        values.record(extensions.get_mut::<Fields>().unwrap());
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let within = ctx.event_span(event).map(|span| span.name().to_owned());
        self.events.lock().unwrap().push((within, fields.0));
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span.extensions().get::<Fields>().unwrap().0.clone();
        self.spans.lock().unwrap().push(Closed {
            name: span.name().to_owned(),
            parent: span.parent().map(|parent| parent.name().to_owned()),
            fields,
        });
    }
}

#[tokio::test(start_paused = true)]
async fn a_retried_routed_call_and_a_cached_one_make_this_tree() {
    let capture = Capture::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let config = Config::from_yaml(
        r#"
providers:
  first: { kind: simulated }
  second: { kind: simulated }
roles:
  default:
    model: m
    strategy: priority
    targets: [{ provider: first }, { provider: second }]
caching: { store: memory }
retry: { base_delay: 10ms, budget: null }
"#,
    )
    .unwrap();
    // first is overloaded (left to the router), second fails once and is retried.
    let first = SimulatedProvider::builder()
        .script([Outcome::Overloaded])
        .build();
    let second = SimulatedProvider::builder()
        .script([Outcome::Server])
        .output_tokens(5)
        .build();
    let stack = Stack::builder(&config)
        .provider("first", first)
        .provider("second", second)
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let ask = || LlmRequest::new("", vec![Message::user("a secret prompt")]).with_tenant("acme");
    stack.clone().oneshot(ask()).await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    stack.clone().oneshot(ask()).await.unwrap();

    let spans = capture.spans.lock().unwrap().clone();
    let shape: Vec<(String, Option<String>)> = spans
        .iter()
        .map(|span| (span.name.clone(), span.parent.clone()))
        .collect();
    let child = |name: &str, parent: &str| (name.to_owned(), Some(parent.to_owned()));
    // Closed in order: first's one attempt and its deployment, second's two attempts and its
    // deployment, the first call; then the second call, a cache hit, with nothing under it.
    assert_eq!(
        shape,
        [
            child("attempt", "deployment"),
            child("deployment", "chat"),
            child("attempt", "deployment"),
            child("attempt", "deployment"),
            child("deployment", "chat"),
            ("chat".to_owned(), None),
            ("chat".to_owned(), None),
        ]
    );
    let field = |span: &Closed, name: &str| span.fields.get(name).cloned().unwrap_or_default();
    let deployments: Vec<(String, String)> = spans
        .iter()
        .filter(|span| span.name == "deployment")
        .map(|span| {
            (
                field(span, "tollgate.deployment"),
                field(span, "gen_ai.provider.name"),
            )
        })
        .collect();
    assert_eq!(
        deployments,
        [
            ("first/m".to_owned(), "first".to_owned()),
            ("second/m".to_owned(), "second".to_owned())
        ]
    );
    let attempts: Vec<String> = spans
        .iter()
        .filter(|span| span.name == "attempt")
        .map(|span| field(span, "tollgate.attempt"))
        .collect();
    assert_eq!(attempts, ["1", "1", "2"]);

    let calls: Vec<&Closed> = spans.iter().filter(|span| span.name == "chat").collect();
    let routed = calls[0];
    for (name, value) in [
        ("otel.name", "chat m"),
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "m"),
        ("gen_ai.response.model", "m"),
        ("gen_ai.usage.input_tokens", "10"),
        ("gen_ai.usage.output_tokens", "5"),
        ("gen_ai.response.finish_reasons", "[\"stop\"]"),
        ("tollgate.deployment", "second/m"),
        ("gen_ai.provider.name", "second"),
        ("tollgate.cache", "miss"),
        ("tollgate.role", "default"),
    ] {
        assert_eq!(field(routed, name), value, "{name} in {routed:?}");
    }
    assert_eq!(field(calls[1], "tollgate.cache"), "hit");
    // Neither prompt nor answer is anywhere in a span or an event.
    let everything = format!("{spans:?}{:?}", capture.events.lock().unwrap());
    assert!(!everything.contains("secret"), "{everything}");
}

#[tokio::test]
async fn a_denial_is_an_event_in_the_calls_span() {
    let capture = Capture::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let config = Config::from_yaml(
        r#"
providers:
  sim: { kind: simulated }
roles:
  default: { provider: sim, model: m }
rate_limiting: { tenants: { default: { per_minute: 1 } } }
retry: false
"#,
    )
    .unwrap();
    let stack = Stack::from_config(&config).unwrap();
    let ask = || LlmRequest::new("", vec![Message::user("hi")]).with_tenant("acme");
    stack.clone().oneshot(ask()).await.unwrap();
    let error = stack.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(error.kind(), tollgate::ErrorKind::RateLimited);

    let events = capture.events.lock().unwrap().clone();
    let denial = events
        .iter()
        .find(|(_, fields)| fields.get("message").is_some_and(|m| m == "rate limited"))
        .unwrap();
    assert_eq!(denial.0.as_deref(), Some("chat"));
    assert_eq!(denial.1["tollgate.limiter.scope"], "tenant");
    assert_eq!(denial.1["tollgate.limiter.dimension"], "requests");
    let spans = capture.spans.lock().unwrap().clone();
    let refused = spans.iter().rfind(|span| span.name == "chat").unwrap();
    assert_eq!(refused.fields["error.type"], "rate_limited");
}
