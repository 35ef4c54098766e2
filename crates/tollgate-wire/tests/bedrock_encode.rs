//! Bedrock's Converse request encoder, which writes its JSON straight from the request, against
//! the reference it replaced (a `serde_json::Value` tree built and serialized, in
//! `bedrock_reference/`): for any request, the same bytes or the same refusal.
//!
//! Requests come from a seeded generator (a failure names its seed and the request): every
//! message role, text and image parts (`data:` and other URLs, unknown types), `json` parts, cache
//! marks on parts and messages, signed reasoning, tool calls with good, empty and broken
//! arguments, tool results with and without ids and statuses, tools and `tool_choice` in every
//! form, the inference parameters (a NaN temperature too), Converse's own fields, `user` and
//! `requestMetadata` in either order, `additionalModelRequestFields`, `reasoning_effort`, `top_k`,
//! and the refused fields, in shuffled orders.

mod bedrock_reference;

use serde_json::{Value, json};
use tollgate_core::{Content, JsonMap, LlmRequest, Message, Role};
use tollgate_wire::bedrock;

/// A xorshift generator: the same requests from the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }
}

fn text(r: &mut Rng) -> String {
    r.pick(&[
        "",
        "hi",
        "a \"quoted\"\n line",
        "ünïcode ✓",
        "\u{1}ctl",
        "x",
    ])
    .to_owned()
}

fn part(r: &mut Rng) -> Value {
    let mut p = match r.below(9) {
        0..=3 => json!({ "type": "text", "text": text(r) }),
        4 => json!({ "type": "image_url", "image_url": { "url": r.pick(&[
            "data:image/png;base64,iVBOR", "data:image/jpg;base64,AAA", "data:image/tiff;base64,AA",
            "https://x/y.png", "data:image/webp;base64,"]) } }),
        5 => json!({ "type": "image_url" }),
        6 => json!({ "type": "json", "json": { "b": 2, "a": [1, 2.5] } }),
        7 => json!({ "type": "json" }),
        _ => r.pick(&[
            json!({ "type": "audio" }),
            json!({ "text": "no type" }),
            json!({}),
        ]),
    };
    if r.chance(25) {
        p["cache_control"] = json!({ "type": "ephemeral" });
    }
    p
}

fn content(r: &mut Rng) -> Option<Content> {
    match r.below(6) {
        0 => None,
        1 | 2 => Some(Content::Text(text(r))),
        _ => Some(Content::Parts((0..r.below(4)).map(|_| part(r)).collect())),
    }
}

fn message(r: &mut Rng) -> Message {
    let role = r.pick(&[
        Role::System,
        Role::Developer,
        Role::User,
        Role::User,
        Role::Assistant,
        Role::Assistant,
        Role::Tool,
        Role::Function,
    ]);
    let mut extra = JsonMap::new();
    if r.chance(20) {
        extra.insert("cache_control".into(), json!({ "type": "ephemeral" }));
    }
    if role == Role::Assistant {
        if r.chance(30) {
            extra.insert(
                r.pick(&["reasoning_content", "reasoning"]).into(),
                json!(text(r)),
            );
        }
        if r.chance(30) {
            extra.insert("reasoning_signature".into(), json!("sig"));
        }
        if r.chance(50) {
            let calls: Vec<Value> = (0..r.below(3))
                .map(|k| {
                    let mut call = json!({ "type": "function", "function": {} });
                    if r.chance(90) {
                        call["id"] = json!(format!("call_{k}"));
                    }
                    if r.chance(90) {
                        call["function"]["name"] = json!("lookup");
                    }
                    if r.chance(90) {
                        call["function"]["arguments"] = json!(r.pick(&[
                            "{\"q\": \"x\", \"a\": 1.50, \"z\": [1e3]}",
                            "",
                            "  ",
                            "{}",
                            "{bad",
                            "[1,2]",
                            "{\"b\":1,\"a\":2}"
                        ]));
                    }
                    call
                })
                .collect();
            extra.insert("tool_calls".into(), Value::from(calls));
        }
    }
    if role == Role::Tool {
        if r.chance(90) {
            extra.insert("tool_call_id".into(), json!("call_0"));
        }
        if r.chance(30) {
            extra.insert(
                "status".into(),
                r.pick(&[json!("error"), json!(null), json!("success")]),
            );
        }
    }
    if r.chance(10) {
        extra.insert("name".into(), json!("n"));
    }
    Message {
        role,
        content: content(r),
        extra,
    }
}

fn tool(r: &mut Rng) -> Value {
    let mut t = json!({ "type": "function", "function": { "name": "lookup" } });
    match r.below(12) {
        0 => t["type"] = json!("web"),
        1 => {
            t["function"].as_object_mut().unwrap().remove("name");
        }
        _ => {}
    }
    if r.chance(60) {
        t["function"]["parameters"] = json!({ "type": "object", "properties": { "q": { "type": "string" } }, "required": ["q"] });
    }
    if r.chance(40) {
        t["function"]["description"] = r.pick(&[json!("Looks up"), json!(null)]);
    }
    if r.chance(20) {
        t["cache_control"] = json!({ "type": "ephemeral" });
    }
    if r.chance(10) {
        t["function"]["cache_control"] = json!({ "type": "ephemeral" });
    }
    t
}

/// A request of up to six messages and up to eight other fields, many of them refused on purpose.
fn request(r: &mut Rng) -> LlmRequest {
    let model = r.pick(&[
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "us.amazon.nova-pro-v1:0",
        "meta.llama3-70b",
        "arn:aws:bedrock:claude",
    ]);
    let messages: Vec<Message> = (0..r.below(7)).map(|_| message(r)).collect();
    let mut request = LlmRequest::new(model, messages);
    let p = &mut request.params;
    if r.chance(50) {
        p.max_tokens = Some(r.below(5000) as u32);
    }
    if r.chance(40) {
        p.temperature = Some(r.pick(&[0.2, 1.0, 0.0, f64::NAN, 1e-7]));
    }
    if r.chance(20) {
        p.top_p = Some(0.9);
    }
    if r.chance(20) {
        p.stop = vec!["END".into(), "\n\n".into()];
    }
    if r.chance(5) {
        p.n = Some(2);
    }
    if r.chance(3) {
        p.top_logprobs = Some(2);
    }
    if r.chance(10) {
        p.seed = Some(4);
    }
    let mut keys: Vec<(&str, Value)> = Vec::new();
    if r.chance(50) {
        let tools = if r.chance(5) {
            json!("nope")
        } else {
            Value::from((0..r.below(4)).map(|_| tool(r)).collect::<Vec<_>>())
        };
        keys.push(("tools", tools));
    }
    if r.chance(40) {
        keys.push((
            "tool_choice",
            r.pick(&[
                json!("auto"),
                json!("required"),
                json!("none"),
                json!("bogus"),
                json!(null),
                json!({ "type": "function", "function": { "name": "lookup" } }),
                json!({ "type": "function" }),
            ]),
        ));
    }
    let pool = [
        ("user", json!("u-1")),
        ("requestMetadata", json!({ "team": "a", "user": "u-2" })),
        ("requestMetadata", json!({ "team": "a" })),
        ("requestMetadata", json!("flat")),
        (
            "guardrailConfig",
            json!({ "guardrailIdentifier": "g", "guardrailVersion": "1" }),
        ),
        ("performanceConfig", json!({ "latency": "standard" })),
        ("serviceTier", json!({ "type": "flex" })),
        (
            "additionalModelResponseFieldPaths",
            json!(["/stop_sequence"]),
        ),
        ("promptVariables", json!({ "x": { "text": "y" } })),
        (
            "additionalModelRequestFields",
            json!({ "top_k": 5, "thinking": { "type": "enabled", "budget_tokens": 9 } }),
        ),
        (
            "additionalModelRequestFields",
            json!({ "inferenceConfig": { "topK": 1 } }),
        ),
        ("additionalModelRequestFields", json!(3)),
        ("reasoning_effort", json!("high")),
        ("reasoning_effort", json!("low")),
        ("reasoning_effort", json!("extreme")),
        ("top_k", json!(40)),
        (
            "thinking",
            json!({ "type": "enabled", "budget_tokens": 2000 }),
        ),
        ("inferenceConfig", json!({ "x": 1 })),
        ("stream", json!(true)),
        ("stream_options", json!({ "include_usage": true })),
        ("parallel_tool_calls", json!(true)),
        ("parallel_tool_calls", json!(false)),
        ("response_format", json!({ "type": "text" })),
        ("response_format", json!({ "type": "json_object" })),
        ("response_format", json!(null)),
        ("frequency_penalty", json!(0)),
        ("frequency_penalty", json!(0.5)),
        ("logprobs", json!(false)),
        ("store", json!(null)),
        ("messages", json!("weird")),
        ("x_custom", json!([1, { "b": 1, "a": 2 }])),
    ];
    for _ in 0..r.below(6) {
        keys.push(r.pick(&pool));
    }
    // Shuffle so the order of the fields varies.
    for i in (1..keys.len()).rev() {
        let j = r.below(i as u64 + 1) as usize;
        keys.swap(i, j);
    }
    for (k, v) in keys {
        // A later duplicate key replaces in place, as JSON parsing would.
        request.params.set_extra(k, v);
    }
    request
}

/// Any request: the same body to the byte, or the same refusal to the letter. `CASES` sets how
/// many (5,000 unless told; the rewrite was checked on 1,000,000).
#[test]
fn the_direct_writer_matches_the_reference_byte_for_byte() {
    let cases: u64 = std::env::var("CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(5_000);
    let (mut ok, mut err) = (0, 0);
    for seed in 1..=cases {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let request = request(&mut r);
        let old =
            bedrock_reference::encode_request(&request).map(|b| String::from_utf8(b).unwrap());
        let new = bedrock::encode_request(&request).map(|b| String::from_utf8(b).unwrap());
        assert_eq!(
            new,
            old,
            "seed {seed}: {:#}",
            serde_json::to_string(&request).unwrap()
        );
        if old.is_ok() {
            ok += 1;
        } else {
            err += 1;
        }
    }
    // Both sides of the translation are exercised, not only its refusals.
    assert!(
        ok > cases / 10 && err > cases / 10,
        "{ok} bodies, {err} refusals"
    );
}
