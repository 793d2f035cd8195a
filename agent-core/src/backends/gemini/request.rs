//! Our `ChatRequest` → a `generateContent` body (pure: no I/O): `systemInstruction`, the
//! `model` role, tool schemas in Gemini's subset, function results as `functionResponse`
//! parts, model turns with thought signatures replayed exactly as received.

use serde_json::{Map, Value, json};

use super::SYNTHETIC_ID_PREFIX;
use super::schema::gemini_schema;
use crate::message::{AssistantMessage, ContentPart, Message};
use crate::model::{ChatRequest, ResponseFormat, ToolChoice};

/// Builds the `generateContent` body (pure).
pub(crate) fn build_body(request: &ChatRequest) -> Value {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
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
                let mut call = json!({"name": result.name, "response": response});
                if !result.call_id.starts_with(SYNTHETIC_ID_PREFIX) && !result.call_id.is_empty() {
                    call["id"] = json!(result.call_id);
                }
                push_parts(
                    &mut contents,
                    "user",
                    vec![json!({"functionResponse": call})],
                );
            }
        }
    }
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system.join("\n\n")}]}),
        );
    }
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                let mut d = json!({"name": t.name, "description": t.description});
                let parameters = gemini_schema(&t.parameters);
                // A tool without parameters declares none (an empty OBJECT is refused).
                if parameters
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty())
                {
                    d["parameters"] = parameters;
                }
                d
            })
            .collect();
        body.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations}]),
        );
        let config = match &request.tool_choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body.insert(
            "toolConfig".into(),
            json!({"functionCallingConfig": config}),
        );
    }
    let mut generation = Map::new();
    if let Some(t) = request.temperature {
        generation.insert("temperature".into(), json!(t));
    }
    if let Some(n) = request.max_output_tokens {
        generation.insert("maxOutputTokens".into(), json!(n));
    }
    if !request.stop.is_empty() {
        generation.insert("stopSequences".into(), json!(request.stop));
    }
    match &request.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            generation.insert("responseMimeType".into(), json!("application/json"));
        }
        ResponseFormat::JsonSchema { schema, .. } => {
            generation.insert("responseMimeType".into(), json!("application/json"));
            generation.insert("responseSchema".into(), gemini_schema(schema));
        }
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    for (k, v) in &request.extra {
        body.insert(k.clone(), v.clone());
    }
    Value::Object(body)
}

/// Appends parts to the last content when it has the same role, else starts a new one
/// (all function responses of a turn travel in one user content).
fn push_parts(contents: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    if let Some(last) = contents.last_mut()
        && last["role"] == role
        && let Some(existing) = last["parts"].as_array_mut()
    {
        existing.extend(parts);
        return;
    }
    contents.push(json!({"role": role, "parts": parts}));
}

fn user_part(part: &ContentPart) -> Value {
    let inline = |media_type: &str, data: &str| json!({"inlineData": {"mimeType": media_type, "data": data}});
    match part {
        ContentPart::Text { text } => json!({"text": text}),
        ContentPart::Image { url, media_type } => match part.inline_data() {
            Some((media_type, data)) => inline(media_type, data),
            None => {
                json!({"fileData": {"fileUri": url, "mimeType": media_type.as_deref().unwrap_or("image/jpeg")}})
            }
        },
        ContentPart::Document {
            media_type, data, ..
        } => inline(media_type, data),
    }
}

/// The parts of a model turn: exactly as Gemini sent them when they carry thought
/// signatures (and still match the turn's calls), else rebuilt from the message.
fn model_parts(a: &AssistantMessage) -> Vec<Value> {
    if let Some(reasoning) = &a.reasoning
        && reasoning.provider == "gemini"
        && let Some(parts) = reasoning.data.get("parts").and_then(Value::as_array)
    {
        let calls = parts
            .iter()
            .filter(|p| p.get("functionCall").is_some())
            .count();
        if calls == a.tool_calls.len() {
            return parts.clone();
        }
    }
    let mut parts = Vec::new();
    if !a.content.is_empty() {
        parts.push(json!({"text": a.content}));
    }
    for call in &a.tool_calls {
        let args = call
            .parse_arguments()
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let mut function_call = json!({"name": call.name, "args": args});
        if !call.id.starts_with(SYNTHETIC_ID_PREFIX) && !call.id.is_empty() {
            function_call["id"] = json!(call.id);
        }
        parts.push(json!({"functionCall": function_call}));
    }
    if parts.is_empty() {
        parts.push(json!({"text": ""}));
    }
    parts
}
