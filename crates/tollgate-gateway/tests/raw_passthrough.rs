//! The rest of `/v1/` passed through to the `passthrough` provider: the official `openai` client
//! uploads a file, transcribes audio, makes an image, checks a text and has it spoken, through
//! the real gateway, to a scripted upstream that records every request as it arrived. The
//! upstream gets the caller's bytes and fields intact with the provider's key, never the
//! caller's; each call is billed where its answer says the quantity; the body limit, the key,
//! the tenant's request limit and an unconfigured gateway each stop a call before it goes.

mod support;

use std::sync::{Arc, Mutex};

use axum::{body::Bytes, extract::Request, response::Response};
use http::{HeaderMap, Method};
use serde_json::Value;
use support::*;

const UPSTREAM_KEY: &str = "sk-upstream-secret";
const ADMIN: &str = "tg-admin-key";
/// What the scripted upstream answers `audio/speech` with: MP3's frame sync, and bytes no text
/// encoding keeps.
const SPOKEN: &[u8] = b"\xff\xfb\x90\x00\x00\x01ID3\xfe";

/// One request as the upstream received it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A key of another tenant, whose request limit is untouched.
const BOB: &str = "tg-bob-passthrough";

/// A key of a tenant the pass-through does not let in.
const CAROL: &str = "tg-carol-passthrough";

/// An OpenAI-shaped upstream for the pass-through routes, recording what it receives.
struct RawUpstream {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RawUpstream {
    async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let kept = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let kept = kept.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let path = parts.uri.path().to_owned();
                kept.lock().unwrap().push(Seen {
                    method: parts.method,
                    path: path.clone(),
                    headers: parts.headers,
                    body: body.clone(),
                });
                reply(&path, body.len())
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn reply(path: &str, length: usize) -> Response {
    let json = |text: String| {
        Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(text))
            .unwrap()
    };
    match path {
        "/v1/files" => json(format!(
            r#"{{"id":"file-abc","object":"file","bytes":{length},"created_at":1,"filename":"batch.jsonl","purpose":"batch"}}"#
        )),
        "/v1/audio/transcriptions" => {
            json(r#"{"text":"hello there","usage":{"type":"duration","seconds":42}}"#.into())
        }
        "/v1/images/generations" => json(
            r#"{"created":1,"data":[{"url":"https://images.invalid/1.png","revised_prompt":"a cat"}]}"#
                .into(),
        ),
        "/v1/moderations" => json(
            r#"{"id":"modr-1","model":"omni-moderation-latest","results":[{"flagged":false,"categories":{},"category_scores":{}}]}"#
                .into(),
        ),
        "/v1/audio/speech" => Response::builder()
            .header("content-type", "audio/mpeg")
            .body(axum::body::Body::from(SPOKEN))
            .unwrap(),
        // The provider's key refused: what it says names the key and the organisation.
        "/v1/batches/batch_refused" => Response::builder()
            .status(401)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                r#"{"error":{"message":"Incorrect API key provided: sk-proj-upstream-secret. You can find your API key at https://platform.openai.com/account/api-keys (organization org-private).","type":"invalid_request_error","code":"invalid_api_key"}}"#,
            ))
            .unwrap(),
        "/v1/files/file-missing" => Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                r#"{"error":{"message":"No such File object: file-missing","type":"invalid_request_error","param":"id","code":null}}"#,
            ))
            .unwrap(),
        _ => Response::builder()
            .status(404)
            .body(axum::body::Body::empty())
            .unwrap(),
    }
}

fn yaml(upstream: &RawUpstream, more: &str) -> String {
    format!(
        r#"
providers:
  openai: {{ kind: openai, base_url: "{url}/v1", api_key_env: TOLLGATE_TEST_OPENAI_KEY, headers: {{ openai-organization: org-tollgate }} }}
roles:
  default: {{ provider: openai, model: gpt-4o-mini }}
retry: {{ max_retries: 0 }}
keys:
  alice: {{ hash: "{alice}", tenant: acme }}
  bob: {{ hash: "{bob}", tenant: beta }}
  carol: {{ hash: "{carol}", tenant: gamma }}
gateway: {{ admin_key_hash: "{admin}", max_body_bytes: 4096 }}
{more}
"#,
        url = upstream.url,
        alice = tollgate_gateway::hash_key(ALICE),
        bob = tollgate_gateway::hash_key(BOB),
        carol = tollgate_gateway::hash_key(CAROL),
        admin = tollgate_gateway::hash_key(ADMIN),
    )
}

async fn start(upstream: &RawUpstream, more: &str) -> GatewayProcess {
    GatewayProcess::start_in(
        &yaml(upstream, more),
        &[],
        &[("TOLLGATE_TEST_OPENAI_KEY", UPSTREAM_KEY)],
    )
    .await
}

/// The caller's key never reaches the upstream; the provider's and its headers do.
fn assert_keyed_by_provider(seen: &Seen) {
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}"),
        "{}",
        seen.path
    );
    assert_eq!(seen.headers["openai-organization"], "org-tollgate");
    for (_, value) in &seen.headers {
        assert!(
            !value
                .as_bytes()
                .windows(ALICE.len())
                .any(|w| w == ALICE.as_bytes())
        );
    }
}

#[tokio::test]
async fn the_official_client_passes_files_audio_images_and_moderations_through_billed() {
    let Some(python) = python() else { return };
    let upstream = RawUpstream::start().await;
    let gateway = start(
        &upstream,
        r#"passthrough: { provider: openai, tenants: ["*"] }"#,
    )
    .await;

    let out = run_scenario(&python, &gateway, "raw_passthrough.py", "files").await;
    assert_eq!(out, "id file-abc\npurpose batch\n");
    let upload = &upstream.seen()[0];
    assert_eq!(
        (&upload.method, upload.path.as_str()),
        (&Method::POST, "/v1/files")
    );
    assert_keyed_by_provider(upload);
    let content_type = upload.headers["content-type"].to_str().unwrap();
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap();
    let body = &upload.body[..];
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(has(format!("--{boundary}").as_bytes()));
    assert!(has(b"name=\"purpose\"\r\n\r\nbatch\r\n"), "{body:?}");
    assert!(has(b"filename=\"batch.jsonl\""));
    assert!(
        has(b"{\"custom_id\": \"r1\"}\n\x00\xff\xfe tail\n"),
        "the file's bytes, intact"
    );

    let out = run_scenario(&python, &gateway, "raw_passthrough.py", "transcription").await;
    assert_eq!(out, "text hello there\n");
    let out = run_scenario(&python, &gateway, "raw_passthrough.py", "images").await;
    assert_eq!(out, "images 1\n");
    let out = run_scenario(&python, &gateway, "raw_passthrough.py", "moderation").await;
    assert_eq!(out, "model omni-moderation-latest\n");
    let out = run_scenario(&python, &gateway, "raw_passthrough.py", "speech").await;
    assert_eq!(out, format!("audio {}\n", hex(SPOKEN)));

    let seen = upstream.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/files",
            "/v1/audio/transcriptions",
            "/v1/images/generations",
            "/v1/moderations",
            "/v1/audio/speech"
        ]
    );
    seen.iter().for_each(assert_keyed_by_provider);
    let asked: Value = serde_json::from_slice(&seen[2].body).unwrap();
    assert_eq!(asked["size"], "1024x1792");

    // Spend by model, in the ledger the admin API reads: 42 s of whisper-1 at $0.0001 a second,
    // one hd 1024x1792 dall-e-3 image at $0.12, a moderation at $0; files and speech unpriced.
    let mut spend = Value::Null;
    for _ in 0..600 {
        spend = get_json(&gateway, "/admin/spend?group_by=model", Some(ADMIN)).await;
        if spend["total"]["calls"] == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(spend["total"]["calls"], 5, "{spend}");
    let groups = &spend["groups"];
    assert_eq!(groups["whisper-1"]["cost_micros"], 4_200, "{spend}");
    assert_eq!(groups["dall-e-3"]["cost_micros"], 120_000, "{spend}");
    assert_eq!(
        groups["omni-moderation-latest"]["cost_micros"], 0,
        "{spend}"
    );
    assert_eq!(groups["omni-moderation-latest"]["calls"], 1, "{spend}");
    assert_eq!(spend["total"]["cost_micros"], 124_200, "{spend}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn limits_keys_and_an_unconfigured_gateway_stop_a_call_before_it_goes() {
    let upstream = RawUpstream::start().await;
    let gateway = start(
        &upstream,
        "passthrough: { provider: openai, tenants: [acme, beta] }\nrate_limiting: { tenants: { acme: { per_minute: 2 }, beta: { cost_per_day: \"0.10\" } } }",
    )
    .await;
    let moderation = |key: &'static str, body: Vec<u8>| {
        let url = format!("{}/v1/moderations", gateway.url);
        async move {
            client()
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                // Which of the provider's organisations pays is the gateway's to say.
                .header("openai-organization", "org-caller")
                .header("openai-project", "proj_caller")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    // Over the body limit (its Content-Length says so): refused before anything is counted or
    // sent.
    let big = moderation(ALICE, vec![b' '; 5_000]).await;
    assert_eq!(big.status(), 413);
    let error: Value = big.json().await.unwrap();
    assert_eq!(error["error"]["code"], "request_too_large");
    // A key the gateway does not know.
    let stranger = moderation("tg-nobody", br#"{"input":"hi"}"#.to_vec()).await;
    assert_eq!(stranger.status(), 401);
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    // Two a minute for acme: two go, the third is refused.
    for _ in 0..2 {
        let passed = moderation(ALICE, br#"{"input":"hi"}"#.to_vec()).await;
        assert_eq!(passed.status(), 200);
    }
    for seen in upstream.seen() {
        assert_keyed_by_provider(&seen);
        assert!(!seen.headers.contains_key("openai-project"));
    }
    let limited = moderation(ALICE, br#"{"input":"hi"}"#.to_vec()).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(upstream.seen().len(), 2);

    // Images say what they may cost before they go: beyond the budget's room, refused unsent;
    // within it, sent.
    let images = |body: &'static str| {
        let url = format!("{}/v1/images/generations", gateway.url);
        async move {
            client()
                .post(url)
                .bearer_auth(BOB)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let dear =
        images(r#"{"model":"dall-e-3","prompt":"a cat","size":"1024x1792","quality":"hd"}"#).await;
    assert_eq!(dear.status(), 429);
    let error: Value = dear.json().await.unwrap();
    assert_eq!(error["error"]["type"], "insufficient_quota", "{error}");
    assert_eq!(
        upstream.seen().len(),
        2,
        "a call over the budget is not sent"
    );
    let cheap =
        images(r#"{"model":"dall-e-3","prompt":"a cat","size":"1024x1024","quality":"standard"}"#)
            .await;
    assert_eq!(cheap.status(), 200);
    assert_eq!(upstream.seen().len(), 3);

    // A tenant the section does not name; an id that is no id: refused unsent.
    let outsider = moderation(CAROL, br#"{"input":"hi"}"#.to_vec()).await;
    assert_eq!(outsider.status(), 403);
    let climbing = client()
        .get(format!("{}/v1/files/..%2Fbatches/content", gateway.url))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(climbing.status(), 404);
    let error: Value = climbing.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "no such object: an id is letters, digits, '-' and '_'"
    );
    assert_eq!(upstream.seen().len(), 3);

    // A route asked with a method it does not take: 405 in OpenAI's shape.
    let wrong = client()
        .put(format!("{}/v1/files", gateway.url))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    let error: Value = wrong.json().await.unwrap();
    assert_eq!(error["error"]["code"], "method_not_allowed");

    // The provider refusing its own key: the caller gets the gateway's words, none of the
    // provider's; a refusal of what the caller asked for comes as the provider wrote it.
    let refused = client()
        .get(format!("{}/v1/batches/batch_refused", gateway.url))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502, "{:?}", refused.headers());
    let said = refused.text().await.unwrap();
    for secret in ["sk-proj", "org-private", "Incorrect API key"] {
        assert!(!said.contains(secret), "{said}");
    }
    let missing = client()
        .get(format!("{}/v1/files/file-missing", gateway.url))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "No such File object: file-missing"
    );

    // A gateway with no `passthrough` section: the routes are 404s in OpenAI's shape.
    let plain = GatewayProcess::start(
        &yaml(&upstream, "").replace("api_key_env: TOLLGATE_TEST_OPENAI_KEY, ", ""),
    )
    .await;
    let missing = client()
        .post(format!("{}/v1/files", plain.url))
        .bearer_auth(ALICE)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "unknown_url");
    assert_eq!(upstream.seen().len(), 5);
}
