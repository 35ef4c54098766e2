//! The call log's cost on the call path: the whole recommended stack (a cache hit, its cheapest
//! call, where a record's share is largest) with every call's record handed to a `CallLog`,
//! beside the same stack without one, in the same run; and a record alone (made, filled in,
//! handed to the log's queue), beside a `tracing` event of the same facts formatted as a JSON
//! line (tracing-subscriber's `fmt().json()`, written to `io::sink`), the usual hand-rolled way to
//! log calls, which formats on the call path.
//!
//! The log's sink discards what it is given, on a runtime thread of its own, so what is
//! measured is what a call pays: the record's allocation, its fields, and the queue.
//!
//! `table_write_1000`: what a database sink costs per record at the least, a batch of 1,000
//! written to a SQLite file's call table, beside the same batch as JSON lines.
//!
//! Run: `cargo bench -p tollgate-benches --bench logs`.

use std::{hint::black_box, sync::Arc};

#[path = "support/mod.rs"]
mod support;
use support::{Bare, one_call};

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::{
    CallRecorder, LlmRequest, Message,
    log::{CallLog, CallRecord, Sink, WriteFuture},
};

/// A sink that keeps nothing.
struct Discard;

impl Sink for Discard {
    fn write<'a>(&'a mut self, _: &'a [Arc<CallRecord>]) -> WriteFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

const STACK_CONFIG: &str = "
providers:
  main: { kind: simulated }
roles:
  default: { provider: main, model: bench-model, max_tokens: 256 }
pricing:
  bench-model: { input: \"1.00\", output: \"2.00\" }
caching: { store: memory }
rate_limiting:
  tenants:
    default: { per_minute: 1000000000, tokens_per_hour: 600000000000 }
retry: {}
circuit_breaker: {}
health: {}
";

fn call_record(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let _inside = runtime.enter();
    let log = CallLog::builder()
        .queue(1 << 20)
        .sink("discard", Discard)
        .build()
        .expect("a log");
    let config = tollgate::Config::from_yaml(STACK_CONFIG).expect("valid configuration");
    let mut plain = tollgate::Stack::builder(&config)
        .provider("main", Bare(Some("It is a gate that takes a toll.")))
        .build()
        .expect("builds");
    let into = log.clone();
    let mut recorded = tollgate::Stack::builder(&config)
        .provider("main", Bare(Some("It is a gate that takes a toll.")))
        .on_call(move |record| into.record(record))
        .build()
        .expect("builds");
    let mut ask =
        LlmRequest::new("", vec![Message::user("What is a tollgate?")]).with_tenant("acme");
    ask.meta.principal = Some("key_bench".into());
    ask.meta.request_id = Some("req_bench".into());
    // Both cached: every measured call is a hit.
    one_call(&mut plain, &ask);
    one_call(&mut recorded, &ask);

    let mut group = c.benchmark_group("call_record");
    group.bench_function("stack_hit_without_record", |b| {
        b.iter(|| black_box(one_call(&mut plain, &ask)))
    });
    group.bench_function("stack_hit_with_record", |b| {
        b.iter(|| black_box(one_call(&mut recorded, &ask)))
    });
    let into = log.clone();
    let hook: tollgate::OnCall = Arc::new(move |record| into.record(record));
    let (model, team): (Arc<str>, Arc<str>) = ("bench-model".into(), "acme".into());
    group.bench_function("record_alone", |b| {
        b.iter(|| {
            let recorder = CallRecorder::new("req_bench", hook.clone());
            recorder.update(|record| {
                record.model = Some(model.clone());
                record.team = Some(team.clone());
                record.status = Some(200);
                record.usage = tollgate::Usage::new(14, 13);
            });
            drop(black_box(recorder));
        })
    });
    // The peer: one `tracing` event with the same facts, formatted as a JSON line by
    // tracing-subscriber and written to nowhere: the hand-rolled call log.
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("tracing_event_peer", |b| {
            b.iter(|| {
                tracing::info!(
                    request_id = "req_bench",
                    model = &*model,
                    team = &*team,
                    status = 200u16,
                    input_tokens = 14u64,
                    output_tokens = 13u64,
                    "call"
                );
            })
        });
    });
    group.finish();
    drop(log);
}

/// The floor of a database sink: a batch of 1,000 records written to the call table of a SQLite
/// file (WAL, as the gateway opens it), per record, beside the same records as JSON lines, which
/// every sink writes at the least.
fn table_write(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = std::env::temp_dir().join(format!("tollgate-bench-calls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a folder");
    let url = format!("sqlite://{}", dir.join("calls.db").display());
    let database = runtime
        .block_on(tollgate_control::Database::open(
            &tollgate_control::DatabaseConfig::url(url),
        ))
        .expect("the database");
    let batch: Vec<Arc<CallRecord>> = (0..1_000)
        .map(|n| {
            let mut record = CallRecord::new(format!("req_{n:08}"), std::time::SystemTime::now());
            record.key_id = Some("key_bench".into());
            record.team = Some("acme".into());
            record.model = Some("bench-model".into());
            record.status = Some(200);
            record.usage = tollgate::Usage::new(14, 13);
            record.cost = Some(tollgate::MicroUsd(29));
            Arc::new(record)
        })
        .collect();
    let mut group = c.benchmark_group("table_write_1000");
    group.sample_size(20);
    group.bench_function("sqlite_file", |b| {
        b.iter(|| {
            runtime
                .block_on(database.write_calls(&batch))
                .expect("written")
        })
    });
    group.bench_function("json_lines", |b| {
        b.iter(|| {
            let mut lines = Vec::with_capacity(batch.len() * 512);
            for record in &batch {
                serde_json::to_writer(&mut lines, &**record).expect("json");
                lines.push(b'\n');
            }
            black_box(lines)
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, call_record, table_write);
criterion_main!(benches);
