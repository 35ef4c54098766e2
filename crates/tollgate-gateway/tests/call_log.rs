//! The call log through the real binary: one record per call in a JSON-lines file and in
//! PostgreSQL under load, their sums equal to what the upstream billed and to the spend ledger;
//! a SIGTERM that loses no completed call's record; sinks that die costing no call and counting
//! exactly what they lost; prompts kept only when asked, and then redacted.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use support::{
    ALICE, client, config, gateway::GatewayProcess, get_json, until, upstream::Upstream,
};
use tollgate::log::{CacheStatus, CallRecord};
use tollgate_control::{CallFilter, Database, DatabaseConfig, GroupBy};
use tollgate_testkit::TestPostgres;

const PATIENCE: Duration = Duration::from_secs(180);

/// A folder of its own for a test's files.
fn folder(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("call-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The gateway's configuration: the support upstream, a cache, records in `database`, and a
/// call log to a file in `dir` and (when `table`) the database.
fn logged(upstream: &Upstream, database: &str, dir: &Path, table: bool, more: &str) -> String {
    let table = if table {
        "\n    - { kind: database }"
    } else {
        ""
    };
    config(
        upstream,
        &format!(
            r#"caching: {{ store: memory }}
circuit_breaker: false
database: {{ url: "{database}", timeout: 1s }}
gateway: {{ admin_key_hash: "{admin}", header_timeout: 120s }}
logs:
  sinks:
    - {{ kind: file, path: "{file}" }}{table}
{more}"#,
            admin = tollgate_gateway::hash_key(ALICE),
            file = dir.join("calls.jsonl").display(),
        ),
    )
    .replace("timeout: 5s", "timeout: 60s")
}

/// Call `i` of a load: a 429 or a 500 from the upstream one time in ten each, a repeated
/// prompt (the cache answers it after the first) one in five, else a new prompt with a bound
/// the upstream bills in full.
fn body(i: usize) -> Value {
    let text = match i % 10 {
        0 => format!("[429] {i}"),
        1 => format!("[500] {i}"),
        2 | 3 => format!("again {}", i % 40),
        _ => format!("call {i}"),
    };
    json!({
        "model": "default",
        "max_tokens": 1 + i % 7,
        "messages": [{ "role": "user", "content": text }],
    })
}

/// What the load saw: each call's id and status, for the calls that completed.
type Seen = Arc<Mutex<BTreeMap<String, u16>>>;

/// Sends calls `0..n` (call `i`'s body made by `body`) with `workers` at a time, each with the
/// id `call-{i}`; counts them done in `done`. A call the gateway did not answer (it stopped) is
/// left out of what was seen.
async fn load(
    url: String,
    n: usize,
    workers: usize,
    done: Arc<AtomicUsize>,
    body: fn(usize) -> Value,
) -> Seen {
    let seen: Seen = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let http = client();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (url, next, seen, done, http) = (
            url.clone(),
            next.clone(),
            seen.clone(),
            done.clone(),
            http.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let id = format!("call-{i:06}");
                let sent = http
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(ALICE)
                    .header("x-request-id", &id)
                    .json(&body(i))
                    .send()
                    .await;
                if let Ok(response) = sent {
                    let status = response.status().as_u16();
                    // Completed: the whole answer read.
                    if response.bytes().await.is_ok() {
                        seen.lock().unwrap().insert(id, status);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    seen
}

/// Every record in the JSON-lines files of `dir`, rotated ones included.
fn file_records(dir: &Path) -> Vec<CallRecord> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("calls") || path.is_symlink() {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            records.push(serde_json::from_str(line).unwrap());
        }
    }
    records
}

/// Stops the gateway as an operator does; its sinks flush before it exits.
async fn stop(gateway: &mut GatewayProcess) {
    gateway.signal("TERM");
    assert!(gateway.wait(PATIENCE).await.success(), "{}", gateway.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_calls_leave_one_record_each_in_the_file_and_the_table() {
    let Some(postgres) = TestPostgres::start() else {
        return;
    };
    const CALLS: usize = 100_000;
    let upstream = Upstream::billing(7).await;
    let dir = folder("hundred-thousand");
    let mut gateway =
        GatewayProcess::start(&logged(&upstream, &postgres.url(), &dir, true, "")).await;
    let seen = load(gateway.url.clone(), CALLS, 32, Arc::default(), body).await;
    stop(&mut gateway).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), CALLS, "every call answered");
    let statuses: BTreeSet<u16> = seen.values().copied().collect();
    assert!(statuses.contains(&200) && statuses.contains(&429) && statuses.contains(&502));

    // The file: exactly one record per call, with the status the caller saw.
    let records = file_records(&dir);
    assert_eq!(records.len(), CALLS);
    let by_id: BTreeMap<&str, &CallRecord> = records.iter().map(|r| (&*r.request_id, r)).collect();
    assert_eq!(by_id.len(), CALLS, "no call recorded twice");
    for (id, status) in &seen {
        assert_eq!(by_id[id.as_str()].status, Some(*status), "{id}");
    }
    let hits = records
        .iter()
        .filter(|r| r.cache == Some(CacheStatus::Hit))
        .count();
    assert!(hits > 10_000, "{hits} hits");

    // What the records say was billed is what the upstream billed, and what the ledger holds.
    let output: u64 = records.iter().map(|r| r.usage.output_tokens).sum();
    let cost: u64 = records.iter().map(|r| r.cost.map_or(0, |c| c.0)).sum();
    assert_eq!(output, upstream.billed());
    assert_eq!(cost, output * 2, "$2 per million output tokens");
    let database = Database::open(&DatabaseConfig::url(postgres.url()))
        .await
        .unwrap();
    let ledger = database.spend(GroupBy::Team, None, None).await.unwrap();
    assert_eq!(
        (ledger.total.cost_micros, ledger.total.output_tokens),
        (cost, output)
    );

    // The table: the same calls, the same sums.
    let table = database.call_totals(&CallFilter::default()).await.unwrap();
    assert_eq!(
        (table.calls, table.output_tokens, table.cost_micros),
        (CALLS as u64, output, cost)
    );
    let mut refused = CallFilter::default();
    refused.status = Some(429);
    let refused_seen = seen.values().filter(|s| **s == 429).count() as u64;
    assert_eq!(
        database.call_totals(&refused).await.unwrap().calls,
        refused_seen
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_a_load_loses_no_completed_calls_record() {
    let upstream = Upstream::billing(7).await;
    let dir = folder("sigterm");
    let sqlite = format!("sqlite://{}", dir.join("tollgate.db").display());
    let mut gateway = GatewayProcess::start(&logged(&upstream, &sqlite, &dir, true, "")).await;
    let done = Arc::new(AtomicUsize::new(0));
    let loading = {
        let (done, url) = (done.clone(), gateway.url.clone());
        tokio::spawn(load(url, 30_000, 32, done, body))
    };
    assert!(until(PATIENCE, || async { done.load(Ordering::Relaxed) >= 3_000 }).await);
    stop(&mut gateway).await;
    let seen = loading.await.unwrap().lock().unwrap().clone();
    assert!(seen.len() >= 3_000 && seen.len() < 30_000, "{}", seen.len());

    let records = file_records(&dir);
    let ids: BTreeSet<&str> = records.iter().map(|r| &*r.request_id).collect();
    assert_eq!(ids.len(), records.len(), "no call recorded twice");
    let missing: Vec<&String> = seen
        .keys()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "completed calls without a record: {missing:?}"
    );
    // And the database sink, flushed in the same drain.
    let database = Database::open(&DatabaseConfig::url(sqlite)).await.unwrap();
    let table = database.call_totals(&CallFilter::default()).await.unwrap();
    assert_eq!(table.calls, records.len() as u64);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the live page says each sink has done: (written, dropped), by sink.
async fn sink_counts(gateway: &GatewayProcess) -> BTreeMap<String, (u64, u64)> {
    let data = get_json(gateway, "/ui/data", Some(ALICE)).await;
    data["calls"]["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sink| {
            let count = |field: &str| sink[field].as_u64().unwrap();
            (
                sink["sink"].as_str().unwrap().to_owned(),
                (count("written"), count("dropped")),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_that_die_cost_no_call_and_count_exactly_what_they_lost() {
    let Some(mut postgres) = TestPostgres::start() else {
        return;
    };
    const CALLS: usize = 20_000;
    let upstream = Upstream::billing(7).await;
    let dir = folder("dying");
    let mut gateway =
        GatewayProcess::start(&logged(&upstream, &postgres.url(), &dir, true, "")).await;
    let done = Arc::new(AtomicUsize::new(0));
    let loading = {
        let (done, url) = (done.clone(), gateway.url.clone());
        // Only calls the upstream answers: any failure would be the sinks'.
        tokio::spawn(load(url, CALLS, 32, done, answered))
    };
    assert!(until(PATIENCE, || async { done.load(Ordering::Relaxed) >= 5_000 }).await);
    postgres.kill();
    assert!(
        until(PATIENCE, || async {
            done.load(Ordering::Relaxed) >= 10_000
        })
        .await
    );
    // The file is moved away and its path now names a full disk.
    let path = dir.join("calls.jsonl");
    std::fs::rename(&path, dir.join("calls.before.jsonl")).unwrap();
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let seen = loading.await.unwrap().lock().unwrap().clone();
    assert_eq!(seen.len(), CALLS, "every call answered");
    assert!(seen.values().all(|s| *s == 200), "no call fails for a sink");

    // Every record is written or counted dropped by each sink.
    let settled = until(PATIENCE, || async {
        let counts = sink_counts(&gateway).await;
        ["file", "database"]
            .iter()
            .all(|sink| counts[*sink].0 + counts[*sink].1 == CALLS as u64)
    })
    .await;
    assert!(settled, "{:?}", sink_counts(&gateway).await);
    let counts = sink_counts(&gateway).await;
    stop(&mut gateway).await;

    let (file_written, file_dropped) = counts["file"];
    assert!(file_dropped > 0);
    assert_eq!(file_records(&dir).len() as u64, file_written);
    assert_eq!(file_written + file_dropped, CALLS as u64);

    postgres.restart();
    let database = Database::open(&DatabaseConfig::url(postgres.url()))
        .await
        .unwrap();
    let (table_written, table_dropped) = counts["database"];
    assert!(table_dropped > 0);
    let kept = database.call_totals(&CallFilter::default()).await.unwrap();
    assert_eq!(
        kept.calls, table_written,
        "the records missing are those counted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A call the upstream answers, with a bound of 3 tokens.
fn answered(i: usize) -> Value {
    json!({ "model": "default", "max_tokens": 3, "messages": [{ "role": "user", "content": format!("ok {i}") }] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_are_kept_only_when_asked_and_then_redacted() {
    let upstream = Upstream::billing(7).await;
    let secret = "sk-proj-MARKERabcdef0123456789";
    // The key on a line of its own: a transcript keeps the newline, so the patterns see it.
    let prompt = format!("MARKER-PROMPT account ACCT-778899 key\n{secret}");
    for bodies in [false, true] {
        let dir = folder(if bodies { "bodies-on" } else { "bodies-off" });
        let sqlite = format!("sqlite://{}", dir.join("tollgate.db").display());
        let more = if bodies {
            "  log_bodies: true\n  redact: ['ACCT-\\d{6}']\n"
        } else {
            ""
        };
        let mut gateway =
            GatewayProcess::start(&logged(&upstream, &sqlite, &dir, true, more)).await;
        let response = client()
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(ALICE)
            .header("x-request-id", "with-secret")
            .json(
                &json!({ "model": "default", "messages": [{ "role": "user", "content": prompt }] }),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // The record by its id, over the admin API, once the sinks have it.
        let found = until(PATIENCE, || async {
            support::get(&gateway, "/admin/logs/with-secret", Some(ALICE))
                .await
                .status()
                == 200
        })
        .await;
        assert!(found);
        stop(&mut gateway).await;
        let mut kept = String::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            kept.push_str(&String::from_utf8_lossy(&bytes));
        }
        // The secret and the configured pattern never reach a sink, bodies or not.
        assert!(!kept.contains(secret) && !kept.contains("ACCT-778899"));
        assert_eq!(
            kept.contains("MARKER-PROMPT"),
            bodies,
            "the prompt only when asked"
        );
        if bodies {
            let record: CallRecord = file_records(&dir).pop().unwrap();
            let stored = record.prompt.unwrap();
            assert_eq!(
                stored,
                "user: MARKER-PROMPT account [redacted] key\n[redacted]"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_finds_calls_by_key_status_and_time() {
    let upstream = Upstream::billing(7).await;
    let dir = folder("admin");
    let sqlite = format!("sqlite://{}", dir.join("tollgate.db").display());
    let mut gateway = GatewayProcess::start(&logged(&upstream, &sqlite, &dir, true, "")).await;
    let http = client();
    for i in 0..30 {
        http.post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(ALICE)
            .header("x-request-id", format!("admin-{i:02}"))
            .json(&body(i))
            .send()
            .await
            .unwrap();
    }
    let all = until(PATIENCE, || async {
        let page = get_json(&gateway, "/admin/logs?limit=1000", Some(ALICE)).await;
        page["data"].as_array().is_some_and(|d| d.len() == 30)
    })
    .await;
    assert!(all);
    let first = get_json(&gateway, "/admin/logs?limit=10", Some(ALICE)).await;
    assert_eq!(first["data"][0]["request_id"], "admin-29", "newest first");
    assert_eq!(first["next_offset"], 10);
    let last = get_json(&gateway, "/admin/logs?limit=10&offset=20", Some(ALICE)).await;
    assert_eq!(last["data"][9]["request_id"], "admin-00");
    assert_eq!(last["next_offset"], Value::Null);
    // The upstream's 429s (and any call a cooldown after one refused) are found, and only those.
    let refused = get_json(&gateway, "/admin/logs?status=429&key=alice", Some(ALICE)).await;
    let refused = refused["data"].as_array().unwrap();
    for record in refused {
        assert_eq!(
            (record["status"].as_u64(), record["key_id"].as_str()),
            (Some(429), Some("alice"))
        );
    }
    let ids: BTreeSet<&str> = refused
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert!(
        ["admin-00", "admin-10", "admin-20"]
            .iter()
            .all(|id| ids.contains(id)),
        "{ids:?}"
    );
    let future = get_json(
        &gateway,
        "/admin/logs?from=2999-01-01T00:00:00Z",
        Some(ALICE),
    )
    .await;
    assert_eq!(future["data"], json!([]));
    let bad = support::get(&gateway, "/admin/logs?from=yesterday", Some(ALICE)).await;
    assert_eq!(bad.status(), 400);
    let one = get_json(&gateway, "/admin/logs/admin-07", Some(ALICE)).await;
    assert_eq!(
        one["usage"]["output_tokens"], 1,
        "call 7 bound to 1 token, billed in full"
    );
    let none = support::get(&gateway, "/admin/logs/nobody", Some(ALICE)).await;
    assert_eq!(none.status(), 404);
    let anonymous = support::get(&gateway, "/admin/logs", None).await;
    assert_eq!(anonymous.status(), 401);
    stop(&mut gateway).await;
    let _ = std::fs::remove_dir_all(&dir);
}
