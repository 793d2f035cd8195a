//! [`FallbackModel`]: tries a list of models in order, so an agent keeps answering when a
//! provider has a bad hour.
//!
//! **When it falls back** (the rule, in one place in the code: `FallbackModel::decide`):
//! - to the next model on the provider's trouble: rate limits (429), overload (503/529),
//!   server errors (5xx), timeouts, connection failures, invalid responses, and a stream that
//!   broke *before its first event*. A stream that broke after it is an error: the caller
//!   has seen part of an answer, and a second answer would duplicate it.
//! - on a request refused as malformed (400/422) only when opted in
//!   ([`FallbackBuilder::fallback_on_bad_request`]): by default it is a bug to fix, not to
//!   hide behind another model.
//! - on a context-length error only to the models marked for long contexts.
//! - never on cancellation, authentication, permission, quota, not-found, configuration or
//!   unknown errors: those would fail the same way elsewhere, or point at a bug.
//!
//! A model that failed with the provider's trouble cools down (is tried after the others)
//! for [`FallbackBuilder::cooldown`], or for the provider's `retry-after` if longer. When
//! every model fails, one error lists every attempt. The answer names the model that gave it
//! ([`ChatResponse::model`]), so budgets price that one.
//!
//! Each request is rewritten for the model it goes to, with the backends' own rules:
//! another provider's reasoning blocks are dropped (they are signed for their provider), and
//! tool-call ids that not every provider accepts are mapped to the nine-character ids every
//! provider accepts (the Mistral rule), for calls and results alike.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;

use crate::backends::openai::request::mistral_call_id;
use crate::error::{ModelError, ModelErrorKind};
use crate::message::Message;
use crate::model::{Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, StreamEvent};

/// Builds a [`FallbackModel`].
#[must_use]
#[derive(Default)]
pub struct FallbackBuilder {
    entries: Vec<Entry>,
    cooldown: Option<Duration>,
    bad_request: bool,
}

impl fmt::Debug for FallbackBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("models", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl FallbackBuilder {
    /// Adds a model, tried after those added before it.
    pub fn model(mut self, model: Arc<dyn ChatModel>) -> Self {
        self.entries.push(Entry::new(model, false));
        self
    }

    /// Adds a model with a long context window: a context-length error falls back only to
    /// models added this way.
    pub fn long_context_model(mut self, model: Arc<dyn ChatModel>) -> Self {
        self.entries.push(Entry::new(model, true));
        self
    }

    /// How long a model that failed with the provider's trouble is tried last (default
    /// 30 s; `Duration::ZERO` turns cooldowns off).
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = Some(cooldown);
        self
    }

    /// Also falls back on requests refused as malformed (400/422). Off by default.
    pub fn fallback_on_bad_request(mut self, yes: bool) -> Self {
        self.bad_request = yes;
        self
    }

    /// The model; at least one model is needed.
    pub fn build(self) -> Result<FallbackModel, ModelError> {
        if self.entries.is_empty() {
            return Err(ModelError::new(
                ModelErrorKind::Configuration,
                "a fallback model needs at least one model",
            ));
        }
        Ok(FallbackModel {
            entries: self.entries,
            cooldown: self.cooldown.unwrap_or(Duration::from_secs(30)),
            bad_request: self.bad_request,
        })
    }
}

struct Entry {
    model: Arc<dyn ChatModel>,
    long_context: bool,
    cooling_until: Mutex<Option<Instant>>,
}

impl Entry {
    fn new(model: Arc<dyn ChatModel>, long_context: bool) -> Self {
        Entry {
            model,
            long_context,
            cooling_until: Mutex::new(None),
        }
    }

    fn is_cooling(&self, now: Instant) -> bool {
        self.cooling_until
            .lock()
            .ok()
            .and_then(|u| *u)
            .is_some_and(|until| until > now)
    }

    fn cool_down(&self, wait: Duration) {
        if wait.is_zero() {
            return;
        }
        if let Ok(mut until) = self.cooling_until.lock() {
            *until = Some(Instant::now() + wait);
        }
    }

    fn name(&self) -> String {
        format!("{}:{}", self.model.provider(), self.model.model())
    }
}

/// A model that tries several models in order (see the [module docs](self) for the rule).
///
/// It reports the first model's provider and name; each answer's
/// [`model`](ChatResponse::model) names the model that gave it.
///
/// ```
/// use std::sync::Arc;
/// use agent_core::{ChatModel, ChatRequest, ModelError, ModelErrorKind, resilience::FallbackModel, testing::ScriptedModel};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let busy = Arc::new(ScriptedModel::named("primary")
///     .then_error(ModelError::new(ModelErrorKind::RateLimited, "slow down").with_status(429)));
/// let spare = Arc::new(ScriptedModel::named("spare").then_text("hello"));
/// let model = FallbackModel::builder().model(busy).model(spare).build().unwrap();
/// let answer = model.chat(&ChatRequest::default()).await.unwrap();
/// assert_eq!(answer.message.content, "hello");
/// assert_eq!(answer.model.as_deref(), Some("spare"));
/// # });
/// ```
pub struct FallbackModel {
    entries: Vec<Entry>,
    cooldown: Duration,
    bad_request: bool,
}

impl fmt::Debug for FallbackModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackModel")
            .field(
                "models",
                &self.entries.iter().map(Entry::name).collect::<Vec<_>>(),
            )
            .field("cooldown", &self.cooldown)
            .finish_non_exhaustive()
    }
}

/// What a failure means for the models after the one that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Try the next model, and cool this one down.
    NextAndCool,
    /// Try the next model (the request's fault, not the provider's: no cooldown).
    Next,
    /// Try only the long-context models after this one.
    LongContextOnly,
    /// Give up with this error.
    Stop,
}

impl FallbackModel {
    /// Starts building.
    pub fn builder() -> FallbackBuilder {
        FallbackBuilder::default()
    }

    /// The rule of the [module docs](self).
    fn decide(&self, error: &ModelError) -> Decision {
        match error.kind {
            ModelErrorKind::RateLimited
            | ModelErrorKind::Overloaded
            | ModelErrorKind::Server
            | ModelErrorKind::Timeout
            | ModelErrorKind::Connection
            | ModelErrorKind::InvalidResponse
            | ModelErrorKind::StreamInterrupted => Decision::NextAndCool,
            ModelErrorKind::BadRequest if self.bad_request => Decision::Next,
            ModelErrorKind::ContextLengthExceeded => Decision::LongContextOnly,
            _ => Decision::Stop,
        }
    }

    /// The models to try, in order: those not cooling down first.
    fn order(&self) -> Vec<&Entry> {
        let now = Instant::now();
        let (ready, cooling): (Vec<&Entry>, Vec<&Entry>) =
            self.entries.iter().partition(|e| !e.is_cooling(now));
        ready.into_iter().chain(cooling).collect()
    }

    /// Records a failure; `true` when the next candidate may be tried.
    fn after_failure(&self, entry: &Entry, error: &ModelError, long_only: &mut bool) -> bool {
        let decision = self.decide(error);
        if decision != Decision::Stop {
            tracing::warn!(
                model = %entry.name(),
                error.type = ?error.kind,
                "model failed, falling back: {error}"
            );
        }
        match decision {
            Decision::NextAndCool => {
                entry.cool_down(self.cooldown.max(error.retry_after.unwrap_or_default()));
                true
            }
            Decision::Next => true,
            Decision::LongContextOnly => {
                *long_only = true;
                true
            }
            Decision::Stop => false,
        }
    }

    /// Asks each candidate in turn (the rule decides whether to go on) and returns the first
    /// answer, or one error listing every attempt.
    async fn first_answer<'s, T, F, Fut>(
        &'s self,
        request: &ChatRequest,
        mut attempt: F,
    ) -> Result<T, ModelError>
    where
        F: FnMut(&'s Entry, ChatRequest) -> Fut,
        Fut: std::future::Future<Output = Result<T, ModelError>>,
    {
        let mut attempts = Vec::new();
        let mut long_only = false;
        for entry in self.order() {
            if long_only && !entry.long_context {
                continue;
            }
            match attempt(entry, prepare(request, entry.model.as_ref())).await {
                Ok(answer) => return Ok(answer),
                Err(error) => {
                    let go_on = self.after_failure(entry, &error, &mut long_only);
                    attempts.push((entry.name(), error));
                    if !go_on {
                        break;
                    }
                }
            }
        }
        Err(all_failed(attempts))
    }

    async fn attempt_stream(
        entry: &Entry,
        request: &ChatRequest,
    ) -> Result<ChatStream, ModelError> {
        let mut stream = entry.model.chat_stream(request).await?;
        let first = match stream.next().await {
            Some(Ok(first)) => first,
            Some(Err(error)) => return Err(error),
            None => {
                return Err(ModelError::new(
                    ModelErrorKind::StreamInterrupted,
                    "the stream ended before its first event",
                )
                .with_provider(entry.model.provider(), entry.model.model()));
            }
        };
        let name = entry.model.model().to_owned();
        let rest = futures::stream::once(std::future::ready(Ok(first)))
            .chain(stream)
            .map(move |item| match item {
                Ok(StreamEvent::Completed(mut response)) => {
                    response.model = Some(name.clone());
                    Ok(StreamEvent::Completed(response))
                }
                other => other,
            });
        Ok(Box::pin(rest))
    }
}

/// Every attempt in one error: the last one's kind, status and wait, and each attempt's
/// error in the message.
fn all_failed(attempts: Vec<(String, ModelError)>) -> ModelError {
    if attempts.len() == 1 {
        return attempts
            .into_iter()
            .map(|(_, e)| e)
            .next()
            .unwrap_or_else(|| {
                ModelError::new(ModelErrorKind::Configuration, "no model was tried")
            });
    }
    let listed: Vec<String> = attempts
        .iter()
        .enumerate()
        .map(|(i, (name, e))| {
            let e = e.to_string();
            let e = e
                .strip_prefix(&format!("{name}: "))
                .unwrap_or(&e)
                .to_owned();
            format!("[{}] {name}: {e}", i + 1)
        })
        .collect();
    let count = attempts.len();
    let Some((_, last)) = attempts.into_iter().last() else {
        return ModelError::new(ModelErrorKind::Configuration, "no model was tried");
    };
    ModelError {
        message: format!("all {count} models failed: {}", listed.join("; ")),
        provider: "fallback".into(),
        model: String::new(),
        ..last
    }
}

/// The request as `target` should get it (see the module docs); a cheap clone (shared
/// messages) when nothing needs to change.
fn prepare(request: &ChatRequest, target: &dyn ChatModel) -> ChatRequest {
    let provider = target.provider();
    let foreign_reasoning = |m: &Message| matches!(m, Message::Assistant(a) if a.reasoning.as_ref().is_some_and(|r| r.provider != provider));
    let odd_id = |m: &Message| match m {
        Message::Assistant(a) => a.tool_calls.iter().any(|c| !portable_id(&c.id)),
        Message::Tool(r) => !portable_id(&r.call_id),
        _ => false,
    };
    if !request
        .messages
        .iter()
        .any(|m| foreign_reasoning(m) || odd_id(m))
    {
        return request.clone();
    }
    let messages = request
        .messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            match &mut m {
                Message::Assistant(a) => {
                    if a.reasoning.as_ref().is_some_and(|r| r.provider != provider) {
                        a.reasoning = None;
                    }
                    for call in &mut a.tool_calls {
                        if !portable_id(&call.id) {
                            call.id = mistral_call_id(&call.id).into_owned();
                        }
                    }
                }
                Message::Tool(r) if !portable_id(&r.call_id) => {
                    r.call_id = mistral_call_id(&r.call_id).into_owned();
                }
                _ => {}
            }
            m
        })
        .collect::<Vec<_>>();
    ChatRequest {
        messages: Arc::new(messages),
        ..request.clone()
    }
}

/// An id every provider takes as it is: 1 to 40 ASCII letters, digits, `_` or `-`.
fn portable_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 40
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[async_trait]
impl ChatModel for FallbackModel {
    fn provider(&self) -> &str {
        self.entries
            .first()
            .map_or("fallback", |e| e.model.provider())
    }

    fn model(&self) -> &str {
        self.entries.first().map_or("", |e| e.model.model())
    }

    /// What every model can do (the answer may come from any of them).
    fn capabilities(&self) -> Capabilities {
        let mut all = self
            .entries
            .iter()
            .map(|e| e.model.capabilities())
            .collect::<Vec<_>>()
            .into_iter();
        let Some(mut caps) = all.next() else {
            return Capabilities::default();
        };
        for c in all {
            caps.tools &= c.tools;
            caps.parallel_tool_calls &= c.parallel_tool_calls;
            caps.streaming &= c.streaming;
            caps.images &= c.images;
            caps.structured_output &= c.structured_output;
            caps.reasoning &= c.reasoning;
        }
        caps
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        self.first_answer(request, |entry, request| async move {
            let mut response = entry.model.chat(&request).await?;
            response.model = Some(entry.model.model().to_owned());
            Ok(response)
        })
        .await
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ModelError> {
        self.first_answer(request, |entry, request| async move {
            Self::attempt_stream(entry, &request).await
        })
        .await
    }
}
