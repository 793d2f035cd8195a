//! Our `ChatRequest` → a Chat Completions request body, with each provider's rules applied
//! on the wire copy only (the stored history is never changed). Pure: no I/O.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::Flavor;
use crate::message::{ContentPart, Message};
use crate::model::{ChatRequest, ResponseFormat, ToolChoice, ToolSpec};

/// What Mistral gets between a tool result and a user message, which it refuses to see
/// side by side (`Unexpected role 'user' after role 'tool'`).
pub(crate) const MISTRAL_BRIDGE: &str = "Ok.";

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<WireTools<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<Value>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum WireMessage<'a> {
    System {
        content: &'a str,
    },
    User {
        content: UserContent<'a>,
    },
    Assistant {
        /// `null` (key present) when the turn only calls tools, as OpenAI wants.
        content: Option<&'a str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<WireToolCall<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reasoning_content: Option<&'a str>,
    },
    Tool {
        tool_call_id: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
        content: &'a str,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum UserContent<'a> {
    Text(&'a str),
    Parts(Vec<Value>),
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: Cow<'a, str>,
    r#type: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// The tool list: built from the specs, or the same list already serialised (an agent sends
/// the same tools on every turn).
#[derive(Serialize)]
#[serde(untagged)]
enum WireTools<'a> {
    Built(Vec<WireTool<'a>>),
    Serialised(&'a RawValue),
}

#[derive(Serialize)]
struct WireTool<'a> {
    r#type: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: Cow<'a, Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    strict: bool,
}

/// Serialises a request into a Chat Completions body with the flavour's rules applied (this
/// is what [`OpenAiCompatible`](super::OpenAiCompatible) sends).
///
/// ```
/// use agent_core::backends::openai::{Flavor, request::build_body};
/// use agent_core::{ChatRequest, Message};
/// let req = ChatRequest { messages: vec![Message::user("hi")].into(), ..Default::default() };
/// let body = build_body(Flavor::Mistral, "mistral-small-latest", &req, true).unwrap();
/// let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert!(json.get("stream_options").is_none());
/// ```
pub fn build_body(
    flavor: Flavor,
    model: &str,
    request: &ChatRequest,
    stream: bool,
) -> Result<Vec<u8>, serde_json::Error> {
    build_body_asking_usage(flavor, model, request, stream, true, None)
}

/// A tool list as the flavour sends it, serialised once; [`build_body_asking_usage`] takes
/// it for a request whose tools are these.
pub(crate) fn serialised_tools(
    flavor: Flavor,
    tools: &[ToolSpec],
) -> Result<Box<RawValue>, serde_json::Error> {
    let wire: Vec<WireTool<'_>> = tools.iter().map(|spec| wire_tool(flavor, spec)).collect();
    serde_json::value::to_raw_value(&wire)
}

/// [`build_body`], with `stream_options.include_usage` asked for only when `ask_usage` holds
/// (and the flavour accepts it): a server that refused it once is not asked again. With
/// `tools`, the request's tool list as [`serialised_tools`] made it.
pub(crate) fn build_body_asking_usage(
    flavor: Flavor,
    model: &str,
    request: &ChatRequest,
    stream: bool,
    ask_usage: bool,
    serialised: Option<&RawValue>,
) -> Result<Vec<u8>, serde_json::Error> {
    let extra = &request.extra;
    // A field the caller set in `extra` wins over ours (no duplicate keys).
    let ours = |key: &str| !extra.contains_key(key);

    // Ollama has no `tool_choice`: "none" can only be said by sending no tools.
    let ollama_without_tools = flavor == Flavor::Ollama && request.tool_choice == ToolChoice::None;
    let with_tools = !request.tools.is_empty() && !ollama_without_tools;
    let tools = with_tools.then(|| match serialised {
        Some(raw) => WireTools::Serialised(raw),
        None => WireTools::Built(
            request
                .tools
                .iter()
                .map(|spec| wire_tool(flavor, spec))
                .collect(),
        ),
    });
    let tool_choice = (with_tools && flavor != Flavor::Ollama && ours("tool_choice"))
        .then(|| tool_choice(flavor, &request.tool_choice));

    let (max_tokens, max_completion_tokens) = match request.max_output_tokens {
        Some(n) if flavor == Flavor::OpenAi => {
            (None, Some(n).filter(|_| ours("max_completion_tokens")))
        }
        Some(n) => (Some(n).filter(|_| ours("max_tokens")), None),
        None => (None, None),
    };
    let include_usage =
        stream && ask_usage && flavor.accepts_stream_options() && ours("stream_options");

    let body = Body {
        model,
        messages: wire_messages(flavor, &request.messages),
        tools,
        tool_choice,
        temperature: request.temperature.filter(|_| ours("temperature")),
        max_tokens,
        max_completion_tokens,
        stop: (!request.stop.is_empty() && ours("stop")).then_some(request.stop.as_slice()),
        response_format: response_format(flavor, &request.response_format)
            .filter(|_| ours("response_format")),
        stream,
        stream_options: include_usage.then(|| json!({"include_usage": true})),
        extra,
    };
    serde_json::to_vec(&body)
}

fn tool_choice(flavor: Flavor, choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required if flavor == Flavor::Mistral => json!("any"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

/// `response_format` per flavor: OpenAI (and OpenRouter, which forwards it) get the strict
/// form of a strict schema; servers that take a schema but not OpenAI's strict subset get
/// the schema as it is with `strict: false`; DeepSeek, which knows only JSON mode, gets
/// `json_object` (it has no schema-constrained output, so typed runs on it use tool mode).
fn response_format(flavor: Flavor, format: &ResponseFormat) -> Option<Value> {
    match format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(json!({"type": "json_object"})),
        ResponseFormat::JsonSchema { .. } if flavor == Flavor::DeepSeek => {
            Some(json!({"type": "json_object"}))
        }
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            let strict = *strict && matches!(flavor, Flavor::OpenAi | Flavor::OpenRouter);
            let schema = if strict {
                strict_schema(schema.clone())
            } else {
                schema.clone()
            };
            Some(json!({
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": strict}
            }))
        }
    }
}

fn wire_tool(flavor: Flavor, spec: &ToolSpec) -> WireTool<'_> {
    let strict = spec.strict && flavor == Flavor::OpenAi;
    WireTool {
        r#type: "function",
        function: WireFunction {
            name: &spec.name,
            description: &spec.description,
            parameters: if strict {
                Cow::Owned(strict_schema(spec.parameters.clone()))
            } else {
                Cow::Borrowed(&spec.parameters)
            },
            strict,
        },
    }
}

fn wire_messages(flavor: Flavor, messages: &[Message]) -> Vec<WireMessage<'_>> {
    let mistral = flavor == Flavor::Mistral;
    let mut out = Vec::with_capacity(messages.len() + 1);
    for message in messages {
        match message {
            Message::System { content } => out.push(WireMessage::System { content }),
            Message::User { content } => {
                if mistral && matches!(out.last(), Some(WireMessage::Tool { .. })) {
                    out.push(WireMessage::Assistant {
                        content: Some(MISTRAL_BRIDGE),
                        tool_calls: Vec::new(),
                        reasoning_content: None,
                    });
                }
                out.push(WireMessage::User {
                    content: user_content(content),
                });
            }
            Message::Assistant(a) => {
                let tool_calls: Vec<WireToolCall<'_>> = a
                    .tool_calls
                    .iter()
                    .map(|call| WireToolCall {
                        id: call_id(flavor, &call.id),
                        r#type: "function",
                        function: WireFunctionCall {
                            name: &call.name,
                            arguments: if call.arguments.trim().is_empty() {
                                "{}"
                            } else {
                                &call.arguments
                            },
                        },
                    })
                    .collect();
                let content = if !a.content.is_empty() {
                    Some(a.content.as_str())
                } else if tool_calls.is_empty() || mistral {
                    // `null` without tool calls is a 400 everywhere; Mistral wants "".
                    Some("")
                } else {
                    None
                };
                // DeepSeek needs its reasoning back on tool-calling turns, and only there;
                // nobody else may see it.
                let reasoning_content = (flavor == Flavor::DeepSeek && !tool_calls.is_empty())
                    .then_some(a.reasoning.as_ref())
                    .flatten()
                    .filter(|r| r.provider == "deepseek")
                    .and_then(|r| r.text.as_deref());
                out.push(WireMessage::Assistant {
                    content,
                    tool_calls,
                    reasoning_content,
                });
            }
            Message::Tool(result) => out.push(WireMessage::Tool {
                tool_call_id: call_id(flavor, &result.call_id),
                name: mistral.then_some(result.name.as_str()),
                content: &result.content,
            }),
        }
    }
    out
}

fn user_content(parts: &[ContentPart]) -> UserContent<'_> {
    if let [ContentPart::Text { text }] = parts {
        return UserContent::Text(text);
    }
    UserContent::Parts(
        parts
            .iter()
            .map(|part| match part {
                ContentPart::Text { text } => json!({"type": "text", "text": text}),
                ContentPart::Image { url, .. } => {
                    json!({"type": "image_url", "image_url": {"url": url}})
                }
                ContentPart::Document {
                    media_type,
                    data,
                    name,
                } => json!({"type": "file", "file": {
                    "filename": name.as_deref().unwrap_or("document.pdf"),
                    "file_data": format!("data:{media_type};base64,{data}"),
                }}),
            })
            .collect(),
    )
}

fn call_id(flavor: Flavor, id: &str) -> Cow<'_, str> {
    if flavor == Flavor::Mistral {
        mistral_call_id(id)
    } else {
        Cow::Borrowed(id)
    }
}

/// Mistral accepts only ids of exactly nine ASCII letters or digits. Others (`call_…`,
/// `toolu_…`, ours) are mapped deterministically (FNV-1a, base 62), so a call and its result
/// get the same id in every request.
pub(crate) fn mistral_call_id(id: &str) -> Cow<'_, str> {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Cow::Borrowed(id);
    }
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut out = String::with_capacity(9);
    for _ in 0..9 {
        out.push(char::from(ALPHABET[(hash % 62) as usize]));
        hash /= 62;
    }
    Cow::Owned(out)
}

/// OpenAI strict mode's schema subset: every object closed (`additionalProperties: false`)
/// with every property required; properties that were optional become nullable instead.
pub fn strict_schema(mut schema: Value) -> Value {
    make_strict(&mut schema);
    schema
}

fn make_strict(node: &mut Value) {
    let Value::Object(map) = node else {
        if let Value::Array(items) = node {
            items.iter_mut().for_each(make_strict);
        }
        return;
    };
    let is_object =
        map.get("type").and_then(Value::as_str) == Some("object") || map.contains_key("properties");
    if is_object {
        let required: Vec<String> = map
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            for (name, prop) in props.iter_mut() {
                if !required.contains(name) {
                    make_nullable(prop);
                }
            }
            let all: Vec<Value> = props.keys().map(|k| Value::String(k.clone())).collect();
            map.insert("required".into(), Value::Array(all));
        } else {
            map.insert("properties".into(), Value::Object(Map::new()));
            map.insert("required".into(), Value::Array(Vec::new()));
        }
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (key, child) in map.iter_mut() {
        if matches!(
            key.as_str(),
            "properties" | "$defs" | "definitions" | "patternProperties"
        ) {
            if let Value::Object(children) = child {
                children.values_mut().for_each(make_strict);
            }
        } else if matches!(
            key.as_str(),
            "items" | "anyOf" | "oneOf" | "allOf" | "prefixItems"
        ) {
            make_strict(child);
        }
    }
}

fn make_nullable(prop: &mut Value) {
    let Value::Object(map) = prop else { return };
    match map.get_mut("type") {
        Some(Value::String(t)) if t != "null" => {
            let t = std::mem::take(t);
            map.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(types)) => {
            if !types.iter().any(|t| t == "null") {
                types.push(json!("null"));
            }
        }
        Some(_) => {}
        None => {
            let original = Value::Object(std::mem::take(map));
            map.insert("anyOf".into(), json!([original, {"type": "null"}]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistral_ids_are_nine_alphanumerics_and_stable() {
        let a = mistral_call_id("call_Wq3xK8vN2mPz7LbR5tYc1DhE");
        assert_eq!(a.len(), 9);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(a, mistral_call_id("call_Wq3xK8vN2mPz7LbR5tYc1DhE"));
        assert_ne!(a, mistral_call_id("call_Wq3xK8vN2mPz7LbR5tYc1DhF"));
        assert!(matches!(
            mistral_call_id("D681PevKs"),
            Cow::Borrowed("D681PevKs")
        ));
    }

    #[test]
    fn strict_schemas_close_objects_and_make_optional_fields_nullable() {
        let s = strict_schema(json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": ["integer", "null"]},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "home": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
                "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                "any": {"anyOf": [{"type": "string"}, {"type": "integer"}]}
            },
            "required": ["city", "home"]
        }));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["required"].as_array().unwrap().len(), 6);
        assert_eq!(s["properties"]["city"]["type"], "string");
        assert_eq!(s["properties"]["days"]["type"], json!(["integer", "null"]));
        assert_eq!(s["properties"]["unit"]["type"], json!(["string", "null"]));
        assert_eq!(s["properties"]["home"]["additionalProperties"], false);
        assert_eq!(
            s["properties"]["tags"]["items"]["additionalProperties"],
            false
        );
        assert_eq!(s["properties"]["tags"]["items"]["required"], json!(["k"]));
        assert_eq!(
            s["properties"]["tags"]["items"]["properties"]["k"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(s["properties"]["any"]["anyOf"][1], json!({"type": "null"}));
    }
}
