//! OpenAI's function `tools` and `tool_choice` as Converse's `toolConfig`, checked, then written
//! from the request's own tools.

use serde::{Serialize, Serializer, ser::SerializeMap, ser::SerializeSeq};
use serde_json::Value;

use super::{CACHE_POINT, NULL, field};

/// OpenAI's function `tools` and `tool_choice` as Converse's `toolConfig`: each tool a
/// `toolSpec` (its `parameters` as `inputSchema.json`, a cache point after one that carries
/// `cache_control`), `auto` / `required` (as `any`) / a named function (as `tool`). Converse has
/// no `none`: the tools are left out instead, which a conversation that holds tool calls cannot
/// do (Converse needs the tools defined to read them).
pub(super) struct ToolConfig<'a> {
    /// The tools, each checked ([`ToolSpec::of`]) and written from the request as it is.
    tools: &'a [Value],
    choice: Option<ToolChoice<'a>>,
}

#[derive(Serialize)]
enum ToolChoice<'a> {
    #[serde(rename = "auto")]
    Auto {},
    #[serde(rename = "any")]
    Any {},
    #[serde(rename = "tool")]
    Tool { name: &'a str },
}

/// One function tool as a `toolSpec`.
#[derive(Serialize)]
struct ToolSpec<'a> {
    name: &'a str,
    #[serde(rename = "inputSchema")]
    input_schema: Schema<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a Value>,
    #[serde(skip)]
    cache: bool,
}

/// A tool's `parameters`; an object with no properties when it has none.
struct Schema<'a>(Option<&'a Value>);

impl Serialize for Schema<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<T> {
            json: T,
        }
        #[derive(Serialize)]
        struct NoParameters {
            #[serde(rename = "type")]
            kind: &'static str,
            properties: Empty,
        }
        #[derive(Serialize)]
        struct Empty {}
        match self.0 {
            Some(schema) => Json { json: schema }.serialize(serializer),
            None => Json {
                json: NoParameters {
                    kind: "object",
                    properties: Empty {},
                },
            }
            .serialize(serializer),
        }
    }
}

impl<'a> ToolSpec<'a> {
    /// The `i`-th tool as a `toolSpec`, or why it cannot be one.
    fn of(i: usize, tool: &'a Value) -> Result<Self, String> {
        if field(tool, "type").and_then(Value::as_str) != Some("function") {
            return Err(format!("tools[{i}]: Converse takes function tools only"));
        }
        let function = field(tool, "function").unwrap_or(&NULL);
        let name = field(function, "name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("tools[{i}].function: no name"))?;
        Ok(Self {
            name,
            input_schema: Schema(field(function, "parameters")),
            description: field(function, "description"),
            cache: field(tool, "cache_control").is_some()
                || field(function, "cache_control").is_some(),
        })
    }
}

impl<'a> ToolConfig<'a> {
    pub(super) fn of(
        tools: Option<&'a Value>,
        choice: Option<&'a Value>,
        has_tool_blocks: bool,
    ) -> Result<Option<Self>, String> {
        let choice = match choice {
            None | Some(Value::Null) => None,
            Some(Value::String(mode)) => match mode.as_str() {
                "auto" => Some(ToolChoice::Auto {}),
                "required" => Some(ToolChoice::Any {}),
                "none" if has_tool_blocks => {
                    return Err(
                        "tool_choice none: Converse has no way to forbid tool calls in a \
                            conversation that holds them; leave tool_choice out"
                            .into(),
                    );
                }
                "none" => {
                    tracing::debug!(
                        "tool_choice none: the tools are left out of the Converse call"
                    );
                    return Ok(None);
                }
                other => return Err(format!("tool_choice: unknown mode {other:?}")),
            },
            Some(object) => {
                let name = field(object, "function")
                    .and_then(|function| field(function, "name"))
                    .and_then(Value::as_str)
                    .ok_or("tool_choice: names no function")?;
                Some(ToolChoice::Tool { name })
            }
        };
        let Some(tools) = tools.filter(|t| !t.is_null()) else {
            if choice.is_some() {
                return Err("tool_choice: given without tools".into());
            }
            return Ok(None);
        };
        let tools = tools.as_array().ok_or("tools: must be a list")?;
        for (i, tool) in tools.iter().enumerate() {
            ToolSpec::of(i, tool)?;
        }
        Ok(Some(Self { tools, choice }))
    }
}

impl Serialize for ToolConfig<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Specs<'a>(&'a [Value]);
        impl Serialize for Specs<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                #[derive(Serialize)]
                enum Item<'a> {
                    #[serde(rename = "toolSpec")]
                    Spec(&'a ToolSpec<'a>),
                }
                let mut seq = serializer.serialize_seq(None)?;
                for (i, tool) in self.0.iter().enumerate() {
                    let spec = ToolSpec::of(i, tool).map_err(serde::ser::Error::custom)?;
                    seq.serialize_element(&Item::Spec(&spec))?;
                    if spec.cache {
                        seq.serialize_element(&CACHE_POINT)?;
                    }
                }
                seq.end()
            }
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("tools", &Specs(self.tools))?;
        if let Some(choice) = &self.choice {
            map.serialize_entry("toolChoice", choice)?;
        }
        map.end()
    }
}
