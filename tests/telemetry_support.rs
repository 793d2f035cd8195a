//! What the span tests share: an OpenTelemetry pipeline into memory that a test runs a
//! future under, and a fake OpenAI-compatible provider on 127.0.0.1.

use std::collections::BTreeMap;
use std::future::Future;

use opentelemetry::Value;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

/// Runs `run` on a current-thread runtime under a subscriber that sends spans to an
/// in-memory OpenTelemetry exporter (at `INFO`, as `Telemetry` does), and returns what it returned and the finished spans.
/// The subscriber is this thread's only, so tests in one binary do not see each other's.
pub fn with_spans<T>(run: impl Future<Output = T>) -> (T, Vec<SpanData>) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("test"))
        .with_tracked_inactivity(false)
        .with_filter(LevelFilter::INFO);
    let subscriber = tracing_subscriber::registry().with(layer);
    let out = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(run)
    });
    provider.force_flush().expect("flushed");
    let spans = exporter.get_finished_spans().expect("spans");
    (out, spans)
}

/// A span's attributes by key, as text (`5`, `true`, `"x"` without quotes), leaving out
/// the source locations and threads the tracing bridge adds.
pub fn attrs(span: &SpanData) -> BTreeMap<String, String> {
    span.attributes
        .iter()
        .filter(|kv| {
            let key = kv.key.as_str();
            !key.starts_with("code.") && !key.starts_with("thread.") && key != "target"
        })
        .map(|kv| (kv.key.to_string(), text(&kv.value)))
        .collect()
}

/// An attribute value as text.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// Every text a span holds: its name, attribute values, status, events and their
/// attributes (to look for what must never be there).
pub fn all_text(span: &SpanData) -> String {
    let mut out = format!("{} {:?}", span.name, span.status);
    for kv in &span.attributes {
        out.push_str(&format!(" {}={}", kv.key, text(&kv.value)));
    }
    for event in span.events.iter() {
        out.push_str(&format!(" event:{}", event.name));
        for kv in &event.attributes {
            out.push_str(&format!(" {}={}", kv.key, text(&kv.value)));
        }
    }
    out
}

/// The one span with this name (panics, naming the spans there are, otherwise).
pub fn span<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "one span named {name:?} expected among {:?}",
        spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>()
    );
    found[0]
}
