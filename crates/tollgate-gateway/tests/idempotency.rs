//! Idempotency keys through the real binary: a call with an `Idempotency-Key` is answered once,
//! and its retries (sequential, concurrent, from another process on the same Redis, the official
//! OpenAI client's own) get that answer again, to the byte, billed nothing.

mod support;

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::*;
use tollgate_testkit::{TestRedis, Topology, each_topology};

const REPLAY: &str = "x-tollgate-idempotent-replay";

/// A gateway's answer, read whole.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn replayed(&self) -> bool {
        match self.headers.get(REPLAY) {
            Some(value) => value == "true",
            None => false,
        }
    }
}

/// Posts `body` to `path` on the gateway at `url` as `key`, with `Idempotency-Key: idempotency`
/// when given.
async fn post_as(
    url: &str,
    key: &str,
    path: &str,
    idempotency: Option<&str>,
    body: &Value,
) -> Answer {
    let mut request = client()
        .post(format!("{url}{path}"))
        .bearer_auth(key)
        .json(body);
    if let Some(idempotency) = idempotency {
        request = request.header("idempotency-key", idempotency);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap(),
    }
}

/// Posts `body` to `path` as alice, with `Idempotency-Key: idempotency`.
async fn post(url: &str, path: &str, idempotency: &str, body: &Value) -> Answer {
    post_as(url, ALICE, path, Some(idempotency), body).await
}

const CHAT: &str = "/v1/chat/completions";

/// The sum of every series of counter `name` on the gateway's `/metrics`.
async fn counter(gateway: &GatewayProcess, name: &str) -> u64 {
    scrape(gateway)
        .await
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// What the gateway billed so far, in micro-dollars.
async fn billed(gateway: &GatewayProcess) -> u64 {
    counter(gateway, "tollgate_cost_microdollars").await
}

/// `second` is `first` again, said to be a replay: the same status, body and headers but for the
/// request's own id and the gateway's time on it.
fn assert_replay_of(second: &Answer, first: &Answer) {
    assert!(!first.replayed(), "{:?}", first.headers);
    assert!(second.replayed(), "{:?}", second.headers);
    assert_eq!(second.status, first.status);
    assert_eq!(second.body, first.body);
    let described = |answer: &Answer| {
        let mut headers: Vec<(String, String)> = answer
            .headers
            .iter()
            .filter(|(name, _)| {
                ![
                    "x-request-id",
                    "x-tollgate-overhead-ms",
                    "x-tollgate-original-request-id",
                    REPLAY,
                    "date",
                    "content-length",
                    "transfer-encoding",
                ]
                .contains(&name.as_str())
            })
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        headers
    };
    assert_eq!(described(second), described(first));
    assert!(
        described(first)
            .iter()
            .any(|(name, _)| name == "content-type")
    );
    assert_eq!(
        second.headers["x-tollgate-original-request-id"],
        first.headers["x-request-id"]
    );
    assert_ne!(
        second.headers["x-request-id"],
        first.headers["x-request-id"]
    );
}

#[tokio::test]
async fn a_retry_gets_the_first_answer_to_the_byte_on_every_call_route_billed_once() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    let message = json!({ "model": "default", "max_tokens": 50,
                          "messages": [{ "role": "user", "content": "hi" }] });
    let embed = json!({ "model": "default", "input": "hi" });
    for (path, body, cost) in [
        (CHAT, ask("hi"), 20),
        ("/v1/messages", message, 20),
        ("/v1/embeddings", embed, 4),
    ] {
        let calls = upstream.calls();
        let spent = billed(&gateway).await;
        let first = post(&gateway.url, path, &format!("{path}-1"), &body).await;
        assert_eq!(first.status, 200, "{path}");
        let second = post(&gateway.url, path, &format!("{path}-1"), &body).await;
        assert_replay_of(&second, &first);
        assert_eq!(upstream.calls(), calls + 1, "{path}");
        assert_eq!(billed(&gateway).await, spent + cost, "{path}");
    }
    assert_eq!(
        counter(&gateway, "tollgate_idempotency_replays_total").await,
        3
    );
    // The upstream saw no Idempotency-Key: it is the gateway's, not the provider's.
    assert!(upstream.headers()[0].get("idempotency-key").is_none());
}

#[tokio::test]
async fn ten_concurrent_duplicates_make_one_upstream_call_and_get_its_stream() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    upstream.push(Reply::HeldStream {
        first: vec![chunk(
            json!({ "role": "assistant", "content": "Hello" }),
            None,
        )],
        rest: vec![
            chunk(json!({ "content": " world" }), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(3, 2),
        ],
        done: true,
    });
    let body = json!({ "model": "default", "stream": true, "stream_options": { "include_usage": true },
                       "messages": [{ "role": "user", "content": "hi" }] });
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let (url, body) = (gateway.url.clone(), body.clone());
            tokio::spawn(async move { post(&url, CHAT, "stream-1", &body).await })
        })
        .collect();
    // One call reached the upstream, which holds its stream; the nine others wait for it.
    let deadline = Duration::from_secs(20);
    assert!(until(deadline, || async { upstream.calls() == 1 }).await);
    assert!(
        until(deadline, || async {
            counter(&gateway, "tollgate_idempotency_waits_total").await == 9
        })
        .await
    );
    upstream.release();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    let (first, replays): (Vec<_>, Vec<_>) = answers.into_iter().partition(|a| !a.replayed());
    assert_eq!((first.len(), replays.len()), (1, 9));
    let first = &first[0];
    assert_eq!(first.headers["content-type"], "text/event-stream");
    let text = std::str::from_utf8(&first.body).unwrap();
    assert_eq!(data_lines(text).last().unwrap(), "[DONE]", "{text}");
    assert!(
        text.contains("\"Hello\"") && text.contains("\" world\""),
        "{text}"
    );
    for replay in &replays {
        assert_replay_of(replay, first);
    }
    // And later, one at a time.
    assert_replay_of(&post(&gateway.url, CHAT, "stream-1", &body).await, first);
    assert_eq!(upstream.calls(), 1);
    assert_eq!(billed(&gateway).await, 3 + 2 * 2);
}

#[tokio::test]
async fn the_same_key_for_another_request_is_a_422_in_each_apis_shape() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    assert_eq!(
        post(&gateway.url, CHAT, "k-1", &ask("hi")).await.status,
        200
    );

    let other = post(&gateway.url, CHAT, "k-1", &ask("something else")).await;
    assert_eq!(other.status, 422);
    assert!(!other.replayed());
    assert_eq!(
        other.json(),
        json!({ "error": {
            "message": "this Idempotency-Key was used for a different request (another body or endpoint): a new request needs a new key",
            "type": "idempotency_error", "param": null, "code": "idempotency_key_reused" } })
    );
    // The same body on another route is another request too; the Anthropic route says so in
    // Anthropic's shape.
    let message = post(&gateway.url, "/v1/messages", "k-1", &ask("hi")).await;
    assert_eq!(message.status, 422);
    assert_eq!(message.json()["type"], "error");
    assert_eq!(message.json()["error"]["type"], "invalid_request_error");
    assert!(
        message.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    assert_eq!(upstream.calls(), 1);
    // A key is its caller's: bob's "k-1" is not alice's.
    let bob = post_as(&gateway.url, BOB, CHAT, Some("k-1"), &ask("something else")).await;
    assert_eq!((bob.status, bob.replayed()), (200, false));
    assert_eq!(upstream.calls(), 2);
    assert_eq!(
        counter(&gateway, "tollgate_idempotency_conflicts_total").await,
        2
    );
}

#[tokio::test]
async fn a_failure_is_not_kept_so_its_retry_runs_again() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    let error = json!({ "error": { "message": "it broke", "type": "server_error" } });
    upstream.push(Reply::Json(500, error, vec![]));
    let failed = post(&gateway.url, CHAT, "k-500", &ask("hi")).await;
    assert_eq!((failed.status, failed.replayed()), (502, false));
    let retried = post(&gateway.url, CHAT, "k-500", &ask("hi")).await;
    assert_eq!((retried.status, retried.replayed()), (200, false));
    assert_eq!(upstream.calls(), 2);
    assert_replay_of(
        &post(&gateway.url, CHAT, "k-500", &ask("hi")).await,
        &retried,
    );

    // A stream cut midway reached its caller as 200 and an error event: not kept either.
    let stream = json!({ "model": "default", "stream": true,
                         "messages": [{ "role": "user", "content": "hi" }] });
    upstream.push(Reply::HeldStream {
        first: vec![chunk(
            json!({ "role": "assistant", "content": "Hel" }),
            None,
        )],
        rest: vec![],
        done: false,
    });
    let (url, body) = (gateway.url.clone(), stream.clone());
    let cut = tokio::spawn(async move { post(&url, CHAT, "k-cut", &body).await });
    assert!(until(Duration::from_secs(20), || async { upstream.calls() == 3 }).await);
    upstream.release();
    let cut = cut.await.unwrap();
    assert_eq!(cut.status, 200);
    let said = std::str::from_utf8(&cut.body).unwrap();
    assert!(
        said.contains("\"Hel\"") && said.contains("\"error\""),
        "{said}"
    );
    upstream.push(Reply::Stream {
        chunks: vec![
            chunk(json!({ "role": "assistant", "content": "Hello" }), None),
            chunk(json!({}), Some("stop")),
        ],
        done: true,
    });
    let whole = post(&gateway.url, CHAT, "k-cut", &stream).await;
    assert_eq!((whole.status, whole.replayed()), (200, false));
    assert_eq!(upstream.calls(), 4);
    assert_replay_of(&post(&gateway.url, CHAT, "k-cut", &stream).await, &whole);
    assert_eq!(upstream.calls(), 4);
}

#[tokio::test]
async fn after_the_ttl_a_call_runs_again() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "idempotency: { ttl: 1s }")).await;
    let first = post(&gateway.url, CHAT, "k-ttl", &ask("hi")).await;
    assert_eq!(first.status, 200);
    // Until the second is up, every retry is the first answer again; then one runs.
    let ran = until(Duration::from_secs(20), || async {
        let again = post(&gateway.url, CHAT, "k-ttl", &ask("hi")).await;
        assert_eq!(again.status, 200);
        !again.replayed()
    })
    .await;
    assert!(ran);
    assert_eq!(upstream.calls(), 2);
    // The new answer is kept for its own TTL.
    let again = post(&gateway.url, CHAT, "k-ttl", &ask("hi")).await;
    assert!(again.replayed());
    assert_eq!(upstream.calls(), 2);
    assert_eq!(billed(&gateway).await, 40);
}

#[tokio::test]
async fn a_malformed_key_is_a_400_and_without_the_section_the_header_is_ignored() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    let longest = "k".repeat(255);
    assert_eq!(
        post(&gateway.url, CHAT, &longest, &ask("hi")).await.status,
        200
    );
    for key in ["k".repeat(256), "has space".into(), String::new()] {
        let refused = post(&gateway.url, CHAT, &key, &ask("hi")).await;
        assert_eq!(refused.status, 400, "{key:?}");
        assert_eq!(refused.json()["error"]["code"], "invalid_idempotency_key");
        assert_eq!(refused.json()["error"]["param"], "Idempotency-Key");
    }
    let send = |values: Vec<reqwest::header::HeaderValue>| {
        let mut request = client()
            .post(format!("{}{CHAT}", gateway.url))
            .bearer_auth(ALICE)
            .json(&ask("hi"));
        for value in values {
            request = request.header("idempotency-key", value);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let value = reqwest::header::HeaderValue::from_bytes;
    assert_eq!(send(vec![value(b"caf\xc3\xa9").unwrap()]).await, 400);
    assert_eq!(
        send(vec![value(b"a").unwrap(), value(b"b").unwrap()]).await,
        400
    );
    assert_eq!(upstream.calls(), 1);

    let off = GatewayProcess::start(&config(&upstream, "idempotency: false")).await;
    for _ in 0..2 {
        let answer = post(&off.url, CHAT, "k-off", &ask("hi")).await;
        assert_eq!((answer.status, answer.replayed()), (200, false));
    }
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test]
async fn a_reload_keeps_the_answers_kept_while_their_store_stays() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    let first = post(&gateway.url, CHAT, "k-reload", &ask("hi")).await;
    let logs = &gateway.logs;
    let reloaded = |times: usize| {
        eventually(Duration::from_secs(10), move || {
            let logs = std::fs::read_to_string(logs).unwrap_or_default();
            logs.matches("configuration reloaded").count() == times
        })
    };
    gateway.reload(&config(&upstream, "idempotency: { ttl: 1h }"));
    assert!(reloaded(1).await, "{}", gateway.logs());
    assert_replay_of(
        &post(&gateway.url, CHAT, "k-reload", &ask("hi")).await,
        &first,
    );
    // Turned off, the header is ignored: the call runs.
    gateway.reload(&config(&upstream, "idempotency: false"));
    assert!(reloaded(2).await, "{}", gateway.logs());
    let off = post(&gateway.url, CHAT, "k-reload", &ask("hi")).await;
    assert_eq!((off.status, off.replayed()), (200, false));
    assert_eq!(upstream.calls(), 2);
}

async fn two_gateways_on_one_redis_answer_a_key_once(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let upstream = Upstream::start().await;
    let more = format!(
        "rate_limiting: {{ tenants: {{ acme: {{ per_minute: 6000 }} }} }}\nredis: {{ {}, on_failure: fail_open, cache_timeout: 5s }}",
        redis.yaml()
    );
    let yaml = config(&upstream, &more);
    let a = GatewayProcess::start(&yaml).await;
    let b = GatewayProcess::start(&yaml).await;

    let first = post(&a.url, CHAT, "k-shared", &ask("hi")).await;
    assert_eq!(first.status, 200);
    assert_replay_of(&post(&b.url, CHAT, "k-shared", &ask("hi")).await, &first);
    assert_eq!(
        post(&b.url, CHAT, "k-shared", &ask("other")).await.status,
        422
    );
    assert_eq!(upstream.calls(), 1);

    // A duplicate on b while a's call is under way waits for it.
    upstream.push(Reply::HeldStream {
        first: vec![chunk(
            json!({ "role": "assistant", "content": "Hello" }),
            None,
        )],
        rest: vec![chunk(json!({}), Some("stop")), usage_chunk(3, 2)],
        done: true,
    });
    let stream = json!({ "model": "default", "stream": true,
                         "messages": [{ "role": "user", "content": "hi" }] });
    let send = |gateway: &GatewayProcess| {
        let (url, stream) = (gateway.url.clone(), stream.clone());
        tokio::spawn(async move { post(&url, CHAT, "k-held", &stream).await })
    };
    let on_a = send(&a);
    let deadline = Duration::from_secs(20);
    assert!(until(deadline, || async { upstream.calls() == 2 }).await);
    let on_b = send(&b);
    assert!(
        until(deadline, || async {
            counter(&b, "tollgate_idempotency_waits_total").await == 1
        })
        .await
    );
    upstream.release();
    let (on_a, on_b) = (on_a.await.unwrap(), on_b.await.unwrap());
    assert_replay_of(&on_b, &on_a);
    assert_eq!(upstream.calls(), 2);

    // A failure on one process leaves the key free on the other.
    let error = json!({ "error": { "message": "it broke", "type": "server_error" } });
    upstream.push(Reply::Json(500, error, vec![]));
    assert_eq!(post(&a.url, CHAT, "k-fails", &ask("hi")).await.status, 502);
    let retried = post(&b.url, CHAT, "k-fails", &ask("hi")).await;
    assert_eq!((retried.status, retried.replayed()), (200, false));
    assert_eq!(upstream.calls(), 4);
    // Billed once per upstream call that answered, whichever process took it.
    assert_eq!(billed(&a).await + billed(&b).await, 20 + (3 + 2 * 2) + 20);
}
each_topology!(two_gateways_on_one_redis_answer_a_key_once);

#[tokio::test]
async fn with_redis_gone_a_process_still_answers_its_own_retries_once() {
    let Some(mut redis) = TestRedis::start(Topology::Server) else {
        return;
    };
    let upstream = Upstream::start().await;
    let more = format!(
        "rate_limiting: {{ tenants: {{ acme: {{ per_minute: 6000 }} }} }}\nredis: {{ {}, on_failure: fail_open }}",
        redis.yaml()
    );
    let gateway = GatewayProcess::start(&config(&upstream, &more)).await;
    redis.kill();
    let first = post(&gateway.url, CHAT, "k-down", &ask("hi")).await;
    assert_eq!(first.status, 200);
    assert_replay_of(
        &post(&gateway.url, CHAT, "k-down", &ask("hi")).await,
        &first,
    );
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_clients_retry_after_a_lost_answer_is_billed_once() {
    let Some(python) = python() else { return };
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    let said = run_scenario(&python, &gateway, "idempotency.py", "retried_after_a_504").await;
    assert_eq!(said.trim(), "ok");
    assert_eq!(upstream.calls(), 1);
    assert_eq!(billed(&gateway).await, 20);
    assert_eq!(
        counter(&gateway, "tollgate_idempotency_replays_total").await,
        1
    );
}

/// A client that gives up mid-stream (a timeout) and retries with its key: the first call ran to
/// its end without it, was kept, and the retry gets it whole; the upstream was called once.
#[tokio::test]
async fn a_caller_that_leaves_mid_call_finds_the_answer_kept_for_its_retry() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    upstream.push(Reply::HeldStream {
        first: vec![chunk(
            json!({ "role": "assistant", "content": "Hello" }),
            None,
        )],
        rest: vec![
            chunk(json!({ "content": " world" }), None),
            chunk(json!({}), Some("stop")),
        ],
        done: true,
    });
    let body = json!({ "model": "default", "stream": true,
                       "messages": [{ "role": "user", "content": "hi" }] });
    let response = client()
        .post(format!("{}{CHAT}", gateway.url))
        .bearer_auth(ALICE)
        .header("idempotency-key", "left-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The caller reads the first event, then leaves.
    let mut response = response;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("Hello"));
    drop(response);
    // The upstream's stream goes on; the gateway reads it to its end and keeps it.
    upstream.release();
    let deadline = Duration::from_secs(20);
    assert!(
        until(deadline, || async {
            counter(&gateway, "tollgate_idempotency_kept_total").await == 1
        })
        .await
    );
    let retry = post(&gateway.url, CHAT, "left-1", &body).await;
    assert!(retry.replayed());
    let text = String::from_utf8_lossy(&retry.body).into_owned();
    assert!(
        text.contains("Hello") && text.contains(" world") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert_eq!(upstream.calls(), 1);
}
