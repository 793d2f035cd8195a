//! [`SharedLimit`]: at most N model requests in flight and at most M started a minute,
//! shared by every model that holds it (one per provider, or per model, for the whole
//! process), so a thousand agents queue for a slot instead of firing together and eating
//! 429s. [`LimitedModel`] puts a model behind a limit.
//!
//! Waiting is plain `async` (a fair semaphore, then a sleep until the request's slot in the
//! minute), so dropping the call, as a cancelled run does, stops the wait at once. When a
//! request still comes back rate-limited with a `retry-after`, every request behind the
//! same limit waits that long before it starts. A streamed answer holds its slot until the
//! stream ends. Each wait is reported to the run that made the request, as
//! [`RunEvent::ModelWaited`](crate::run::RunEvent::ModelWaited), and traced. The limiter
//! never changes a request or an answer.
//!
//! A `retry-after` reaches the limit twice over: from a call that failed rate-limited, and
//! from inside our HTTP layer the moment an attempt is rate-limited, before that layer
//! retries it itself; so the other requests hold back while the first one waits.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::{ModelError, ModelErrorKind};
use crate::model::{Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream};

const MINUTE: Duration = Duration::from_secs(60);

/// Builds a [`SharedLimit`].
#[must_use]
#[derive(Debug)]
pub struct SharedLimitBuilder {
    name: String,
    in_flight: Option<usize>,
    per_minute: Option<usize>,
}

impl SharedLimitBuilder {
    /// At most this many requests in flight at once (at least 1).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.in_flight = Some(n.max(1));
        self
    }

    /// At most this many requests started in any 60 seconds (at least 1).
    pub fn per_minute(mut self, m: usize) -> Self {
        self.per_minute = Some(m.max(1));
        self
    }

    /// The limit, ready to share.
    pub fn build(self) -> Arc<SharedLimit> {
        Arc::new(SharedLimit {
            name: self.name,
            in_flight: self.in_flight.map(|n| Arc::new(Semaphore::new(n))),
            max_in_flight: self.in_flight,
            per_minute: self.per_minute,
            starts: Mutex::new(VecDeque::new()),
            paused_until: Mutex::new(None),
            waits: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
        })
    }
}

/// A limit shared by many models and agents (see the [module docs](self)).
///
/// ```
/// use std::sync::Arc;
/// use agent_core::{ChatModel, resilience::{LimitedModel, SharedLimit}, testing::ScriptedModel};
/// let openai = SharedLimit::builder("openai").max_in_flight(8).per_minute(500).build();
/// // Every agent's model goes behind the same limit.
/// let model = LimitedModel::new(Arc::new(ScriptedModel::new().then_text("hi")), openai.clone());
/// assert_eq!(model.model(), "scripted");
/// ```
pub struct SharedLimit {
    name: String,
    in_flight: Option<Arc<Semaphore>>,
    max_in_flight: Option<usize>,
    per_minute: Option<usize>,
    /// The start times given out (some in the future), oldest first.
    starts: Mutex<VecDeque<Instant>>,
    /// No request starts before this (a provider's `retry-after`).
    paused_until: Mutex<Option<Instant>>,
    waits: AtomicU64,
    pauses: AtomicU64,
}

impl fmt::Debug for SharedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimit")
            .field("name", &self.name)
            .field("max_in_flight", &self.max_in_flight)
            .field("per_minute", &self.per_minute)
            .finish_non_exhaustive()
    }
}

/// A wait for a shared limit, as the run hears of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ModelWait {
    pub(crate) limit: String,
    pub(crate) reason: &'static str,
    pub(crate) waited: Duration,
}

tokio::task_local! {
    /// The waits of the model call in progress on this task (set by the run's driver).
    static WAITS: std::cell::RefCell<Vec<ModelWait>>;
}

/// Runs a model call and returns, beside its output, the waits for shared limits it met
/// (the run's driver turns them into events, before the call's answer).
pub(crate) async fn collect_waits<F: std::future::Future>(call: F) -> (F::Output, Vec<ModelWait>) {
    WAITS
        .scope(std::cell::RefCell::new(Vec::new()), async move {
            let output = call.await;
            let waits = WAITS.with(|w| std::mem::take(&mut *w.borrow_mut()));
            (output, waits)
        })
        .await
}

/// Why a request waited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitReason {
    InFlight,
    PerMinute,
    RetryAfter,
}

impl SharedLimit {
    /// Starts building a limit; `name` (a provider or a model) shows in traces and events.
    pub fn builder(name: impl Into<String>) -> SharedLimitBuilder {
        SharedLimitBuilder {
            name: name.into(),
            in_flight: None,
            per_minute: None,
        }
    }

    /// The name given at build time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many requests have had to wait so far.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// How many times a provider's `retry-after` has paused this limit (from a failed call,
    /// or from an attempt the HTTP layer then retried itself).
    pub fn retry_after_pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }

    /// Holds every request behind this limit for `wait` from now.
    fn pause(&self, wait: Duration) {
        self.pauses.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut paused) = self.paused_until.lock() {
            let until = Instant::now() + wait;
            if paused.is_none_or(|p| p < until) {
                *paused = Some(until);
            }
        }
    }

    /// Runs a call so that the HTTP layer's own retries after a `retry-after` pause this
    /// limit too.
    async fn watching<F: std::future::Future>(self: &Arc<Self>, call: F) -> F::Output {
        let limit = self.clone();
        let seen: Arc<dyn Fn(Duration) + Send + Sync> = Arc::new(move |wait| limit.pause(wait));
        crate::backends::http::RETRY_AFTER_SEEN
            .scope(seen, call)
            .await
    }

    /// Waits for a slot; the permit (if the limit counts requests in flight) is the slot.
    async fn acquire(&self) -> Result<Option<OwnedSemaphorePermit>, ModelError> {
        let asked = Instant::now();
        let permit = match &self.in_flight {
            None => None,
            Some(semaphore) => Some(match semaphore.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    let permit = semaphore.clone().acquire_owned().await.map_err(|_| {
                        ModelError::new(ModelErrorKind::Other, "the shared limit was closed")
                    })?;
                    self.report(WaitReason::InFlight, asked.elapsed());
                    permit
                }
            }),
        };
        // A provider's retry-after holds everyone behind this limit (checked again after
        // each wait: another request may have been told to wait meanwhile).
        loop {
            let until = self.paused_until.lock().ok().and_then(|p| *p);
            match until {
                Some(until) if until > Instant::now() => {
                    let from = Instant::now();
                    tokio::time::sleep_until(until).await;
                    self.report(WaitReason::RetryAfter, from.elapsed());
                }
                _ => break,
            }
        }
        if let Some(start) = self.reserve_start() {
            let from = Instant::now();
            if start > from {
                tokio::time::sleep_until(start).await;
                self.report(WaitReason::PerMinute, from.elapsed());
            }
        }
        Ok(permit)
    }

    /// The time this request may start so that no 60 seconds hold more than `per_minute`
    /// starts; the slot is taken at once (a caller that gives up wastes it, never exceeds
    /// the limit).
    fn reserve_start(&self) -> Option<Instant> {
        let per_minute = self.per_minute?;
        let mut starts = self.starts.lock().ok()?;
        let now = Instant::now();
        while starts.len() >= per_minute && starts.front().is_some_and(|t| *t + MINUTE <= now) {
            starts.pop_front();
        }
        let mut at = now;
        if starts.len() >= per_minute
            && let Some(oldest) = starts.get(starts.len() - per_minute)
        {
            at = at.max(*oldest + MINUTE);
        }
        if let Some(last) = starts.back() {
            at = at.max(*last);
        }
        starts.push_back(at);
        Some(at)
    }

    fn report(&self, reason: WaitReason, waited: Duration) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            limit = %self.name,
            reason = ?reason,
            waited_ms = waited.as_millis() as u64,
            "model request waited for the shared limit"
        );
        // The run that made this request hears of the wait (see `collect_waits`).
        let _ = WAITS.try_with(|waits| {
            waits.borrow_mut().push(ModelWait {
                limit: self.name.clone(),
                reason: reason.describe(),
                waited,
            });
        });
    }

    /// After a failure: a rate limit with a wait pauses everyone behind this limit.
    fn observe(&self, error: &ModelError) {
        if error.kind == ModelErrorKind::RateLimited
            && let Some(wait) = error.retry_after
        {
            self.pause(wait);
        }
    }
}

impl WaitReason {
    fn describe(self) -> &'static str {
        match self {
            WaitReason::InFlight => "requests in flight",
            WaitReason::PerMinute => "requests per minute",
            WaitReason::RetryAfter => "the provider's retry-after",
        }
    }
}

/// A model behind a [`SharedLimit`]. Cheap: make one per agent, share the limit.
pub struct LimitedModel {
    inner: Arc<dyn ChatModel>,
    limit: Arc<SharedLimit>,
}

impl fmt::Debug for LimitedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitedModel")
            .field("model", &self.inner.model())
            .field("limit", &self.limit)
            .finish()
    }
}

impl LimitedModel {
    /// Puts `model` behind `limit`.
    pub fn new(model: Arc<dyn ChatModel>, limit: Arc<SharedLimit>) -> Self {
        LimitedModel {
            inner: model,
            limit,
        }
    }
}

#[async_trait]
impl ChatModel for LimitedModel {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn model(&self) -> &str {
        self.inner.model()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let _permit = self.limit.acquire().await?;
        let result = self.limit.watching(self.inner.chat(request)).await;
        if let Err(error) = &result {
            self.limit.observe(error);
        }
        result
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ModelError> {
        let permit = self.limit.acquire().await?;
        let stream = match self.limit.watching(self.inner.chat_stream(request)).await {
            Ok(stream) => stream,
            Err(error) => {
                self.limit.observe(&error);
                return Err(error);
            }
        };
        let limit = self.limit.clone();
        // The slot is held until the stream is dropped.
        Ok(Box::pin(stream.map(move |item| {
            let _slot = &permit;
            if let Err(error) = &item {
                limit.observe(error);
            }
            item
        })))
    }
}
