//! The local trace file: every span and event of a run as one JSON object a line, for the
//! trace page (`examples/trace_view.rs`) or `jq`. It writes only where a user asked for a
//! file ([`Telemetry::trace_file`](super::Telemetry::trace_file) or `AGENT_TRACE_FILE`),
//! and holds whatever the spans hold: no content unless content capture is on, never a key.
//!
//! The format, one object per line:
//! - `{"type":"trace_file","version":1}` first;
//! - `{"type":"span","id":7,"parent":3,"name":"chat","start_us":…,"end_us":…,"attrs":{…}}`
//!   when a span closes (`parent` is `null` for a root; ids are unique within a file; times
//!   are microseconds since the Unix epoch);
//! - `{"type":"event","span":7,"time_us":…,"level":"WARN","target":"…","message":"…",
//!   "attrs":{…}}` as an event happens (`span`: the span it happened in, or `null`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The version written in a trace file's first line.
pub const TRACE_FILE_VERSION: u64 = 1;

/// A [`Layer`] that writes spans and events to a JSON-lines file. Get one from
/// [`Telemetry::layer`](super::Telemetry::layer) or [`TraceFileLayer::create`].
#[derive(Debug, Clone)]
pub struct TraceFileLayer {
    out: Arc<TraceFileWriter>,
}

#[derive(Debug)]
pub(crate) struct TraceFileWriter {
    file: Mutex<BufWriter<File>>,
    next_id: AtomicU64,
}

impl TraceFileWriter {
    fn write(&self, line: &impl Serialize) {
        if let Ok(mut file) = self.file.lock() {
            // A trace that cannot be written must not stop the run it describes.
            if serde_json::to_writer(&mut *file, line).is_ok() {
                let _ = file.write_all(b"\n");
            }
        }
    }

    /// Writes what is buffered to the file.
    pub(crate) fn flush(&self) {
        if let Ok(mut file) = self.file.lock() {
            let _ = file.flush();
        }
    }
}

impl TraceFileLayer {
    /// Creates (or truncates) the file at `path` and writes its header line.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = File::create(path)?;
        let out = Arc::new(TraceFileWriter {
            file: Mutex::new(BufWriter::new(file)),
            next_id: AtomicU64::new(1),
        });
        out.write(&json!({"type": "trace_file", "version": TRACE_FILE_VERSION}));
        out.flush();
        Ok(TraceFileLayer { out })
    }

    pub(crate) fn writer(&self) -> Arc<TraceFileWriter> {
        Arc::clone(&self.out)
    }
}

/// What the layer keeps on each open span.
struct OpenSpan {
    id: u64,
    parent: Option<u64>,
    started: Instant,
    start_us: u64,
    attrs: Fields,
}

/// A span's or an event's fields, by their static names (a later value replaces an
/// earlier one, as when a span records a field declared empty).
#[derive(Default)]
struct Fields(Vec<(&'static str, Value)>);

impl Fields {
    fn set(&mut self, field: &Field, value: Value) {
        let name = field.name();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        let i = self.0.iter().position(|(n, _)| *n == name)?;
        Some(self.0.swap_remove(i).1)
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, json!(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, json!(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, json!(format!("{value:?}")));
    }
}

#[derive(Serialize)]
struct SpanLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
    parent: Option<u64>,
    name: &'a str,
    start_us: u64,
    end_us: u64,
    attrs: &'a Fields,
}

#[derive(Serialize)]
struct EventLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    span: Option<u64>,
    time_us: u64,
    level: &'a str,
    target: &'a str,
    message: Value,
    attrs: &'a Fields,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl<S> Layer<S> for TraceFileLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<OpenSpan>().map(|open| open.id));
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let open = OpenSpan {
            id: self.out.next_id.fetch_add(1, Ordering::Relaxed),
            parent,
            started: Instant::now(),
            start_us: now_us(),
            attrs: fields,
        };
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(open) = extensions.get_mut::<OpenSpan>() {
            values.record(&mut open.attrs);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span = ctx
            .event_span(event)
            .and_then(|s| s.extensions().get::<OpenSpan>().map(|open| open.id));
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.take("message").unwrap_or(Value::Null);
        let meta = event.metadata();
        self.out.write(&EventLine {
            kind: "event",
            span,
            time_us: now_us(),
            level: meta.level().as_str(),
            target: meta.target(),
            message,
            attrs: &fields,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<OpenSpan>() else {
            return;
        };
        let elapsed = open.started.elapsed().as_micros() as u64;
        self.out.write(&SpanLine {
            kind: "span",
            id: open.id,
            parent: open.parent,
            name: span.name(),
            start_us: open.start_us,
            end_us: open.start_us.saturating_add(elapsed),
            attrs: &open.attrs,
        });
        if open.parent.is_none() {
            // A root span closing ends a run: its trace is whole on disk from here on.
            self.out.flush();
        }
    }
}
