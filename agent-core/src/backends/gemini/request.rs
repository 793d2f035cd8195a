//! Our `ChatRequest` → a `generateContent` body (pure: no I/O): `systemInstruction`, the
//! `model` role, tool schemas in Gemini's subset, function results as `functionResponse`
//! parts, model turns with thought signatures replayed exactly as received.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::SYNTHETIC_ID_PREFIX;
use super::schema::gemini_schema;
use crate::backends::protocol::serialise_error;
use crate::error::ModelError;
use crate::message::{AssistantMessage, ContentPart, Message};
use crate::model::{ChatRequest, ResponseFormat, ToolChoice};

/// The body. Every field yields to the same key in the request's `extra`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    contents: Option<Vec<Content<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<SystemInstruction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<[Tools<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_config: Option<GenerationConfig<'a>>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
struct SystemInstruction {
    parts: [TextPart; 1],
}

#[derive(Serialize)]
struct TextPart {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Part<'a> {
    InlineData {
        #[serde(rename = "mimeType")]
        mime_type: &'a str,
        data: &'a str,
    },
    FileData {
        #[serde(rename = "fileUri")]
        file_uri: &'a str,
        #[serde(rename = "mimeType")]
        mime_type: &'a str,
    },
    FunctionCall(FunctionCall<'a>),
    FunctionResponse(FunctionResponse<'a>),
    #[serde(untagged)]
    Text {
        text: &'a str,
    },
    /// A part of a model turn, sent back exactly as received (thought signature intact).
    #[serde(untagged)]
    Replayed(&'a Value),
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    name: &'a str,
    args: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

#[derive(Serialize)]
struct FunctionResponse<'a> {
    name: &'a str,
    response: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tools<'a> {
    function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Serialize)]
struct FunctionDeclaration<'a> {
    name: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'a str; 1]>,
}

#[derive(Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<Value>,
}

/// An id Gemini gave (ours, synthetic, are never sent back).
fn real_id(id: &str) -> Option<&str> {
    (!id.is_empty() && !id.starts_with(SYNTHETIC_ID_PREFIX)).then_some(id)
}

/// Builds the `generateContent` body (pure).
pub(crate) fn build_body(request: &ChatRequest) -> Result<Vec<u8>, ModelError> {
    let extra = &request.extra;
    let ours = |key: &str| !extra.contains_key(key);
    let mut system = Vec::new();
    let mut contents: Vec<Content<'_>> = Vec::new();
    for message in request.messages.iter() {
        match message {
            Message::System { content } => system.push(content.as_str()),
            Message::User { content } => push_parts(
                &mut contents,
                "user",
                content.iter().map(user_part).collect(),
            ),
            Message::Assistant(a) => push_parts(&mut contents, "model", model_parts(a)),
            Message::Tool(result) => {
                let response = if result.is_error {
                    json!({"error": result.content})
                } else {
                    // JSON output goes back as JSON; text as a string, under `output`.
                    let output = serde_json::from_str::<Value>(&result.content)
                        .ok()
                        .filter(|v| v.is_object() || v.is_array())
                        .unwrap_or_else(|| json!(result.content));
                    json!({"output": output})
                };
                let part = Part::FunctionResponse(FunctionResponse {
                    name: &result.name,
                    response,
                    id: real_id(&result.call_id),
                });
                push_parts(&mut contents, "user", vec![part]);
            }
        }
    }
    let with_tools = !request.tools.is_empty();
    let tools = with_tools.then(|| {
        let declarations = request
            .tools
            .iter()
            .map(|t| {
                let parameters = gemini_schema(&t.parameters);
                // A tool without parameters declares none (an empty OBJECT is refused).
                let has_properties = parameters
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty());
                FunctionDeclaration {
                    name: &t.name,
                    description: &t.description,
                    parameters: has_properties.then_some(parameters),
                }
            })
            .collect();
        [Tools {
            function_declarations: declarations,
        }]
    });
    let tool_config = with_tools.then(|| {
        let (mode, allowed) = match &request.tool_choice {
            ToolChoice::Auto => ("AUTO", None),
            ToolChoice::None => ("NONE", None),
            ToolChoice::Required => ("ANY", None),
            ToolChoice::Tool(name) => ("ANY", Some([name.as_str()])),
        };
        ToolConfig {
            function_calling_config: FunctionCallingConfig {
                mode,
                allowed_function_names: allowed,
            },
        }
    });
    let (response_mime_type, response_schema) = match &request.response_format {
        ResponseFormat::Text => (None, None),
        ResponseFormat::JsonObject => (Some("application/json"), None),
        ResponseFormat::JsonSchema { schema, .. } => {
            (Some("application/json"), Some(gemini_schema(schema)))
        }
    };
    let generation = GenerationConfig {
        temperature: request.temperature,
        max_output_tokens: request.max_output_tokens,
        stop_sequences: (!request.stop.is_empty()).then_some(request.stop.as_slice()),
        response_mime_type,
        response_schema,
    };
    let generation_set = generation.temperature.is_some()
        || generation.max_output_tokens.is_some()
        || generation.stop_sequences.is_some()
        || generation.response_mime_type.is_some();
    let body = Body {
        contents: Some(contents).filter(|_| ours("contents")),
        system_instruction: (!system.is_empty() && ours("systemInstruction")).then(|| {
            SystemInstruction {
                parts: [TextPart {
                    text: system.join("\n\n"),
                }],
            }
        }),
        tools: tools.filter(|_| ours("tools")),
        tool_config: tool_config.filter(|_| ours("toolConfig")),
        generation_config: (generation_set && ours("generationConfig")).then_some(generation),
        extra,
    };
    serde_json::to_vec(&body).map_err(|e| serialise_error(&e))
}

/// Appends parts to the last content when it has the same role, else starts a new one
/// (all function responses of a turn travel in one user content).
fn push_parts<'a>(contents: &mut Vec<Content<'a>>, role: &'static str, parts: Vec<Part<'a>>) {
    match contents.last_mut() {
        Some(last) if last.role == role => last.parts.extend(parts),
        _ => contents.push(Content { role, parts }),
    }
}

fn user_part(part: &ContentPart) -> Part<'_> {
    match part {
        ContentPart::Text { text } => Part::Text { text },
        ContentPart::Image { url, media_type } => match part.inline_data() {
            Some((mime_type, data)) => Part::InlineData { mime_type, data },
            None => Part::FileData {
                file_uri: url,
                mime_type: media_type.as_deref().unwrap_or("image/jpeg"),
            },
        },
        ContentPart::Document {
            media_type, data, ..
        } => Part::InlineData {
            mime_type: media_type,
            data,
        },
    }
}

/// The parts of a model turn: exactly as Gemini sent them when they carry thought
/// signatures (and still match the turn's calls), else rebuilt from the message.
fn model_parts(a: &AssistantMessage) -> Vec<Part<'_>> {
    if let Some(reasoning) = &a.reasoning
        && reasoning.provider == "gemini"
        && let Some(parts) = reasoning.data.get("parts").and_then(Value::as_array)
    {
        let calls = parts
            .iter()
            .filter(|p| p.get("functionCall").is_some())
            .count();
        if calls == a.tool_calls.len() {
            return parts.iter().map(Part::Replayed).collect();
        }
    }
    let mut parts = Vec::new();
    if !a.content.is_empty() {
        parts.push(Part::Text { text: &a.content });
    }
    for call in &a.tool_calls {
        let args = call
            .parse_arguments()
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        parts.push(Part::FunctionCall(FunctionCall {
            name: &call.name,
            args,
            id: real_id(&call.id),
        }));
    }
    if parts.is_empty() {
        parts.push(Part::Text { text: "" });
    }
    parts
}
