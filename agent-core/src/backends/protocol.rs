//! The one shape every HTTP backend has: a wire protocol (pure: our request → body bytes,
//! body bytes → our response, SSE events → stream events and a final response) and one
//! generic model, [`HttpModel`], that owns everything else: the HTTP client, retries,
//! streaming, the JSON-instead-of-stream fallback and the estimate of missing usage.
//!
//! Adding a provider is writing one [`WireProtocol`] (a request mapping and a response
//! mapping, each testable from JSON alone) and a constructor; nothing here may know a
//! provider's name or format.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::http::{ApiKey, HttpClient, HttpConfig, Target, check_base_url, env_var, redact_url};
use super::sse::SseDecoder;
use super::stream::stream_response;
use crate::error::{ModelError, ModelErrorKind};
use crate::model::{Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, StreamEvent};

/// One wire protocol: what a provider expects and sends, and nothing about how bytes travel.
pub trait WireProtocol: Send + Sync + 'static {
    /// Assembles one streamed answer.
    type Assembler: StreamAssembler;

    /// What a model of this protocol can do.
    fn capabilities(&self) -> Capabilities;

    /// The request body (`stream` asks for an event stream). Refuses, with a typed error, a
    /// request this provider or model cannot take (rather than sending one that must fail).
    fn request_body(&self, request: &ChatRequest, stream: bool) -> Result<Vec<u8>, ModelError>;

    /// A whole (non-streamed) answer. Also used when a server answers a stream request with
    /// one JSON body.
    fn parse_response(&self, body: &[u8]) -> Result<ChatResponse, ModelError>;

    /// A fresh assembler for one streamed answer.
    fn assembler(&self) -> Self::Assembler;

    /// Whether a refused stream request should be sent once more (the protocol has changed
    /// what it asks for in the light of `error`). Called only on errors before any content.
    fn retry_refused_stream(&self, _error: &ModelError) -> bool {
        false
    }
}

/// Turns the data of a stream's events into stream events and, at the end, the answer.
pub trait StreamAssembler: Send + 'static {
    /// Takes one event's data (trimmed, never empty) and returns the events it produced.
    fn push(&mut self, data: &str) -> Result<Vec<StreamEvent>, ModelError>;

    /// Whether the provider's end marker arrived (the stream is complete without waiting
    /// for the connection to close).
    fn is_done(&self) -> bool;

    /// The assembled answer when the stream ended (by its end marker or by the connection
    /// closing); `leftover` holds lines that were not SSE at all (a bare JSON error object).
    /// A stream that ended before the answer was complete is an error, never a short answer.
    fn finish(self, leftover: Option<String>) -> Result<ChatResponse, ModelError>;
}

/// A protocol reached with one API key: how a model of it is set up from a key, a base URL
/// and the environment. [`HttpModel`] gets `new`, `with_config` and `from_lookup` from it.
pub trait KeyedProtocol: WireProtocol + Sized {
    /// The provider name in `provider:model`.
    const PROVIDER: &'static str;
    /// The base URL when none is given.
    const DEFAULT_BASE_URL: &'static str;
    /// The variables that may hold the key, in order of preference.
    const KEY_ENV: &'static [&'static str];
    /// The variable that overrides the base URL.
    const BASE_URL_ENV: &'static str;

    /// The protocol for `model` and where its requests go, from a checked base URL (no
    /// trailing `/`) and the key (to be sent in a header marked sensitive).
    fn connect(model: &str, base: &str, api_key: &ApiKey) -> Result<(Self, Endpoints), ModelError>;
}

impl<P: KeyedProtocol> HttpModel<P> {
    /// A model configured in code (`base_url` defaults to the provider's public endpoint).
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
        let base = check_base_url(base_url.unwrap_or(P::DEFAULT_BASE_URL), P::PROVIDER, model)?;
        let (protocol, endpoints) = P::connect(model, base, &api_key)?;
        Ok(Self::from_protocol(
            protocol,
            endpoints,
            HttpClient::new(http)?,
        ))
    }

    /// A model configured from the environment read through `lookup`: the key from the
    /// first of the provider's key variables that is set (an error naming them when none
    /// is), the base URL from its base-URL variable when set.
    pub fn from_lookup(
        model: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ModelError> {
        let get = |name: &str| env_var(lookup, name);
        let Some(key) = P::KEY_ENV.iter().find_map(|name| get(name)) else {
            return Err(ModelError::new(
                ModelErrorKind::Configuration,
                format!(
                    "{} is not set; export your {} API key as {}",
                    P::KEY_ENV.first().copied().unwrap_or("the API key"),
                    P::PROVIDER,
                    P::KEY_ENV.join(" or ")
                ),
            )
            .with_provider(P::PROVIDER, model));
        };
        Self::with_config(
            model,
            ApiKey::new(key),
            get(P::BASE_URL_ENV).as_deref(),
            HttpConfig::default(),
        )
    }
}

/// Where a backend sends its requests: one URL for whole answers, one for streams (the same
/// for most providers).
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// For [`ChatModel::chat`].
    pub chat: Target,
    /// For [`ChatModel::chat_stream`].
    pub stream: Target,
}

impl Endpoints {
    /// The same target for both.
    pub fn same(target: Target) -> Self {
        Endpoints {
            chat: target.clone(),
            stream: target,
        }
    }
}

/// A chat model that speaks an HTTP wire protocol. Every remote backend is one of these:
/// [`Anthropic`](super::Anthropic), [`Gemini`](super::Gemini),
/// [`OpenAiCompatible`](super::OpenAiCompatible) and
/// [`OpenAiResponses`](super::OpenAiResponses) name its instances.
pub struct HttpModel<P> {
    pub(crate) protocol: Arc<P>,
    provider: String,
    model: String,
    endpoints: Endpoints,
    http: HttpClient,
}

impl<P> Clone for HttpModel<P> {
    fn clone(&self) -> Self {
        HttpModel {
            protocol: Arc::clone(&self.protocol),
            provider: self.provider.clone(),
            model: self.model.clone(),
            endpoints: self.endpoints.clone(),
            http: self.http.clone(),
        }
    }
}

impl<P> fmt::Debug for HttpModel<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpModel")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("url", &redact_url(&self.endpoints.chat.url))
            .finish_non_exhaustive()
    }
}

impl<P: WireProtocol> HttpModel<P> {
    /// A model speaking `protocol` to `endpoints` (whose `provider` and `model` name it).
    pub(crate) fn from_protocol(protocol: P, endpoints: Endpoints, http: HttpClient) -> Self {
        HttpModel {
            protocol: Arc::new(protocol),
            provider: endpoints.chat.provider.clone(),
            model: endpoints.chat.model.clone(),
            endpoints,
            http,
        }
    }

    fn body(&self, request: &ChatRequest, stream: bool) -> Result<Bytes, ModelError> {
        self.protocol
            .request_body(request, stream)
            .map(Bytes::from)
            .map_err(|e| e.with_provider(self.provider.clone(), self.model.clone()))
    }
}

/// Assembles a complete, recorded SSE body with the same decoder and assembler a live stream
/// uses (for replaying recorded streams, and for testing a protocol from bytes alone).
pub(crate) fn assemble_recorded<A: StreamAssembler>(
    mut assembler: A,
    body: &[u8],
) -> Result<ChatResponse, ModelError> {
    let mut decoder = SseDecoder::default();
    let mut events = decoder.push(body);
    events.extend(decoder.finish());
    for event in events {
        let data = event.data.trim();
        if !data.is_empty() {
            assembler.push(data)?;
            if assembler.is_done() {
                break;
            }
        }
    }
    assembler.finish(decoder.take_raw())
}

/// A part of the task this protocol (or model) cannot take, refused before anything is sent.
pub(crate) fn unsupported(what: &str) -> ModelError {
    ModelError::new(
        ModelErrorKind::Unsupported,
        format!("this model cannot take {what}; remove it from the task or use a model that can"),
    )
}

/// Refuses a request whose user messages hold images (unless `images`) or documents
/// (unless `documents`).
pub(crate) fn check_parts(
    request: &ChatRequest,
    images: bool,
    documents: bool,
) -> Result<(), ModelError> {
    for message in request.messages.iter() {
        if let crate::message::Message::User { content } = message {
            for part in content {
                match part {
                    crate::message::ContentPart::Image { .. } if !images => {
                        return Err(unsupported("images"));
                    }
                    crate::message::ContentPart::Document { media_type, .. } if !documents => {
                        return Err(unsupported(&format!("documents ({media_type})")));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// A request body that could not be serialised, as a typed error.
pub(crate) fn serialise_error(error: &serde_json::Error) -> ModelError {
    ModelError::new(
        ModelErrorKind::BadRequest,
        format!("cannot serialise the request: {error}"),
    )
}

#[async_trait]
impl<P: WireProtocol> ChatModel for HttpModel<P> {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> Capabilities {
        self.protocol.capabilities()
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let body = self.body(request, false)?;
        let bytes = self.http.post_json(&self.endpoints.chat, body).await?;
        let mut response = self.protocol.parse_response(&bytes)?;
        // Unknown, not zero: a provider that reported no usage gets an estimate.
        response.fill_missing_usage(request);
        Ok(response)
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ModelError> {
        let target = &self.endpoints.stream;
        let response = match self
            .http
            .post_stream(target, self.body(request, true)?)
            .await
        {
            Err(e) if self.protocol.retry_refused_stream(&e) => {
                self.http
                    .post_stream(target, self.body(request, true)?)
                    .await?
            }
            other => other?,
        };
        let protocol = Arc::clone(&self.protocol);
        stream_response(
            response,
            self.http.config(),
            &self.provider,
            &self.model,
            self.protocol.assembler(),
            request.estimated_input_tokens(),
            move |bytes| protocol.parse_response(bytes),
        )
        .await
    }
}
