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

use super::http::{ApiKey, HttpClient, HttpConfig, Target, check_base_url, env_var};
use super::protocol::{Endpoints, HttpModel, WireProtocol};
use crate::error::{ModelError, ModelErrorKind};
use crate::model::{Capabilities, ChatRequest, ChatResponse};

/// The provider name in `openai-responses:MODEL`.
pub const PROVIDER: &str = "openai-responses";

/// A model behind the OpenAI Responses API.
///
/// ```
/// use agent_core::backends::OpenAiResponses;
/// use agent_core::ChatModel;
/// let model = OpenAiResponses::builder().model("gpt-5-mini").api_key("sk-...").build().unwrap();
/// assert_eq!(model.provider(), "openai-responses");
/// ```
pub type OpenAiResponses = HttpModel<Responses>;

/// The Responses API wire protocol.
#[derive(Clone, Debug)]
pub struct Responses {
    model: String,
}

impl OpenAiResponses {
    /// Starts building a model (base URL `https://api.openai.com/v1`). Nothing is read from
    /// the environment.
    pub fn builder() -> ResponsesBuilder {
        ResponsesBuilder {
            model: String::new(),
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            http: HttpConfig::default(),
        }
    }

    /// From `OPENAI_API_KEY` (required) and `OPENAI_BASE_URL` (optional), read through
    /// `lookup`.
    pub fn from_lookup(
        model: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ModelError> {
        let get = |name: &str| env_var(lookup, name);
        let key = get("OPENAI_API_KEY").ok_or_else(|| {
            ModelError::new(
                ModelErrorKind::Configuration,
                "OPENAI_API_KEY is not set; export your OpenAI API key as OPENAI_API_KEY",
            )
            .with_provider(PROVIDER, model)
        })?;
        let mut builder = Self::builder().model(model).api_key(key);
        if let Some(base) = get("OPENAI_BASE_URL") {
            builder = builder.base_url(base);
        }
        builder.build()
    }
}

/// Builds an [`OpenAiResponses`] model in code.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `.build()`"]
pub struct ResponsesBuilder {
    model: String,
    base_url: String,
    api_key: Option<ApiKey>,
    http: HttpConfig,
}

impl ResponsesBuilder {
    /// The model name.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The API base (the part before `/responses`).
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// The API key.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(ApiKey::new(key));
        self
    }

    /// Timeouts and retries.
    pub fn http_config(mut self, config: HttpConfig) -> Self {
        self.http = config;
        self
    }

    /// Builds the model.
    pub fn build(self) -> Result<OpenAiResponses, ModelError> {
        if self.model.trim().is_empty() {
            return Err(
                ModelError::new(ModelErrorKind::Configuration, "no model name given")
                    .with_provider(PROVIDER, ""),
            );
        }
        let base = check_base_url(&self.base_url, PROVIDER, &self.model)?;
        let mut headers = HeaderMap::new();
        if let Some(key) = &self.api_key {
            headers.insert(AUTHORIZATION, key.header_value("Bearer ")?);
        }
        let target = Target {
            url: format!("{base}/responses"),
            headers,
            provider: PROVIDER.into(),
            model: self.model.clone(),
            refine_error: None,
        };
        Ok(HttpModel::from_protocol(
            Responses { model: self.model },
            Endpoints::same(target),
            HttpClient::new(self.http)?,
        ))
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
