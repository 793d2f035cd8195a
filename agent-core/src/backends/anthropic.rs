//! Anthropic Messages (`anthropic:MODEL`).
//!
//! Its quirks live here and nowhere else: the system prompt at the top level; `max_tokens`
//! required (a configurable default); tool results as `tool_result` blocks placed first in
//! the next user message, consecutive results (and a following user text) merged into one
//! user turn; tool-call arguments sent back as objects; thinking blocks and their signatures
//! replayed exactly as received; usage normalised (input = `input_tokens` + cache reads +
//! cache writes); stream usage counts are running totals, not increments.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::http::{ApiKey, HttpClient, HttpConfig, Target, check_base_url, env_var, redact_url};
use super::openai::strict_schema;
use super::stream::{SseHandler, stream_response};
use crate::error::{ModelError, ModelErrorKind};
use crate::message::{AssistantMessage, ContentPart, Message, Reasoning, ToolCall, Usage};
use crate::model::{
    Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, FinishReason, ResponseFormat,
    StreamEvent, ToolChoice,
};

/// The API version header every request carries.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` when the request does not set `max_output_tokens` (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// An Anthropic model.
#[derive(Clone)]
pub struct Anthropic {
    model: String,
    target: Target,
    http: HttpClient,
    default_max_tokens: u32,
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anthropic")
            .field("model", &self.model)
            .field("url", &redact_url(&self.target.url))
            .finish_non_exhaustive()
    }
}

impl Anthropic {
    /// A model configured in code.
    ///
    /// ```
    /// use agent_core::backends::anthropic::Anthropic;
    /// let model = Anthropic::new("claude-sonnet-4-5", "sk-ant-...", None).unwrap();
    /// ```
    pub fn new(model: &str, api_key: &str, base_url: Option<&str>) -> Result<Self, ModelError> {
        Self::with_config(model, ApiKey::new(api_key), base_url, HttpConfig::default())
    }

    /// A model with its own timeouts and retries.
    pub fn with_config(
        model: &str,
        api_key: ApiKey,
        base_url: Option<&str>,
        http: HttpConfig,
    ) -> Result<Self, ModelError> {
        let base = check_base_url(
            base_url.unwrap_or("https://api.anthropic.com"),
            "anthropic",
            model,
        )?;
        // The SDK's base URL has no version; accept one with `/v1` too.
        let url = if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-api-key"),
            api_key.header_value("")?,
        );
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        Ok(Anthropic {
            model: model.to_owned(),
            target: Target {
                url,
                headers,
                provider: "anthropic".into(),
                model: model.to_owned(),
                refine_error: None,
            },
            http: HttpClient::new(http)?,
            default_max_tokens: DEFAULT_MAX_TOKENS,
        })
    }

    /// From `ANTHROPIC_API_KEY` (required) and `ANTHROPIC_BASE_URL` (optional).
    pub fn from_lookup(
        model: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ModelError> {
        let get = |name: &str| env_var(lookup, name);
        let key = get("ANTHROPIC_API_KEY").ok_or_else(|| {
            config_error(
                model,
                "ANTHROPIC_API_KEY is not set; export your Anthropic API key as ANTHROPIC_API_KEY"
                    .into(),
            )
        })?;
        Self::with_config(
            model,
            ApiKey::new(key),
            get("ANTHROPIC_BASE_URL").as_deref(),
            HttpConfig::default(),
        )
    }

    /// Sets the `max_tokens` used when a request does not say.
    #[must_use]
    pub fn with_default_max_tokens(mut self, max_tokens: u32) -> Self {
        self.default_max_tokens = max_tokens.max(1);
        self
    }

    fn body(&self, request: &ChatRequest, stream: bool) -> Result<Bytes, ModelError> {
        let body = build_body(&self.model, request, stream, self.default_max_tokens);
        serde_json::to_vec(&body).map(Bytes::from).map_err(|e| {
            ModelError::new(
                ModelErrorKind::BadRequest,
                format!("cannot serialise the request: {e}"),
            )
            .with_provider("anthropic", self.model.clone())
        })
    }
}

fn config_error(model: &str, message: String) -> ModelError {
    ModelError::new(ModelErrorKind::Configuration, message).with_provider("anthropic", model)
}

/// Builds the Messages request body (pure).
pub fn build_body(
    model: &str,
    request: &ChatRequest,
    stream: bool,
    default_max_tokens: u32,
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
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
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

/// Whether a Claude model has structured outputs (`output_config.format`): the 4.5
/// generation (Sonnet, Opus, Haiku) and later.
fn has_structured_outputs(model: &str) -> bool {
    let mut numbers = model
        .split(['-', '.', '@'])
        .filter_map(|part| part.parse::<u32>().ok())
        .filter(|n| *n < 100);
    match (numbers.next(), numbers.next()) {
        (Some(major), Some(minor)) => major > 4 || (major == 4 && minor >= 5),
        (Some(major), None) => major > 4,
        _ => false,
    }
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
        ContentPart::Image { url, media_type } => match url
            .strip_prefix("data:")
            .and_then(|r| r.split_once(";base64,"))
        {
            Some((mime, data)) => {
                json!({"type": "image", "source": {"type": "base64", "media_type": media_type.as_deref().unwrap_or(mime), "data": data}})
            }
            None => json!({"type": "image", "source": {"type": "url", "url": url}}),
        },
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

fn usage_from(value: &Value) -> Usage {
    let n = |k: &str| value.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cache_read = n("cache_read_input_tokens");
    Usage {
        input_tokens: n("input_tokens") + cache_read + n("cache_creation_input_tokens"),
        output_tokens: n("output_tokens"),
        cached_input_tokens: cache_read,
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
pub fn parse_response(body: &[u8], model: &str) -> Result<ChatResponse, ModelError> {
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
pub struct StreamAssembler {
    blocks: HashMap<u64, Value>,
    order: Vec<u64>,
    /// Block index → tool-call ordinal.
    calls: HashMap<u64, usize>,
    partial_json: HashMap<u64, String>,
    usage: Value,
    stop_reason: Option<String>,
    done: bool,
}

impl StreamAssembler {
    /// Whether `message_stop` arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Takes one event's JSON and returns the stream events it produced.
    pub fn push(&mut self, data: &str, model: &str) -> Result<Vec<StreamEvent>, ModelError> {
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
    pub fn finish(self) -> ChatResponse {
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

#[async_trait]
impl ChatModel for Anthropic {
    fn provider(&self) -> &str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            images: true,
            reasoning: true,
            structured_output: has_structured_outputs(&self.model),
            ..Capabilities::default()
        }
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let bytes = self
            .http
            .post_json(&self.target, self.body(request, false)?)
            .await?;
        parse_response(&bytes, &self.model)
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ModelError> {
        let response = self
            .http
            .post_stream(&self.target, self.body(request, true)?)
            .await?;
        let handler = SseHandler {
            state: (StreamAssembler::default(), self.model.clone()),
            push: |(assembler, model): &mut (StreamAssembler, String), data: &str| {
                let events = assembler.push(data, model)?;
                Ok((events, assembler.is_done()))
            },
            finish: |(assembler, model): (StreamAssembler, String), _raw: Option<String>| {
                if assembler.is_done() {
                    Ok(assembler.finish())
                } else {
                    Err(ModelError::new(
                        ModelErrorKind::StreamInterrupted,
                        "the stream ended before message_stop",
                    )
                    .with_provider("anthropic", model))
                }
            },
        };
        let model = self.model.clone();
        stream_response(
            response,
            self.http.config(),
            "anthropic",
            self.model.clone(),
            handler,
            |bytes| parse_response(bytes, &model),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ToolResult;

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
        let body = build_body("claude", &request, false, 1000);
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

    #[test]
    fn thinking_blocks_round_trip_unchanged() {
        let body = json!({"content": [
            {"type": "thinking", "thinking": "Let me see.", "signature": "EqQBCkgIAR=="},
            {"type": "redacted_thinking", "data": "EmwKAhgB"},
            {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}
        ], "stop_reason": "tool_use", "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 5, "output_tokens": 7}});
        let response = parse_response(body.to_string().as_bytes(), "m").unwrap();
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 105,
                output_tokens: 7,
                cached_input_tokens: 90,
                reasoning_tokens: 0,
                estimated: false,
            }
        );
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        let request = ChatRequest {
            messages: vec![Message::Assistant(response.message)].into(),
            ..Default::default()
        };
        let sent = build_body("m", &request, false, 10);
        assert_eq!(sent["messages"][0]["content"][0], body["content"][0]);
        assert_eq!(sent["messages"][0]["content"][1], body["content"][1]);
    }

    #[test]
    fn streamed_usage_is_a_running_total_and_empty_arguments_mean_an_empty_object() {
        let mut s = StreamAssembler::default();
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
            s.push(&event.to_string(), "m").unwrap();
        }
        assert!(s.is_done());
        let r = s.finish();
        assert_eq!(r.usage.output_tokens, 71);
        assert_eq!(r.usage.input_tokens, 412);
        assert_eq!(r.message.tool_calls[0].arguments, "{}");
    }

    #[test]
    fn an_error_event_is_a_typed_error() {
        let mut s = StreamAssembler::default();
        let e = s
            .push(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                "m",
            )
            .unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ModelErrorKind::Overloaded, "Overloaded")
        );
        assert!(e.is_retryable());
    }
}
