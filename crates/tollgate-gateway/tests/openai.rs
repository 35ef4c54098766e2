//! The OpenAI front door through the real binary, against a scripted OpenAI-compatible upstream.

mod support;

use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn a_chat_answer_and_its_request_pass_through_whole() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    let mut sent = answer("");
    sent["choices"] = json!([
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": null,
                "refusal": null,
                "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": { "name": "weather", "arguments": "{\"city\":\"Paris\"}" }
                }],
                "annotations": []
            },
            "finish_reason": "tool_calls",
            "logprobs": { "content": [] }
        },
        {
            "index": 1,
            "message": { "role": "assistant", "content": "second", "reasoning_content": "why" },
            "finish_reason": "stop",
            "logprobs": null
        }
    ]);
    sent["usage"] = json!({
        "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
        "prompt_tokens_details": { "cached_tokens": 4, "audio_tokens": 0 },
        "completion_tokens_details": { "reasoning_tokens": 2 }
    });
    sent["service_tier"] = json!("default");
    upstream.push(Reply::Json(200, sent.clone(), vec![]));

    let body = json!({
        "model": "up/up-model",
        "messages": [{ "role": "user", "content": "weather?" }],
        "tools": [{ "type": "function", "function": { "name": "weather", "parameters": { "type": "object" } } }],
        "tool_choice": "auto",
        "n": 2,
        "custom_knob": { "kept": true }
    });
    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(ALICE)
        .header("x-request-id", "my-id-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "my-id-1");
    assert_eq!(response.headers()["x-tollgate-cache"], "MISS");
    let overhead: f64 = response.headers()["x-tollgate-overhead-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(overhead >= 0.0);
    let got: Value = response.json().await.unwrap();
    assert_eq!(
        got, sent,
        "the answer reaches the client as the upstream wrote it"
    );

    let seen = &upstream.bodies()[0];
    assert_eq!(seen["model"], "up-model", "the provider's own model name");
    for field in ["messages", "tools", "tool_choice", "n", "custom_knob"] {
        assert_eq!(seen[field], body[field], "{field} reaches the upstream");
    }
}

#[tokio::test]
async fn a_whole_answer_reaches_the_caller_byte_for_byte_unless_it_lacks_a_field() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    // Its own spacing, key order and number spelling: what a typed answer written again would
    // not keep.
    let kept = concat!(
        r#"{ "object":"chat.completion","id":"chatcmpl-7", "created":1700000000,"#,
        r#""model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"#,
        r#""finish_reason":"stop","logprobs":null}],"score":1.50,"#,
        r#""usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#
    );
    // No `created`: the gateway fills it in, so this answer is written again.
    let lacking = r#"{"id":"chatcmpl-8","object":"chat.completion","model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#;
    for body in [kept, lacking] {
        upstream.push(Reply::Raw(200, "application/json", body.to_owned()));
    }
    let mut got = Vec::new();
    for question in ["one", "two"] {
        let response = client()
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(ALICE)
            .json(&json!({ "model": "up/up-model", "messages": [{ "role": "user", "content": question }] }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        got.push(response.bytes().await.unwrap());
    }
    assert_eq!(std::str::from_utf8(&got[0]).unwrap(), kept);
    let written: Value = serde_json::from_slice(&got[1]).unwrap();
    let mut expected: Value = serde_json::from_str(lacking).unwrap();
    assert!(
        written["created"]
            .as_u64()
            .is_some_and(|at| at > 1_700_000_000)
    );
    expected["created"] = written["created"].clone();
    assert_eq!(written, expected);
}

#[tokio::test]
async fn a_stream_passes_through_and_ends_with_done() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    upstream.push(Reply::Stream {
        chunks: vec![
            chunk(json!({ "role": "assistant", "content": "Hel" }), None),
            chunk(json!({ "content": "lo" }), None),
            chunk(
                json!({ "tool_calls": [{ "index": 0, "id": "call_9", "type": "function",
                        "function": { "name": "f", "arguments": "{\"a\"" } }] }),
                None,
            ),
            chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": ":1}" } }] }),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(10, 5),
        ],
        done: true,
    });
    let response = chat(&gateway, ALICE, &json!({ "model": "default", "stream": true, "messages": [{ "role": "user", "content": "hi" }] })).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.text().await.unwrap();
    let lines = data_lines(&body);
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello");
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{\"a\":1}");
    assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-upstream"));
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "no usage chunk for a caller who did not ask for one"
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(
        upstream.bodies()[0]["stream_options"]["include_usage"],
        true,
        "the stack asks the provider for usage to bill by"
    );
}

#[tokio::test]
async fn a_stream_that_fails_midway_ends_with_an_error_event() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    upstream.push(Reply::HeldStream {
        first: vec![chunk(json!({ "content": "partial" }), None)],
        rest: vec![chunk(json!({ "content": " more" }), None)],
        done: false,
    });
    let mut response = chat(&gateway, ALICE, &json!({ "model": "default", "stream": true, "messages": [{ "role": "user", "content": "hi" }] })).await;
    assert_eq!(response.status(), 200);
    let mut body = String::new();
    while !body.contains("partial") {
        let piece = response.chunk().await.unwrap().expect("the first piece");
        body.push_str(std::str::from_utf8(&piece).unwrap());
    }
    upstream.release();
    while let Some(piece) = response.chunk().await.unwrap() {
        body.push_str(std::str::from_utf8(&piece).unwrap());
    }
    let lines = data_lines(&body);
    assert!(!lines.iter().any(|l| l == "[DONE]"), "{body}");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{last}");
    assert_eq!(last["error"]["type"], "api_error");
}

#[tokio::test]
async fn the_second_identical_request_is_a_cache_hit() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "caching: { store: memory }")).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let response = chat(&gateway, ALICE, &ask("same question")).await;
        assert_eq!(response.status(), 200);
        let cache = response.headers()["x-tollgate-cache"]
            .to_str()
            .unwrap()
            .to_owned();
        let answer: Value = response.json().await.unwrap();
        seen.push((cache, answer["choices"][0]["message"]["content"].clone()));
    }
    assert_eq!(
        seen,
        [
            ("MISS".to_owned(), json!("echo: same question")),
            ("HIT".to_owned(), json!("echo: same question"))
        ]
    );
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test]
async fn two_keys_with_different_quotas_one_is_limited_and_the_other_is_not() {
    let upstream = Upstream::start().await;
    let more = r#"
rate_limiting:
  principals:
    bob: { per_minute: 100 }
"#;
    let yaml = config(&upstream, more).replace(
        "tenant: acme, models",
        "tenant: acme, limits: { per_minute: 2 }, models",
    );
    let gateway = GatewayProcess::start(&yaml).await;
    let mut statuses = Vec::new();
    for key in [ALICE, BOB, ALICE, BOB, ALICE, BOB] {
        let response = chat(&gateway, key, &ask("hi")).await;
        if response.status() == 429 {
            let headers = response.headers();
            assert_eq!(headers["x-ratelimit-limit-requests"], "2");
            assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
            assert!(
                headers["x-ratelimit-reset-requests"]
                    .to_str()
                    .unwrap()
                    .ends_with('s')
            );
            let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(
                (1..=30).contains(&wait),
                "one request in 30 s comes back: {wait}"
            );
            assert!(headers.contains_key("retry-after-ms"));
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["code"], "rate_limit_exceeded");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 200]);
    assert_eq!(upstream.calls(), 5);
}

#[tokio::test]
async fn a_budget_spent_to_the_cent_is_refused() {
    let upstream = Upstream::start().await;
    // Each call: 10 prompt tokens at $500 / M and 5 answer tokens at $1,000 / M: exactly one cent.
    let yaml = config(&upstream, "")
        .replace(
            r#"up-model: { input: "1.00", output: "2.00" }"#,
            r#"up-model: { input: "500.00", output: "1000.00" }"#,
        )
        .replace(
            "tenant: acme, models",
            r#"tenant: acme, limits: { cost_per_day: "0.02" }, models"#,
        );
    let gateway = GatewayProcess::start(&yaml).await;
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let mut body = ask("hi");
        body["max_tokens"] = json!(5);
        let response = chat(&gateway, ALICE, &body).await;
        let status = response.status().as_u16();
        let should_retry = response
            .headers()
            .get("x-should-retry")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = response.json().await.unwrap();
        outcomes.push((status, body["error"]["type"].clone(), should_retry));
    }
    assert_eq!(
        outcomes,
        [
            (200, Value::Null, None),
            (200, Value::Null, None),
            (429, json!("insufficient_quota"), Some("false".to_owned())),
        ]
    );
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test]
async fn models_lists_what_the_key_may_use() {
    let upstream = Upstream::start().await;
    let more = "  carol: { hash: \"HASH\", tenant: acme, roles: [], models: [up/up-model] }";
    let yaml = config(&upstream, "").replace(
        "\n\n",
        &format!(
            "\n{}\n",
            more.replace("HASH", &tollgate_gateway::hash_key("tg-carol"))
        ),
    );
    let gateway = GatewayProcess::start(&yaml).await;
    let ids = |list: Value| -> Vec<String> {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for (key, expected) in [
        (ALICE, vec!["default"]),
        (BOB, vec!["default"]),
        ("tg-carol", vec!["up/up-model"]),
    ] {
        let list = get_json(&gateway, "/v1/models", Some(key)).await;
        assert_eq!(list["object"], "list");
        assert_eq!(ids(list), expected, "{key}");
    }
}

#[tokio::test]
async fn embeddings_pass_through_and_are_counted_and_cached() {
    let upstream = Upstream::start().await;
    let more = r#"caching: { store: memory }
"#;
    let yaml = config(&upstream, more).replace(
        "pricing:\n",
        "pricing:\n  text-embed: { input: \"0.10\", output: \"0\" }\n",
    );
    let gateway = GatewayProcess::start(&yaml).await;
    let body =
        json!({ "model": "up/text-embed", "input": ["one", "two"], "encoding_format": "float" });
    let mut seen = Vec::new();
    for _ in 0..2 {
        let response = client()
            .post(format!("{}/v1/embeddings", gateway.url))
            .bearer_auth(ALICE)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        seen.push(
            response.headers()["x-tollgate-cache"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["object"], "list");
        assert_eq!(answer["data"].as_array().unwrap().len(), 2);
        assert_eq!(answer["data"][1]["embedding"], json!([0.25, -0.5, 1.0]));
        assert_eq!(
            answer["usage"],
            json!({ "prompt_tokens": 8, "total_tokens": 8 })
        );
        assert_eq!(answer["model"], "text-embed");
    }
    assert_eq!(seen, ["MISS", "HIT"]);
    assert_eq!(upstream.calls(), 1);
    assert_eq!(
        upstream.bodies()[0],
        json!({ "model": "text-embed", "input": ["one", "two"], "encoding_format": "float" })
    );
    let metrics = scrape(&gateway).await;
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "tollgate_tokens{gen_ai_operation_name=\"embeddings\",gen_ai_provider_name=\"up\""
        ) && l.contains("gen_ai_token_type=\"input\"")
            && l.ends_with(" 8")),
        "{metrics}"
    );

    // bob may not name a provider's model, and a role that is not OpenAI-compatible has none.
    let response = client()
        .post(format!("{}/v1/embeddings", gateway.url))
        .bearer_auth(BOB)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = client()
        .post(format!("{}/v1/embeddings", gateway.url))
        .bearer_auth(ALICE)
        .json(&json!({ "model": "up/text-embed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
