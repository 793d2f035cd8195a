//! Traces of runs: the spans every run emits, where they go, and a page that shows them.
//!
//! Every run emits [`tracing`] spans that follow the OpenTelemetry GenAI semantic
//! conventions (experimental `gen_ai.*`, as published in the GenAI conventions repository
//! at v0.1.0, the successor of semantic-conventions v1.38): one `invoke_agent {agent}` span
//! per run, a `chat {model}` span per model call inside it and an `execute_tool {tool}` span
//! per tool call beside those (an agent used as a tool nests its own `invoke_agent` inside
//! the tool's span). Nothing leaves the process unless a subscriber is installed: the
//! library installs none by itself.
//!
//! **Where spans go.** [`Telemetry`] wires them, in one call, to any of:
//! - a local JSON-lines trace file ([`Telemetry::trace_file`], or `AGENT_TRACE_FILE`), which
//!   `cargo run --example trace_view -- run.jsonl > run.html` turns into a page;
//! - (feature `otel`) an OTLP/HTTP collector (`Telemetry::otlp`, or the standard
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//!   `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME`
//!   variables), batched and flushed when the [`TelemetryGuard`] drops.
//!
//! ```no_run
//! # fn main() -> Result<(), agent_core::telemetry::TelemetryError> {
//! // Reads AGENT_TRACE_FILE and (with `otel`) OTEL_EXPORTER_OTLP_*; keep the guard alive.
//! let _telemetry = agent_core::telemetry::init()?;
//! # Ok(()) }
//! ```
//!
//! **Content is off by default.** Messages, system instructions, tool definitions, tool
//! arguments and tool results may hold personal data: they are recorded only after
//! [`set_capture_content(true)`](set_capture_content), [`Telemetry::capture_content`] or
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`. Keys never appear, whatever
//! is enabled: backends keep them in [`ApiKey`](crate::secret::ApiKey)s and scrub them out
//! of error bodies before an error exists.
//!
//! **Attributes.** Spans carry these (a `[]` value is a JSON array in a string attribute,
//! since `tracing` fields hold no arrays; *content* ones only when captured):
//!
//! | span (kind) | attributes |
//! | --- | --- |
//! | `invoke_agent {agent}` (internal) | `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.agent.name`, `gen_ai.conversation.id` (the memory session, when there is one), `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, `gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.reasoning.output_tokens` (this agent's own model calls), `error.type`, `agentic.run.id`, `agentic.turns`, `agentic.usage.cost_usd` |
//! | `chat {model}` (client; internal for `local:` models) | `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.request.temperature`, `gen_ai.request.max_tokens`, `gen_ai.request.stop_sequences` `[]`, `gen_ai.request.stream`, `gen_ai.output.type`, `gen_ai.response.model`, `gen_ai.response.finish_reasons` `[]`, the four `gen_ai.usage.*` counts, `error.type`, `agentic.turn`, `agentic.retries`, `agentic.usage.cost_usd`, `agentic.usage.estimated`; content: `gen_ai.system_instructions`, `gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.tool.definitions` |
//! | `execute_tool {tool}` (internal) | `gen_ai.operation.name`, `gen_ai.tool.name`, `gen_ai.tool.call.id`, `gen_ai.tool.type`, `gen_ai.tool.description`, `error.type`, `agentic.turn`; content: `gen_ai.tool.call.arguments`, `gen_ai.tool.call.result` |
//!
//! `gen_ai.provider.name` uses the convention's spelling (`openai`, `anthropic`,
//! `gcp.gemini`, `mistral_ai`, `deepseek`, `groq`; other providers by our name for them).
//! `error.type` is the error's kind in snake case (`rate_limited`, `execution_failed`, ...).
//! A failed span also has the OpenTelemetry status `ERROR`. A retried model request adds a
//! `WARN` event to its chat span (`error.type`, `http.response.status_code`,
//! `retry.attempt`, `retry.wait_ms`) and counts in `agentic.retries`. Costs are in US
//! dollars at the run's budget's [`Prices`](crate::budget::Prices) (the default table
//! without a budget). The span's name carries the model or tool in `otel.name`; the
//! `tracing` span name itself is the operation (`chat`), so filters can match it.

mod file;
#[cfg(feature = "otel")]
mod otel;
pub(crate) mod spans;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

pub use file::{TRACE_FILE_VERSION, TraceFileLayer};
#[cfg(feature = "otel")]
pub use otel::OtlpExporter;

/// The variable naming a trace file for [`Telemetry::from_env`].
pub const TRACE_FILE_ENV: &str = "AGENT_TRACE_FILE";
/// The variable that turns content capture on (`true` or `1`), as in other
/// OpenTelemetry GenAI instrumentations.
pub const CAPTURE_CONTENT_ENV: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";

const CONTENT_UNSET: u8 = 0;
const CONTENT_OFF: u8 = 1;
const CONTENT_ON: u8 = 2;
static CAPTURE_CONTENT: AtomicU8 = AtomicU8::new(CONTENT_UNSET);

/// Turns the recording of message and tool content in spans on or off, for the whole
/// process (it is off unless [`CAPTURE_CONTENT_ENV`] says `true`).
pub fn set_capture_content(on: bool) {
    let value = if on { CONTENT_ON } else { CONTENT_OFF };
    CAPTURE_CONTENT.store(value, Ordering::Relaxed);
}

/// Whether spans record message and tool content.
pub fn captures_content() -> bool {
    match CAPTURE_CONTENT.load(Ordering::Relaxed) {
        CONTENT_ON => true,
        CONTENT_OFF => false,
        _ => {
            let on = env_flag(CAPTURE_CONTENT_ENV);
            set_capture_content(on);
            on
        }
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        let v = v.trim();
        v == "1" || v.eq_ignore_ascii_case("true")
    })
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The trace file could not be created.
    #[error("cannot create the trace file {}: {source}", path.display())]
    TraceFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A global `tracing` subscriber is installed already ([`Telemetry::layer`] composes
    /// with one of your own instead).
    #[error(
        "a global tracing subscriber is already installed; use Telemetry::layer to add ours to yours"
    )]
    AlreadyInitialised,
    /// The OTLP exporter could not be built (a bad endpoint, say).
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(String),
}

/// Where a process's run traces go: a trace file, an OTLP collector (feature `otel`), both
/// or neither. Build it, then [`init`](Self::init) (installs the global subscriber) or
/// [`layer`](Self::layer) (to add to a subscriber of your own).
///
/// ```no_run
/// use agent_core::telemetry::Telemetry;
/// # fn main() -> Result<(), agent_core::telemetry::TelemetryError> {
/// let _guard = Telemetry::new().trace_file("run.jsonl").init()?;
/// // ... run agents; the file is complete when each run ends and when the guard drops.
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct Telemetry {
    trace_file: Option<PathBuf>,
    capture_content: Option<bool>,
    #[cfg(feature = "otel")]
    otlp: Option<OtlpExporter>,
}

impl Telemetry {
    /// Nothing configured: spans go nowhere until you add a destination.
    pub fn new() -> Self {
        Self::default()
    }

    /// Configured by the environment: a trace file at `AGENT_TRACE_FILE`, content capture
    /// by `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`, and (feature `otel`) an
    /// OTLP exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not `true`).
    pub fn from_env() -> Self {
        let mut telemetry = Self::new();
        if let Some(path) = std::env::var_os(TRACE_FILE_ENV).filter(|p| !p.is_empty()) {
            telemetry.trace_file = Some(PathBuf::from(path));
        }
        if std::env::var_os(CAPTURE_CONTENT_ENV).is_some() {
            telemetry.capture_content = Some(env_flag(CAPTURE_CONTENT_ENV));
        }
        #[cfg(feature = "otel")]
        if OtlpExporter::configured_by_env() {
            telemetry.otlp = Some(OtlpExporter::new());
        }
        telemetry
    }

    /// Writes every span and event to this JSON-lines file (created, or truncated).
    pub fn trace_file(mut self, path: impl AsRef<Path>) -> Self {
        self.trace_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// Records message and tool content in spans (off by default; see the module docs).
    pub fn capture_content(mut self, on: bool) -> Self {
        self.capture_content = Some(on);
        self
    }

    /// Exports spans to an OTLP/HTTP collector.
    #[cfg(feature = "otel")]
    pub fn otlp(mut self, exporter: OtlpExporter) -> Self {
        self.otlp = Some(exporter);
        self
    }

    /// The layer that sends spans where configured (at `INFO` and above), for a
    /// subscriber of your own (beside your log formatting, say), and the guard that
    /// flushes it. Applies the content
    /// setting, if one was given.
    pub fn layer<S>(self) -> Result<(impl Layer<S> + Send + Sync, TelemetryGuard), TelemetryError>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        if let Some(on) = self.capture_content {
            set_capture_content(on);
        }
        let mut layers: Vec<Box<dyn Layer<S> + Send + Sync>> = Vec::new();
        let mut guard = TelemetryGuard::default();
        if let Some(path) = &self.trace_file {
            let layer =
                TraceFileLayer::create(path).map_err(|source| TelemetryError::TraceFile {
                    path: path.clone(),
                    source,
                })?;
            guard.file = Some(layer.writer());
            layers.push(Box::new(layer));
        }
        #[cfg(feature = "otel")]
        if let Some(exporter) = self.otlp {
            let (layer, provider) = exporter.build::<S>()?;
            guard.provider = Some(provider);
            layers.push(Box::new(layer));
        }
        let filter = tracing_subscriber::filter::LevelFilter::INFO;
        Ok((layers.with_filter(filter), guard))
    }

    /// Installs a global subscriber that sends spans where configured (and nowhere else:
    /// for log lines too, compose [`layer`](Self::layer) with your own). Keep the guard
    /// until the program ends: dropping it flushes the file and the exporter.
    pub fn init(self) -> Result<TelemetryGuard, TelemetryError> {
        let (layer, guard) = self.layer()?;
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber)
            .map_err(|_| TelemetryError::AlreadyInitialised)?;
        Ok(guard)
    }
}

/// `Telemetry::from_env().init()`: one call, configured by the environment (see
/// [`Telemetry::from_env`]); with no variable set, spans go nowhere.
pub fn init() -> Result<TelemetryGuard, TelemetryError> {
    Telemetry::from_env().init()
}

/// Flushes the trace file and the exporter when dropped (or at [`shutdown`](Self::shutdown)).
#[derive(Default)]
#[must_use = "dropping the guard flushes and stops telemetry"]
pub struct TelemetryGuard {
    file: Option<Arc<file::TraceFileWriter>>,
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("TelemetryGuard");
        d.field("trace_file", &self.file.is_some());
        #[cfg(feature = "otel")]
        d.field("otlp", &self.provider.is_some());
        d.finish()
    }
}

impl TelemetryGuard {
    /// Writes out what is buffered (the file) and exports what is batched (OTLP), now.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        if let Some(file) = &self.file {
            file.flush();
        }
        #[cfg(feature = "otel")]
        if let Some(provider) = &self.provider {
            provider
                .force_flush()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        }
        Ok(())
    }

    /// Flushes and stops the exporter, saying whether the last export worked.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), TelemetryError> {
        if let Some(file) = self.file.take() {
            file.flush();
        }
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take() {
            provider
                .shutdown()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        }
        Ok(())
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("telemetry: {error}");
        }
    }
}
