//! The OpenAI-compatible family: OpenAI, Mistral, DeepSeek, Ollama (`/v1`), Groq,
//! OpenRouter, Together, and any server that speaks Chat Completions (vLLM, llama.cpp,
//! LM Studio).
//!
//! One backend, one [`Flavor`] per provider. Each provider's quirks (Mistral's 9-character
//! ids and role order, DeepSeek's reasoning pass-back, OpenAI's `max_completion_tokens` and
//! strict schemas, Ollama's missing `tool_choice`) are applied in [`request`] to the wire copy
//! of a request; the `response` module parses every answer shape leniently. All I/O goes
//! through [`super::http::HttpClient`].

pub mod request;
mod response;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use super::http::{ApiKey, HttpClient, HttpConfig, Target, check_base_url, env_var};
use super::protocol::{
    Endpoints, HttpModel, WireProtocol, assemble_recorded, check_parts, serialise_error,
};
use crate::error::{ModelError, ModelErrorKind};
use crate::model::{Capabilities, ChatRequest, ChatResponse, ToolSpec};
use response::{OpenAiStream, Source};

pub use request::strict_schema;

/// Which provider's rules apply to the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Flavor {
    /// OpenAI: `max_completion_tokens`, strict tool schemas.
    OpenAi,
    /// Mistral: 9-character ids, no `user` right after `tool`, no unknown fields.
    Mistral,
    /// DeepSeek: `reasoning_content` sent back on tool-calling turns.
    DeepSeek,
    /// Ollama's `/v1`: no `tool_choice`.
    Ollama,
    /// Groq.
    Groq,
    /// OpenRouter.
    OpenRouter,
    /// Together.
    Together,
    /// Any other Chat Completions server: only the common fields.
    Generic,
}

impl Flavor {
    /// Whether a stream may ask for usage (`stream_options.include_usage`). Mistral refuses
    /// the field (and always reports usage); other servers of the generic flavour (vLLM,
    /// llama.cpp, LM Studio) accept it, and one that refuses it is not asked again.
    fn accepts_stream_options(self) -> bool {
        !matches!(self, Flavor::Mistral)
    }
}

/// A provider preset: its flavour, endpoint and environment variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    /// The provider name in `provider:model`.
    pub provider: &'static str,
    /// Its wire rules.
    pub flavor: Flavor,
    /// The default base URL (`None`: it must be configured).
    pub default_base_url: Option<&'static str>,
    /// The variable holding the key, if the provider uses one.
    pub key_env: Option<&'static str>,
    /// Whether a key is required.
    pub key_required: bool,
    /// The variable overriding the base URL.
    pub base_url_env: &'static str,
}

/// Every preset of this backend.
pub const PRESETS: &[Preset] = &[
    Preset {
        provider: "openai",
        flavor: Flavor::OpenAi,
        default_base_url: Some("https://api.openai.com/v1"),
        key_env: Some("OPENAI_API_KEY"),
        key_required: true,
        base_url_env: "OPENAI_BASE_URL",
    },
    Preset {
        provider: "mistral",
        flavor: Flavor::Mistral,
        default_base_url: Some("https://api.mistral.ai/v1"),
        key_env: Some("MISTRAL_API_KEY"),
        key_required: true,
        base_url_env: "MISTRAL_BASE_URL",
    },
    Preset {
        provider: "deepseek",
        flavor: Flavor::DeepSeek,
        default_base_url: Some("https://api.deepseek.com"),
        key_env: Some("DEEPSEEK_API_KEY"),
        key_required: true,
        base_url_env: "DEEPSEEK_BASE_URL",
    },
    Preset {
        provider: "ollama",
        flavor: Flavor::Ollama,
        default_base_url: Some("http://127.0.0.1:11434/v1"),
        key_env: Some("OLLAMA_API_KEY"),
        key_required: false,
        base_url_env: "OLLAMA_HOST",
    },
    Preset {
        provider: "groq",
        flavor: Flavor::Groq,
        default_base_url: Some("https://api.groq.com/openai/v1"),
        key_env: Some("GROQ_API_KEY"),
        key_required: true,
        base_url_env: "GROQ_BASE_URL",
    },
    Preset {
        provider: "openrouter",
        flavor: Flavor::OpenRouter,
        default_base_url: Some("https://openrouter.ai/api/v1"),
        key_env: Some("OPENROUTER_API_KEY"),
        key_required: true,
        base_url_env: "OPENROUTER_BASE_URL",
    },
    Preset {
        provider: "together",
        flavor: Flavor::Together,
        default_base_url: Some("https://api.together.xyz/v1"),
        key_env: Some("TOGETHER_API_KEY"),
        key_required: true,
        base_url_env: "TOGETHER_BASE_URL",
    },
    Preset {
        provider: "openai-compatible",
        flavor: Flavor::Generic,
        default_base_url: None,
        key_env: Some("OPENAI_COMPATIBLE_API_KEY"),
        key_required: false,
        base_url_env: "OPENAI_COMPATIBLE_BASE_URL",
    },
];

/// Assembles a complete, recorded SSE body (as a server sent it) into the answer, with the
/// same decoder and assembler the live stream uses. For replaying recorded streams in tests
/// and benchmarks.
///
/// ```
/// use agent_core::backends::openai::assemble_sse_body;
/// let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
/// assert_eq!(assemble_sse_body("openai", "m", body).unwrap().message.content, "Hi");
/// ```
pub fn assemble_sse_body(
    provider: &str,
    model: &str,
    body: &[u8],
) -> Result<ChatResponse, ModelError> {
    assemble_recorded(OpenAiStream::new(provider, model), body)
}

/// The preset of a provider name.
pub fn preset(provider: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.provider == provider)
}

/// A Chat Completions model.
///
/// ```
/// use agent_core::backends::openai::OpenAiCompatible;
/// use agent_core::ChatModel;
/// let model = OpenAiCompatible::builder("openai-compatible")
///     .unwrap()
///     .model("qwen2.5-7b-instruct")
///     .base_url("http://127.0.0.1:8000/v1")
///     .build()
///     .unwrap();
/// assert_eq!(model.model(), "qwen2.5-7b-instruct");
/// ```
pub type OpenAiCompatible = HttpModel<ChatCompletions>;

/// The Chat Completions wire protocol, with one provider's [`Flavor`] of it.
#[derive(Debug)]
pub struct ChatCompletions {
    provider: String,
    model: String,
    flavor: Flavor,
    /// Whether streams still ask for usage: cleared (for this model and its clones) when a
    /// server refuses `stream_options`.
    stream_usage: AtomicBool,
    /// The last tool list sent, serialised: an agent sends the same list (the same `Arc`)
    /// on every turn, so it is serialised once, not once a request.
    tools: std::sync::Mutex<Option<SerialisedTools>>,
}

/// A tool list and its wire form.
type SerialisedTools = (Arc<[ToolSpec]>, Arc<serde_json::value::RawValue>);

impl ChatCompletions {
    /// The wire form of a tool list, serialised when it is not the list sent last.
    fn serialised_tools(
        &self,
        tools: &Arc<[ToolSpec]>,
    ) -> Result<Option<Arc<serde_json::value::RawValue>>, ModelError> {
        if tools.is_empty() {
            return Ok(None);
        }
        // A poisoned lock only means a panic elsewhere; the cache is still whole.
        let mut cache = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((sent, raw)) = cache.as_ref()
            && Arc::ptr_eq(sent, tools)
        {
            return Ok(Some(raw.clone()));
        }
        let raw: Arc<serde_json::value::RawValue> = request::serialised_tools(self.flavor, tools)
            .map_err(|e| serialise_error(&e))?
            .into();
        *cache = Some((tools.clone(), raw.clone()));
        Ok(Some(raw))
    }
}

impl OpenAiCompatible {
    /// Starts building a model of a preset (`openai`, `mistral`, `deepseek`, `ollama`,
    /// `groq`, `openrouter`, `together`, `openai-compatible`). Nothing is read from the
    /// environment.
    pub fn builder(provider: &str) -> Result<OpenAiBuilder, ModelError> {
        let preset = preset(provider).ok_or_else(|| unknown_provider(provider))?;
        Ok(OpenAiBuilder {
            preset: *preset,
            model: String::new(),
            base_url: preset.default_base_url.map(str::to_owned),
            api_key: None,
            http: HttpConfig::default(),
            headers: Vec::new(),
        })
    }

    /// A model of a preset configured from the environment: the key from the preset's key
    /// variable (an error naming it when it is required and missing), the base URL from its
    /// base-URL variable (`OLLAMA_HOST` for Ollama).
    pub fn from_env(provider: &str, model: &str) -> Result<Self, ModelError> {
        Self::from_lookup(provider, model, &|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(
        provider: &str,
        model: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ModelError> {
        let mut builder = Self::builder(provider)?.model(model);
        let preset = builder.preset;
        let get = |name: &str| env_var(lookup, name);
        if let Some(base) = get(preset.base_url_env) {
            builder = builder.base_url(if preset.flavor == Flavor::Ollama {
                ollama_base_url(&base)
            } else {
                base
            });
        }
        if let Some(env) = preset.key_env {
            match get(env) {
                Some(key) => builder = builder.api_key(key),
                None if preset.key_required => {
                    return Err(ModelError::new(
                        ModelErrorKind::Configuration,
                        format!("{env} is not set; export your {provider} API key as {env}"),
                    )
                    .with_provider(provider, model));
                }
                None => {}
            }
        }
        builder.build()
    }

    /// The wire flavour.
    pub fn flavor(&self) -> Flavor {
        self.protocol.flavor
    }
}

fn unknown_provider(provider: &str) -> ModelError {
    let known: Vec<&str> = PRESETS.iter().map(|p| p.provider).collect();
    ModelError::new(
        ModelErrorKind::Configuration,
        format!(
            "`{provider}` is not an OpenAI-compatible preset; known: {}",
            known.join(", ")
        ),
    )
}

/// `OLLAMA_HOST` is a host (`0.0.0.0:11434`, `http://gpu-box:11434`), not an API base:
/// add the scheme if missing and the `/v1` path.
fn ollama_base_url(host: &str) -> String {
    let host = host.trim_end_matches('/');
    let with_scheme = if host.contains("://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    };
    let with_scheme = with_scheme.replace("://0.0.0.0", "://127.0.0.1");
    if with_scheme.ends_with("/v1") {
        with_scheme
    } else {
        format!("{with_scheme}/v1")
    }
}

/// Builds an [`OpenAiCompatible`] in code.
#[derive(Clone)]
#[must_use = "a builder does nothing until `.build()`"]
pub struct OpenAiBuilder {
    preset: Preset,
    model: String,
    base_url: Option<String>,
    api_key: Option<ApiKey>,
    http: HttpConfig,
    headers: Vec<(String, String)>,
}

impl fmt::Debug for OpenAiBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiBuilder")
            .field("provider", &self.preset.provider)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl OpenAiBuilder {
    /// The model name.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The API base (the part before `/chat/completions`).
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
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

    /// An extra header on every request (OpenRouter's `HTTP-Referer`, say).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Builds the model.
    pub fn build(self) -> Result<OpenAiCompatible, ModelError> {
        let provider = self.preset.provider;
        let config_error = |message: String| {
            ModelError::new(ModelErrorKind::Configuration, message)
                .with_provider(provider, self.model.clone())
        };
        if self.model.trim().is_empty() {
            return Err(config_error("no model name given".into()));
        }
        let Some(base) = self.base_url.as_deref() else {
            return Err(config_error(format!(
                "no base URL: set {} (e.g. http://127.0.0.1:8000/v1)",
                self.preset.base_url_env
            )));
        };
        let base = check_base_url(base, provider, &self.model)?;
        let mut headers = HeaderMap::new();
        if let Some(key) = &self.api_key {
            headers.insert(AUTHORIZATION, key.header_value("Bearer ")?);
        }
        for (name, value) in &self.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| config_error(format!("`{name}` is not a valid header name")))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| config_error(format!("the value of header `{name}` is not valid")))?;
            headers.insert(name, value);
        }
        let target = Target {
            url: format!("{base}/chat/completions"),
            headers,
            provider: provider.to_owned(),
            model: self.model.clone(),
            refine_error: None,
        };
        let protocol = ChatCompletions {
            provider: provider.to_owned(),
            flavor: self.preset.flavor,
            model: self.model,
            stream_usage: AtomicBool::new(true),
            tools: std::sync::Mutex::new(None),
        };
        Ok(HttpModel::from_protocol(
            protocol,
            Endpoints::same(target),
            HttpClient::new(self.http)?,
        ))
    }
}

impl ChatCompletions {
    fn accepts_documents(&self) -> bool {
        matches!(self.flavor, Flavor::OpenAi | Flavor::OpenRouter)
    }
}

impl WireProtocol for ChatCompletions {
    type Assembler = OpenAiStream;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            images: matches!(self.flavor, Flavor::OpenAi | Flavor::OpenRouter),
            documents: self.accepts_documents(),
            structured_output: matches!(
                self.flavor,
                Flavor::OpenAi
                    | Flavor::OpenRouter
                    | Flavor::Generic
                    | Flavor::Mistral
                    | Flavor::Ollama
            ),
            reasoning: matches!(self.flavor, Flavor::DeepSeek | Flavor::OpenRouter),
            ..Capabilities::default()
        }
    }

    fn request_body(&self, request: &ChatRequest, stream: bool) -> Result<Vec<u8>, ModelError> {
        // DeepSeek reads no images; only OpenAI's `file` part carries a document (other
        // servers may read images, depending on the model, and are left to say so).
        check_parts(
            request,
            self.flavor != Flavor::DeepSeek,
            self.accepts_documents(),
        )?;
        let ask_usage = self.stream_usage.load(Ordering::Relaxed);
        let tools = self.serialised_tools(&request.tools)?;
        request::build_body_asking_usage(
            self.flavor,
            &self.model,
            request,
            stream,
            ask_usage,
            tools.as_deref(),
        )
        .map_err(|e| serialise_error(&e))
    }

    fn parse_response(&self, body: &[u8]) -> Result<ChatResponse, ModelError> {
        response::parse_response(
            body,
            Source {
                provider: &self.provider,
                model: &self.model,
            },
        )
    }

    fn assembler(&self) -> OpenAiStream {
        OpenAiStream::new(&self.provider, &self.model)
    }

    /// A generic server that refuses `stream_options` (400/422 naming it): ask once more
    /// without it, and never again; usage is then estimated.
    fn retry_refused_stream(&self, error: &ModelError) -> bool {
        let refused = self.flavor == Flavor::Generic
            && error.kind == ModelErrorKind::BadRequest
            && error.message.contains("stream_options")
            && self.stream_usage.swap(false, Ordering::Relaxed);
        if refused {
            tracing::info!(
                gen_ai.provider.name = %self.provider,
                gen_ai.request.model = %self.model,
                "the server refused stream_options; streaming without usage reports"
            );
        }
        refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_becomes_a_v1_base() {
        assert_eq!(
            ollama_base_url("0.0.0.0:11434"),
            "http://127.0.0.1:11434/v1"
        );
        assert_eq!(ollama_base_url("http://gpu:11434/"), "http://gpu:11434/v1");
        assert_eq!(
            ollama_base_url("https://o.example/v1"),
            "https://o.example/v1"
        );
    }

    #[test]
    fn a_missing_key_names_the_variable_and_no_key_prints() {
        let err = OpenAiCompatible::from_lookup("mistral", "mistral-small-latest", &|_| None)
            .unwrap_err();
        assert_eq!(err.kind, ModelErrorKind::Configuration);
        assert!(err.to_string().contains("MISTRAL_API_KEY"), "{err}");
        let model = OpenAiCompatible::from_lookup("openai", "gpt-4o-mini", &|name| {
            (name == "OPENAI_API_KEY").then(|| "sk-very-secret".to_owned())
        })
        .unwrap();
        assert!(!format!("{model:?}").contains("sk-very-secret"));
    }

    #[test]
    fn ollama_needs_no_key_and_compatible_needs_a_base_url() {
        OpenAiCompatible::from_lookup("ollama", "qwen2.5", &|_| None).unwrap();
        let err = OpenAiCompatible::from_lookup("openai-compatible", "m", &|_| None).unwrap_err();
        assert!(
            err.to_string().contains("OPENAI_COMPATIBLE_BASE_URL"),
            "{err}"
        );
    }

    #[test]
    fn a_tool_list_is_serialised_once_and_again_when_it_changes() {
        use crate::message::Message;
        let protocol = ChatCompletions {
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            flavor: Flavor::OpenAi,
            stream_usage: AtomicBool::new(true),
            tools: std::sync::Mutex::new(None),
        };
        let spec = |name: &str, strict| ToolSpec {
            name: name.into(),
            description: format!("{name}s two numbers"),
            parameters: serde_json::json!({"type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"]}),
            strict,
            examples: Vec::new(),
        };
        let request = |tools: &Arc<[ToolSpec]>| ChatRequest {
            messages: vec![Message::user("hi")].into(),
            tools: tools.clone(),
            ..Default::default()
        };
        let first: Arc<[ToolSpec]> = vec![spec("add", false), spec("multiply", true)].into();
        let fresh =
            request::build_body(Flavor::OpenAi, "gpt-4o-mini", &request(&first), false).unwrap();
        let once = protocol.request_body(&request(&first), false).unwrap();
        let again = protocol.request_body(&request(&first), false).unwrap();
        // Byte for byte what building the list each time gives, strict schema included.
        assert_eq!(once, fresh);
        assert_eq!(again, fresh);
        let kept = protocol
            .tools
            .lock()
            .unwrap()
            .as_ref()
            .map(|(t, _)| t.clone());
        assert!(kept.is_some_and(|t| Arc::ptr_eq(&t, &first)));
        // Another list (a handoff's agent, another agent on the same model) is sent as it is.
        let second: Arc<[ToolSpec]> = vec![spec("subtract", false)].into();
        let body: serde_json::Value =
            serde_json::from_slice(&protocol.request_body(&request(&second), false).unwrap())
                .unwrap();
        assert_eq!(body["tools"].as_array().map(Vec::len), Some(1));
        assert_eq!(body["tools"][0]["function"]["name"], "subtract");
        // No tools: no list, whatever was sent before.
        let none: serde_json::Value = serde_json::from_slice(
            &protocol
                .request_body(&request(&Arc::from(Vec::new())), false)
                .unwrap(),
        )
        .unwrap();
        assert!(none.get("tools").is_none());
    }
}
