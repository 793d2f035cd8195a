//! Chat Completions responses and stream chunks → our message model. Lenient by design:
//! unknown fields are ignored, optional ones may be missing or `null`, `content` may be a
//! string, `null` or a list of chunks, `arguments` a string or an object. Pure: no I/O.

use serde::Deserialize;
use serde_json::Value;

use crate::backends::http::{ErrorBody, kind_for_status, kind_from_words};
use crate::backends::protocol::StreamAssembler;
use crate::error::{ModelError, ModelErrorKind};
use crate::message::{AssistantMessage, Reasoning, ToolCall, Usage};
use crate::model::{ChatResponse, FinishReason, StreamEvent};

/// A response body or a stream chunk (same shape; `message` or `delta`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Completion {
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
    /// Groq puts usage here when streaming.
    x_groq: Option<XGroq>,
    error: Option<Value>,
    object: Option<String>,
    message: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
    code: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct XGroq {
    usage: Option<WireUsage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Choice {
    message: Option<WireMessage>,
    delta: Option<WireMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireMessage {
    content: Option<Value>,
    /// DeepSeek.
    reasoning_content: Option<String>,
    /// OpenRouter, Ollama `/v1`, vLLM.
    reasoning: Option<Value>,
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireToolCall {
    index: Option<u64>,
    id: Option<Value>,
    function: Option<WireFunction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
    /// DeepSeek.
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PromptDetails {
    cached_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    fn normalise(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens.unwrap_or(0),
            output_tokens: self.completion_tokens.unwrap_or(0),
            cached_input_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .or(self.prompt_cache_hit_tokens)
                .unwrap_or(0),
            reasoning_tokens: self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            cache_write_input_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cache_write_tokens)
                .unwrap_or(0),
            estimated: false,
        }
    }
}

/// Who is being parsed, for errors and reasoning tags.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Source<'a> {
    pub provider: &'a str,
    pub model: &'a str,
}

impl Source<'_> {
    fn interrupted(&self, message: &str) -> ModelError {
        self.error(ModelErrorKind::StreamInterrupted, message)
    }

    fn error(&self, kind: ModelErrorKind, message: impl Into<String>) -> ModelError {
        ModelError::new(kind, message).with_provider(self.provider, self.model)
    }

    /// An error object that arrived inside a 200 response or stream.
    fn embedded_error(&self, value: &Value) -> ModelError {
        let body = ErrorBody::from_value(value);
        let status = value
            .pointer("/error/code")
            .or_else(|| value.get("code"))
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c));
        let kind = match status {
            Some(status) => kind_for_status(status, &body),
            None => kind_from_words(&body),
        };
        let mut error = self.error(
            kind,
            body.message.clone().unwrap_or_else(|| value.to_string()),
        );
        error.status = status;
        error.code = body.code.or(body.kind);
        error
    }
}

impl Completion {
    /// The error this body carries instead of (or in the middle of) an answer.
    fn error(&self, source: Source<'_>) -> Option<ModelError> {
        if let Some(error) = &self.error
            && !error.is_null()
        {
            return Some(source.embedded_error(&serde_json::json!({ "error": error })));
        }
        if self.object.as_deref() == Some("error") {
            let value = serde_json::json!({
                "message": self.message, "type": self.kind, "code": self.code, "object": "error"
            });
            return Some(source.embedded_error(&value));
        }
        None
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
            .as_ref()
            .or_else(|| self.x_groq.as_ref().and_then(|x| x.usage.as_ref()))
            .map(WireUsage::normalise)
    }
}

/// Parses a whole (non-streaming) response body. DeepSeek may send blank lines before the
/// JSON while it waits for capacity; they are skipped.
pub(crate) fn parse_response(body: &[u8], source: Source<'_>) -> Result<ChatResponse, ModelError> {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let completion: Completion = serde_json::from_slice(&body[start..]).map_err(|e| {
        source.error(
            ModelErrorKind::InvalidResponse,
            format!(
                "the response is not a chat completion ({e}); it began with: {}",
                String::from_utf8_lossy(&body[start..body.len().min(start + 200)])
            ),
        )
    })?;
    if let Some(error) = completion.error(source) {
        return Err(error);
    }
    let usage = completion.usage().unwrap_or_default();
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(source.error(
            ModelErrorKind::InvalidResponse,
            "the response has no choices",
        ));
    };
    let message = choice.message.or(choice.delta).unwrap_or_default();
    let mut assembler = ChunkAssembler::new(source.provider);
    // A whole answer has no listener for stream events: build none.
    assembler.emit_events = false;
    assembler.absorb_message(message, &mut Vec::new());
    assembler.finish_reason = choice.finish_reason.filter(|f| !f.is_empty());
    assembler.usage = Some(usage);
    assembler.into_response(source)
}

#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
    started: bool,
}

/// Assembles a streamed answer from its chunks, whatever shape the server's tool-call deltas
/// take: `index` present or missing; `id` only first or on every chunk (and `null`, `""` or
/// `"null"` in continuations); arguments in pieces, whole, as a string or as an object;
/// `finish_reason: ""`; usage on any chunk.
#[derive(Debug)]
pub(crate) struct ChunkAssembler {
    provider: String,
    text: String,
    reasoning: String,
    calls: Vec<PartialCall>,
    /// Tool-call `index` → position in `calls`.
    index_map: Vec<(u64, usize)>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    /// Whether to produce stream events (not for a whole answer, where nobody reads them).
    emit_events: bool,
}

impl ChunkAssembler {
    pub(crate) fn new(provider: &str) -> Self {
        ChunkAssembler {
            provider: provider.to_owned(),
            text: String::new(),
            reasoning: String::new(),
            calls: Vec::new(),
            index_map: Vec::new(),
            finish_reason: None,
            usage: None,
            emit_events: true,
        }
    }

    /// Whether the server said why it finished.
    pub(crate) fn has_finished(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// Takes one `data:` payload (not `[DONE]`) and returns the events it produced.
    pub(crate) fn push(
        &mut self,
        data: &str,
        source: Source<'_>,
    ) -> Result<Vec<StreamEvent>, ModelError> {
        let chunk: Completion = serde_json::from_str(data).map_err(|e| {
            source.error(
                ModelErrorKind::InvalidResponse,
                format!(
                    "a stream chunk is not valid JSON ({e}): {}",
                    data.chars().take(200).collect::<String>()
                ),
            )
        })?;
        if let Some(error) = chunk.error(source) {
            return Err(error);
        }
        let mut events = Vec::new();
        if let Some(usage) = chunk.usage() {
            self.usage = Some(usage);
            events.push(StreamEvent::Usage(usage));
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta.or(choice.message) {
                self.absorb_message(delta, &mut events);
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish_reason = Some(reason);
            }
        }
        Ok(events)
    }

    fn absorb_message(&mut self, message: WireMessage, events: &mut Vec<StreamEvent>) {
        if let Some(reasoning) = message
            .reasoning_content
            .or_else(|| {
                message
                    .reasoning
                    .as_ref()
                    .and_then(|r| r.as_str().map(str::to_owned))
            })
            .filter(|r| !r.is_empty())
        {
            self.reasoning.push_str(&reasoning);
            if self.emit_events {
                events.push(StreamEvent::ReasoningDelta(reasoning));
            }
        }
        match message.content {
            Some(Value::String(text)) if !text.is_empty() => {
                if !self.emit_events && self.text.is_empty() {
                    self.text = text;
                } else {
                    self.text.push_str(&text);
                    if self.emit_events {
                        events.push(StreamEvent::TextDelta(text));
                    }
                }
            }
            // Mistral's content chunks: text, and thinking (reasoning) blocks.
            Some(Value::Array(chunks)) => {
                for chunk in chunks {
                    match chunk.get("type").and_then(Value::as_str) {
                        Some("thinking") => {
                            let thinking = collect_text(chunk.get("thinking"));
                            if !thinking.is_empty() {
                                self.reasoning.push_str(&thinking);
                                events.push(StreamEvent::ReasoningDelta(thinking));
                            }
                        }
                        _ => {
                            let text = collect_text(Some(&chunk));
                            if !text.is_empty() {
                                self.text.push_str(&text);
                                events.push(StreamEvent::TextDelta(text));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        for delta in message.tool_calls.unwrap_or_default() {
            self.absorb_call(delta, events);
        }
    }

    fn absorb_call(&mut self, delta: WireToolCall, events: &mut Vec<StreamEvent>) {
        let id = delta.id.as_ref().and_then(real_id);
        let function = delta.function.unwrap_or_default();
        let name = function.name.filter(|n| !n.is_empty() && n != "null");
        let slot = match (delta.index, &id) {
            (Some(index), _) => match self.index_map.iter().find(|(i, _)| *i == index) {
                Some(&(_, slot)) => slot,
                None => self.new_slot(Some(index)),
            },
            // No index: a new id starts a call, a known id continues its call.
            (None, Some(id)) => {
                match self
                    .calls
                    .iter()
                    .position(|c| c.id.as_deref() == Some(id.as_str()))
                {
                    Some(slot) => slot,
                    None => self.new_slot(None),
                }
            }
            // Neither: continue the latest call, unless this names another tool, or the
            // same tool again after the latest call's arguments were complete.
            (None, None) => match self.calls.last() {
                Some(last)
                    if !(name.is_some()
                        && last.name.is_some()
                        && (last.name != name || is_complete_json(&last.arguments))) =>
                {
                    self.calls.len() - 1
                }
                _ => self.new_slot(None),
            },
        };
        let call = &mut self.calls[slot];
        if call.id.is_none() {
            call.id = id;
        }
        if call.name.is_none() {
            call.name = name;
        }
        if !call.started
            && let Some(name) = &call.name
        {
            call.started = true;
            let id = call.id.get_or_insert_with(|| format!("call_{slot}"));
            if self.emit_events {
                events.push(StreamEvent::ToolCallStarted {
                    index: slot,
                    id: id.clone(),
                    name: name.clone(),
                });
            }
        }
        match function.arguments {
            Some(Value::String(piece)) if !piece.is_empty() => {
                if !self.emit_events && call.arguments.is_empty() {
                    call.arguments = piece;
                } else {
                    call.arguments.push_str(&piece);
                    if self.emit_events {
                        events.push(StreamEvent::ToolCallDelta {
                            index: slot,
                            arguments: piece,
                        });
                    }
                }
            }
            Some(object @ Value::Object(_)) => {
                // A whole object replaces whatever came before.
                call.arguments = object.to_string();
                if self.emit_events {
                    events.push(StreamEvent::ToolCallDelta {
                        index: slot,
                        arguments: call.arguments.clone(),
                    });
                }
            }
            _ => {}
        }
    }

    fn new_slot(&mut self, index: Option<u64>) -> usize {
        let slot = self.calls.len();
        self.calls.push(PartialCall::default());
        if let Some(index) = index {
            self.index_map.push((index, slot));
        }
        slot
    }

    /// The assembled answer.
    pub(crate) fn into_response(self, source: Source<'_>) -> Result<ChatResponse, ModelError> {
        let tool_calls: Vec<ToolCall> = self
            .calls
            .into_iter()
            .enumerate()
            .filter(|(_, c)| c.name.is_some() || !c.arguments.is_empty())
            .map(|(slot, c)| ToolCall {
                id: c.id.unwrap_or_else(|| format!("call_{slot}")),
                name: c.name.unwrap_or_default(),
                arguments: if c.arguments.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    c.arguments
                },
            })
            .collect();
        let finish_reason = match self.finish_reason.as_deref() {
            _ if !tool_calls.is_empty() => FinishReason::ToolCalls,
            None | Some("stop") | Some("end_turn") => FinishReason::Stop,
            Some("length") | Some("model_length") | Some("max_tokens") => FinishReason::Length,
            Some("tool_calls") | Some("function_call") => FinishReason::Stop,
            Some("content_filter") => FinishReason::ContentFilter,
            Some("error") => {
                return Err(source.error(
                    ModelErrorKind::Server,
                    "the provider ended the answer with finish_reason \"error\"",
                ));
            }
            Some("insufficient_system_resource") => {
                return Err(source.error(
                    ModelErrorKind::Overloaded,
                    "the provider interrupted the answer for lack of capacity \
                     (insufficient_system_resource)",
                ));
            }
            Some(other) => FinishReason::Other(other.to_owned()),
        };
        let reasoning = (!self.reasoning.is_empty()).then_some(Reasoning {
            provider: self.provider,
            text: Some(self.reasoning),
            data: Value::Null,
        });
        Ok(ChatResponse {
            message: AssistantMessage {
                content: self.text,
                tool_calls,
                reasoning,
            },
            finish_reason,
            usage: self.usage.unwrap_or_default(),
            model: None,
        })
    }
}

/// One streamed Chat Completions answer: chunks until `data: [DONE]`.
#[derive(Debug)]
pub struct OpenAiStream {
    assembler: ChunkAssembler,
    provider: String,
    model: String,
    saw_done: bool,
}

impl OpenAiStream {
    pub(crate) fn new(provider: &str, model: &str) -> Self {
        OpenAiStream {
            assembler: ChunkAssembler::new(provider),
            provider: provider.to_owned(),
            model: model.to_owned(),
            saw_done: false,
        }
    }
}

impl StreamAssembler for OpenAiStream {
    fn push(&mut self, data: &str) -> Result<Vec<StreamEvent>, ModelError> {
        if data == "[DONE]" {
            self.saw_done = true;
            return Ok(Vec::new());
        }
        let source = Source {
            provider: &self.provider,
            model: &self.model,
        };
        self.assembler.push(data, source)
    }

    fn is_done(&self) -> bool {
        self.saw_done
    }

    fn finish(self, _leftover: Option<String>) -> Result<ChatResponse, ModelError> {
        let source = Source {
            provider: &self.provider,
            model: &self.model,
        };
        // Without `[DONE]`, a stream is complete only if the server said why it finished;
        // otherwise it was cut short.
        if self.saw_done || self.assembler.has_finished() {
            self.assembler.into_response(source)
        } else {
            Err(source.interrupted(
                "the stream ended before the answer was complete (no finish_reason, no [DONE])",
            ))
        }
    }
}

fn is_complete_json(text: &str) -> bool {
    !text.trim().is_empty() && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// A usable call id: not `null`, `""` or the string `"null"`.
fn real_id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() && s != "null" => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The text inside a content chunk: a string, `{"text": ...}`, or a list of either.
fn collect_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items.iter().map(|i| collect_text(Some(i))).collect(),
        Some(Value::Object(o)) => o
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SRC: Source<'static> = Source {
        provider: "openai",
        model: "m",
    };

    fn assemble(chunks: &[Value]) -> ChatResponse {
        let mut a = ChunkAssembler::new("openai");
        for chunk in chunks {
            a.push(&chunk.to_string(), SRC).unwrap();
        }
        a.into_response(SRC).unwrap()
    }

    fn delta(calls: Value) -> Value {
        json!({"choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": null}]})
    }

    fn finish(reason: &str) -> Value {
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
    }

    fn args(r: &ChatResponse) -> Vec<(String, String, Value)> {
        r.message
            .tool_calls
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    c.name.clone(),
                    serde_json::from_str(&c.arguments).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn id_only_in_the_first_chunk_and_arguments_split() {
        let r = assemble(&[
            delta(
                json!([{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]),
            ),
            delta(json!([{"index": 0, "function": {"arguments": "{\"city\": \"Pa"}}])),
            delta(
                json!([{"index": 1, "id": "call_b", "function": {"name": "get_time", "arguments": ""}}]),
            ),
            delta(json!([{"index": 0, "function": {"arguments": "ris\"}"}}])),
            delta(json!([{"index": 1, "function": {"arguments": "{}"}}])),
            finish("tool_calls"),
        ]);
        assert_eq!(
            args(&r),
            [
                (
                    "call_a".into(),
                    "get_weather".into(),
                    json!({"city": "Paris"})
                ),
                ("call_b".into(), "get_time".into(), json!({}))
            ]
        );
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    }

    #[test]
    fn missing_index_with_ids_on_every_chunk_or_none() {
        let r = assemble(&[
            delta(json!([{"id": "x1", "function": {"name": "a", "arguments": "{\"n\":"}}])),
            delta(json!([{"id": "x1", "function": {"name": "a", "arguments": "1}"}}])),
            delta(json!([{"id": "x2", "function": {"name": "a", "arguments": "{\"n\":2}"}}])),
            delta(json!([{"function": {"arguments": ""}}])),
            delta(json!([{"function": {"name": "b", "arguments": "{\"m\""}}])),
            delta(json!([{"function": {"arguments": ":3}"}}])),
            delta(json!([{"function": {"name": "b", "arguments": "{}"}}])),
        ]);
        let got: Vec<_> = args(&r).into_iter().map(|(_, n, a)| (n, a)).collect();
        assert_eq!(
            got,
            [
                ("a".into(), json!({"n": 1})),
                ("a".into(), json!({"n": 2})),
                ("b".into(), json!({"m": 3})),
                ("b".into(), json!({}))
            ]
        );
        assert_eq!(r.message.tool_calls[0].id, "x1");
        assert_eq!(r.message.tool_calls[2].id, "call_2", "synthesised");
    }

    #[test]
    fn null_empty_and_string_null_ids_in_continuations_are_ignored() {
        let r = assemble(&[
            delta(
                json!([{"index": 0, "id": "Ab3dE6gH9", "function": {"name": "f", "arguments": "{\"a\""}}]),
            ),
            delta(json!([{"index": 0, "id": null, "function": {"name": "", "arguments": ":"}}])),
            delta(json!([{"index": 0, "id": "", "function": {"name": null, "arguments": "1"}}])),
            delta(
                json!([{"index": 0, "id": "null", "function": {"name": "", "arguments": "}"}, "p": "abc"}]),
            ),
            finish(""),
        ]);
        assert_eq!(
            args(&r),
            [("Ab3dE6gH9".into(), "f".into(), json!({"a": 1}))]
        );
    }

    #[test]
    fn empty_arguments_mean_an_empty_object_and_objects_are_accepted() {
        let r = assemble(&[
            delta(json!([{"index": 0, "id": "c0", "function": {"name": "now", "arguments": ""}}])),
            delta(
                json!([{"index": 1, "id": "c1", "function": {"name": "calc", "arguments": {"expression": "1+1"}}}]),
            ),
            finish("stop"),
        ]);
        assert_eq!(r.message.tool_calls[0].arguments, "{}");
        assert_eq!(args(&r)[1].2, json!({"expression": "1+1"}));
        // Tool calls are detected by presence, not by the finish reason.
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    }

    #[test]
    fn usage_from_the_final_chunk_with_cached_and_reasoning_tokens() {
        let r = assemble(&[
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hi"}}], "usage": null}),
            finish("stop"),
            json!({"choices": [], "usage": {"prompt_tokens": 131, "completion_tokens": 52, "total_tokens": 183,
                "prompt_tokens_details": {"cached_tokens": 64}, "completion_tokens_details": {"reasoning_tokens": 10}}}),
        ]);
        assert_eq!(r.message.content, "Hi");
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 131,
                output_tokens: 52,
                cached_input_tokens: 64,
                reasoning_tokens: 10,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn a_mid_stream_error_object_is_an_error() {
        let mut a = ChunkAssembler::new("openai");
        a.push(
            &json!({"choices": [{"delta": {"content": "Hel"}}]}).to_string(),
            SRC,
        )
        .unwrap();
        let e = a
            .push(r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#, SRC)
            .unwrap_err();
        assert_eq!(e.kind, ModelErrorKind::Server);
        assert_eq!(e.message, "The server had an error");
        let e = ChunkAssembler::new("x")
            .push(
                r#"{"object":"error","message":"rate","type":"rate_limited","code":"1300"}"#,
                SRC,
            )
            .unwrap_err();
        assert_eq!(e.kind, ModelErrorKind::RateLimited);
    }

    #[test]
    fn deepseek_reasoning_is_kept_with_its_provider() {
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "9.8 is greater.",
            "reasoning_content": "Align decimals"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 17, "completion_tokens": 96, "prompt_cache_hit_tokens": 5,
                      "completion_tokens_details": {"reasoning_tokens": 74}}});
        let r = parse_response(
            body.to_string().as_bytes(),
            Source {
                provider: "deepseek",
                model: "deepseek-reasoner",
            },
        )
        .unwrap();
        let reasoning = r.message.reasoning.unwrap();
        assert_eq!(
            (reasoning.provider.as_str(), reasoning.text.as_deref()),
            ("deepseek", Some("Align decimals"))
        );
        assert_eq!(r.usage.cached_input_tokens, 5);
        assert_eq!(r.usage.reasoning_tokens, 74);
    }

    #[test]
    fn lenient_parsing_of_null_content_missing_fields_and_leading_blank_lines() {
        let r = parse_response(
            b"\n\n  {\"choices\":[{\"message\":{\"content\":null}}],\"unknown\":1}",
            SRC,
        )
        .unwrap();
        assert_eq!(r.message.content, "");
        assert_eq!(r.usage, Usage::default());
        let e = parse_response(b"<html>oops</html>", SRC).unwrap_err();
        assert_eq!(e.kind, ModelErrorKind::InvalidResponse);
        let e = parse_response(b"{\"choices\":[]}", SRC).unwrap_err();
        assert!(e.message.contains("no choices"));
    }

    #[test]
    fn mistral_content_chunks_with_thinking() {
        let body = json!({"choices": [{"message": {"content": [
            {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
            {"type": "text", "text": "Answer."}
        ]}, "finish_reason": "stop"}]});
        let r = parse_response(body.to_string().as_bytes(), SRC).unwrap();
        assert_eq!(r.message.content, "Answer.");
        assert_eq!(r.message.reasoning.unwrap().text.as_deref(), Some("hmm"));
    }

    #[test]
    fn finish_reasons_map_and_errors_surface() {
        let one = |reason: &str| {
            let mut a = ChunkAssembler::new("x");
            a.push(
                &json!({"choices": [{"delta": {"content": "t"}, "finish_reason": reason}]})
                    .to_string(),
                SRC,
            )
            .unwrap();
            a.into_response(SRC)
        };
        assert_eq!(one("length").unwrap().finish_reason, FinishReason::Length);
        assert_eq!(
            one("model_length").unwrap().finish_reason,
            FinishReason::Length
        );
        assert_eq!(
            one("content_filter").unwrap().finish_reason,
            FinishReason::ContentFilter
        );
        assert_eq!(
            one("weird").unwrap().finish_reason,
            FinishReason::Other("weird".into())
        );
        assert_eq!(one("error").unwrap_err().kind, ModelErrorKind::Server);
        assert_eq!(
            one("insufficient_system_resource").unwrap_err().kind,
            ModelErrorKind::Overloaded
        );
    }

    #[test]
    fn groq_usage_in_x_groq() {
        let mut a = ChunkAssembler::new("groq");
        a.push(r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"x_groq":{"usage":{"prompt_tokens":3,"completion_tokens":4}}}"#, SRC).unwrap();
        assert_eq!(a.into_response(SRC).unwrap().usage.total_tokens(), 7);
    }
}
