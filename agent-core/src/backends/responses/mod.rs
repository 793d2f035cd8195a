//! The OpenAI Responses API (`openai-responses:MODEL`): `POST {base}/responses`.
//!
//! A provider of its own rather than an option on `openai:`: it is another wire protocol
//! (items instead of messages, flat tools, `call_id`s, typed stream events without
//! `[DONE]`, reasoning items to carry), and the servers that speak Chat Completions
//! (`openai-compatible:`, Mistral, Ollama ...) mostly do not speak it; one protocol is one
//! backend here. It reads the same `OPENAI_API_KEY` and `OPENAI_BASE_URL`.
//!
//! Stateless by default: `store: false`, no `previous_response_id`; every request carries
//! the conversation, and a turn that came with reasoning items (asked for as encrypted
//! content from reasoning models) is sent back with them exactly as received. Errors are
//! read like OpenAI's everywhere else (same HTTP error bodies; `error` events and failed
//! responses in a stream).

mod request;
mod response;

use reqwest::header::{AUTHORIZATION, HeaderMap};

use super::http::{ApiKey, Target};
use super::protocol::{Endpoints, HttpModel, KeyedProtocol, WireProtocol};
use crate::error::ModelError;
use crate::model::{Capabilities, ChatRequest, ChatResponse};

/// The provider name in `openai-responses:MODEL`.
pub const PROVIDER: &str = "openai-responses";

/// A model behind the OpenAI Responses API.
///
/// ```
/// use agent_core::backends::OpenAiResponses;
/// use agent_core::ChatModel;
/// let model = OpenAiResponses::new("gpt-5-mini", "sk-...", None).unwrap();
/// assert_eq!(model.provider(), "openai-responses");
/// ```
pub type OpenAiResponses = HttpModel<Responses>;

/// The Responses API wire protocol.
#[derive(Clone, Debug)]
pub struct Responses {
    model: String,
}

impl KeyedProtocol for Responses {
    const PROVIDER: &'static str = PROVIDER;
    const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";
    const KEY_ENV: &'static [&'static str] = &["OPENAI_API_KEY"];
    const BASE_URL_ENV: &'static str = "OPENAI_BASE_URL";

    fn connect(model: &str, base: &str, api_key: &ApiKey) -> Result<(Self, Endpoints), ModelError> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, api_key.header_value("Bearer ")?);
        let target = Target {
            url: format!("{base}/responses"),
            headers,
            provider: PROVIDER.into(),
            model: model.to_owned(),
            refine_error: None,
        };
        let protocol = Responses {
            model: model.to_owned(),
        };
        Ok((protocol, Endpoints::same(target)))
    }
}

impl WireProtocol for Responses {
    type Assembler = response::ResponsesStream;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            images: true,
            documents: true,
            structured_output: true,
            reasoning: request::is_reasoning_model(&self.model),
            ..Capabilities::default()
        }
    }

    fn request_body(&self, request: &ChatRequest, stream: bool) -> Result<Vec<u8>, ModelError> {
        request::build_body(&self.model, request, stream)
    }

    fn parse_response(&self, body: &[u8]) -> Result<ChatResponse, ModelError> {
        response::parse_response(body, &self.model)
    }

    fn assembler(&self) -> response::ResponsesStream {
        response::ResponsesStream::new(&self.model)
    }
}
