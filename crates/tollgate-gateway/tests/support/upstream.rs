//! A scripted OpenAI-compatible server for the gateway's black-box tests: plain axum, no tollgate
//! code. It answers each call with the next scripted reply (or a default answer), and counts the
//! calls it got, the bodies it was sent, and the calls whose client went away before the end.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// One scripted reply.
#[derive(Debug, Clone)]
#[allow(dead_code)] // each test binary uses some
pub enum Reply {
    /// A status, a JSON body and headers.
    Json(u16, Value, Vec<(&'static str, String)>),
    /// A stream: these `data:` payloads, then `[DONE]` when `done`, else the connection is cut.
    Stream { chunks: Vec<Value>, done: bool },
    /// A stream that sends `first`, then waits for `Upstream::release` before the rest, then
    /// `[DONE]` when `done`, else the connection is cut.
    HeldStream {
        first: Vec<Value>,
        rest: Vec<Value>,
        done: bool,
    },
    /// Never answers (until the caller goes away).
    Hang,
    /// A status and a body as they are, with their content type: an HTML error page.
    Raw(u16, &'static str, String),
    /// A stream: these `data:` payloads, then the body ends cleanly, with no `[DONE]`.
    Closed(Vec<Value>),
    /// A 200 whose body is `bytes` long, sent in pieces with no length declared.
    Huge(usize),
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    bodies: Mutex<Vec<Value>>,
    headers: Mutex<Vec<HeaderMap>>,
    calls: AtomicUsize,
    dropped: AtomicUsize,
    release: Notify,
    /// Set: unscripted calls are answered as a provider bills them, writing every token they
    /// may (their bound, or this default when they set none) for each answer they ask for.
    billing: Option<u64>,
    /// Output tokens billed so far.
    billed: std::sync::atomic::AtomicU64,
}

/// The running server.
#[derive(Clone)]
pub struct Upstream {
    pub address: SocketAddr,
    script: Arc<Script>,
    stop: Arc<Notify>,
}

/// Counts a call whose future or stream was dropped before it finished.
struct DropGuard {
    script: Arc<Script>,
    finished: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.script.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[allow(dead_code)]
impl Upstream {
    pub async fn start() -> Self {
        Self::with_script(Script::default()).await
    }

    /// An upstream that bills what each call may cost: its `max_tokens` (or
    /// `max_completion_tokens`; `default` when it sets neither) times its answers (`n`,
    /// `best_of`), as completion tokens, streamed or whole.
    pub async fn billing(default: u64) -> Self {
        Self::with_script(Script {
            billing: Some(default),
            ..Script::default()
        })
        .await
    }

    /// Output tokens billed so far (by [`billing`](Self::billing)).
    pub fn billed(&self) -> u64 {
        self.script.billed.load(Ordering::SeqCst)
    }

    async fn with_script(script: Script) -> Self {
        let script = Arc::new(script);
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            // Legacy text completions: the same scripted replies (their shape is the script's).
            .route("/v1/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.notified().await })
                .await
                .unwrap();
        });
        Self {
            address,
            script,
            stop,
        }
    }

    /// The base URL a provider section points at.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    pub fn push(&self, reply: Reply) {
        self.script.replies.lock().unwrap().push_back(reply);
    }

    pub fn calls(&self) -> usize {
        self.script.calls.load(Ordering::SeqCst)
    }

    pub fn dropped(&self) -> usize {
        self.script.dropped.load(Ordering::SeqCst)
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.script.bodies.lock().unwrap().clone()
    }

    /// The headers of each chat call, in order.
    pub fn headers(&self) -> Vec<HeaderMap> {
        self.script.headers.lock().unwrap().clone()
    }

    /// Lets a [`Reply::HeldStream`] go on.
    pub fn release(&self) {
        self.script.release.notify_waiters();
    }

    /// Stops accepting: the port refuses connections from now on.
    pub fn stop(&self) {
        self.stop.notify_waiters();
    }
}

/// The default answer: an echo of the last message, 10 prompt tokens and 5 answer tokens.
pub fn answer(text: &str) -> Value {
    json!({
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "up-model",
        "system_fingerprint": "fp_test",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": text },
            "finish_reason": "stop",
            "logprobs": null
        }],
        "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
    })
}

/// A chunk with `delta` for choice 0.
pub fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-upstream",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "up-model",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
    })
}

/// The usage chunk a stream ends with when usage was asked for.
pub fn usage_chunk(prompt: u64, completion: u64) -> Value {
    json!({
        "id": "chatcmpl-upstream",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "up-model",
        "choices": [],
        "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion }
    })
}

async fn chat(State(script): State<Arc<Script>>, headers: HeaderMap, body: Bytes) -> Response {
    script.calls.fetch_add(1, Ordering::SeqCst);
    script.headers.lock().unwrap().push(headers);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned();
    script.bodies.lock().unwrap().push(body.clone());
    let reply = script.replies.lock().unwrap().pop_front();
    let mut guard = DropGuard {
        script: script.clone(),
        finished: false,
    };
    match reply {
        // A billing upstream refuses a prompt marked `[429]` and fails one marked `[500]`.
        None if script.billing.is_some() && last.contains("[429]") => {
            guard.finished = true;
            let error = json!({ "error": { "message": "slow down", "type": "rate_limit_error" } });
            (StatusCode::TOO_MANY_REQUESTS, Json(error)).into_response()
        }
        None if script.billing.is_some() && last.contains("[500]") => {
            guard.finished = true;
            let error = json!({ "error": { "message": "it broke", "type": "server_error" } });
            (StatusCode::INTERNAL_SERVER_ERROR, Json(error)).into_response()
        }
        None if script.billing.is_some() => {
            guard.finished = true;
            billed(&script, &body)
        }
        None => {
            guard.finished = true;
            Json(answer(&format!("echo: {last}"))).into_response()
        }
        Some(Reply::Json(status, body, headers)) => {
            guard.finished = true;
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.insert(name, value.parse().unwrap());
            }
            (StatusCode::from_u16(status).unwrap(), map, Json(body)).into_response()
        }
        Some(Reply::Hang) => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Some(Reply::Raw(status, content_type, body)) => {
            guard.finished = true;
            (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", content_type)],
                body,
            )
                .into_response()
        }
        Some(Reply::Closed(chunks)) => {
            guard.finished = true;
            let lines: Vec<Result<Bytes, std::io::Error>> = chunks
                .iter()
                .map(|c| Ok(Bytes::from(format!("data: {c}\n\n"))))
                .collect();
            sse(Body::from_stream(tokio_stream(lines)))
        }
        Some(Reply::Huge(bytes)) => {
            guard.finished = true;
            let piece = Bytes::from(vec![b' '; 64 << 10]);
            let pieces = bytes.div_ceil(piece.len());
            let body = Items((0..pieces).map(move |_| Ok::<_, std::io::Error>(piece.clone())));
            Body::from_stream(body).into_response()
        }
        Some(Reply::Stream { chunks, done }) => {
            let mut lines: Vec<Result<Bytes, std::io::Error>> = chunks
                .iter()
                .map(|c| Ok(Bytes::from(format!("data: {c}\n\n"))))
                .collect();
            if done {
                lines.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
            } else {
                lines.push(Err(std::io::Error::other("cut")));
            }
            guard.finished = true;
            sse(Body::from_stream(tokio_stream(lines)))
        }
        Some(Reply::HeldStream { first, rest, done }) => {
            let body = async_stream(script.clone(), (first, rest, done), guard);
            sse(body)
        }
    }
}

/// The answer of a billing upstream: every token the call may have, billed.
fn billed(script: &Script, body: &Value) -> Response {
    let count = |field: &str| body.get(field).and_then(Value::as_u64);
    let bound = count("max_tokens")
        .or_else(|| count("max_completion_tokens"))
        .unwrap_or(script.billing.expect("a billing upstream"));
    let answers = count("n").unwrap_or(1).max(count("best_of").unwrap_or(1));
    let tokens = bound * answers;
    script.billed.fetch_add(tokens, Ordering::SeqCst);
    let shown = count("n").unwrap_or(1);
    if body["stream"] == true {
        let mut lines: Vec<Result<Bytes, std::io::Error>> = (0..shown)
            .map(|i| {
                let piece = json!({
                    "id": "chatcmpl-billed", "object": "chat.completion.chunk", "model": "up-model",
                    "choices": [{ "index": i, "delta": { "content": "x" }, "finish_reason": "length" }]
                });
                Ok(Bytes::from(format!("data: {piece}\n\n")))
            })
            .collect();
        let usage = usage_chunk(0, tokens);
        lines.push(Ok(Bytes::from(format!("data: {usage}\n\n"))));
        lines.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
        return sse(Body::from_stream(tokio_stream(lines)));
    }
    let choices: Vec<Value> = (0..shown)
        .map(|i| {
            json!({ "index": i, "message": { "role": "assistant", "content": "x" }, "finish_reason": "length" })
        })
        .collect();
    Json(json!({
        "id": "chatcmpl-billed", "object": "chat.completion", "model": "up-model",
        "choices": choices,
        "usage": { "prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens }
    }))
    .into_response()
}

fn sse(body: Body) -> Response {
    ([("content-type", "text/event-stream")], body).into_response()
}

/// A stream of ready items.
fn tokio_stream<T: Send + Unpin + 'static>(
    items: Vec<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static {
    Items(items.into_iter())
}

struct Items<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for Items<I> {
    type Item = I::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<I::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

/// `first`, then (once released) `rest` and `[DONE]`, through a channel; the guard goes with
/// the body, so a client that hangs up mid-stream is counted.
fn async_stream(
    script: Arc<Script>,
    (first, rest, done): (Vec<Value>, Vec<Value>, bool),
    guard: DropGuard,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let released = script.clone();
    tokio::spawn(async move {
        let mut guard = guard;
        for c in first {
            if tx.send(Ok(format!("data: {c}\n\n").into())).await.is_err() {
                return;
            }
        }
        let notified = released.release.notified();
        tokio::select! {
            () = notified => {}
            () = tx.closed() => return,
        }
        for c in rest {
            if tx.send(Ok(format!("data: {c}\n\n").into())).await.is_err() {
                return;
            }
        }
        if done {
            let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
        } else {
            let _ = tx.send(Err(std::io::Error::other("cut"))).await;
        }
        guard.finished = true;
    });
    Body::from_stream(Receiver(rx))
}

struct Receiver<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for Receiver<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

async fn embeddings(State(script): State<Arc<Script>>, body: Bytes) -> Response {
    script.calls.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    script.bodies.lock().unwrap().push(body.clone());
    let inputs = match &body["input"] {
        Value::Array(items) => items.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({ "object": "embedding", "index": i, "embedding": [0.25, -0.5, 1.0] }))
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": { "prompt_tokens": 4 * inputs, "total_tokens": 4 * inputs }
    }))
    .into_response()
}

/// Waits up to `limit` for `done` to hold, checking every few milliseconds.
#[allow(dead_code)]
pub async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}
