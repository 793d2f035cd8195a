//! Messages responses and stream events → our message model (pure: no I/O). Usage is
//! normalised (input = `input_tokens` + cache reads + cache writes); stream usage counts are
//! running totals, not increments. Lenient: unknown block, delta and event types are
//! skipped; thinking blocks are kept exactly as received, to be sent back.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::backends::protocol::StreamAssembler;
use crate::error::{ModelError, ModelErrorKind};
use crate::message::{AssistantMessage, Reasoning, ToolCall, Usage};
use crate::model::{ChatResponse, FinishReason, StreamEvent};

/// A message: a whole answer, or the start of a streamed one.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireMessage {
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Kept raw: thinking blocks go back exactly as received.
    content: Vec<Value>,
    stop_reason: Option<String>,
    usage: WireUsage,
    error: WireError,
}

/// Usage counts; in a stream each event carries running totals of the fields it names.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    /// The later counts replace the earlier ones, field by field.
    fn merge(&mut self, later: WireUsage) {
        let keep = |new: Option<u64>, old: Option<u64>| new.or(old);
        self.input_tokens = keep(later.input_tokens, self.input_tokens);
        self.output_tokens = keep(later.output_tokens, self.output_tokens);
        self.cache_read_input_tokens =
            keep(later.cache_read_input_tokens, self.cache_read_input_tokens);
        self.cache_creation_input_tokens = keep(
            later.cache_creation_input_tokens,
            self.cache_creation_input_tokens,
        );
    }

    fn normalise(self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0) + read + write,
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_input_tokens: read,
            cache_write_input_tokens: write,
            ..Usage::default()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

/// The blocks we read; the rest are skipped.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    RedactedThinking,
    #[serde(other)]
    Other,
}

impl ContentBlock {
    fn read(raw: &Value) -> Self {
        // A block that is not what its type says is skipped like an unknown one.
        ContentBlock::deserialize(raw).unwrap_or(ContentBlock::Other)
    }
}

/// The stream events we act on (`content_block_stop`, `ping` and unknown ones are
/// skipped: a block is read when the answer is assembled).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        #[serde(default)]
        message: WireMessage,
    },
    ContentBlockStart {
        #[serde(default)]
        index: u64,
        content_block: Value,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: u64,
        delta: Delta,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: WireUsage,
    },
    MessageStop,
    Error {
        #[serde(default)]
        error: WireError,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::enum_variant_names)] // the API's own names: text_delta, input_json_delta, ...
enum Delta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

fn finish_reason(stop_reason: Option<&str>, has_calls: bool) -> FinishReason {
    if has_calls {
        return FinishReason::ToolCalls;
    }
    match stop_reason {
        None | Some("end_turn" | "stop_sequence" | "pause_turn" | "tool_use") => FinishReason::Stop,
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("refusal") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_owned()),
    }
}

/// Collects blocks into our message model.
#[derive(Debug, Default)]
struct Blocks {
    text: String,
    thinking_text: String,
    thinking: Vec<Value>,
    calls: Vec<ToolCall>,
}

impl Blocks {
    /// One whole block, as received.
    fn add(&mut self, raw: Value) {
        match ContentBlock::read(&raw) {
            ContentBlock::Text { text } => self.text.push_str(&text),
            ContentBlock::ToolUse { id, name, input } => self.calls.push(ToolCall {
                id,
                name,
                arguments: match input {
                    Value::Null => "{}".to_owned(),
                    input => input.to_string(),
                },
            }),
            ContentBlock::Thinking { thinking } => {
                self.thinking_text.push_str(&thinking);
                self.thinking.push(raw);
            }
            ContentBlock::RedactedThinking => self.thinking.push(raw),
            ContentBlock::Other => {}
        }
    }

    fn into_response(self, stop_reason: Option<&str>, usage: WireUsage) -> ChatResponse {
        let has_calls = !self.calls.is_empty();
        let reasoning = (!self.thinking.is_empty()).then(|| Reasoning {
            provider: "anthropic".into(),
            text: (!self.thinking_text.is_empty()).then_some(self.thinking_text),
            data: Value::Array(self.thinking),
        });
        ChatResponse {
            message: AssistantMessage {
                content: self.text,
                tool_calls: self.calls,
                reasoning,
            },
            finish_reason: finish_reason(stop_reason, has_calls),
            usage: usage.normalise(),
            model: None,
        }
    }
}

/// Parses a whole Messages response (pure).
pub(crate) fn parse_response(body: &[u8], model: &str) -> Result<ChatResponse, ModelError> {
    let message: WireMessage = serde_json::from_slice(body).map_err(|e| {
        ModelError::new(
            ModelErrorKind::InvalidResponse,
            format!("the response is not a message ({e})"),
        )
        .with_provider("anthropic", model)
    })?;
    if message.kind.as_deref() == Some("error") {
        return Err(error_of(&message.error, model));
    }
    let mut blocks = Blocks::default();
    for block in message.content {
        blocks.add(block);
    }
    Ok(blocks.into_response(message.stop_reason.as_deref(), message.usage))
}

/// An `error` object (in a stream, or a 200 body) as a typed error.
fn error_of(error: &WireError, model: &str) -> ModelError {
    let kind_name = error.kind.as_deref().unwrap_or("api_error");
    let kind = match kind_name {
        "overloaded_error" => ModelErrorKind::Overloaded,
        "rate_limit_error" => ModelErrorKind::RateLimited,
        "authentication_error" => ModelErrorKind::Authentication,
        "permission_error" => ModelErrorKind::PermissionDenied,
        "billing_error" => ModelErrorKind::QuotaExceeded,
        "not_found_error" => ModelErrorKind::NotFound,
        "invalid_request_error" | "request_too_large" => ModelErrorKind::BadRequest,
        "timeout_error" => ModelErrorKind::Timeout,
        _ => ModelErrorKind::Server,
    };
    ModelError::new(kind, error.message.as_deref().unwrap_or("error event"))
        .with_provider("anthropic", model)
        .with_code(kind_name)
}

/// A block of a streamed answer, as far as it has come.
#[derive(Debug)]
enum PartialBlock {
    /// A block whose deltas are appended into its raw form (text, thinking).
    Raw(Value),
    ToolUse {
        id: String,
        name: String,
        /// The `input` of the start event, used when no argument deltas follow.
        input: Value,
        /// The argument text the deltas carried, if any came.
        json: Option<String>,
    },
}

/// Assembles a streamed answer from Messages stream events (pure).
#[derive(Debug, Default)]
pub struct MessagesStream {
    model: String,
    blocks: HashMap<u64, PartialBlock>,
    order: Vec<u64>,
    /// Block index → tool-call ordinal.
    calls: HashMap<u64, usize>,
    usage: WireUsage,
    stop_reason: Option<String>,
    done: bool,
}

impl StreamAssembler for MessagesStream {
    fn push(&mut self, data: &str) -> Result<Vec<StreamEvent>, ModelError> {
        let event: Event = serde_json::from_str(data).map_err(|e| {
            ModelError::new(
                ModelErrorKind::InvalidResponse,
                format!("a stream event is not valid ({e})"),
            )
            .with_provider("anthropic", self.model.clone())
        })?;
        let mut out = Vec::new();
        match event {
            Event::MessageStart { message } => self.usage.merge(message.usage),
            Event::ContentBlockStart {
                index,
                content_block,
            } => {
                let block = match ContentBlock::read(&content_block) {
                    ContentBlock::ToolUse { id, name, input } => {
                        let ordinal = self.calls.len();
                        self.calls.insert(index, ordinal);
                        out.push(StreamEvent::ToolCallStarted {
                            index: ordinal,
                            id: id.clone(),
                            name: name.clone(),
                        });
                        PartialBlock::ToolUse {
                            id,
                            name,
                            input,
                            json: None,
                        }
                    }
                    ContentBlock::Text { text } => {
                        if !text.is_empty() {
                            out.push(StreamEvent::TextDelta(text));
                        }
                        PartialBlock::Raw(content_block)
                    }
                    _ => PartialBlock::Raw(content_block),
                };
                self.order.push(index);
                self.blocks.insert(index, block);
            }
            Event::ContentBlockDelta { index, delta } => {
                let Some(block) = self.blocks.get_mut(&index) else {
                    return Ok(out);
                };
                match (block, delta) {
                    (PartialBlock::Raw(raw), Delta::TextDelta { text }) => {
                        append(raw, "text", &text);
                        out.push(StreamEvent::TextDelta(text));
                    }
                    (PartialBlock::Raw(raw), Delta::ThinkingDelta { thinking }) => {
                        append(raw, "thinking", &thinking);
                        out.push(StreamEvent::ReasoningDelta(thinking));
                    }
                    (PartialBlock::Raw(raw), Delta::SignatureDelta { signature }) => {
                        append(raw, "signature", &signature);
                    }
                    (
                        PartialBlock::ToolUse { json, .. },
                        Delta::InputJsonDelta { partial_json },
                    ) => {
                        json.get_or_insert_with(String::new).push_str(&partial_json);
                        if let (Some(&ordinal), false) =
                            (self.calls.get(&index), partial_json.is_empty())
                        {
                            out.push(StreamEvent::ToolCallDelta {
                                index: ordinal,
                                arguments: partial_json,
                            });
                        }
                    }
                    _ => {}
                }
            }
            Event::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason {
                    self.stop_reason = Some(reason);
                }
                self.usage.merge(usage);
                out.push(StreamEvent::Usage(self.usage.normalise()));
            }
            Event::MessageStop => self.done = true,
            Event::Error { error } => return Err(error_of(&error, &self.model)),
            Event::Other => {}
        }
        Ok(out)
    }

    /// Whether `message_stop` arrived.
    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(self, _leftover: Option<String>) -> Result<ChatResponse, ModelError> {
        if self.done {
            Ok(self.assemble())
        } else {
            Err(ModelError::new(
                ModelErrorKind::StreamInterrupted,
                "the stream ended before message_stop",
            )
            .with_provider("anthropic", self.model))
        }
    }
}

impl MessagesStream {
    pub(crate) fn new(model: &str) -> Self {
        MessagesStream {
            model: model.to_owned(),
            ..Default::default()
        }
    }

    /// The assembled answer.
    fn assemble(mut self) -> ChatResponse {
        let mut blocks = Blocks::default();
        for index in &self.order {
            match self.blocks.remove(index) {
                Some(PartialBlock::Raw(raw)) => blocks.add(raw),
                Some(PartialBlock::ToolUse {
                    id,
                    name,
                    input,
                    json,
                }) => {
                    let arguments = match json {
                        // A zero-argument tool streams "" (or nothing): that is `{}`.
                        Some(json) if json.trim().is_empty() => "{}".to_owned(),
                        Some(json) => match serde_json::from_str::<Value>(&json) {
                            Ok(input) => input.to_string(),
                            // Kept raw: the loop reports the bad JSON to the model.
                            Err(_) => json,
                        },
                        None if input.is_null() => "{}".to_owned(),
                        None => input.to_string(),
                    };
                    blocks.calls.push(ToolCall::raw(id, name, arguments));
                }
                None => {}
            }
        }
        blocks.into_response(self.stop_reason.as_deref(), self.usage)
    }
}

fn append(block: &mut Value, key: &str, piece: &str) {
    let current = block[key].as_str().unwrap_or_default();
    block[key] = Value::String(format!("{current}{piece}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn streamed_usage_is_a_running_total_and_empty_arguments_mean_an_empty_object() {
        let mut s = MessagesStream::new("m");
        for event in [
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 412, "output_tokens": 3}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "ping"}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 40}}),
            json!({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 71}}),
            json!({"type": "some_future_event"}),
            json!({"type": "message_stop"}),
        ] {
            s.push(&event.to_string()).unwrap();
        }
        assert!(s.is_done());
        let r = s.finish(None).unwrap();
        assert_eq!(r.usage.output_tokens, 71);
        assert_eq!(r.usage.input_tokens, 412);
        assert_eq!(r.message.tool_calls[0].arguments, "{}");
    }

    #[test]
    fn an_error_event_is_a_typed_error() {
        let mut s = MessagesStream::new("m");
        let e = s
            .push(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)
            .unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ModelErrorKind::Overloaded, "Overloaded")
        );
        assert!(e.is_retryable());
    }
}
