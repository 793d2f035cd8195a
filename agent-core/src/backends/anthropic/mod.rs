//! Anthropic Messages (`anthropic:MODEL`).
//!
//! Its quirks live here and nowhere else: the system prompt at the top level; `max_tokens`
//! required (a configurable default); tool results as `tool_result` blocks placed first in
//! the next user message, consecutive results (and a following user text) merged into one
//! user turn; tool-call arguments sent back as objects; thinking blocks and their signatures
//! replayed exactly as received; usage normalised (input = `input_tokens` + cache reads +
//! cache writes); stream usage counts are running totals, not increments.

mod request;
mod response;

use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::http::{ApiKey, Target};
use super::protocol::{Endpoints, HttpModel, KeyedProtocol, WireProtocol};
use crate::error::ModelError;
use crate::model::{Capabilities, ChatRequest, ChatResponse};

/// The API version header every request carries.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` when the request does not set `max_output_tokens` (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// An Anthropic model.
///
/// ```
/// use agent_core::backends::anthropic::Anthropic;
/// let model = Anthropic::new("claude-sonnet-4-5", "sk-ant-...", None).unwrap();
/// ```
pub type Anthropic = HttpModel<Messages>;

/// The Messages wire protocol.
#[derive(Clone, Debug)]
pub struct Messages {
    model: String,
    default_max_tokens: u32,
    /// Whether requests carry `cache_control` breakpoints.
    prompt_caching: bool,
}

impl KeyedProtocol for Messages {
    const PROVIDER: &'static str = "anthropic";
    const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";
    const KEY_ENV: &'static [&'static str] = &["ANTHROPIC_API_KEY"];
    const BASE_URL_ENV: &'static str = "ANTHROPIC_BASE_URL";

    fn connect(model: &str, base: &str, api_key: &ApiKey) -> Result<(Self, Endpoints), ModelError> {
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
        let target = Target {
            url,
            headers,
            provider: Self::PROVIDER.into(),
            model: model.to_owned(),
            refine_error: None,
        };
        let protocol = Messages {
            model: model.to_owned(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
            prompt_caching: true,
        };
        Ok((protocol, Endpoints::same(target)))
    }
}

impl Anthropic {
    /// Sets the `max_tokens` used when a request does not say.
    #[must_use]
    pub fn with_default_max_tokens(mut self, max_tokens: u32) -> Self {
        Arc::make_mut(&mut self.protocol).default_max_tokens = max_tokens.max(1);
        self
    }

    /// Turns automatic prompt caching on (the default) or off. On, every request carries
    /// two `cache_control` breakpoints: one after the stable prefix (the instructions, or
    /// the tools when there are none) and one on the last block of the conversation, so
    /// each turn of a run reads the previous turns from the cache. Cache reads and writes
    /// are reported in [`Usage`](crate::Usage) (`cached_input_tokens`,
    /// `cache_write_input_tokens`).
    #[must_use]
    pub fn with_prompt_caching(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.protocol).prompt_caching = on;
        self
    }
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

impl WireProtocol for Messages {
    type Assembler = response::MessagesStream;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            images: true,
            documents: true,
            reasoning: true,
            structured_output: has_structured_outputs(&self.model),
            ..Capabilities::default()
        }
    }

    fn request_body(&self, request: &ChatRequest, stream: bool) -> Result<Vec<u8>, ModelError> {
        request::build_body(
            &self.model,
            request,
            stream,
            self.default_max_tokens,
            self.prompt_caching,
        )
    }

    fn parse_response(&self, body: &[u8]) -> Result<ChatResponse, ModelError> {
        response::parse_response(body, &self.model)
    }

    fn assembler(&self) -> response::MessagesStream {
        response::MessagesStream::new(&self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, Usage};
    use crate::model::FinishReason;
    use serde_json::json;

    #[test]
    fn thinking_blocks_round_trip_unchanged() {
        let body = json!({"content": [
            {"type": "thinking", "thinking": "Let me see.", "signature": "EqQBCkgIAR=="},
            {"type": "redacted_thinking", "data": "EmwKAhgB"},
            {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}
        ], "stop_reason": "tool_use", "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 5, "output_tokens": 7}});
        let response = response::parse_response(body.to_string().as_bytes(), "m").unwrap();
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 105,
                output_tokens: 7,
                cached_input_tokens: 90,
                cache_write_input_tokens: 5,
                reasoning_tokens: 0,
                estimated: false,
            }
        );
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        let request = ChatRequest {
            messages: vec![Message::Assistant(response.message)].into(),
            ..Default::default()
        };
        let sent: serde_json::Value =
            serde_json::from_slice(&request::build_body("m", &request, false, 10, true).unwrap())
                .unwrap();
        assert_eq!(sent["messages"][0]["content"][0], body["content"][0]);
        assert_eq!(sent["messages"][0]["content"][1], body["content"][1]);
    }
}
