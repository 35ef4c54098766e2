//! Legacy text completions (`POST /v1/completions`): the official `openai` client through the
//! real gateway to a scripted OpenAI-compatible upstream, whole and streamed. The upstream
//! receives the client's fields, the client reads the text as the upstream wrote it, the calls
//! are billed, and a tenant over its request limit is refused. On a simulated provider (the
//! embedded configuration's kind) the door answers as OpenAI would.

mod support;

use base64::Engine as _;
use serde_json::{Value, json};
use support::*;
use tower::ServiceExt;

const ADMIN: &str = "tg-admin-key";

/// What a scenario printed under `name`.
fn printed(said: &str, name: &str) -> String {
    said.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {said}"))
        .trim()
        .to_owned()
}

/// The body the client sent, as JSON, with the model its role names upstream.
fn sent_upstream(said: &str) -> Value {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(printed(said, "sent"))
        .unwrap();
    let mut sent: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(sent["model"], "default");
    sent["model"] = "up-model".into();
    sent
}

fn got(said: &str) -> Value {
    serde_json::from_str(&printed(said, "got")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_client_completes_text_whole_and_streamed_billed_and_limited() {
    let Some(python) = python() else { return };
    let upstream = Upstream::start().await;
    let more = format!(
        "gateway: {{ admin_key_hash: \"{}\" }}\n",
        tollgate_gateway::hash_key(ADMIN)
    );
    let yaml = config(&upstream, &more).replace(
        "tenant: acme, models",
        "tenant: acme, limits: { per_minute: 2 }, models",
    );
    let gateway = GatewayProcess::start(&yaml).await;

    let logprobs = json!({ "tokens": [" a"], "token_logprobs": [-0.25], "top_logprobs": [{ " a": -0.25 }], "text_offset": [9] });
    upstream.push(Reply::Json(
        200,
        json!({
            "id": "cmpl-up-1", "object": "text_completion", "created": 1_700_000_000, "model": "up-model",
            "choices": [
                { "text": " a time!", "index": 0, "logprobs": logprobs, "finish_reason": "stop" },
                { "text": " far away", "index": 1, "logprobs": null, "finish_reason": "length" }
            ],
            "usage": { "prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20 }
        }),
        Vec::new(),
    ));
    let whole = run_scenario(&python, &gateway, "completions.py", "whole").await;

    let chunk = |index: u32, text: &str, finish: Option<&str>| {
        json!({ "id": "cmpl-up-2", "object": "text_completion", "created": 1_700_000_001, "model": "up-model",
                "choices": [{ "text": text, "index": index, "logprobs": null, "finish_reason": finish }] })
    };
    upstream.push(Reply::Stream {
        chunks: vec![
            chunk(0, " is", None),
            chunk(1, " am", None),
            chunk(0, " a test", Some("length")),
            chunk(1, " here", Some("stop")),
            json!({ "id": "cmpl-up-2", "object": "text_completion", "created": 1_700_000_001, "model": "up-model",
                    "choices": [], "usage": { "prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12 } }),
        ],
        done: true,
    });
    let streamed = run_scenario(&python, &gateway, "completions.py", "stream").await;

    // The upstream was sent the client's fields as they were, to its completions endpoint, and
    // a stream asked for its usage.
    let bodies = upstream.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], sent_upstream(&whole));
    let whole_sent = &bodies[0];
    for (field, value) in [
        ("prompt", json!(["Once upon", "In a galaxy"])),
        ("max_tokens", json!(5)),
        ("logprobs", json!(1)),
        ("suffix", json!("!")),
        ("user", json!("u-7")),
        ("temperature", json!(0.3)),
    ] {
        assert_eq!(whole_sent[field], value, "{field}");
    }
    assert_eq!(bodies[1], sent_upstream(&streamed));
    assert_eq!(bodies[1]["prompt"], json!([[1212, 318], [40, 716]]));
    assert_eq!(
        bodies[1]["stream_options"],
        json!({ "include_usage": true })
    );

    // The client read the upstream's own answer.
    assert_eq!(
        got(&whole),
        json!({
            "id": "cmpl-up-1", "model": "up-model", "texts": [" a time!", " far away"],
            "finish": ["stop", "length"], "logprobs": [logprobs, null],
            "usage": { "prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20 },
        })
    );
    assert_eq!(
        got(&streamed),
        json!({
            "ids": ["cmpl-up-2"],
            "texts": [[0, " is"], [1, " am"], [0, " a test"], [1, " here"]],
            "finish": [[0, "length"], [1, "stop"]],
            "usage": { "prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12 },
        })
    );

    // Billed: (10 × $1 + 10 × $2) + (4 × $1 + 8 × $2) per million tokens.
    let data = get_json(&gateway, "/ui/data", Some(ADMIN)).await;
    let acme = &data["tenants"]["acme"];
    assert_eq!(acme["calls"], 2, "{data}");
    let spent = acme["spent_usd"].as_f64().unwrap();
    assert!((spent - 0.000_05).abs() < 1e-12, "spent {spent}");

    // Two calls a minute: the third is refused before the upstream hears of it.
    let refused = run_scenario(&python, &gateway, "completions.py", "limited").await;
    assert_eq!(refused.trim(), "refused 429");
    assert_eq!(upstream.calls(), 2);
}

fn simulated() -> tollgate_gateway::Gateway {
    // `claude`'s key is any variable that is set: its calls are refused before a key is used.
    let yaml = format!(
        r#"
providers: {{ local: {{ kind: simulated }}, claude: {{ kind: anthropic, api_key_env: HOME }} }}
roles:
  default: {{ provider: local, model: sim-small }}
  claude: {{ provider: claude, model: claude-sonnet-4-5 }}
keys: {{ k: {{ hash: "{}", tenant: acme }} }}
gateway: {{ max_choices: 2 }}
"#,
        tollgate_gateway::hash_key("tg-k")
    );
    tollgate_gateway::Gateway::new(tollgate_gateway::GatewayConfig::from_yaml(&yaml).unwrap())
        .unwrap()
}

async fn post(gateway: &tollgate_gateway::Gateway, body: Value) -> (u16, String) {
    let request = http::Request::post("/v1/completions")
        .header("authorization", "Bearer tg-k")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let response = gateway.router().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn a_simulated_provider_answers_as_openai_would_and_the_door_refuses_what_it_must() {
    let gateway = simulated();
    let (status, body) = post(
        &gateway,
        json!({ "model": "default", "prompt": "Hello", "max_tokens": 4 }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["object"], "text_completion");
    assert!(answer["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(answer["model"], "sim-small");
    assert_eq!(
        answer["choices"],
        json!([{ "text": "simulated reply #1", "index": 0, "logprobs": null, "finish_reason": "length" }])
    );
    assert_eq!(answer["usage"]["completion_tokens"], 4);

    let (status, body) = post(
        &gateway,
        json!({ "model": "default", "prompt": "Hello", "stream": true, "stream_options": { "include_usage": true } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let lines = data_lines(&body);
    assert_eq!(lines.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert_eq!(chunks[0]["choices"][0]["text"], "simulated reply #2");
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[2]["choices"], json!([]));
    assert_eq!(chunks[2]["usage"]["completion_tokens"], 16);

    // The gateway's bound on answers, a provider with no completions API, a malformed prompt.
    let (status, body) = post(
        &gateway,
        json!({ "model": "default", "prompt": "p", "best_of": 3 }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["param"],
        "best_of"
    );
    // Each prompt is answered that many times: three prompts are three answers.
    let (status, body) = post(
        &gateway,
        json!({ "model": "default", "prompt": ["a", "b", "c"] }),
    )
    .await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["param"], "prompt", "{error}");
    let (status, body) = post(&gateway, json!({ "model": "claude", "prompt": "p" })).await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        error["error"]["message"],
        "the provider `claude` serves no legacy text completions: only OpenAI-compatible providers do"
    );
    let (status, body) = post(&gateway, json!({ "model": "default", "prompt": [] })).await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["param"],
        "prompt"
    );
}
