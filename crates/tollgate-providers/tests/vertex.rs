//! Vertex AI against a real local HTTP server that is also its OAuth token endpoint: it checks
//! each token request's JWT assertion (RS256, signed with the service-account key of
//! `fixtures/vertex-service-account.json`: a test-only key generated once with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`, which signs nothing else),
//! issues short-lived tokens, and refuses model calls without a valid one.
//!
//! Protocols: <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>
//! (the JWT bearer grant), <https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference>
//! (Gemini on Vertex AI), <https://docs.anthropic.com/en/api/claude-on-vertex-ai> (Claude on it).

#[allow(dead_code)] // each test file uses its own part of the helpers
mod support;

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine as _;
use rsa::{
    RsaPrivateKey,
    pkcs1v15::{Signature, VerifyingKey},
    pkcs8::DecodePrivateKey,
    signature::Verifier,
};
use serde_json::{Value, json};
use support::Reply;
use tollgate_core::{ErrorKind, FinishReason, LlmRequest, Message, Usage};
use tollgate_providers::{Publisher, Vertex};
use tower::ServiceExt;

const PROJECT: &str = "tollgate-test";
const LOCATION: &str = "us-east5";

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn wire_fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../tollgate-wire/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// What the server issued: each token, when, and for how long.
struct Issued {
    token: String,
    at: Instant,
    lasts: Duration,
}

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
}

struct State {
    /// The service account's public key and the token URI its JWTs must name.
    key: VerifyingKey<sha2::Sha256>,
    token_uri: Mutex<String>,
    /// How long the next token lasts, in seconds.
    lasts: AtomicU64,
    issued: Mutex<Vec<Issued>>,
    token_requests: AtomicUsize,
    /// Whether the token endpoint never answers.
    stall_tokens: std::sync::atomic::AtomicBool,
    refused: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    replies: Mutex<VecDeque<Reply>>,
}

struct Server {
    url: String,
    state: Arc<State>,
    /// Key files written for the test, removed with the server.
    files: Mutex<Vec<PathBuf>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for file in self.files.get_mut().unwrap().drain(..) {
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Server {
    async fn start() -> Self {
        let account: Value = serde_json::from_str(&fixture("vertex-service-account.json")).unwrap();
        let private =
            RsaPrivateKey::from_pkcs8_pem(account["private_key"].as_str().unwrap()).unwrap();
        let state = Arc::new(State {
            key: VerifyingKey::new(private.to_public_key()),
            token_uri: Mutex::new(String::new()),
            lasts: AtomicU64::new(3_600),
            issued: Mutex::new(Vec::new()),
            token_requests: AtomicUsize::new(0),
            stall_tokens: std::sync::atomic::AtomicBool::new(false),
            refused: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            replies: Mutex::new(VecDeque::new()),
        });
        let (token_state, call_state) = (state.clone(), state.clone());
        let app = Router::new()
            .route(
                "/token",
                post(move |body: Bytes| {
                    let state = token_state.clone();
                    async move {
                        if state.stall_tokens.load(Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        token(&state, &body)
                    }
                }),
            )
            .fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = call_state.clone();
                async move { call(&state, &uri, headers, &body) }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *state.token_uri.lock().unwrap() = format!("{url}/token");
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            state,
            files: Mutex::new(Vec::new()),
        }
    }

    fn reply(&self, reply: Reply) {
        self.state.replies.lock().unwrap().push_back(reply);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The service-account key file, its `token_uri` this server's.
    fn key_file(&self, name: &str) -> PathBuf {
        let text = fixture(name).replace("TOKEN_URI", &format!("{}/token", self.url));
        let mut files = self.files.lock().unwrap();
        let path = std::env::temp_dir().join(format!(
            "tollgate-vertex-{}-{}-{}.json",
            std::process::id(),
            self.url.rsplit(':').next().unwrap(),
            files.len()
        ));
        std::fs::write(&path, text).unwrap();
        files.push(path.clone());
        path
    }

    fn client(&self) -> tollgate_providers::VertexBuilder {
        Vertex::builder(PROJECT, LOCATION)
            .base_url(&self.url)
            .credentials_file(self.key_file("vertex-service-account.json"))
            .timeout(Duration::from_secs(10))
    }
}

fn base64url(text: &str) -> Vec<u8> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(text).unwrap_or_default()
}

/// The token endpoint: a JWT-bearer grant whose assertion is signed by the service account's
/// key, names it, this endpoint and the cloud-platform scope, and has not expired.
fn token(state: &State, body: &[u8]) -> Response {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let refuse = || {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({ "error": "invalid_grant", "error_description": "Invalid JWT Signature." }),
            ),
        )
            .into_response()
    };
    if field("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return refuse();
    }
    let assertion = field("assertion").unwrap_or_default();
    let [head, claims, signature] = assertion.split('.').collect::<Vec<_>>()[..] else {
        return refuse();
    };
    let signed = Signature::try_from(&base64url(signature)[..]);
    let verified = signed.is_ok_and(|signature| {
        state
            .key
            .verify(format!("{head}.{claims}").as_bytes(), &signature)
            .is_ok()
    });
    let head: Value = serde_json::from_slice(&base64url(head)).unwrap_or_default();
    let claims: Value = serde_json::from_slice(&base64url(claims)).unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = verified
        && head["alg"] == "RS256"
        && claims["iss"] == "tollgate-test@tollgate-test.iam.gserviceaccount.com"
        && claims["aud"] == *state.token_uri.lock().unwrap()
        && claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
        && claims["exp"].as_u64().is_some_and(|exp| exp > now);
    if !good {
        return refuse();
    }
    let mut issued = state.issued.lock().unwrap();
    let token = format!("ya29.test-{}", issued.len() + 1);
    let lasts = state.lasts.load(Ordering::SeqCst);
    issued.push(Issued {
        token: token.clone(),
        at: Instant::now(),
        lasts: Duration::from_secs(lasts),
    });
    axum::Json(json!({ "access_token": token, "expires_in": lasts, "token_type": "Bearer" }))
        .into_response()
}

/// A model call: refused without a token this server issued and that has not expired.
fn call(state: &State, uri: &Uri, headers: HeaderMap, body: &[u8]) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let valid = state
        .issued
        .lock()
        .unwrap()
        .iter()
        .any(|t| t.token == bearer && t.at.elapsed() < t.lasts);
    if !valid {
        state.refused.fetch_add(1, Ordering::SeqCst);
        let error = json!({ "error": { "code": 401, "status": "UNAUTHENTICATED",
            "message": "Request had invalid authentication credentials." } });
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    state.seen.lock().unwrap().push(Seen {
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), ToString::to_string),
        headers,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    });
    let reply = state.replies.lock().unwrap().pop_front();
    let Some(reply) = reply else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no reply scripted").into_response();
    };
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

fn event_stream(body: String) -> Reply {
    Reply {
        status: 200,
        headers: vec![("content-type", "text/event-stream".to_owned())],
        body,
        stall: false,
    }
}

fn ask(model: &str) -> LlmRequest {
    LlmRequest::new(
        model,
        vec![Message::system("Be brief."), Message::user("Hi")],
    )
}

fn prefix(publisher: &str) -> String {
    format!("/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/{publisher}/models")
}

#[tokio::test]
async fn gemini_models_go_to_generate_content_with_a_token() {
    let server = Server::start().await;
    server.reply(Reply::json(
        200,
        serde_json::from_str(&wire_fixture("gemini/text.json")).unwrap(),
    ));
    server.reply(event_stream(wire_fixture("gemini/thinking.sse")));
    let vertex = server.client().build().unwrap();
    let answer = vertex
        .clone()
        .oneshot(ask("gemini-2.0-flash"))
        .await
        .unwrap();
    assert_eq!(
        answer.content(),
        "The sky is blue because air scatters blue light most."
    );
    let streamed = vertex
        .stream(ask("gemini-2.5-pro"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(streamed.content(), "There are four primes below 10.");

    let seen = server.seen();
    assert_eq!(
        seen[0].path,
        format!("{}/gemini-2.0-flash:generateContent", prefix("google"))
    );
    assert_eq!(
        seen[1].path,
        format!(
            "{}/gemini-2.5-pro:streamGenerateContent?alt=sse",
            prefix("google")
        )
    );
    for seen in &seen {
        assert_eq!(seen.headers["authorization"], "Bearer ya29.test-1");
        assert!(seen.headers.get("x-goog-api-key").is_none());
    }
    assert_eq!(
        seen[0].body,
        json!({
            "systemInstruction": { "parts": [{ "text": "Be brief." }] },
            "contents": [{ "role": "user", "parts": [{ "text": "Hi" }] }]
        })
    );
    // One token served both calls.
    assert_eq!(server.state.token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn claude_models_go_to_raw_predict_with_the_vertex_anthropic_version_and_no_model() {
    let server = Server::start().await;
    let message = json!({
        "id": "msg_vrtx_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [{ "type": "text", "text": "Hello!" }], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": { "input_tokens": 12, "output_tokens": 3, "cache_read_input_tokens": 4 }
    });
    server.reply(Reply::json(200, message));
    server.reply(event_stream(wire_fixture("anthropic/tool_use.sse")));
    let vertex = server.client().build().unwrap();
    let answer = vertex
        .clone()
        .oneshot(ask("claude-sonnet-4-5@20250929").with_max_tokens(100))
        .await
        .unwrap();
    assert_eq!(answer.content(), "Hello!");
    assert_eq!(answer.usage, Usage::new(16, 3).with_cached_input(4));
    let streamed = vertex
        .stream(ask("claude-sonnet-4-5@20250929"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(streamed.finish_reason(), Some(&FinishReason::ToolCalls));

    let seen = server.seen();
    let model = format!("{}/claude-sonnet-4-5@20250929", prefix("anthropic"));
    assert_eq!(seen[0].path, format!("{model}:rawPredict"));
    assert_eq!(seen[1].path, format!("{model}:streamRawPredict"));
    assert_eq!(
        seen[0].body,
        json!({
            "anthropic_version": "vertex-2023-10-16",
            "max_tokens": 100,
            "system": "Be brief.",
            "messages": [{ "role": "user", "content": "Hi" }]
        })
    );
    assert_eq!(seen[1].body["stream"], true);
    assert!(seen[1].body.get("model").is_none());
    assert_eq!(seen[1].headers["authorization"], "Bearer ya29.test-1");
}

#[tokio::test]
async fn a_messages_caller_gets_the_answer_as_it_came_and_its_beta_flags_go_along() {
    let server = Server::start().await;
    let message = json!({ "id": "msg_vrtx_2", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{ "type": "text", "text": "ok" }], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": { "input_tokens": 5, "output_tokens": 1 } });
    server.reply(Reply::json(200, message.clone()));
    let mut headers = HeaderMap::new();
    headers.insert("anthropic-version", "2023-06-01".parse().unwrap());
    headers.insert("anthropic-beta", "context-1m-2025-08-07".parse().unwrap());
    let body = br#"{"model": "claude-sonnet-4-5@20250929", "max_tokens": 32, "top_k": 5, "messages": [{"role": "user", "content": "Hi"}]}"#;
    let request =
        tollgate_wire::anthropic::messages::decode_request(Bytes::from_static(body), &headers)
            .unwrap();
    let answer = server
        .client()
        .build()
        .unwrap()
        .oneshot(request)
        .await
        .unwrap();
    let kept = answer
        .extensions
        .get::<tollgate_wire::anthropic::messages::MessagesAnswer>()
        .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&kept.0).unwrap(), message);
    let seen = &server.seen()[0];
    assert_eq!(seen.headers["anthropic-beta"], "context-1m-2025-08-07");
    assert!(seen.headers.get("anthropic-version").is_none());
    assert_eq!(
        seen.body,
        json!({ "anthropic_version": "vertex-2023-10-16", "max_tokens": 32, "top_k": 5,
            "messages": [{ "role": "user", "content": "Hi" }] })
    );
}

#[tokio::test]
async fn the_publisher_can_be_set_whatever_the_name() {
    let server = Server::start().await;
    let message = json!({ "id": "m", "type": "message", "role": "assistant", "model": "x",
        "content": [{ "type": "text", "text": "ok" }], "stop_reason": "end_turn",
        "usage": { "input_tokens": 1, "output_tokens": 1 } });
    server.reply(Reply::json(200, message));
    let vertex = server
        .client()
        .publisher(Publisher::Anthropic)
        .build()
        .unwrap();
    vertex.oneshot(ask("my-claude-alias")).await.unwrap();
    assert_eq!(
        server.seen()[0].path,
        format!("{}/my-claude-alias:rawPredict", prefix("anthropic"))
    );
    assert_eq!(
        Publisher::of("claude-3-5-haiku@20241022"),
        Publisher::Anthropic
    );
    assert_eq!(Publisher::of("gemini-2.5-pro"), Publisher::Google);
}

#[tokio::test]
async fn a_token_is_fetched_again_before_it_expires() {
    let server = Server::start().await;
    // gcp_auth takes a token for expired 20 s before it does: this one is stale after 1 s
    // and refused by the server after 21 s.
    server.state.lasts.store(21, Ordering::SeqCst);
    let vertex = server.client().build().unwrap();
    let text: Value = serde_json::from_str(&wire_fixture("gemini/text.json")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut calls = 0;
    while server.state.issued.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "no second token within 20 s");
        server.reply(Reply::json(200, text.clone()));
        vertex
            .clone()
            .oneshot(ask("gemini-2.0-flash"))
            .await
            .unwrap();
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let issued = server.state.issued.lock().unwrap();
    // The second came while the first was still good, and no call was refused.
    assert!(issued[1].at < issued[0].at + issued[0].lasts);
    assert_eq!(server.state.refused.load(Ordering::SeqCst), 0);
    let seen = server.seen();
    assert_eq!(seen.len(), calls);
    assert_eq!(
        seen.last().unwrap().headers["authorization"],
        "Bearer ya29.test-2"
    );
}

#[tokio::test]
async fn a_key_the_token_endpoint_does_not_know_fails_with_auth_and_no_call() {
    let server = Server::start().await;
    let vertex = Vertex::builder(PROJECT, LOCATION)
        .base_url(&server.url)
        .credentials_file(server.key_file("vertex-unknown-key.json"))
        .build()
        .unwrap();
    let error = vertex.oneshot(ask("gemini-2.0-flash")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert_eq!(
        error.message(),
        "vertex: no OAuth access token could be had for the call"
    );
    assert!(server.state.token_requests.load(Ordering::SeqCst) >= 1);
    assert!(server.state.issued.lock().unwrap().is_empty());
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn a_token_endpoint_that_never_answers_times_the_call_out() {
    let server = Server::start().await;
    server.state.stall_tokens.store(true, Ordering::SeqCst);
    let vertex = server
        .client()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = vertex.oneshot(ask("gemini-2.0-flash")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(
        error.message(),
        "vertex: no OAuth access token came within 300ms"
    );
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn errors_in_either_shape_map_to_kinds() {
    let server = Server::start().await;
    let quota = json!({ "error": { "code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model.",
        "details": [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s" }] } });
    server.reply(Reply::json(429, quota));
    let overloaded = json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } });
    server.reply(Reply::json(529, overloaded));
    let vertex = server.client().build().unwrap();
    let error = vertex
        .clone()
        .oneshot(ask("gemini-2.0-flash"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(5)));
    let error = vertex.oneshot(ask("claude-sonnet-4-5")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Overloaded);
    assert!(!error.message().contains("ya29"));
}

#[tokio::test]
async fn the_builder_checks_its_settings_and_shows_no_secret() {
    let server = Server::start().await;
    let error = Vertex::builder("my project", LOCATION).build().unwrap_err();
    assert_eq!(error.path(), "project");
    let error = Vertex::builder(PROJECT, "us/central1").build().unwrap_err();
    assert_eq!(error.path(), "location");
    let error = Vertex::builder(PROJECT, LOCATION)
        .credentials_file("/nonexistent/key.json")
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "credentials_file");
    let global = Vertex::builder(PROJECT, "global").build().unwrap();
    assert!(format!("{global:?}").contains(r#"base_url: "https://aiplatform.googleapis.com""#));
    let regional = Vertex::builder(PROJECT, "europe-west4").build().unwrap();
    assert!(
        format!("{regional:?}")
            .contains(r#"base_url: "https://europe-west4-aiplatform.googleapis.com""#)
    );
    let builder = server.client();
    assert!(!format!("{builder:?}").contains("PRIVATE KEY"));
    let vertex = builder.build().unwrap();
    let server_answer = serde_json::from_str(&wire_fixture("gemini/text.json")).unwrap();
    server.reply(Reply::json(200, server_answer));
    vertex
        .clone()
        .oneshot(ask("gemini-2.0-flash"))
        .await
        .unwrap();
    let shown = format!("{vertex:?}");
    assert!(
        !shown.contains("ya29") && !shown.contains("PRIVATE KEY"),
        "{shown}"
    );
    // Embeddings are the Gemini API's, not this client's.
    let mut embed = LlmRequest::new("text-embedding-005", Vec::new());
    embed.meta.operation = tollgate_core::Operation::Embeddings;
    embed.params.set_extra("input", json!("hi"));
    assert_eq!(
        vertex.oneshot(embed).await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
}
