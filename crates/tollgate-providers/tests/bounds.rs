//! An upstream is trusted no further than the client's bounds: an answer past its size is refused
//! without being read whole, a silent upstream is cut off at its first-byte timeout, a stream
//! that falls silent at its idle timeout, and no failure names the address it was sent to.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, routing::post};
use bytes::Bytes;
use serde_json::{Value, json};
use tollgate_core::{ErrorKind, LlmError, LlmRequest, MaxTokensName, Message, stream::StreamEvent};
use tollgate_providers::OpenAiCompatible;
use tower::ServiceExt;

/// A server whose every answer is the body `reply` makes, and a count of the chunks it handed out.
async fn serve(
    reply: impl Fn(Arc<AtomicUsize>) -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let counted = pulled.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let reply = reply.clone();
            let counted = counted.clone();
            async move { reply(counted) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, pulled)
}

/// `chunks` pieces of `size` bytes each, sent without a length as fast as they are read.
fn chunked(pulled: Arc<AtomicUsize>, chunks: usize, size: usize) -> axum::response::Response {
    let piece = Bytes::from(vec![b' '; size]);
    let body = futures_util::stream::iter(0..chunks).map(move |_| {
        pulled.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Infallible>(piece.clone())
    });
    axum::response::Response::new(Body::from_stream(body))
}

/// An event stream that sends `first`, then nothing more, ever.
fn stalls_after(first: &'static str) -> axum::response::Response {
    let body = futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(first)) })
        .chain(futures_util::stream::pending());
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

use futures_util::StreamExt as _;

fn request() -> LlmRequest {
    LlmRequest::new("m", vec![Message::user("hi")])
}

fn refused(error: &LlmError, kind: ErrorKind, says: &str) {
    assert_eq!(error.kind(), kind, "{error}");
    assert!(error.message().contains(says), "{error}");
    assert!(
        !error.is_retryable(),
        "the same call would fail the same way: {error}"
    );
}

#[tokio::test]
async fn an_answer_past_its_bound_is_refused_before_it_is_read_whole() {
    // Declared too long: refused on its length.
    let (url, _) = serve(|_| axum::response::Response::new(Body::from(vec![b' '; 100_000]))).await;
    let client = OpenAiCompatible::builder(&url)
        .max_response_bytes(10_000)
        .build()
        .unwrap();
    let error = client.oneshot(request()).await.unwrap_err();
    refused(&error, ErrorKind::Server, "over the limit of 10000 bytes");

    // Undeclared: read only until it passes the bound, and the connection dropped.
    let (url, pulled) = serve(|pulled| chunked(pulled, 65_536, 1_024)).await;
    let client = OpenAiCompatible::builder(&url)
        .max_response_bytes(50_000)
        .build()
        .unwrap();
    let error = client.oneshot(request()).await.unwrap_err();
    refused(&error, ErrorKind::Server, "over the limit of 50000 bytes");
    // The server got ahead by what the sockets buffer, never to the end of 64 MiB.
    let read = pulled.load(Ordering::SeqCst);
    assert!(read < 32_768, "{read} of 65,536 chunks were pulled");
}

#[tokio::test]
async fn a_stream_past_its_bounds_ends_with_an_error() {
    let event = format!(
        "data: {}\n\n",
        json!({ "choices": [ { "index": 0, "delta": { "content": "x".repeat(900) } } ] })
    );
    let (url, _) = serve(move |_| {
        let body = futures_util::stream::iter(
            std::iter::repeat_n(Bytes::from(event.clone()), 1_000).map(Ok::<_, Infallible>),
        );
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(body))
            .unwrap()
    })
    .await;
    let client = OpenAiCompatible::builder(&url)
        .max_response_bytes(20_000)
        .build()
        .unwrap();
    let mut stream = client.stream(request()).await.unwrap();
    let mut texts = 0;
    let error = loop {
        match stream.next().await.expect("the stream ends with an error") {
            Ok(StreamEvent::Text { .. }) => texts += 1,
            Ok(_) => {}
            Err(error) => break error,
        }
    };
    refused(&error, ErrorKind::Server, "over the limit of 20000 bytes");
    assert!(
        texts < 25,
        "{texts} pieces of ~950 bytes passed a 20,000-byte bound"
    );
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn a_silent_upstream_is_cut_off_at_its_first_byte_timeout_and_not_retried() {
    // Headers and all withheld: a whole answer's first byte is its response.
    let (url, _) = serve(|_| {
        axum::response::Response::new(Body::from_stream(futures_util::stream::pending::<
            Result<Bytes, Infallible>,
        >()))
    })
    .await;
    let (stalled_url, _) = serve(|_| stalls_after("")).await;
    for url in [&url, &stalled_url] {
        let client = OpenAiCompatible::builder(url)
            .first_byte_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let error = client.clone().oneshot(request()).await.unwrap_err();
        refused(&error, ErrorKind::Timeout, "first-byte timeout (200ms)");
        // A stream is accepted on its headers; its first event never comes.
        let outcome = match client.stream(request()).await {
            Err(error) => error,
            Ok(mut stream) => stream.next().await.unwrap().unwrap_err(),
        };
        refused(&outcome, ErrorKind::Timeout, "first-byte timeout (200ms)");
    }
}

#[tokio::test]
async fn a_stream_that_falls_silent_is_cut_off_at_its_idle_timeout() {
    let first = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
    let (url, _) = serve(move |_| stalls_after(first)).await;
    let client = OpenAiCompatible::builder(&url)
        .stream_idle_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut stream = client.stream(request()).await.unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        StreamEvent::text("Hi")
    );
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(
        error.message().contains("fell silent mid-stream for 200ms"),
        "{error}"
    );
}

#[tokio::test]
async fn a_failure_on_the_wire_never_names_where_it_was_sent() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = OpenAiCompatible::builder(&format!("http://localhost:{port}/v1"))
        .name("internal")
        .build()
        .unwrap();
    let error = client.oneshot(request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connect);
    assert_eq!(
        error.message(),
        "internal: the upstream could not be reached"
    );
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    for leak in ["localhost", "127.0.0.1", "http://", &port.to_string()] {
        assert!(!chain.contains(leak), "{leak} in {chain}");
    }
}

#[test]
fn zero_bounds_are_refused_by_name() {
    let path = |builder: tollgate_providers::OpenAiCompatibleBuilder| {
        builder.build().unwrap_err().path().to_owned()
    };
    let at = || OpenAiCompatible::builder("http://x");
    assert_eq!(path(at().max_response_bytes(0)), "max_response_bytes");
    assert_eq!(path(at().max_event_bytes(0)), "max_event_bytes");
    assert_eq!(
        path(at().first_byte_timeout(Duration::ZERO)),
        "first_byte_timeout"
    );
    assert_eq!(
        path(at().stream_idle_timeout(Duration::ZERO)),
        "stream_idle_timeout"
    );
}

#[tokio::test]
async fn a_bound_a_layer_set_goes_under_the_name_the_server_takes() {
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let seen = bodies.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |body: axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body.0);
                axum::Json(json!({
                    "model": "m",
                    "choices": [ { "index": 0, "message": { "role": "assistant", "content": "ok" }, "finish_reason": "stop" } ]
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let compatible = OpenAiCompatible::builder(&url).build().unwrap();
    let reasoning = OpenAiCompatible::builder(&url)
        .max_tokens_name(MaxTokensName::MaxCompletionTokens)
        .build()
        .unwrap();
    compatible
        .clone()
        .oneshot(request().with_max_tokens(64))
        .await
        .unwrap();
    reasoning
        .clone()
        .oneshot(request().with_max_tokens(64))
        .await
        .unwrap();
    // The caller's own name stands, whichever server it goes to.
    let asked: LlmRequest = serde_json::from_value(json!({
        "model": "m", "messages": [ { "role": "user", "content": "hi" } ], "max_completion_tokens": 32
    }))
    .unwrap();
    compatible.oneshot(asked).await.unwrap();

    let bodies = bodies.lock().unwrap();
    let bound = |body: &Value| {
        let fields = body.as_object().unwrap();
        (
            fields.get("max_tokens").cloned(),
            fields.get("max_completion_tokens").cloned(),
        )
    };
    assert_eq!(bound(&bodies[0]), (Some(json!(64)), None));
    assert_eq!(bound(&bodies[1]), (None, Some(json!(64))));
    assert_eq!(bound(&bodies[2]), (None, Some(json!(32))));
}
