//! Each call through a `Stack` gives its hook one record: what answered, whether the cache did,
//! how it ended, and what every billed attempt used and cost.

use std::sync::{Arc, Mutex};

use tollgate::{
    CallRecorder, Config, ErrorKind, LlmError, LlmRequest, LlmResponse, Message, Outcome,
    SimulatedProvider, Stack, Usage,
    log::{CacheStatus, CallRecord},
    stream::LlmStream,
};
use tower::ServiceExt;

const YAML: &str = r#"
providers: { local: { kind: simulated, output_tokens: 10 } }
roles: { default: { provider: local, model: sim-small } }
pricing: { sim-small: { input: "1.00", output: "2.00" } }
caching: { store: memory }
retry: { max_retries: 0 }
"#;

type Kept = Arc<Mutex<Vec<CallRecord>>>;

fn stack<S>(provider: S, bodies: bool) -> (Stack, Kept)
where
    S: tower::Service<LlmRequest, Response = LlmResponse, Error = LlmError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let config = Config::from_yaml(YAML).unwrap();
    let kept: Kept = Arc::default();
    let into = kept.clone();
    let mut builder = Stack::builder(&config)
        .provider("local", provider)
        .on_call(move |record| into.lock().unwrap().push(record));
    if bodies {
        builder = builder.record_bodies(1_000);
    }
    (builder.build().unwrap(), kept)
}

fn ask(text: &str) -> LlmRequest {
    let mut request = LlmRequest::new("", vec![Message::user(text)]).with_tenant("acme");
    request.meta.principal = Some("key_1".into());
    request
}

fn taken(kept: &Kept) -> Vec<CallRecord> {
    std::mem::take(&mut *kept.lock().unwrap())
}

#[tokio::test]
async fn a_miss_a_hit_and_a_failure_each_leave_one_record() {
    let provider = SimulatedProvider::builder()
        .output_tokens(10)
        .script([Outcome::Success, Outcome::Server])
        .build();
    let (stack, kept) = stack(provider, false);

    stack.clone().oneshot(ask("hi")).await.unwrap();
    let miss = taken(&kept).pop().unwrap();
    assert_eq!(miss.cache, Some(CacheStatus::Miss));
    assert_eq!(
        (
            miss.team.as_deref(),
            miss.key_id.as_deref(),
            miss.role.as_deref()
        ),
        (Some("acme"), Some("key_1"), Some("default"))
    );
    assert_eq!(miss.model.as_deref(), Some("sim-small"));
    assert_eq!((miss.usage.input_tokens, miss.usage.output_tokens), (7, 10));
    assert_eq!(miss.cost.unwrap().0, 7 + 20);
    assert!(miss.latency >= miss.upstream);
    assert_eq!(
        (miss.error, miss.dropped, miss.stream),
        (None, false, false)
    );

    // The cache answers: nothing billed.
    stack.clone().oneshot(ask("hi")).await.unwrap();
    let hit = taken(&kept).pop().unwrap();
    assert_eq!(hit.cache, Some(CacheStatus::Hit));
    assert_eq!((hit.usage.input_tokens, hit.cost), (0, None));

    let error = stack.clone().oneshot(ask("fails")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    let failed = taken(&kept);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error, Some(ErrorKind::Server));
    assert_eq!(failed[0].cost, None, "a failed attempt is not billed");
    assert!(failed[0].prompt.is_none(), "no body unless asked");
}

#[tokio::test]
async fn a_stream_is_recorded_at_its_end_and_one_dropped_midway_says_so() {
    // A provider that streams its answers.
    let streaming = tower::service_fn(|_: LlmRequest| async {
        let whole = LlmResponse::new("sim-small", "hello there").with_usage(Usage::new(7, 10));
        Ok::<_, LlmError>(LlmResponse::new("sim-small", "").with_stream(LlmStream::replay(&whole)))
    });
    let (stack, kept) = stack(streaming, true);

    let mut answer = stack.clone().oneshot(ask("one").streaming()).await.unwrap();
    let mut events = answer.take_stream().unwrap();
    assert!(taken(&kept).is_empty(), "not before the stream's end");
    while let Some(event) = events.next().await {
        event.unwrap();
    }
    drop(events);
    let whole = taken(&kept).pop().unwrap();
    assert!(whole.stream && !whole.dropped);
    assert_eq!(whole.usage.output_tokens, 10);
    assert!(whole.time_to_first_token.is_some());
    assert_eq!(whole.prompt.as_deref(), Some("user: one"));
    assert!(!whole.answer.as_deref().unwrap().is_empty());

    let mut answer = stack.clone().oneshot(ask("two").streaming()).await.unwrap();
    let mut events = answer.take_stream().unwrap();
    events.next().await.unwrap().unwrap();
    drop((events, answer));
    let cut = taken(&kept).pop().unwrap();
    assert!(cut.dropped);
    // What the provider read is billed all the same, as the cost report counts it.
    assert!(cut.usage.input_tokens > 0 && cut.cost.is_some());
    assert_eq!(stack.cost_report().total.calls, 2);
}

#[tokio::test]
async fn a_callers_own_recorder_is_filled_in_by_the_stack() {
    let (stack, kept) = stack(
        SimulatedProvider::builder().output_tokens(10).build(),
        false,
    );
    let mine: Kept = Arc::default();
    let into = mine.clone();
    let recorder = CallRecorder::new(
        "req_mine",
        Arc::new(move |record| into.lock().unwrap().push(record)),
    );
    let mut request = ask("hi");
    recorder.attach(&mut request);
    recorder.update(|record| record.status = Some(200));
    drop(recorder);
    stack.oneshot(request).await.unwrap();
    assert!(
        taken(&kept).is_empty(),
        "the caller's recorder takes the record"
    );
    let record = taken(&mine).pop().unwrap();
    assert_eq!(&*record.request_id, "req_mine");
    assert_eq!((record.status, record.usage.output_tokens), (Some(200), 10));
}
