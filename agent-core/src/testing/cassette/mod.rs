//! Record and replay: [`CassetteModel`] wraps any [`ChatModel`], records real sessions to a
//! human-readable cassette file, and replays them offline, so an agent's test runs in CI
//! without a key, a network or a flaky provider.
//!
//! **Why at the model level, not the HTTP level.** The recorder sits on the [`ChatModel`]
//! trait, so it records every backend the same way (OpenAI-compatible, Anthropic, Gemini, a
//! local GGUF model, a model of your own) and the cassette holds our provider-neutral request
//! and response: readable, and stable when a provider's wire format or a header changes.
//! Keys and auth headers never reach this level, so they cannot be written by construction;
//! what can (a key echoed in a response, a key pasted in a prompt) is scrubbed, and a
//! cassette in which anything shaped like a key survives is refused. Replay needs no server
//! and no URL rewriting. The price: replay does not exercise a backend's wire parsing; the
//! backends' own tests do that against fake servers.
//!
//! **Matching.** A request matches a recorded one when their canonical forms (JSON with keys
//! in sorted order, secrets removed) are equal after removing the fields the test chose to
//! ignore ([`CassetteBuilder::ignore_field`]: ids, dates). Each recorded interaction is used
//! once, the first unused match first. A request that matches nothing fails the call with a
//! message naming the first differing field against the next unused interaction, and fails
//! [`CassetteModel::finish`] too (in case the agent swallowed the error). An interaction
//! recorded but never used fails `finish`, which also runs when the model is dropped.
//!
//! **Modes**, from `AGENT_CASSETTE` ([`CassetteMode::from_env`]): `replay` (the default:
//! offline, the real model is never built), `new` (replay what matches, record what is new
//! with the real model; the cassette is rewritten with what this session used) and `all`
//! (record everything afresh).
//!
//! It must never write a key, and never call the real model in `replay` mode.

mod canonical;
mod file;
mod secrets;

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;
use serde_json::Value;

use self::canonical::{FieldPath, canonical, first_difference};
use self::file::{CassetteFile, FORMAT, Interaction, RecordedError, RecordedEvent};
use self::secrets::Secrets;
use crate::error::{ModelError, ModelErrorKind};
use crate::model::{
    Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, StreamEvent, collect_stream,
    response_events,
};

pub use self::file::CassetteError;

/// The environment variable that chooses the [`CassetteMode`].
pub const CASSETTE_MODE_VAR: &str = "AGENT_CASSETTE";

/// What a [`CassetteModel`] does with its cassette.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CassetteMode {
    /// Answer only from the cassette; the real model is never built. The default.
    #[default]
    Replay,
    /// Answer from the cassette where a request matches, from the real model where none
    /// does; save what this session used, new interactions included.
    RecordNew,
    /// Answer everything from the real model and save a fresh cassette.
    RecordAll,
}

impl CassetteMode {
    /// The mode named by `AGENT_CASSETTE`: unset or `replay`, `new`, or `all`.
    pub fn from_env() -> Result<Self, CassetteError> {
        Self::parse(&std::env::var(CASSETTE_MODE_VAR).unwrap_or_default())
    }

    /// A mode by its name (`replay` or empty, `new`, `all`).
    ///
    /// ```
    /// use agent_core::testing::CassetteMode;
    /// assert_eq!(CassetteMode::parse("new").unwrap(), CassetteMode::RecordNew);
    /// assert!(CassetteMode::parse("record").is_err());
    /// ```
    pub fn parse(name: &str) -> Result<Self, CassetteError> {
        match name.trim() {
            "" | "replay" => Ok(CassetteMode::Replay),
            "new" => Ok(CassetteMode::RecordNew),
            "all" => Ok(CassetteMode::RecordAll),
            other => Err(CassetteError::Usage {
                path: String::new(),
                message: format!(
                    "{CASSETTE_MODE_VAR}=`{other}` is not a mode: use replay, new or all"
                ),
            }),
        }
    }

    fn records(self) -> bool {
        self != CassetteMode::Replay
    }
}

/// Builds a [`CassetteModel`].
#[must_use]
#[derive(Debug)]
pub struct CassetteBuilder {
    path: PathBuf,
    mode: Option<CassetteMode>,
    ignore: Vec<FieldPath>,
    secrets: Secrets,
}

impl CassetteBuilder {
    /// Ignores a request field when matching: a path of keys and indexes separated by `/`,
    /// `*` for any one of them (`messages/0/content`, `messages/*/tool_calls/*/id`).
    pub fn ignore_field(mut self, path: &str) -> Self {
        self.ignore.push(FieldPath::parse(path));
        self
    }

    /// A secret to scrub from everything recorded, beyond the environment's keys (variables
    /// ending in `_API_KEY`, `_KEY`, `_TOKEN`, `_SECRET`, which are always scrubbed).
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secrets.add(secret);
        self
    }

    /// Sets the mode instead of reading `AGENT_CASSETTE`.
    pub fn mode(mut self, mode: CassetteMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The model. `real` builds the model to record with; it is called only when the mode
    /// records, so replay needs no key.
    pub fn build<F>(self, real: F) -> Result<CassetteModel, CassetteError>
    where
        F: FnOnce() -> Result<Arc<dyn ChatModel>, ModelError>,
    {
        let mode = match self.mode {
            Some(mode) => mode,
            None => CassetteMode::from_env()?,
        };
        let show = self.path.display().to_string();
        let recorded = match (mode, self.path.exists()) {
            (CassetteMode::RecordAll, _) | (CassetteMode::RecordNew, false) => Vec::new(),
            (_, true) => CassetteFile::load(&self.path)?.interactions,
            (CassetteMode::Replay, false) => {
                return Err(CassetteError::Usage {
                    path: show,
                    message: format!(
                        "no such cassette; record it with {CASSETTE_MODE_VAR}=new and a real model"
                    ),
                });
            }
        };
        let (real, provider, model) = if mode.records() {
            let real = real().map_err(|e| CassetteError::Usage {
                path: show.clone(),
                message: format!("cannot build the model to record with: {e}"),
            })?;
            let (provider, model) = (real.provider().to_owned(), real.model().to_owned());
            (Some(real), provider, model)
        } else {
            let file = CassetteFile::load(&self.path)?;
            (None, file.provider, file.model)
        };
        let mut secrets = Secrets::from_env();
        secrets.absorb(self.secrets);
        Ok(CassetteModel {
            shared: Arc::new(Shared {
                path: self.path,
                mode,
                provider,
                model,
                real,
                ignore: self.ignore,
                secrets,
                state: Mutex::new(State {
                    used: vec![false; recorded.len()],
                    recorded,
                    session: Vec::new(),
                    mismatch: None,
                    unscrubbable: None,
                    finished: false,
                }),
            }),
        })
    }
}

/// A model that records to and replays from a cassette file (see the [module
/// documentation](self) for matching, modes and secrets).
///
/// ```no_run
/// use std::sync::Arc;
/// use agent_core::{LlmAgent, ModelRegistry, testing::CassetteModel};
/// # async fn test() -> Result<(), Box<dyn std::error::Error>> {
/// // AGENT_CASSETTE=new records with the real model; unset, it replays offline.
/// let model = Arc::new(
///     CassetteModel::builder("tests/cassettes/weather.json")
///         .build(|| ModelRegistry::builtin().create("openai:gpt-4o-mini"))?,
/// );
/// let agent = LlmAgent::builder(model.clone()).build()?;
/// assert!(agent.ask("What is 6 times 7?").await?.text.contains("42"));
/// model.finish()?; // saves when recording; fails on unused interactions when replaying
/// # Ok(()) }
/// ```
pub struct CassetteModel {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    mode: CassetteMode,
    provider: String,
    model: String,
    real: Option<Arc<dyn ChatModel>>,
    ignore: Vec<FieldPath>,
    secrets: Secrets,
    state: Mutex<State>,
}

struct State {
    /// The interactions of the cassette as loaded.
    recorded: Vec<Interaction>,
    used: Vec<bool>,
    /// What this session answered, in request order (`None` while a stream is recorded).
    session: Vec<Option<Interaction>>,
    /// The first request that matched nothing.
    mismatch: Option<String>,
    /// The first recorded answer that could not be scrubbed (nothing is saved then).
    unscrubbable: Option<usize>,
    finished: bool,
}

impl fmt::Debug for CassetteModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassetteModel")
            .field("path", &self.shared.path)
            .field("mode", &self.shared.mode)
            .field("provider", &self.shared.provider)
            .field("model", &self.shared.model)
            .finish_non_exhaustive()
    }
}

/// How a request was answered.
enum Answer {
    Recorded(Box<Interaction>),
    Record(Arc<dyn ChatModel>, usize),
}

impl CassetteModel {
    /// Starts building a model over the cassette at `path`.
    pub fn builder(path: impl AsRef<Path>) -> CassetteBuilder {
        CassetteBuilder {
            path: path.as_ref().to_path_buf(),
            mode: None,
            ignore: Vec::new(),
            secrets: Secrets::default(),
        }
    }

    /// The mode in use.
    pub fn mode(&self) -> CassetteMode {
        self.shared.mode
    }

    /// Ends the session: when recording, saves the cassette (refusing if a key pattern
    /// survives); when replaying, fails if a request matched nothing or an interaction was
    /// never used. Runs by itself when the model is dropped (panicking on failure, so a
    /// test that forgets to call it still fails); calling it twice does nothing the second
    /// time.
    pub fn finish(&self) -> Result<(), CassetteError> {
        self.shared.finish()
    }

    fn answer(&self, request: &ChatRequest) -> Result<(Value, Answer), ModelError> {
        let shared = &self.shared;
        let canonical = shared.canonical(request)?;
        let key = shared.match_key(&canonical);
        let mut state = shared.lock()?;
        if shared.mode != CassetteMode::RecordAll {
            let found = (0..state.recorded.len())
                .find(|&i| !state.used[i] && shared.match_key(&state.recorded[i].request) == key);
            if let Some(i) = found {
                state.used[i] = true;
                let interaction = state.recorded[i].clone();
                state.session.push(Some(interaction.clone()));
                return Ok((canonical, Answer::Recorded(Box::new(interaction))));
            }
        }
        match (&shared.real, shared.mode.records()) {
            (Some(real), true) => {
                state.session.push(None);
                Ok((
                    canonical,
                    Answer::Record(real.clone(), state.session.len() - 1),
                ))
            }
            _ => {
                let message = shared.mismatch_message(&state, &key);
                if state.mismatch.is_none() {
                    state.mismatch = Some(message.clone());
                }
                Err(ModelError::new(ModelErrorKind::Other, message)
                    .with_provider(shared.provider.clone(), shared.model.clone()))
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, ModelError> {
        self.state
            .lock()
            .map_err(|_| ModelError::new(ModelErrorKind::Other, "the cassette's lock is poisoned"))
    }

    /// The request as recorded: canonical JSON, secrets removed.
    fn canonical(&self, request: &ChatRequest) -> Result<Value, ModelError> {
        let mut value = serde_json::to_value(request).map_err(|e| {
            ModelError::new(
                ModelErrorKind::Other,
                format!("cannot serialise the request: {e}"),
            )
        })?;
        self.secrets.scrub(&mut value);
        Ok(canonical(value))
    }

    /// What is compared: the canonical request without the ignored fields.
    fn match_key(&self, canonical: &Value) -> Value {
        let mut key = canonical.clone();
        for path in &self.ignore {
            path.remove_from(&mut key);
        }
        key
    }

    fn mismatch_message(&self, state: &State, key: &Value) -> String {
        let next = (0..state.recorded.len()).find(|&i| !state.used[i]);
        let request_no = state.session.len() + 1;
        let head = format!(
            "cassette {}: request #{request_no} matches no recorded interaction",
            self.path.display()
        );
        let tail = format!(
            "(re-record with {CASSETTE_MODE_VAR}=new, or ignore a field that changes every run with `ignore_field`)"
        );
        match next {
            None => format!(
                "{head}: all {} recorded interaction(s) are used; {tail}",
                state.recorded.len()
            ),
            Some(i) => {
                let expected = self.match_key(&state.recorded[i].request);
                match first_difference(&expected, key) {
                    Some(d) => format!(
                        "{head}; first difference from interaction #{i} at `{}`: recorded {}, got {}; {tail}",
                        d.path, d.expected, d.actual
                    ),
                    None => format!("{head}; {tail}"),
                }
            }
        }
    }

    /// Scrubs and stores what the real model answered.
    fn store(&self, slot: usize, interaction: Interaction) {
        // Scrubbed through its JSON form; an interaction that cannot make the round trip is
        // never kept unscrubbed: the session then refuses to save.
        let clean = serde_json::to_value(&interaction)
            .ok()
            .and_then(|mut value| {
                self.secrets.scrub(&mut value);
                serde_json::from_value::<Interaction>(value).ok()
            });
        if let Ok(mut state) = self.state.lock() {
            match clean {
                Some(clean) => {
                    if let Some(entry) = state.session.get_mut(slot) {
                        *entry = Some(clean);
                    }
                }
                None => {
                    state.unscrubbable.get_or_insert(slot);
                }
            }
        }
    }

    fn finish(&self) -> Result<(), CassetteError> {
        let show = || self.path.display().to_string();
        let mut state = self.state.lock().map_err(|_| CassetteError::Usage {
            path: show(),
            message: "the cassette's lock is poisoned".into(),
        })?;
        if state.finished {
            return Ok(());
        }
        state.finished = true;
        if let Some(message) = &state.mismatch {
            return Err(CassetteError::Mismatch(message.clone()));
        }
        if !self.mode.records() {
            let unused: Vec<usize> = (0..state.used.len()).filter(|&i| !state.used[i]).collect();
            if !unused.is_empty() {
                return Err(CassetteError::Unused {
                    path: show(),
                    unused,
                });
            }
            return Ok(());
        }
        if let Some(slot) = state.unscrubbable {
            return Err(CassetteError::Usage {
                path: show(),
                message: format!(
                    "request #{} could not be scrubbed of secrets; nothing was saved",
                    slot + 1
                ),
            });
        }
        if state.session.iter().any(Option::is_none) {
            return Err(CassetteError::Usage {
                path: show(),
                message: "a recorded stream was still open when the cassette was finished; \
                          read every stream to its end first"
                    .into(),
            });
        }
        let unused = state.used.iter().filter(|u| !**u).count();
        if unused > 0 {
            tracing::info!(
                cassette = %self.path.display(),
                "{unused} interaction(s) not used this session are dropped from the cassette"
            );
        }
        let file = CassetteFile {
            format: FORMAT.to_owned(),
            provider: self.provider.clone(),
            model: self.model.clone(),
            interactions: state.session.iter().flatten().cloned().collect(),
        };
        file.save(&self.path)
    }
}

impl Drop for CassetteModel {
    #[allow(clippy::panic)] // A test kit's end-of-test check: failing the test is its job.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Err(error) = self.shared.finish() {
            panic!("{error}");
        }
    }
}

#[async_trait]
impl ChatModel for CassetteModel {
    fn provider(&self) -> &str {
        &self.shared.provider
    }

    fn model(&self) -> &str {
        &self.shared.model
    }

    fn capabilities(&self) -> Capabilities {
        match &self.shared.real {
            Some(real) => real.capabilities(),
            None => Capabilities {
                streaming: true,
                ..Capabilities::default()
            },
        }
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let shared = &self.shared;
        match self.answer(request)? {
            (_, Answer::Recorded(interaction)) => replay_whole(shared, *interaction).await,
            (canonical, Answer::Record(real, slot)) => {
                let result = real.chat(request).await;
                shared.store(
                    slot,
                    Interaction {
                        request: canonical,
                        response: result.as_ref().ok().cloned(),
                        stream: None,
                        error: result.as_ref().err().map(RecordedError::from),
                    },
                );
                result
            }
        }
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ModelError> {
        let shared = &self.shared;
        match self.answer(request)? {
            (_, Answer::Recorded(interaction)) => replay_stream(shared, *interaction),
            (canonical, Answer::Record(real, slot)) => match real.chat_stream(request).await {
                Ok(stream) => Ok(Box::pin(RecordingStream {
                    inner: stream,
                    shared: self.shared.clone(),
                    slot,
                    request: Some(canonical),
                    events: Vec::new(),
                    error: None,
                })),
                Err(error) => {
                    shared.store(
                        slot,
                        Interaction {
                            request: canonical,
                            response: None,
                            stream: None,
                            error: Some(RecordedError::from(&error)),
                        },
                    );
                    Err(error)
                }
            },
        }
    }
}

/// A recorded interaction as a whole answer (a recorded stream is collected).
async fn replay_whole(
    shared: &Shared,
    interaction: Interaction,
) -> Result<ChatResponse, ModelError> {
    if let Some(response) = interaction.response {
        return Ok(response);
    }
    if interaction.stream.is_some() {
        return collect_stream(replay_stream(shared, interaction)?).await;
    }
    Err(recorded_error(shared, interaction.error))
}

/// A recorded interaction as a stream (a whole recorded answer is replayed as events).
fn replay_stream(shared: &Shared, interaction: Interaction) -> Result<ChatStream, ModelError> {
    let mut items: VecDeque<Result<StreamEvent, ModelError>> = VecDeque::new();
    match (interaction.stream, interaction.response) {
        (Some(events), _) => items.extend(events.into_iter().map(|e| Ok(e.into()))),
        (None, Some(response)) => items.extend(response_events(response).into_iter().map(Ok)),
        (None, None) => return Err(recorded_error(shared, interaction.error)),
    }
    if let Some(error) = interaction.error {
        items.push_back(Err(error.to_error(&shared.provider, &shared.model)));
    }
    Ok(Box::pin(futures::stream::iter(items)))
}

fn recorded_error(shared: &Shared, error: Option<RecordedError>) -> ModelError {
    match error {
        Some(error) => error.to_error(&shared.provider, &shared.model),
        None => ModelError::new(
            ModelErrorKind::Other,
            format!(
                "cassette {}: a recorded interaction has neither an answer nor an error",
                shared.path.display()
            ),
        ),
    }
}

/// Passes a real stream through, recording each event; the interaction is stored when the
/// stream ends or is dropped (a stream dropped early is recorded as far as it was read, and
/// replays as a stream that ends there).
struct RecordingStream {
    inner: ChatStream,
    shared: Arc<Shared>,
    slot: usize,
    request: Option<Value>,
    events: Vec<RecordedEvent>,
    error: Option<RecordedError>,
}

impl RecordingStream {
    fn commit(&mut self) {
        if let Some(request) = self.request.take() {
            self.shared.store(
                self.slot,
                Interaction {
                    request,
                    response: None,
                    stream: Some(std::mem::take(&mut self.events)),
                    error: self.error.take(),
                },
            );
        }
    }
}

impl Stream for RecordingStream {
    type Item = Result<StreamEvent, ModelError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(event))) => self.events.push(RecordedEvent::from(event)),
            Poll::Ready(Some(Err(error))) => self.error = Some(RecordedError::from(error)),
            Poll::Ready(None) => self.commit(),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for RecordingStream {
    fn drop(&mut self) {
        self.commit();
    }
}
