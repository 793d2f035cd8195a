//! Google Gemini `generateContent` / `streamGenerateContent?alt=sse` (`gemini:MODEL`).
//!
//! Its quirks live here: `systemInstruction` and the `model` role; tool schemas converted to
//! Gemini's subset ([`gemini_schema`]); function calls usually without ids (we synthesise
//! `gemini-call-N` ids and never send them back); function results as `functionResponse`
//! parts whose `response` is an object (`output` or `error`); a model turn carrying thought
//! signatures replayed exactly as received; a bad key reported as HTTP 400 (classified as an
//! authentication error); the wait in `RetryInfo.retryDelay` instead of a header; streams
//! with no terminator and errors as bare JSON.

mod request;
mod response;
mod schema;

use reqwest::header::{HeaderMap, HeaderName};

pub use schema::gemini_schema;

use super::http::{ApiKey, Target};
use super::protocol::{Endpoints, HttpModel, KeyedProtocol, WireProtocol};
use crate::error::{ModelError, ModelErrorKind};
use crate::model::{Capabilities, ChatRequest, ChatResponse, ResponseFormat};

/// Ids we make up for calls Gemini sent without one start with this; they are never sent
/// back to Gemini.
pub const SYNTHETIC_ID_PREFIX: &str = "gemini-call-";

/// A Gemini model.
///
/// ```
/// use agent_core::backends::gemini::Gemini;
/// let model = Gemini::new("gemini-2.5-flash", "AIza...", None).unwrap();
/// ```
pub type Gemini = HttpModel<GenerateContent>;

/// The `generateContent` wire protocol.
#[derive(Clone, Debug)]
pub struct GenerateContent {
    model: String,
}

impl KeyedProtocol for GenerateContent {
    const PROVIDER: &'static str = "gemini";
    const DEFAULT_BASE_URL: &'static str = "https://generativelanguage.googleapis.com/v1beta";
    const KEY_ENV: &'static [&'static str] = &["GEMINI_API_KEY", "GOOGLE_API_KEY"];
    const BASE_URL_ENV: &'static str = "GEMINI_BASE_URL";

    fn connect(model: &str, base: &str, api_key: &ApiKey) -> Result<(Self, Endpoints), ModelError> {
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
            provider: Self::PROVIDER.into(),
            model: model.to_owned(),
            refine_error: Some(response::refine_error),
        };
        let endpoints = Endpoints {
            chat: target(format!("{base}/models/{model}:generateContent")),
            stream: target(format!(
                "{base}/models/{model}:streamGenerateContent?alt=sse"
            )),
        };
        let protocol = GenerateContent {
            model: model.to_owned(),
        };
        Ok((protocol, endpoints))
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

impl WireProtocol for GenerateContent {
    type Assembler = response::GeminiStream;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            images: true,
            documents: true,
            structured_output: true,
            reasoning: true,
            ..Capabilities::default()
        }
    }

    fn request_body(&self, request: &ChatRequest, _stream: bool) -> Result<Vec<u8>, ModelError> {
        // Models before Gemini 3 refuse a response schema together with function tools;
        // say so here rather than send a request that can only fail.
        if !request.tools.is_empty()
            && matches!(request.response_format, ResponseFormat::JsonSchema { .. })
            && !native_output_with_tools(&self.model)
        {
            return Err(config_error(
                &self.model,
                format!(
                    "{} cannot combine a response schema with function tools (Gemini 3 and \
                     later can); ask for the typed answer in tool mode",
                    self.model
                ),
            ));
        }
        request::build_body(request)
    }

    fn parse_response(&self, body: &[u8]) -> Result<ChatResponse, ModelError> {
        response::parse_response(body, &self.model)
    }

    fn assembler(&self) -> response::GeminiStream {
        response::GeminiStream::new(&self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::request;
    use super::response::{parse_response, refine_error};
    use super::*;
    use crate::message::{AssistantMessage, Message, ToolCall, ToolResult, Usage};
    use crate::model::{FinishReason, ToolChoice};
    use serde_json::json;
    use std::time::Duration;

    fn build_body(request: &ChatRequest) -> serde_json::Value {
        serde_json::from_slice(&request::build_body(request).unwrap()).unwrap()
    }

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
                ..Usage::default()
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
