//! Google Gemini `generateContent` / `streamGenerateContent?alt=sse` (`gemini:MODEL`).
//!
//! Its quirks live here: `systemInstruction` and the `model` role; tool schemas converted to
//! Gemini's subset ([`gemini_schema`]); function calls usually without ids (we synthesise
//! `gemini-call-N` ids and never send them back); function results as `functionResponse`
//! parts whose `response` is an object (`output` or `error`); a model turn carrying thought
//! signatures replayed exactly as received; a bad key reported as HTTP 400 (classified as an
//! authentication error); the wait in `RetryInfo.retryDelay` instead of a header; streams
//! with no terminator and errors as bare JSON.

mod schema;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName};
use serde_json::{Map, Value, json};

pub use schema::gemini_schema;

use super::http::{ApiKey, HttpClient, HttpConfig, Target, check_base_url, env_var, redact_url};
use super::stream::{SseHandler, stream_response};
use crate::error::{ModelError, ModelErrorKind};
use crate::message::{AssistantMessage, ContentPart, Message, Reasoning, ToolCall, Usage};
use crate::model::{
    Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, FinishReason, ResponseFormat,
    StreamEvent, ToolChoice,
};

/// Ids we make up for calls Gemini sent without one start with this; they are never sent
/// back to Gemini.
pub const SYNTHETIC_ID_PREFIX: &str = "gemini-call-";

/// A Gemini model.
#[derive(Clone)]
pub struct Gemini {
    model: String,
    generate: Target,
    stream: Target,
    http: HttpClient,
}

impl fmt::Debug for Gemini {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gemini")
            .field("model", &self.model)
            .field("url", &redact_url(&self.generate.url))
            .finish_non_exhaustive()
    }
}

impl Gemini {
    /// A model configured in code (`base_url` defaults to the public v1beta endpoint).
    ///
    /// ```
    /// use agent_core::backends::gemini::Gemini;
    /// let model = Gemini::new("gemini-2.5-flash", "AIza...", None).unwrap();
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
            base_url.unwrap_or("https://generativelanguage.googleapis.com/v1beta"),
            "gemini",
            model,
        )?;
        let base = if base.ends_with("/v1beta") || base.ends_with("/v1") {
            base.to_owned()
        } else {
            format!("{base}/v1beta")
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-goog-api-key"),
            api_key.header_value("")?,
        );
        let target = |url: String| Target {
            url,
            headers: headers.clone(),
            provider: "gemini".into(),
            model: model.to_owned(),
            refine_error: Some(refine_error),
        };
        Ok(Gemini {
            model: model.to_owned(),
            generate: target(format!("{base}/models/{model}:generateContent")),
            stream: target(format!(
                "{base}/models/{model}:streamGenerateContent?alt=sse"
            )),
            http: HttpClient::new(http)?,
        })
    }

    /// From `GEMINI_API_KEY` (or `GOOGLE_API_KEY`) and `GEMINI_BASE_URL` (optional).
    pub fn from_lookup(
        model: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ModelError> {
        let get = |name: &str| env_var(lookup, name);
        let key = get("GEMINI_API_KEY").or_else(|| get("GOOGLE_API_KEY")).ok_or_else(|| {
            config_error(
                model,
                "GEMINI_API_KEY is not set; export your Gemini API key as GEMINI_API_KEY (or GOOGLE_API_KEY)".into(),
            )
        })?;
        Self::with_config(
            model,
            ApiKey::new(key),
            get("GEMINI_BASE_URL").as_deref(),
            HttpConfig::default(),
        )
    }

    fn body(&self, request: &ChatRequest) -> Result<Bytes, ModelError> {
        // Models before Gemini 3 refuse a response schema together with function tools;
        // say so here rather than send a request that can only fail.
        if !request.tools.is_empty()
            && matches!(request.response_format, ResponseFormat::JsonSchema { .. })
            && !native_output_with_tools(&self.model)
        {
            return Err(config_error(
                &self.model,
                format!(
                    "{} cannot combine a response schema with function tools (Gemini 3 and                      later can); ask for the typed answer in tool mode",
                    self.model
                ),
            ));
        }
        serde_json::to_vec(&build_body(request))
            .map(Bytes::from)
            .map_err(|e| {
                ModelError::new(
                    ModelErrorKind::BadRequest,
                    format!("cannot serialise the request: {e}"),
                )
                .with_provider("gemini", self.model.clone())
            })
    }
}

/// Whether a Gemini model takes a response schema and function tools in one request
/// (Gemini 3 and later).
fn native_output_with_tools(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    name.strip_prefix("gemini-")
        .and_then(|rest| rest.split(['-', '.']).next())
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 3)
}

fn config_error(model: &str, message: String) -> ModelError {
    ModelError::new(ModelErrorKind::Configuration, message).with_provider("gemini", model)
}

/// Gemini's own reading of an error body: a bad key is a 400 with reason `API_KEY_INVALID`;
/// the wait is `RetryInfo.retryDelay` ("39s"); the code is the RPC status name.
fn refine_error(error: &mut ModelError, body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some(inner) = value.get("error") else {
        return;
    };
    if let Some(status) = inner.get("status").and_then(Value::as_str) {
        error.code = Some(status.to_owned());
    }
    let details = inner
        .get("details")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let bad_key = details
        .iter()
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        || error.message.contains("API key not valid");
    if bad_key {
        error.kind = ModelErrorKind::Authentication;
    }
    if let Some(delay) = details
        .iter()
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(|d| d.strip_suffix('s'))
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0)
    {
        error.retry_after = Some(Duration::from_secs_f64(delay));
    }
}

/// Builds the `generateContent` body (pure).
pub fn build_body(request: &ChatRequest) -> Value {
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
    match part {
        ContentPart::Text { text } => json!({"text": text}),
        ContentPart::Image { url, media_type } => match url
            .strip_prefix("data:")
            .and_then(|r| r.split_once(";base64,"))
        {
            Some((mime, data)) => {
                json!({"inlineData": {"mimeType": media_type.as_deref().unwrap_or(mime), "data": data}})
            }
            None => {
                json!({"fileData": {"fileUri": url, "mimeType": media_type.as_deref().unwrap_or("image/jpeg")}})
            }
        },
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

fn synthetic_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{SYNTHETIC_ID_PREFIX}{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Assembles an answer from one response body or from the chunks of a stream.
#[derive(Debug, Default)]
pub struct Assembler {
    text: String,
    thoughts: String,
    parts: Vec<Value>,
    keep_parts: bool,
    calls: Vec<ToolCall>,
    finish_reason: Option<String>,
    blocked: Option<String>,
    usage: Usage,
}

impl Assembler {
    /// Takes one `GenerateContentResponse` and returns the events it produced.
    pub fn push(&mut self, chunk: &Value, model: &str) -> Result<Vec<StreamEvent>, ModelError> {
        if let Some(error) = chunk.get("error") {
            let mut e = ModelError::new(
                ModelErrorKind::Server,
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error in stream"),
            )
            .with_provider("gemini", model);
            if let Some(code) = error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
            {
                e.kind = super::http::kind_for_status(code, &super::http::ErrorBody::default());
                e.status = Some(code);
            }
            refine_error(&mut e, chunk.to_string().as_bytes());
            return Err(e);
        }
        let mut events = Vec::new();
        if let Some(meta) = chunk.get("usageMetadata") {
            let n = |k: &str| meta.get(k).and_then(Value::as_u64).unwrap_or(0);
            let thoughts = n("thoughtsTokenCount");
            self.usage = Usage {
                input_tokens: n("promptTokenCount"),
                output_tokens: n("candidatesTokenCount") + thoughts,
                cached_input_tokens: n("cachedContentTokenCount"),
                reasoning_tokens: thoughts,
                estimated: false,
            };
            events.push(StreamEvent::Usage(self.usage));
        }
        if let Some(reason) = chunk
            .pointer("/promptFeedback/blockReason")
            .and_then(Value::as_str)
        {
            self.blocked = Some(reason.to_owned());
        }
        let Some(candidate) = chunk.get("candidates").and_then(|c| c.get(0)) else {
            return Ok(events);
        };
        for part in candidate
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.parts.push(part.clone());
            if part.get("thoughtSignature").is_some() {
                self.keep_parts = true;
            }
            if let Some(call) = part.get("functionCall") {
                let id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty())
                    .map_or_else(synthetic_id, str::to_owned);
                let name = call
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let arguments = match call.get("args") {
                    Some(args @ Value::Object(_)) => args.to_string(),
                    _ => "{}".to_owned(),
                };
                let index = self.calls.len();
                events.push(StreamEvent::ToolCallStarted {
                    index,
                    id: id.clone(),
                    name: name.clone(),
                });
                events.push(StreamEvent::ToolCallDelta {
                    index,
                    arguments: arguments.clone(),
                });
                self.calls.push(ToolCall {
                    id,
                    name,
                    arguments,
                });
            } else if let Some(text) = part
                .get("text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                if part.get("thought") == Some(&Value::Bool(true)) {
                    self.keep_parts = true;
                    self.thoughts.push_str(text);
                    events.push(StreamEvent::ReasoningDelta(text.to_owned()));
                } else {
                    self.text.push_str(text);
                    events.push(StreamEvent::TextDelta(text.to_owned()));
                }
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        Ok(events)
    }

    /// Whether the answer said why it finished (or was blocked).
    pub fn has_finished(&self) -> bool {
        self.finish_reason.is_some() || self.blocked.is_some()
    }

    /// The assembled answer.
    pub fn finish(self, model: &str) -> Result<ChatResponse, ModelError> {
        let has_calls = !self.calls.is_empty();
        let finish_reason = match (self.finish_reason.as_deref(), &self.blocked) {
            (_, _) if has_calls => FinishReason::ToolCalls,
            (None, Some(_)) => FinishReason::ContentFilter,
            (None | Some("STOP"), _) => FinishReason::Stop,
            (Some("MAX_TOKENS"), _) => FinishReason::Length,
            (
                Some(
                    "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII"
                    | "LANGUAGE",
                ),
                _,
            ) => FinishReason::ContentFilter,
            (
                Some(
                    r
                    @ ("MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "TOO_MANY_TOOL_CALLS"),
                ),
                _,
            ) => {
                return Err(ModelError::new(
                    ModelErrorKind::InvalidResponse,
                    format!("Gemini could not produce a valid function call ({r})"),
                )
                .with_provider("gemini", model)
                .with_code(r));
            }
            (Some(r), _) if r.starts_with("IMAGE_") => FinishReason::ContentFilter,
            (Some(other), _) => FinishReason::Other(other.to_owned()),
        };
        let reasoning = self.keep_parts.then(|| Reasoning {
            provider: "gemini".into(),
            text: (!self.thoughts.is_empty()).then_some(self.thoughts),
            data: json!({"parts": self.parts}),
        });
        Ok(ChatResponse {
            message: AssistantMessage {
                content: self.text,
                tool_calls: self.calls,
                reasoning,
            },
            finish_reason,
            usage: self.usage,
            model: None,
        })
    }
}

/// Parses a whole `generateContent` response (pure).
pub fn parse_response(body: &[u8], model: &str) -> Result<ChatResponse, ModelError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ModelError::new(
            ModelErrorKind::InvalidResponse,
            format!("the response is not JSON ({e})"),
        )
        .with_provider("gemini", model)
    })?;
    let mut assembler = Assembler::default();
    assembler.push(&value, model)?;
    assembler.finish(model)
}

#[async_trait]
impl ChatModel for Gemini {
    fn provider(&self) -> &str {
        "gemini"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            images: true,
            structured_output: true,
            reasoning: true,
            ..Capabilities::default()
        }
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let bytes = self
            .http
            .post_json(&self.generate, self.body(request)?)
            .await?;
        parse_response(&bytes, &self.model)
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ModelError> {
        let response = self
            .http
            .post_stream(&self.stream, self.body(request)?)
            .await?;
        let handler = SseHandler {
            state: (Assembler::default(), self.model.clone()),
            push: |(assembler, model): &mut (Assembler, String), data: &str| {
                let chunk: Value = serde_json::from_str(data).map_err(|e| {
                    ModelError::new(
                        ModelErrorKind::InvalidResponse,
                        format!("a stream chunk is not JSON ({e})"),
                    )
                    .with_provider("gemini", model.clone())
                })?;
                assembler.push(&chunk, model).map(|events| (events, false))
            },
            // No terminator: the stream ends at EOF; complete only if it said why it finished.
            finish: |(assembler, model): (Assembler, String), raw: Option<String>| {
                if let Some(error) = raw
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<Value>(r.trim()).ok())
                {
                    Assembler::default().push(&error, &model)?;
                }
                if assembler.has_finished() {
                    assembler.finish(&model)
                } else {
                    Err(ModelError::new(
                        ModelErrorKind::StreamInterrupted,
                        "the stream ended before a finishReason",
                    )
                    .with_provider("gemini", model))
                }
            },
        };
        let model = self.model.clone();
        stream_response(
            response,
            self.http.config(),
            "gemini",
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
    fn calls_without_ids_get_synthetic_ones_that_never_go_back() {
        let body = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "CiwBjz1rX2Vp"},
            {"functionCall": {"name": "time", "args": {"tz": "Asia/Tokyo"}}}
        ]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 1450, "candidatesTokenCount": 31, "cachedContentTokenCount": 1024, "thoughtsTokenCount": 131}});
        let r = parse_response(body.to_string().as_bytes(), "m").unwrap();
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 1450,
                output_tokens: 162,
                cached_input_tokens: 1024,
                reasoning_tokens: 131,
                estimated: false,
            }
        );
        let calls = r.message.tool_calls.clone();
        assert!(calls[0].id.starts_with(SYNTHETIC_ID_PREFIX));
        assert_ne!(calls[0].id, calls[1].id);

        let request = ChatRequest {
            messages: vec![
                Message::user("Weather and time?"),
                Message::Assistant(r.message),
                Message::Tool(ToolResult::ok(&calls[0], "{\"temp_c\":18}")),
                Message::Tool(ToolResult::error(&calls[1], "Error: unknown zone")),
            ]
            .into(),
            ..Default::default()
        };
        let sent = build_body(&request);
        // The model turn goes back exactly as received, signature included.
        assert_eq!(
            sent["contents"][1]["parts"],
            body["candidates"][0]["content"]["parts"]
        );
        assert_eq!(sent["contents"][1]["role"], "model");
        let responses = sent["contents"][2]["parts"].as_array().unwrap();
        assert_eq!(responses.len(), 2, "both results in one user turn");
        assert_eq!(
            responses[0],
            json!({"functionResponse": {"name": "weather", "response": {"output": {"temp_c": 18}}}})
        );
        assert_eq!(
            responses[1]["functionResponse"]["response"],
            json!({"error": "Error: unknown zone"})
        );
    }

    #[test]
    fn provided_ids_are_echoed_back() {
        let call = ToolCall::raw("abc123", "f", "{}");
        let request = ChatRequest {
            messages: vec![
                Message::Assistant(AssistantMessage::with_tool_calls("", vec![call.clone()])),
                Message::Tool(ToolResult::ok(&call, "plain text")),
            ]
            .into(),
            ..Default::default()
        };
        let sent = build_body(&request);
        assert_eq!(
            sent["contents"][0]["parts"][0]["functionCall"]["id"],
            "abc123"
        );
        assert_eq!(
            sent["contents"][1]["parts"][0]["functionResponse"]["id"],
            "abc123"
        );
        assert_eq!(
            sent["contents"][1]["parts"][0]["functionResponse"]["response"]["output"],
            "plain text"
        );
    }

    #[test]
    fn a_bad_key_is_an_authentication_error_and_retry_delay_is_read() {
        let mut e = ModelError::new(
            ModelErrorKind::BadRequest,
            "API key not valid. Please pass a valid API key.",
        )
        .with_status(400);
        refine_error(&mut e, br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#);
        assert_eq!(e.kind, ModelErrorKind::Authentication);
        assert_eq!(e.code.as_deref(), Some("INVALID_ARGUMENT"));
        let mut e = ModelError::new(ModelErrorKind::RateLimited, "quota").with_status(429);
        refine_error(&mut e, br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"39s"}]}}"#);
        assert_eq!(e.retry_after, Some(Duration::from_secs(39)));
    }

    #[test]
    fn finish_reasons_and_thoughts() {
        let one = |reason: &str| {
            parse_response(json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}).to_string().as_bytes(), "m")
        };
        assert_eq!(
            one("MAX_TOKENS").unwrap().finish_reason,
            FinishReason::Length
        );
        assert_eq!(
            one("SAFETY").unwrap().finish_reason,
            FinishReason::ContentFilter
        );
        assert_eq!(
            one("MALFORMED_FUNCTION_CALL").unwrap_err().kind,
            ModelErrorKind::InvalidResponse
        );
        let blocked =
            parse_response(br#"{"promptFeedback":{"blockReason":"SAFETY"}}"#, "m").unwrap();
        assert_eq!(blocked.finish_reason, FinishReason::ContentFilter);
        let r = parse_response(
            json!({"candidates": [{"content": {"parts": [{"text": "hmm", "thought": true}, {"text": "Answer"}]}, "finishReason": "STOP"}]}).to_string().as_bytes(),
            "m",
        )
        .unwrap();
        assert_eq!(r.message.content, "Answer");
        assert_eq!(r.message.reasoning.unwrap().text.as_deref(), Some("hmm"));
    }

    #[test]
    fn request_shape_system_tools_and_generation_config() {
        let request = ChatRequest {
            messages: vec![Message::system("Be brief."), Message::user("hi")].into(),
            tools: vec![
                crate::model::ToolSpec { name: "now".into(), description: "Time.".into(), parameters: json!({"type": "object", "properties": {}}), strict: false, examples: Vec::new() },
                crate::model::ToolSpec { name: "add".into(), description: "Adds.".into(), parameters: json!({"type": "object", "additionalProperties": false, "properties": {"a": {"type": "integer", "format": "int64"}}}), strict: false, examples: Vec::new() },
            ]
            .into(),
            tool_choice: ToolChoice::Tool("add".into()),
            max_output_tokens: Some(99),
            ..Default::default()
        };
        let b = build_body(&request);
        assert_eq!(
            b["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}]})
        );
        assert_eq!(
            b["contents"],
            json!([{"role": "user", "parts": [{"text": "hi"}]}])
        );
        let decls = &b["tools"][0]["functionDeclarations"];
        assert!(decls[0].get("parameters").is_none());
        assert_eq!(
            decls[1]["parameters"],
            json!({"type": "object", "properties": {"a": {"type": "integer", "format": "int64"}}})
        );
        assert_eq!(
            b["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY", "allowedFunctionNames": ["add"]})
        );
        assert_eq!(b["generationConfig"]["maxOutputTokens"], 99);
    }
}
