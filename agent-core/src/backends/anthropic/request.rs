//! Our `ChatRequest` → a Messages request body (pure: no I/O): the system prompt at the top
//! level, tool results first in the next user turn, arguments sent back as objects, thinking
//! blocks replayed exactly as received, cache breakpoints where caching pays.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::backends::openai::strict_schema;
use crate::backends::protocol::serialise_error;
use crate::error::ModelError;
use crate::message::{AssistantMessage, ContentPart, Message};
use crate::model::{ChatRequest, ResponseFormat, ToolChoice};

/// The body. Every field yields to the same key in the request's `extra`.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<System<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<Turn<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Choice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// `system`: a string, or one text block carrying a cache breakpoint.
#[derive(Serialize)]
#[serde(untagged)]
enum System<'a> {
    Text(String),
    Blocks([Block<'a>; 1]),
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

/// A content block, with its cache breakpoint if it carries one.
#[derive(Serialize)]
struct Block<'a> {
    #[serde(flatten)]
    kind: BlockKind<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheControl>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockKind<'a> {
    Text {
        text: Cow<'a, str>,
    },
    Image {
        source: Source<'a>,
    },
    Document {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<&'a str>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    /// A thinking block, sent back exactly as received (signature intact).
    #[serde(untagged)]
    Replayed(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

/// A cache breakpoint: everything up to and including the marked block is cached (for five
/// minutes, refreshed by every hit).
#[derive(Clone, Copy, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum CacheControl {
    Ephemeral,
}

#[derive(Serialize)]
struct Tool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheControl>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Choice<'a> {
    Auto,
    None,
    Any,
    Tool { name: &'a str },
}

impl<'a> Block<'a> {
    fn new(kind: BlockKind<'a>) -> Self {
        Block {
            kind,
            cache_control: None,
        }
    }

    fn text(text: impl Into<Cow<'a, str>>) -> Self {
        Self::new(BlockKind::Text { text: text.into() })
    }

    /// Whether a breakpoint may go here: not on a thinking block, not on an empty text.
    fn may_carry_breakpoint(&self) -> bool {
        match &self.kind {
            BlockKind::Replayed(_) => false,
            BlockKind::Text { text } => !text.is_empty(),
            _ => true,
        }
    }
}

/// Builds the Messages request body (pure).
pub(crate) fn build_body(
    model: &str,
    request: &ChatRequest,
    stream: bool,
    default_max_tokens: u32,
    cache: bool,
) -> Result<Vec<u8>, ModelError> {
    let extra = &request.extra;
    let ours = |key: &str| !extra.contains_key(key);
    let mut system = Vec::new();
    let mut messages: Vec<Turn<'_>> = Vec::new();
    for message in request.messages.iter() {
        match message {
            Message::System { content } => system.push(content.as_str()),
            Message::User { content } => {
                push_user_blocks(&mut messages, content.iter().map(user_block).collect())
            }
            Message::Assistant(a) => messages.push(Turn {
                role: "assistant",
                content: assistant_blocks(a),
            }),
            Message::Tool(result) => push_user_blocks(
                &mut messages,
                vec![Block::new(BlockKind::ToolResult {
                    tool_use_id: &result.call_id,
                    content: &result.content,
                    is_error: result.is_error,
                })],
            ),
        }
    }
    let breakpoint = cache.then_some(CacheControl::Ephemeral);
    if cache
        && let Some(block) = messages.last_mut().and_then(|turn| {
            turn.content
                .iter_mut()
                .rev()
                .find(|b| b.may_carry_breakpoint())
        })
    {
        // The growing history: the next request, one turn longer, finds this prefix cached.
        block.cache_control = breakpoint;
    }
    let system = (!system.is_empty()).then(|| {
        let text = system.join("\n\n");
        if cache {
            // The instructions and the tools before them: one cached prefix.
            let mut block = Block::text(text);
            block.cache_control = breakpoint;
            System::Blocks([block])
        } else {
            System::Text(text)
        }
    });
    let with_tools = !request.tools.is_empty();
    let tools = with_tools.then(|| {
        let last = request.tools.len() - 1;
        request
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| Tool {
                name: &t.name,
                description: &t.description,
                input_schema: &t.parameters,
                // No instructions: the tools alone are the stable prefix.
                cache_control: breakpoint.filter(|_| system.is_none() && i == last),
            })
            .collect()
    });
    // With extended thinking on, Anthropic refuses a forced tool choice (`any` or a named
    // tool): the model is left to choose, and the run asks again if it must.
    let tool_choice = with_tools.then(|| match &request.tool_choice {
        ToolChoice::Auto => Choice::Auto,
        ToolChoice::None => Choice::None,
        ToolChoice::Required | ToolChoice::Tool(_) if thinking_on(request) => Choice::Auto,
        ToolChoice::Required => Choice::Any,
        ToolChoice::Tool(name) => Choice::Tool { name },
    });
    // Structured outputs: the answer text constrained to a schema, whose objects must all be
    // closed (the strict form). Free JSON has no native switch here.
    let output_config = match &request.response_format {
        ResponseFormat::JsonSchema { schema, strict, .. } => {
            let schema = if *strict {
                strict_schema(schema.clone())
            } else {
                schema.clone()
            };
            Some(json!({"format": {"type": "json_schema", "schema": schema}}))
        }
        _ => None,
    };
    let body = Body {
        model: Some(model).filter(|_| ours("model")),
        max_tokens: Some(request.max_output_tokens.unwrap_or(default_max_tokens))
            .filter(|_| ours("max_tokens")),
        system: system.filter(|_| ours("system")),
        messages: Some(messages).filter(|_| ours("messages")),
        tools: tools.filter(|_| ours("tools")),
        tool_choice: tool_choice.filter(|_| ours("tool_choice")),
        temperature: request.temperature.filter(|_| ours("temperature")),
        output_config: output_config.filter(|_| ours("output_config")),
        stop_sequences: (!request.stop.is_empty() && ours("stop_sequences"))
            .then_some(request.stop.as_slice()),
        stream: (stream && ours("stream")).then_some(true),
        extra,
    };
    serde_json::to_vec(&body).map_err(|e| serialise_error(&e))
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
fn push_user_blocks<'a>(messages: &mut Vec<Turn<'a>>, blocks: Vec<Block<'a>>) {
    match messages.last_mut() {
        Some(last) if last.role == "user" => last.content.extend(blocks),
        _ => messages.push(Turn {
            role: "user",
            content: blocks,
        }),
    }
}

fn user_block(part: &ContentPart) -> Block<'_> {
    Block::new(match part {
        ContentPart::Text { text } => BlockKind::Text {
            text: Cow::Borrowed(text),
        },
        ContentPart::Image { url, .. } => BlockKind::Image {
            source: match part.inline_data() {
                Some((media_type, data)) => Source::Base64 { media_type, data },
                None => Source::Url { url },
            },
        },
        ContentPart::Document {
            media_type,
            data,
            name,
        } => BlockKind::Document {
            source: Source::Base64 { media_type, data },
            title: name.as_deref(),
        },
    })
}

fn assistant_blocks(a: &AssistantMessage) -> Vec<Block<'_>> {
    let mut blocks = Vec::new();
    // Thinking blocks go back first, exactly as received (signatures intact).
    if let Some(reasoning) = &a.reasoning
        && reasoning.provider == "anthropic"
        && let Some(thinking) = reasoning.data.as_array()
    {
        blocks.extend(thinking.iter().map(|b| Block::new(BlockKind::Replayed(b))));
    }
    if !a.content.is_empty() {
        blocks.push(Block::text(a.content.as_str()));
    }
    for call in &a.tool_calls {
        // `input` must be an object; arguments that were not one were answered with an
        // error already, and go back as `{}`.
        let input = call
            .parse_arguments()
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        blocks.push(Block::new(BlockKind::ToolUse {
            id: &call.id,
            name: &call.name,
            input,
        }));
    }
    if blocks.is_empty() {
        blocks.push(Block::text("(no answer)"));
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
        let body: Value =
            serde_json::from_slice(&build_body("claude", &request, false, 1000, false).unwrap())
                .unwrap();
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
