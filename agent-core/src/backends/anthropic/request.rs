//! Our `ChatRequest` → a Messages request body (pure: no I/O): the system prompt at the top
//! level, tool results first in the next user turn, arguments sent back as objects, thinking
//! blocks replayed exactly as received.

use serde_json::{Map, Value, json};

use crate::backends::openai::strict_schema;
use crate::message::{AssistantMessage, ContentPart, Message};
use crate::model::{ChatRequest, ResponseFormat, ToolChoice};

/// Builds the Messages request body (pure).
pub(crate) fn build_body(
    model: &str,
    request: &ChatRequest,
    stream: bool,
    default_max_tokens: u32,
    cache: bool,
) -> Value {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for message in request.messages.iter() {
        match message {
            Message::System { content } => system.push(content.as_str()),
            Message::User { content } => {
                push_user_blocks(&mut messages, content.iter().map(user_block).collect())
            }
            Message::Assistant(a) => {
                messages.push(json!({"role": "assistant", "content": assistant_blocks(a)}))
            }
            Message::Tool(result) => {
                let mut block = json!({"type": "tool_result", "tool_use_id": result.call_id, "content": result.content});
                if result.is_error {
                    block["is_error"] = json!(true);
                }
                push_user_blocks(&mut messages, vec![block]);
            }
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(request.max_output_tokens.unwrap_or(default_max_tokens)),
    );
    if cache {
        mark_last_block(&mut messages);
    }
    if !system.is_empty() {
        let text = system.join("\n\n");
        let system = if cache {
            // The instructions and the tools before them: one cached prefix.
            json!([{"type": "text", "text": text, "cache_control": ephemeral()}])
        } else {
            json!(text)
        };
        body.insert("system".into(), system);
    }
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let mut tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        if cache
            && system.is_empty()
            && let Some(last) = tools.last_mut()
        {
            // No instructions: the tools alone are the stable prefix.
            last["cache_control"] = ephemeral();
        }
        body.insert("tools".into(), Value::Array(tools));
        // With extended thinking on, Anthropic refuses a forced tool choice (`any` or a
        // named tool): the model is left to choose, and the run asks again if it must.
        let choice = match &request.tool_choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required | ToolChoice::Tool(_) if thinking_on(request) => {
                json!({"type": "auto"})
            }
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
        };
        body.insert("tool_choice".into(), choice);
    }
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    // Structured outputs: the answer text constrained to a schema, whose objects must all be
    // closed (the strict form). Free JSON has no native switch here.
    if let ResponseFormat::JsonSchema { schema, strict, .. } = &request.response_format {
        let schema = if *strict {
            strict_schema(schema.clone())
        } else {
            schema.clone()
        };
        body.insert(
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": schema}}),
        );
    }
    if !request.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(request.stop));
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    for (k, v) in &request.extra {
        body.insert(k.clone(), v.clone());
    }
    Value::Object(body)
}

/// A cache breakpoint: everything up to and including the marked block is cached (for five
/// minutes, refreshed by every hit).
fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

/// Marks the growing history: the last block of the last message that may carry a
/// breakpoint (not a thinking block, not an empty text). The next request, one turn longer,
/// finds this prefix in the cache.
fn mark_last_block(messages: &mut [Value]) {
    let Some(blocks) = messages
        .last_mut()
        .and_then(|m| m["content"].as_array_mut())
    else {
        return;
    };
    let may_carry = |b: &Value| match b["type"].as_str() {
        Some("thinking" | "redacted_thinking") => false,
        Some("text") => b["text"].as_str().is_some_and(|t| !t.is_empty()),
        _ => true,
    };
    if let Some(block) = blocks.iter_mut().rev().find(|b| may_carry(b)) {
        block["cache_control"] = ephemeral();
    }
}

/// Whether the request turns extended thinking on (`thinking.type` `enabled` or `adaptive`
/// in its provider fields).
fn thinking_on(request: &ChatRequest) -> bool {
    request
        .extra
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t != "disabled")
}

/// Appends blocks to a user turn: to the previous message when it is a user turn already
/// (so tool results and the text after them form one turn, results first), else as a new one.
fn push_user_blocks(messages: &mut Vec<Value>, blocks: Vec<Value>) {
    if let Some(last) = messages.last_mut()
        && last["role"] == "user"
        && let Some(content) = last["content"].as_array_mut()
    {
        content.extend(blocks);
        return;
    }
    messages.push(json!({"role": "user", "content": blocks}));
}

fn user_block(part: &ContentPart) -> Value {
    match part {
        ContentPart::Text { text } => json!({"type": "text", "text": text}),
        ContentPart::Image { url, .. } => match part.inline_data() {
            Some((media_type, data)) => {
                json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
            }
            None => json!({"type": "image", "source": {"type": "url", "url": url}}),
        },
        ContentPart::Document {
            media_type,
            data,
            name,
        } => {
            let mut block = json!({"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}});
            if let Some(name) = name {
                block["title"] = json!(name);
            }
            block
        }
    }
}

fn assistant_blocks(a: &AssistantMessage) -> Vec<Value> {
    let mut blocks = Vec::new();
    // Thinking blocks go back first, exactly as received (signatures intact).
    if let Some(reasoning) = &a.reasoning
        && reasoning.provider == "anthropic"
        && let Some(thinking) = reasoning.data.as_array()
    {
        blocks.extend(thinking.iter().cloned());
    }
    if !a.content.is_empty() {
        blocks.push(json!({"type": "text", "text": a.content}));
    }
    for call in &a.tool_calls {
        // `input` must be an object; arguments that were not one were answered with an
        // error already, and go back as `{}`.
        let input = call
            .parse_arguments()
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    if blocks.is_empty() {
        blocks.push(json!({"type": "text", "text": "(no answer)"}));
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ToolCall, ToolResult};

    #[test]
    fn tool_results_come_first_in_one_user_turn_with_the_text_after_them() {
        let a = ToolCall::raw("toolu_1", "weather", "{\"city\":\"Paris\"}");
        let b = ToolCall::raw("toolu_2", "time", "not json");
        let request = ChatRequest {
            messages: vec![
                Message::system("Be brief."),
                Message::user("Weather and time?"),
                Message::Assistant(AssistantMessage::with_tool_calls(
                    "Checking.",
                    vec![a.clone(), b.clone()],
                )),
                Message::Tool(ToolResult::ok(&a, "18C")),
                Message::Tool(ToolResult::error(&b, "Error: bad args")),
                Message::user("Thanks"),
            ]
            .into(),
            ..Default::default()
        };
        let body = build_body("claude", &request, false, 1000, false);
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["max_tokens"], 1000);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(
            messages[1]["content"][1],
            json!({"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}})
        );
        assert_eq!(
            messages[1]["content"][2]["input"],
            json!({}),
            "invalid arguments go back as an object"
        );
        let turn = messages[2]["content"].as_array().unwrap();
        assert_eq!(turn[0]["type"], "tool_result");
        assert_eq!(turn[1]["is_error"], true);
        assert_eq!(turn[2], json!({"type": "text", "text": "Thanks"}));
    }
}
