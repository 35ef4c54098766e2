//! Whatever a client sends, the front doors answer with a typed error or an answer, never a panic:
//! arbitrary bytes and arbitrary JSON to every request parser (chat completions, messages,
//! legacy completions, responses), through the gateway's router.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tollgate_gateway::{Gateway, GatewayConfig, hash_key};
use tower::ServiceExt;

fn gateway() -> Gateway {
    let yaml = format!(
        r#"
providers: {{ local: {{ kind: simulated }} }}
roles: {{ default: {{ provider: local, model: sim-small }} }}
keys: {{ k: {{ hash: "{}", tenant: acme, models: ["local/*"] }} }}
gateway: {{ max_body_bytes: 4096 }}
"#,
        hash_key("tg-k")
    );
    Gateway::new(GatewayConfig::from_yaml(&yaml).unwrap()).unwrap()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("default".to_owned()),
            Just("user".to_owned()),
            Just("local/sim-small".to_owned()),
            ".{0,12}"
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("model".to_owned()),
                        Just("messages".to_owned()),
                        Just("prompt".to_owned()),
                        Just("role".to_owned()),
                        Just("content".to_owned()),
                        Just("max_tokens".to_owned()),
                        Just("stream".to_owned()),
                        Just("tools".to_owned()),
                        Just("type".to_owned()),
                        Just("input".to_owned()),
                        Just("instructions".to_owned()),
                        Just("max_output_tokens".to_owned()),
                        Just("previous_response_id".to_owned()),
                        Just("store".to_owned()),
                        Just("call_id".to_owned()),
                        Just("output".to_owned()),
                        "[a-z_]{1,8}"
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The doors the bodies go to: their paths.
const DOORS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/completions",
    "/v1/responses",
];

/// A body that is mostly a request for `door`, with any of its parts replaced by anything.
fn near_request(door: usize) -> impl Strategy<Value = Vec<u8>> {
    (json_value(), json_value(), json_value(), any::<bool>()).prop_map(
        move |(model, messages, extra, stream)| {
            let mut body = if DOORS[door] == "/v1/responses" {
                json!({
                    "model": "default",
                    "max_output_tokens": 16,
                    "input": [{ "role": "user", "content": "hi" }],
                    "stream": stream,
                })
            } else {
                json!({
                    "model": "default",
                    "max_tokens": 16,
                    "messages": [{ "role": "user", "content": "hi" }],
                    "prompt": "hi",
                    "stream": stream,
                })
            };
            match &model {
                Value::String(_) => body["model"] = model,
                _ => body["extra"] = model,
            }
            if !messages.is_null() {
                let field = if DOORS[door] == "/v1/responses" {
                    "input"
                } else {
                    "messages"
                };
                body[field] = messages;
            }
            if let Value::Object(fields) = extra {
                for (k, v) in fields {
                    body[k] = v;
                }
            }
            serde_json::to_vec(&body).unwrap()
        },
    )
}

fn body(door: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        near_request(door),
    ]
}

/// A door, and a body for it.
fn call() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (0..DOORS.len()).prop_flat_map(|door| (Just(door), body(door)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_body_gets_an_answer_or_a_typed_error((door, body) in call()) {
        let anthropic = DOORS[door] == "/v1/messages";
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (status, reply) = runtime.block_on(async {
            let request = http::Request::post(DOORS[door])
                .header("authorization", "Bearer tg-k")
                .body(axum::body::Body::from(body))
                .unwrap();
            let response = gateway().router().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
            (status, bytes)
        });
        prop_assert!([200, 400, 403, 404, 413].contains(&status), "status {}", status);
        if status != 200 {
            let error: Value = serde_json::from_slice(&reply).unwrap();
            if anthropic {
                prop_assert_eq!(&error["type"], "error");
            }
            prop_assert!(error["error"]["message"].is_string(), "{}", error);
            prop_assert!(error["error"]["type"].is_string(), "{}", error);
        }
    }
}
