//! Messages responses and stream events → our message model (pure: no I/O). Usage is
//! normalised (input = `input_tokens` + cache reads + cache writes); stream usage counts are
//! running totals, not increments.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::backends::protocol::StreamAssembler;
use crate::error::{ModelError, ModelErrorKind};
use crate::message::{AssistantMessage, Reasoning, ToolCall, Usage};
use crate::model::{ChatResponse, FinishReason, StreamEvent};

fn usage_from(value: &Value) -> Usage {
    let n = |k: &str| value.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cache_read = n("cache_read_input_tokens");
    Usage {
        input_tokens: n("input_tokens") + cache_read + n("cache_creation_input_tokens"),
        output_tokens: n("output_tokens"),
        cached_input_tokens: cache_read,
        cache_write_input_tokens: n("cache_creation_input_tokens"),
        reasoning_tokens: 0,
        estimated: false,
    }
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
    fn add(&mut self, block: &Value) {
        match block["type"].as_str() {
            Some("text") => self
                .text
                .push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => self.calls.push(ToolCall {
                id: block["id"].as_str().unwrap_or_default().to_owned(),
                name: block["name"].as_str().unwrap_or_default().to_owned(),
                arguments: match &block["input"] {
                    Value::Null => "{}".to_owned(),
                    input => input.to_string(),
                },
            }),
            Some("thinking") => {
                self.thinking_text
                    .push_str(block["thinking"].as_str().unwrap_or_default());
                self.thinking.push(block.clone());
            }
            Some("redacted_thinking") => self.thinking.push(block.clone()),
            _ => {}
        }
    }

    fn into_message(self) -> AssistantMessage {
        let reasoning = (!self.thinking.is_empty()).then(|| Reasoning {
            provider: "anthropic".into(),
            text: (!self.thinking_text.is_empty()).then_some(self.thinking_text),
            data: Value::Array(self.thinking),
        });
        AssistantMessage {
            content: self.text,
            tool_calls: self.calls,
            reasoning,
        }
    }
}

/// Parses a whole Messages response (pure).
pub(crate) fn parse_response(body: &[u8], model: &str) -> Result<ChatResponse, ModelError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ModelError::new(
            ModelErrorKind::InvalidResponse,
            format!("the response is not a message ({e})"),
        )
        .with_provider("anthropic", model)
    })?;
    if value["type"] == "error" {
        return Err(stream_error(&value, model));
    }
    let mut blocks = Blocks::default();
    for block in value["content"].as_array().into_iter().flatten() {
        blocks.add(block);
    }
    let has_calls = !blocks.calls.is_empty();
    Ok(ChatResponse {
        message: blocks.into_message(),
        finish_reason: finish_reason(value["stop_reason"].as_str(), has_calls),
        usage: usage_from(&value["usage"]),
        model: None,
    })
}

/// An `error` object (in a stream, or a 200 body) as a typed error.
fn stream_error(value: &Value, model: &str) -> ModelError {
    let kind_name = value
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
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
    let message = value
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("error event");
    ModelError::new(kind, message)
        .with_provider("anthropic", model)
        .with_code(kind_name)
}

/// Assembles a streamed answer from Messages stream events (pure).
#[derive(Debug, Default)]
pub struct MessagesStream {
    model: String,
    blocks: HashMap<u64, Value>,
    order: Vec<u64>,
    /// Block index → tool-call ordinal.
    calls: HashMap<u64, usize>,
    partial_json: HashMap<u64, String>,
    usage: Value,
    stop_reason: Option<String>,
    done: bool,
}

impl StreamAssembler for MessagesStream {
    fn push(&mut self, data: &str) -> Result<Vec<StreamEvent>, ModelError> {
        self.push_event(data)
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

    /// Takes one event's JSON and returns the stream events it produced.
    fn push_event(&mut self, data: &str) -> Result<Vec<StreamEvent>, ModelError> {
        let model = self.model.clone();
        let model = model.as_str();
        let event: Value = serde_json::from_str(data).map_err(|e| {
            ModelError::new(
                ModelErrorKind::InvalidResponse,
                format!("a stream event is not JSON ({e})"),
            )
            .with_provider("anthropic", model)
        })?;
        let index = event["index"].as_u64().unwrap_or(0);
        let mut out = Vec::new();
        match event["type"].as_str() {
            Some("message_start") => self.merge_usage(&event["message"]["usage"]),
            Some("content_block_start") => {
                let block = event["content_block"].clone();
                if block["type"] == "tool_use" {
                    let ordinal = self.calls.len();
                    self.calls.insert(index, ordinal);
                    out.push(StreamEvent::ToolCallStarted {
                        index: ordinal,
                        id: block["id"].as_str().unwrap_or_default().to_owned(),
                        name: block["name"].as_str().unwrap_or_default().to_owned(),
                    });
                }
                if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta(text.to_owned()));
                }
                self.order.push(index);
                self.blocks.insert(index, block);
            }
            Some("content_block_delta") => {
                let delta = &event["delta"];
                let Some(block) = self.blocks.get_mut(&index) else {
                    return Ok(out);
                };
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        let piece = delta["text"].as_str().unwrap_or_default();
                        append(block, "text", piece);
                        out.push(StreamEvent::TextDelta(piece.to_owned()));
                    }
                    Some("input_json_delta") => {
                        let piece = delta["partial_json"].as_str().unwrap_or_default();
                        self.partial_json.entry(index).or_default().push_str(piece);
                        if let (Some(&ordinal), false) = (self.calls.get(&index), piece.is_empty())
                        {
                            out.push(StreamEvent::ToolCallDelta {
                                index: ordinal,
                                arguments: piece.to_owned(),
                            });
                        }
                    }
                    Some("thinking_delta") => {
                        let piece = delta["thinking"].as_str().unwrap_or_default();
                        append(block, "thinking", piece);
                        out.push(StreamEvent::ReasoningDelta(piece.to_owned()));
                    }
                    Some("signature_delta") => {
                        append(
                            block,
                            "signature",
                            delta["signature"].as_str().unwrap_or_default(),
                        );
                    }
                    _ => {}
                }
            }
            Some("content_block_stop") => {
                if let (Some(block), Some(json)) = (
                    self.blocks.get_mut(&index),
                    self.partial_json.remove(&index),
                ) {
                    // A zero-argument tool streams "" (or nothing): that is `{}`.
                    let input = if json.trim().is_empty() {
                        Ok(json!({}))
                    } else {
                        serde_json::from_str::<Value>(&json)
                    };
                    block["input"] = match input {
                        Ok(v) => v,
                        // Keep the raw text so the loop reports the bad JSON to the model.
                        Err(_) => Value::String(json),
                    };
                }
            }
            Some("message_delta") => {
                if let Some(reason) = event["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_owned());
                }
                self.merge_usage(&event["usage"]);
                out.push(StreamEvent::Usage(usage_from(&self.usage)));
            }
            Some("message_stop") => self.done = true,
            Some("error") => return Err(stream_error(&event, model)),
            _ => {} // ping and event types we do not know yet
        }
        Ok(out)
    }

    /// Counts in `message_delta` are running totals: the latest value replaces the earlier.
    fn merge_usage(&mut self, usage: &Value) {
        let Some(fields) = usage.as_object() else {
            return;
        };
        if !self.usage.is_object() {
            self.usage = json!({});
        }
        for (k, v) in fields {
            if v.is_u64() {
                self.usage[k] = v.clone();
            }
        }
    }

    /// The assembled answer.
    fn assemble(self) -> ChatResponse {
        let mut blocks = Blocks::default();
        let mut all = self.blocks;
        for index in &self.order {
            if let Some(block) = all.remove(index) {
                if block["type"] == "tool_use" && block["input"].is_string() {
                    // Unparseable streamed arguments: keep them raw for the loop to report.
                    blocks.calls.push(ToolCall::raw(
                        block["id"].as_str().unwrap_or_default(),
                        block["name"].as_str().unwrap_or_default(),
                        block["input"].as_str().unwrap_or_default(),
                    ));
                    continue;
                }
                blocks.add(&block);
            }
        }
        let has_calls = !blocks.calls.is_empty();
        ChatResponse {
            message: blocks.into_message(),
            finish_reason: finish_reason(self.stop_reason.as_deref(), has_calls),
            usage: usage_from(&self.usage),
            model: None,
        }
    }
}

fn append(block: &mut Value, key: &str, piece: &str) {
    let current = block[key].as_str().unwrap_or_default();
    block[key] = Value::String(format!("{current}{piece}"));
}

#[cfg(test)]
mod tests {
    use super::*;

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
