//! The body a Converse upstream is sent, translated from the OpenAI shape.
//!
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>
//!
//! The body is written straight from the request, the way the OpenAI pass-through is: a first
//! pass checks the request and lays out every block (turns merged, cache points placed) as
//! pieces that borrow the prompt, and serde writes them into one buffer. No JSON tree is built
//! and no text is copied but into the body itself; only what the translation makes new (a tool
//! call's arguments read as JSON, merged metadata, a thinking budget) is owned.

use std::borrow::Cow;

use serde::{
    Serialize, Serializer,
    ser::{SerializeMap, SerializeSeq},
};
use serde_json::{Map, Value, json};
use tollgate_core::{Content, LlmRequest, Message, Params, REASONING_SIGNATURE, Role};

// Thinking budgets for Claude's `reasoning_effort`: Anthropic's own.
use crate::anthropic::messages::effort_budget;

use tools::ToolConfig;

mod tools;

/// Fields of the OpenAI shape that Converse has no form for, and that a model behind it would
/// refuse: refused by name rather than dropped or passed on.
const OPENAI_ONLY: [&str; 13] = [
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "store",
    "metadata",
    "service_tier",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
];

/// Converse's own top-level fields, passed as they came when a caller sets them.
const CONVERSE_FIELDS: [&str; 6] = [
    "guardrailConfig",
    "performanceConfig",
    "promptVariables",
    "requestMetadata",
    "additionalModelResponseFieldPaths",
    "serviceTier",
];

/// The Converse body for `request` (the model goes in the path, not the body; a stream is the
/// same body sent to `converse-stream`).
///
/// # Errors
///
/// What Converse cannot express, naming the field: a `response_format` other than `text`, `n`
/// or `best_of` above 1, log-probabilities, OpenAI-only sampling fields, an image given by a URL
/// other than `data:`, tool-call arguments that are not JSON, a tool message with no call id,
/// `parallel_tool_calls: false`.
pub fn encode_request(request: &LlmRequest) -> Result<Vec<u8>, String> {
    let body = Body::of(request)?;
    let mut out = Vec::with_capacity(body.size_hint);
    body.serialize(&mut serde_json::Serializer::new(&mut out))
        .expect("a Converse body serializes");
    Ok(out)
}

/// The Converse body, laid out and checked, borrowing from the request.
struct Body<'a> {
    /// Every message's blocks in order: a turn's opening, then its blocks (a turn's blocks run to
    /// the next opening), with the system blocks among them, where their messages were.
    pieces: Vec<Piece<'a>>,
    has_system: bool,
    params: &'a Params,
    tools: Option<ToolConfig<'a>>,
    /// Converse's own top-level fields, in the order they came.
    fields: Fields<'a>,
    /// `additionalModelRequestFields`, in the order they came.
    additional: Fields<'a>,
    /// About how many bytes the body takes: its texts', and room for the rest.
    size_hint: usize,
}

enum Piece<'a> {
    /// A turn opens (`user` or `assistant`): the messages of one role in a row make one turn.
    Turn(&'static str),
    /// A block of the open turn.
    Block(Block<'a>),
    /// A block of the `system` list.
    System(Block<'a>),
}

/// A content block, written as Converse's (`{"text": ...}`, `{"toolUse": {...}}`, ...).
#[derive(Serialize)]
enum Block<'a> {
    #[serde(rename = "text")]
    Text(Cow<'a, str>),
    #[serde(rename = "image")]
    Image {
        format: &'static str,
        source: Bytes<'a>,
    },
    #[serde(rename = "reasoningContent")]
    Reasoning {
        #[serde(rename = "reasoningText")]
        reasoning_text: Reasoning<'a>,
    },
    #[serde(rename = "toolUse")]
    ToolUse {
        #[serde(rename = "toolUseId")]
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    #[serde(rename = "toolResult")]
    ToolResult {
        #[serde(rename = "toolUseId")]
        id: &'a str,
        content: Vec<Block<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<&'a Value>,
    },
    #[serde(rename = "json")]
    Json(&'a Value),
    #[serde(rename = "cachePoint")]
    CachePoint {
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

const CACHE_POINT: Block<'static> = Block::CachePoint { kind: "default" };

/// What `{"json": ...}` holds for a `json` part that carries none.
static NULL: Value = Value::Null;

#[derive(Serialize)]
struct Bytes<'a> {
    bytes: &'a str,
}

#[derive(Serialize)]
struct Reasoning<'a> {
    text: &'a str,
    signature: &'a str,
}

impl Block<'_> {
    const fn is_cache_point(&self) -> bool {
        matches!(self, Self::CachePoint { .. })
    }
}

impl<'a> Body<'a> {
    fn of(request: &'a LlmRequest) -> Result<Self, String> {
        let params = &request.params;
        let extra = &params.extra;
        refuse_what_cannot_map(request)?;
        let mut body = Body {
            pieces: Vec::with_capacity(request.messages.len() * 2),
            has_system: false,
            params,
            tools: None,
            fields: Fields::default(),
            additional: Fields::default(),
            size_hint: 256,
        };
        let mut has_tool_blocks = false;
        let mut turn = None;
        for (i, message) in request.messages.iter().enumerate() {
            let at = |e: String| format!("messages[{i}]{e}");
            let role = match message.role {
                Role::System | Role::Developer => {
                    body.system_blocks(message).map_err(at)?;
                    continue;
                }
                Role::Assistant => "assistant",
                Role::Tool | Role::User | Role::Function => "user",
            };
            // Converse takes turns that alternate: turns of one role in a row become one turn.
            if turn != Some(role) {
                turn = Some(role);
                body.pieces.push(Piece::Turn(role));
            }
            match message.role {
                Role::Assistant => body.assistant_blocks(message),
                Role::Tool => {
                    has_tool_blocks = true;
                    body.tool_result(message)
                }
                _ => body.user_blocks(message),
            }
            .map_err(at)?;
            has_tool_blocks |= get(&message.extra, "tool_calls").is_some();
        }
        body.tools = ToolConfig::of(
            get(extra, "tools"),
            get(extra, "tool_choice"),
            has_tool_blocks,
        )?;
        let from_responses = request
            .extensions
            .get::<crate::openai::responses::ResponsesBody>()
            .is_some();
        for (key, value) in extra.iter() {
            if from_responses && crate::openai::responses::untranslated(key) {
                tracing::debug!(field = %key, "a Responses field with no Converse form is left out");
                continue;
            }
            body.extra_field(&request.model, key, value)?;
        }
        Ok(body)
    }

    /// Places one of the request's other fields: mapped, passed to Converse, or handed to the
    /// model in `additionalModelRequestFields`.
    fn extra_field(&mut self, model: &str, key: &'a str, value: &'a Value) -> Result<(), String> {
        match key {
            // Mapped above, refused above, or the stack's own.
            "stream"
            | "stream_options"
            | "seed"
            | "tools"
            | "tool_choice"
            | "parallel_tool_calls"
            | "response_format" => {}
            "user" => {
                let metadata = self
                    .fields
                    .get_or_insert("requestMetadata", || Cow::Owned(json!({})));
                // The caller's own `user` in their `requestMetadata` stays.
                if metadata
                    .as_object()
                    .is_some_and(|m| !m.contains_key("user"))
                    && let Some(metadata) = metadata.to_mut().as_object_mut()
                {
                    metadata.insert("user".into(), value.clone());
                }
            }
            "additionalModelRequestFields" => {
                let fields = value
                    .as_object()
                    .ok_or("additionalModelRequestFields must be an object")?;
                for (field, value) in fields {
                    self.additional.insert(field, Cow::Borrowed(value));
                }
            }
            "reasoning_effort" if is_claude(model) => {
                let effort = value.as_str().unwrap_or_default();
                let budget = effort_budget(effort).ok_or_else(|| {
                    format!("reasoning_effort {value} is not one of minimal, low, medium, high")
                })?;
                self.additional.get_or_insert("thinking", || {
                    Cow::Owned(json!({ "type": "enabled", "budget_tokens": budget }))
                });
            }
            "top_k" if model.contains("amazon.nova") => {
                let config = json!({ "topK": value });
                self.additional
                    .insert("inferenceConfig", Cow::Owned(config));
            }
            field if CONVERSE_FIELDS.contains(&field) => {
                match (self.fields.get_mut(field), value) {
                    // `user` went there first; the caller's own fields win.
                    (Some(ours), Value::Object(theirs)) if ours.is_object() => {
                        if let Some(ours) = ours.to_mut().as_object_mut() {
                            for (name, value) in theirs {
                                ours.insert(name.clone(), value.clone());
                            }
                        }
                    }
                    _ => self.fields.insert(key, Cow::Borrowed(value)),
                }
            }
            // Model-specific fields (`top_k`, `thinking`, ...) go to the model as they came.
            _ => self.additional.insert(key, Cow::Borrowed(value)),
        }
        Ok(())
    }

    fn block(&mut self, block: Block<'a>) {
        self.size_hint += match &block {
            Block::Text(text) => text.len() + 16,
            Block::Image { source, .. } => source.bytes.len() + 64,
            _ => 64,
        };
        self.pieces.push(Piece::Block(block));
    }

    /// A cache point after the message's last block (those from `start` on), when the message
    /// carries `cache_control`.
    fn mark_end(&mut self, message: &Message, start: usize) {
        let marked = get(&message.extra, "cache_control").is_some();
        let last = self.pieces[start..].last();
        if marked
            && last.is_some_and(
                |p| !matches!(p, Piece::Block(b) | Piece::System(b) if b.is_cache_point()),
            )
        {
            let system = matches!(last, Some(Piece::System(_)));
            self.pieces.push(if system {
                Piece::System(CACHE_POINT)
            } else {
                Piece::Block(CACHE_POINT)
            });
        }
    }

    /// A system or developer message as system blocks: its text (each text part a block), with a
    /// cache point after a part (or the message) that carries `cache_control`.
    fn system_blocks(&mut self, message: &'a Message) -> Result<(), String> {
        let start = self.pieces.len();
        match &message.content {
            Some(Content::Parts(parts)) => {
                for (j, part) in parts.iter().enumerate() {
                    let text = field(part, "text").and_then(Value::as_str).ok_or_else(|| {
                        format!(".content[{j}]: a system message takes text parts only")
                    })?;
                    self.size_hint += text.len() + 16;
                    self.pieces.push(Piece::System(Block::Text(text.into())));
                    if field(part, "cache_control").is_some() {
                        self.pieces.push(Piece::System(CACHE_POINT));
                    }
                }
            }
            content => {
                let text = match content {
                    Some(Content::Text(text)) => text.as_str(),
                    _ => "",
                };
                self.size_hint += text.len() + 16;
                self.pieces.push(Piece::System(Block::Text(text.into())));
            }
        }
        self.mark_end(message, start);
        // A system message of no parts has no blocks; with no blocks there is no `system`.
        self.has_system |= self.pieces.len() > start;
        Ok(())
    }

    /// A user turn's blocks: text, and images from `data:` URLs, each part's `cache_control` as a
    /// cache point after it.
    fn user_blocks(&mut self, message: &'a Message) -> Result<(), String> {
        let start = self.pieces.len();
        match &message.content {
            Some(Content::Parts(parts)) => self.parts(parts)?,
            Some(Content::Text(text)) => self.block(Block::Text(text.as_str().into())),
            None => return Err(".content: a user turn needs content".into()),
        }
        self.mark_end(message, start);
        Ok(())
    }

    /// Content parts as blocks, a cache point after each part that carries `cache_control`.
    fn parts(&mut self, parts: &'a [Value]) -> Result<(), String> {
        for (j, part) in parts.iter().enumerate() {
            let block = content_part(part).map_err(|e| format!(".content[{j}]{e}"))?;
            self.block(block);
            if field(part, "cache_control").is_some() {
                self.block(CACHE_POINT);
            }
        }
        Ok(())
    }

    /// An assistant turn's blocks: its signed reasoning (which Claude needs back to go on thinking
    /// across tool calls), its text, then a `toolUse` block per tool call.
    fn assistant_blocks(&mut self, message: &'a Message) -> Result<(), String> {
        let start = self.pieces.len();
        let said = |key: &str| get(&message.extra, key).and_then(Value::as_str);
        if let (Some(text), Some(signature)) = (
            said("reasoning_content").or_else(|| said("reasoning")),
            said(REASONING_SIGNATURE),
        ) {
            let reasoning_text = Reasoning { text, signature };
            self.block(Block::Reasoning { reasoning_text });
        }
        match &message.content {
            Some(Content::Parts(parts)) => self.parts(parts)?,
            Some(Content::Text(text)) if !text.is_empty() => {
                self.block(Block::Text(text.as_str().into()));
            }
            _ => {}
        }
        let calls = get(&message.extra, "tool_calls").and_then(Value::as_array);
        for (i, call) in calls.into_iter().flatten().enumerate() {
            let function = field(call, "function");
            let text = |value: Option<&'a Value>| value.and_then(Value::as_str);
            let arguments = text(function.and_then(|f| field(f, "arguments"))).unwrap_or("{}");
            let arguments = if arguments.trim().is_empty() {
                "{}"
            } else {
                arguments
            };
            let input: Value = serde_json::from_str(arguments)
                .map_err(|e| format!(".tool_calls[{i}].function.arguments is not JSON: {e}"))?;
            let id = text(field(call, "id")).ok_or(format!(".tool_calls[{i}]: no id"))?;
            let name = text(function.and_then(|f| field(f, "name")))
                .ok_or(format!(".tool_calls[{i}]: no function name"))?;
            self.size_hint += arguments.len();
            self.block(Block::ToolUse { id, name, input });
        }
        if self.pieces.len() == start {
            return Err(
                ": an assistant turn needs text or tool calls (Converse refuses an empty one)"
                    .into(),
            );
        }
        self.mark_end(message, start);
        Ok(())
    }

    /// A `tool` message as a `toolResult` block answering its call's id: its text, or its parts
    /// (text and images), with the message's `status` (`success`, `error`) when it has one.
    fn tool_result(&mut self, message: &'a Message) -> Result<(), String> {
        let id = get(&message.extra, "tool_call_id")
            .and_then(Value::as_str)
            .ok_or(": a tool message needs its tool_call_id")?;
        let content = match &message.content {
            Some(Content::Parts(parts)) => parts
                .iter()
                .enumerate()
                .map(
                    |(j, part)| match field(part, "type").and_then(Value::as_str) {
                        Some("json") => Ok(Block::Json(field(part, "json").unwrap_or(&NULL))),
                        _ => content_part(part).map_err(|e| format!(".content[{j}]{e}")),
                    },
                )
                .collect::<Result<_, _>>()?,
            Some(Content::Text(text)) => vec![Block::Text(text.as_str().into())],
            None => vec![Block::Text("".into())],
        };
        for block in &content {
            self.size_hint += match block {
                Block::Text(text) => text.len() + 16,
                _ => 64,
            };
        }
        let status = get(&message.extra, "status");
        self.block(Block::ToolResult {
            id,
            content,
            status,
        });
        Ok(())
    }
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("messages", &Turns(&self.pieces))?;
        if self.has_system {
            map.serialize_entry("system", &System(&self.pieces))?;
        }
        let params = self.params;
        if params.max_tokens.is_some()
            || params.temperature.is_some()
            || params.top_p.is_some()
            || !params.stop.is_empty()
        {
            map.serialize_entry(
                "inferenceConfig",
                &Inference {
                    max_tokens: params.max_tokens,
                    temperature: params.temperature,
                    top_p: params.top_p,
                    stop_sequences: &params.stop,
                },
            )?;
        }
        if let Some(tools) = &self.tools {
            map.serialize_entry("toolConfig", tools)?;
        }
        for (key, value) in &self.fields.0 {
            map.serialize_entry(key, value)?;
        }
        if !self.additional.0.is_empty() {
            map.serialize_entry("additionalModelRequestFields", &self.additional)?;
        }
        map.end()
    }
}

/// The `messages` list: each turn's role and blocks.
struct Turns<'p, 'a>(&'p [Piece<'a>]);

impl Serialize for Turns<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Turn<'p, 'a> {
            role: &'static str,
            content: Blocks<'p, 'a>,
        }
        let mut seq = serializer.serialize_seq(None)?;
        let mut rest = self.0;
        while let Some(at) = rest.iter().position(|p| matches!(p, Piece::Turn(_))) {
            let Piece::Turn(role) = rest[at] else {
                unreachable!("found as a turn")
            };
            rest = &rest[at + 1..];
            let end = rest
                .iter()
                .position(|p| matches!(p, Piece::Turn(_)))
                .unwrap_or(rest.len());
            seq.serialize_element(&Turn {
                role,
                content: Blocks(&rest[..end]),
            })?;
            rest = &rest[end..];
        }
        seq.end()
    }
}

/// One turn's blocks (the system blocks among them left out).
struct Blocks<'p, 'a>(&'p [Piece<'a>]);

impl Serialize for Blocks<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().filter_map(|piece| match piece {
            Piece::Block(block) => Some(block),
            _ => None,
        }))
    }
}

/// The `system` list.
struct System<'p, 'a>(&'p [Piece<'a>]);

impl Serialize for System<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().filter_map(|piece| match piece {
            Piece::System(block) => Some(block),
            _ => None,
        }))
    }
}

#[derive(Serialize)]
struct Inference<'a> {
    #[serde(rename = "maxTokens", skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(rename = "topP", skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(rename = "stopSequences", skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
}

/// Fields in the order they came, a later one of the same name taking the earlier's place (as a
/// JSON object that keeps its order does); a handful at most, so looked up in a list.
#[derive(Default)]
struct Fields<'a>(Vec<(&'a str, Cow<'a, Value>)>);

impl<'a> Fields<'a> {
    fn get_mut(&mut self, key: &str) -> Option<&mut Cow<'a, Value>> {
        self.0.iter_mut().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    fn insert(&mut self, key: &'a str, value: Cow<'a, Value>) {
        match self.get_mut(key) {
            Some(slot) => *slot = value,
            None => self.0.push((key, value)),
        }
    }

    fn get_or_insert(
        &mut self,
        key: &'a str,
        value: impl FnOnce() -> Cow<'a, Value>,
    ) -> &mut Cow<'a, Value> {
        let at = match self.0.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                self.0.push((key, value()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }
}

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// `map`'s field `name`, as `Map::get` finds it, but with no hash of `name` taken when the map is
/// small: a request's parameters, messages, parts and tools hold a handful of fields each, and
/// comparing a few names costs less than hashing the one looked for.
fn get<'v>(map: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    if map.len() > 8 {
        return map.get(name);
    }
    map.iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// `object`'s field `name` ([`get`]); none when `object` is not an object.
fn field<'v>(object: &'v Value, name: &str) -> Option<&'v Value> {
    object.as_object().and_then(|map| get(map, name))
}

/// Whether `model` (an id, an inference profile or an ARN) is Anthropic's Claude.
fn is_claude(model: &str) -> bool {
    model.contains("anthropic.") || model.contains("claude")
}

fn refuse_what_cannot_map(request: &LlmRequest) -> Result<(), String> {
    let params = &request.params;
    let extra = &params.extra;
    match get(extra, "response_format") {
        None | Some(Value::Null) => {}
        Some(format) if field(format, "type").and_then(Value::as_str) == Some("text") => {}
        Some(format) => {
            return Err(format!(
                "response_format ({}): Converse has no structured output mode; describe the \
                 schema as a tool and force it with tool_choice, or ask for JSON in the prompt",
                field(format, "type").unwrap_or(&Value::Null)
            ));
        }
    }
    if params.choices() > 1 {
        return Err("n: Converse returns one answer per call; n (and best_of) must be 1".into());
    }
    // Tiers that cost more than the model's price would be billed under what they cost.
    let dearer = |name: &str, key: &str, cheap: &[&str]| {
        get(extra, name)
            .and_then(|value| field(value, key))
            .and_then(Value::as_str)
            .filter(|tier| !cheap.contains(tier))
            .map(|tier| {
                format!(
                    "{name}.{key} {tier:?}: priced above the model's catalog price, which is \
                     what calls are billed at; not sent"
                )
            })
    };
    if let Some(refused) = dearer("serviceTier", "type", &["default", "flex"])
        .or_else(|| dearer("performanceConfig", "latency", &["standard"]))
    {
        return Err(refused);
    }
    if params.top_logprobs.is_some() {
        return Err("top_logprobs: Converse has no log-probabilities".into());
    }
    // A call from the Responses door has its own fields with no Converse form left out below.
    let from_responses = request
        .extensions
        .get::<crate::openai::responses::ResponsesBody>()
        .is_some();
    if let Some(field) = OPENAI_ONLY.iter().find(|field| {
        !(from_responses && crate::openai::responses::untranslated(field))
            && get(extra, field).is_some_and(|v| !v.is_null() && *v != false)
    }) {
        return Err(format!("{field}: Converse has no such field"));
    }
    if get(extra, "parallel_tool_calls") == Some(&Value::Bool(false)) {
        return Err(
            "parallel_tool_calls: Converse cannot turn off parallel tool calls; leave it out"
                .into(),
        );
    }
    Ok(())
}

/// One content part as a Converse block: `text`, or `image_url` with a `data:` URL as an image
/// block of its bytes (base64, as the JSON form of the API takes them).
fn content_part(part: &Value) -> Result<Block<'_>, String> {
    match field(part, "type").and_then(Value::as_str) {
        Some("text") => {
            let text = field(part, "text")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(Block::Text(text.into()))
        }
        Some("image_url") => {
            let url = field(part, "image_url")
                .and_then(|image| field(image, "url"))
                .and_then(Value::as_str)
                .ok_or(".image_url.url: required")?;
            image_block(url)
        }
        other => Err(format!(
            ": Converse takes text and image parts here, not {}",
            other.map_or_else(|| "a part with no type".to_owned(), |t| format!("{t:?}"))
        )),
    }
}

/// An image block from a `data:` URL; any other URL is refused, since Converse takes an image's
/// bytes (or an S3 location), never a URL to fetch.
fn image_block(url: &str) -> Result<Block<'_>, String> {
    let Some((media_type, data)) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    else {
        return Err(
            ".image_url.url: Converse takes an image's bytes, not a URL to fetch: send \
                    it as a data: URL (data:image/png;base64,...)"
                .into(),
        );
    };
    let format = match media_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(format!(
                ".image_url.url: Converse takes png, jpeg, gif and webp images, not {other:?}"
            ));
        }
    };
    let source = Bytes { bytes: data };
    Ok(Block::Image { format, source })
}
