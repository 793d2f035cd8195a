//! Our `ChatRequest` → a Responses API request body (pure: no I/O). System messages become
//! `instructions`; the history becomes input items (messages, `function_call` items
//! answered by `function_call_output` items keyed by `call_id`); a turn that came with
//! reasoning items is replayed exactly as the API sent it, encrypted reasoning included, so
//! a stateless conversation (`store: false`, no `previous_response_id`) keeps its reasoning.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::PROVIDER;
use crate::backends::openai::strict_schema;
use crate::error::{ModelError, ModelErrorKind};
use crate::message::{AssistantMessage, ContentPart, Message};
use crate::model::{ChatRequest, ResponseFormat, ToolChoice, ToolSpec};

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<String>,
    input: Vec<InputItem<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<FunctionTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Value>,
    /// `false`: nothing is kept on OpenAI's side, every request carries the conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<bool>,
    /// Asks for reasoning as encrypted content, to be sent back on the next turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    include: Option<[&'static str; 1]>,
    stream: bool,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum InputItem<'a> {
    Typed(TypedItem<'a>),
    /// An output item of an earlier response, sent back exactly as received.
    Replayed(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum TypedItem<'a> {
    Message {
        role: &'static str,
        content: MessageContent<'a>,
    },
    FunctionCall {
        call_id: &'a str,
        name: &'a str,
        arguments: &'a str,
    },
    FunctionCallOutput {
        call_id: &'a str,
        output: &'a str,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum MessageContent<'a> {
    Text(&'a str),
    Parts(Vec<InputPart<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::enum_variant_names)] // the API's own names: input_text, input_image, input_file
enum InputPart<'a> {
    InputText {
        text: &'a str,
    },
    InputImage {
        image_url: &'a str,
        detail: &'static str,
    },
    InputFile {
        filename: &'a str,
        /// A `data:` URL.
        file_data: String,
    },
}

#[derive(Serialize)]
struct FunctionTool<'a> {
    r#type: &'static str,
    name: &'a str,
    description: &'a str,
    parameters: Cow<'a, Value>,
    /// Always sent: the API's default is `true`, which only a strict schema satisfies.
    strict: bool,
}

/// Whether a model reasons (and so can return encrypted reasoning): the o-series and
/// GPT-5 and later. Others refuse `include: ["reasoning.encrypted_content"]`.
pub(crate) fn is_reasoning_model(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    let o_series = name
        .strip_prefix('o')
        .is_some_and(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_digit()));
    let gpt = name
        .strip_prefix("gpt-")
        .and_then(|rest| rest.split(['-', '.']).next())
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 5);
    o_series || gpt || name.contains("codex")
}

/// Builds the body (pure).
pub(crate) fn build_body(
    model: &str,
    request: &ChatRequest,
    stream: bool,
) -> Result<Vec<u8>, ModelError> {
    if !request.stop.is_empty() {
        return Err(ModelError::new(
            ModelErrorKind::BadRequest,
            "the Responses API has no stop sequences; leave `stop` empty or use `openai:`",
        )
        .with_provider(PROVIDER, model));
    }
    let extra = &request.extra;
    let ours = |key: &str| !extra.contains_key(key);
    let mut instructions: Vec<&str> = Vec::new();
    let mut input = Vec::with_capacity(request.messages.len());
    for message in request.messages.iter() {
        match message {
            Message::System { content } => instructions.push(content),
            Message::User { content } => input.push(InputItem::Typed(TypedItem::Message {
                role: "user",
                content: user_content(content),
            })),
            Message::Assistant(a) => assistant_items(a, &mut input),
            Message::Tool(result) => input.push(InputItem::Typed(TypedItem::FunctionCallOutput {
                call_id: &result.call_id,
                output: &result.content,
            })),
        }
    }
    let with_tools = !request.tools.is_empty();
    let body = Body {
        model,
        instructions: (!instructions.is_empty() && ours("instructions"))
            .then(|| instructions.join("\n\n")),
        input,
        tools: request.tools.iter().map(function_tool).collect(),
        tool_choice: (with_tools && ours("tool_choice")).then(|| tool_choice(&request.tool_choice)),
        temperature: request.temperature.filter(|_| ours("temperature")),
        max_output_tokens: request
            .max_output_tokens
            .filter(|_| ours("max_output_tokens")),
        text: text_format(&request.response_format).filter(|_| ours("text")),
        store: ours("store").then_some(false),
        include: (is_reasoning_model(model) && ours("include"))
            .then_some(["reasoning.encrypted_content"]),
        stream,
        extra,
    };
    serde_json::to_vec(&body).map_err(|e| crate::backends::protocol::serialise_error(&e))
}

fn user_content(parts: &[ContentPart]) -> MessageContent<'_> {
    if let [ContentPart::Text { text }] = parts {
        return MessageContent::Text(text);
    }
    MessageContent::Parts(
        parts
            .iter()
            .map(|part| match part {
                ContentPart::Text { text } => InputPart::InputText { text },
                ContentPart::Image { url, .. } => InputPart::InputImage {
                    image_url: url,
                    detail: "auto",
                },
                ContentPart::Document {
                    media_type,
                    data,
                    name,
                } => InputPart::InputFile {
                    filename: name.as_deref().unwrap_or("document.pdf"),
                    file_data: format!("data:{media_type};base64,{data}"),
                },
            })
            .collect(),
    )
}

/// A model turn: the output items exactly as received when the turn carried reasoning (and
/// its calls are still the ones received), else rebuilt from the message.
fn assistant_items<'a>(a: &'a AssistantMessage, input: &mut Vec<InputItem<'a>>) {
    if let Some(reasoning) = &a.reasoning
        && reasoning.provider == PROVIDER
        && let Some(items) = reasoning.data.get("output").and_then(Value::as_array)
    {
        let calls: Vec<&str> = items
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("function_call"))
            .filter_map(|i| i.get("call_id").and_then(Value::as_str))
            .collect();
        if calls
            .iter()
            .copied()
            .eq(a.tool_calls.iter().map(|c| c.id.as_str()))
        {
            input.extend(items.iter().map(InputItem::Replayed));
            return;
        }
    }
    if !a.content.is_empty() {
        input.push(InputItem::Typed(TypedItem::Message {
            role: "assistant",
            content: MessageContent::Text(&a.content),
        }));
    }
    for call in &a.tool_calls {
        input.push(InputItem::Typed(TypedItem::FunctionCall {
            call_id: &call.id,
            name: &call.name,
            arguments: if call.arguments.trim().is_empty() {
                "{}"
            } else {
                &call.arguments
            },
        }));
    }
}

fn function_tool(spec: &ToolSpec) -> FunctionTool<'_> {
    FunctionTool {
        r#type: "function",
        name: &spec.name,
        description: &spec.description,
        parameters: if spec.strict {
            Cow::Owned(strict_schema(spec.parameters.clone()))
        } else {
            Cow::Borrowed(&spec.parameters)
        },
        strict: spec.strict,
    }
}

fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
    }
}

fn text_format(format: &ResponseFormat) -> Option<Value> {
    match format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(json!({"format": {"type": "json_object"}})),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            let schema = if *strict {
                strict_schema(schema.clone())
            } else {
                schema.clone()
            };
            Some(
                json!({"format": {"type": "json_schema", "name": name, "schema": schema, "strict": strict}}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Reasoning, ToolCall, ToolResult};

    fn body(model: &str, request: &ChatRequest) -> Value {
        serde_json::from_slice(&build_body(model, request, false).unwrap()).unwrap()
    }

    #[test]
    fn history_becomes_items_keyed_by_call_id_and_stateless() {
        let call = ToolCall::raw("call_1", "now", "");
        let request = ChatRequest {
            messages: vec![
                Message::system("Be brief."),
                Message::user("Time?"),
                Message::Assistant(AssistantMessage::with_tool_calls("", vec![call.clone()])),
                Message::Tool(ToolResult::ok(&call, "12:00")),
            ]
            .into(),
            tools: vec![ToolSpec {
                name: "now".into(),
                description: "The time.".into(),
                parameters: json!({"type": "object", "properties": {}}),
                strict: false,
                examples: Vec::new(),
            }]
            .into(),
            max_output_tokens: Some(50),
            ..Default::default()
        };
        let b = body("gpt-4.1", &request);
        assert_eq!(b["instructions"], "Be brief.");
        assert_eq!(
            b["input"],
            json!([
                {"type": "message", "role": "user", "content": "Time?"},
                {"type": "function_call", "call_id": "call_1", "name": "now", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "12:00"}
            ])
        );
        assert_eq!(
            b["tools"][0],
            json!({"type": "function", "name": "now", "description": "The time.",
                   "parameters": {"type": "object", "properties": {}}, "strict": false})
        );
        assert_eq!(b["store"], false);
        assert!(b.get("previous_response_id").is_none());
        assert!(b.get("include").is_none(), "gpt-4.1 does not reason");
        assert_eq!(b["max_output_tokens"], 50);
        let b = body("o4-mini", &request);
        assert_eq!(b["include"], json!(["reasoning.encrypted_content"]));
    }

    #[test]
    fn a_turn_with_reasoning_goes_back_as_received_unless_its_calls_changed() {
        let output = json!([
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA=="},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{}", "status": "completed"}
        ]);
        let call = ToolCall::raw("call_1", "f", "{}");
        let mut turn = AssistantMessage::with_tool_calls("", vec![call.clone()]);
        turn.reasoning = Some(Reasoning {
            provider: PROVIDER.into(),
            text: None,
            data: json!({"output": output}),
        });
        let request = ChatRequest {
            messages: vec![
                Message::Assistant(turn.clone()),
                Message::Tool(ToolResult::ok(&call, "ok")),
            ]
            .into(),
            ..Default::default()
        };
        let b = body("o4-mini", &request);
        assert_eq!(b["input"][0], output[0]);
        assert_eq!(b["input"][1], output[1]);
        assert_eq!(b["input"][2]["type"], "function_call_output");

        turn.tool_calls[0].id = "call_other".into();
        let other = ToolCall::raw("call_other", "f", "{}");
        let request = ChatRequest {
            messages: vec![
                Message::Assistant(turn),
                Message::Tool(ToolResult::ok(&other, "ok")),
            ]
            .into(),
            ..Default::default()
        };
        let b = body("o4-mini", &request);
        assert_eq!(b["input"][0]["type"], "function_call");
        assert_eq!(b["input"][0]["call_id"], "call_other");
    }

    #[test]
    fn stop_sequences_are_refused_and_extra_fields_win() {
        let request = ChatRequest {
            messages: vec![Message::user("hi")].into(),
            stop: vec!["END".into()],
            ..Default::default()
        };
        let e = build_body("gpt-5", &request, false).unwrap_err();
        assert_eq!(e.kind, ModelErrorKind::BadRequest);
        let mut extra = Map::new();
        extra.insert("store".into(), json!(true));
        let request = ChatRequest {
            messages: vec![Message::user("hi")].into(),
            extra,
            ..Default::default()
        };
        let text = String::from_utf8(build_body("gpt-5", &request, true).unwrap()).unwrap();
        assert_eq!(text.matches("\"store\"").count(), 1, "{text}");
        assert!(text.contains("\"store\":true"), "{text}");
    }

    #[test]
    fn reasoning_models_are_recognised() {
        for m in [
            "o3",
            "o4-mini",
            "gpt-5",
            "gpt-5.1-codex",
            "openai/gpt-5-mini",
        ] {
            assert!(is_reasoning_model(m), "{m}");
        }
        for m in ["gpt-4.1", "gpt-4o-mini", "omni-moderation"] {
            assert!(!is_reasoning_model(m), "{m}");
        }
    }
}
