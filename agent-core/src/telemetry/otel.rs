//! OTLP/HTTP export (feature `otel`): spans to any OpenTelemetry collector, batched on a
//! thread of their own and flushed when the [`TelemetryGuard`](super::TelemetryGuard) drops.
//!
//! Configuration follows the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), read by
//! the `opentelemetry-otlp` crate itself; the builder overrides the endpoint and adds
//! headers. Header values (collector tokens) never print: `Debug` shows their names only.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryError;

/// An OTLP/HTTP (protobuf) span exporter's settings; [`OtlpExporter::new`] takes them all
/// from the environment, and the methods override them.
///
/// ```no_run
/// use agent_core::telemetry::{OtlpExporter, Telemetry};
/// # fn main() -> Result<(), agent_core::telemetry::TelemetryError> {
/// let _guard = Telemetry::new()
///     .otlp(OtlpExporter::new().endpoint("http://127.0.0.1:4318"))
///     .init()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct OtlpExporter {
    endpoint: Option<String>,
    headers: Vec<(String, String)>,
    service_name: Option<String>,
    timeout: Option<Duration>,
}

impl fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OtlpExporter")
            .field("endpoint", &self.endpoint)
            .field("headers", &header_names)
            .field("service_name", &self.service_name)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OtlpExporter {
    /// Settings from the environment (the collector at `http://localhost:4318` when no
    /// variable names one).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the environment names a collector (and does not disable the SDK).
    pub(crate) fn configured_by_env() -> bool {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
        let disabled =
            std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
        !disabled
            && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    }

    /// The collector's base URL, as in `OTEL_EXPORTER_OTLP_ENDPOINT`: spans go to
    /// `{base}/v1/traces` (a URL that already ends in `/v1/traces` is kept as it is).
    pub fn endpoint(mut self, base: impl Into<String>) -> Self {
        let base: String = base.into();
        let url = if base.trim_end_matches('/').ends_with("/v1/traces") {
            base
        } else {
            format!("{}/v1/traces", base.trim_end_matches('/'))
        };
        self.endpoint = Some(url);
        self
    }

    /// A header sent with every export (a collector's token, say). Variables in
    /// `OTEL_EXPORTER_OTLP_HEADERS` are added after these.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The `service.name` resource attribute (default: `OTEL_SERVICE_NAME`, or the SDK's
    /// `unknown_service`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// How long one export may take (default: `OTEL_EXPORTER_OTLP_TIMEOUT`, or 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The tracing layer and the provider that owns the batch exporter.
    pub(crate) fn build<S>(
        self,
    ) -> Result<(impl Layer<S> + Send + Sync, SdkTracerProvider), TelemetryError>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        // The exporter's HTTP client is our reqwest, on rustls with the ring provider, which
        // must be installed before any client is built (no-op when it already is).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(endpoint) = self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(timeout) = self.timeout {
            builder = builder.with_timeout(timeout);
        }
        if !self.headers.is_empty() {
            let headers: HashMap<String, String> = self.headers.into_iter().collect();
            builder = builder.with_headers(headers);
        }
        let exporter = builder
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let mut resource = Resource::builder();
        if let Some(name) = self.service_name {
            resource = resource.with_service_name(name);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("agent-core");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false);
        Ok((layer, provider))
    }
}
