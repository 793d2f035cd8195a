//! OTLP/HTTP export (feature `otel`) to a fake collector on 127.0.0.1 that decodes the
//! protobuf it receives: configured by the builder, and by the standard
//! `OTEL_EXPORTER_OTLP_*` variables (through the quickstart, run as a user runs it).

// Test helpers outside #[test] fns unwrap and panic: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use agent_core::prelude::*;
use agent_core::telemetry::{OtlpExporter, Telemetry};
use agent_core::testing::ScriptedModel;
use agent_tests::fake_server::{FakeServer, Recorded, Reply};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Echo {
    text: String,
}

fn collector_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn collector(rt: &tokio::runtime::Runtime) -> FakeServer {
    rt.block_on(FakeServer::start(|_, _| {
        Reply::raw(200, "application/x-protobuf", Vec::new())
    }))
}

fn value(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value(&kv.value)))
        .collect()
}

/// Every span the collector received, with the service name of its resource.
fn received(requests: &[Recorded]) -> Vec<(String, Span)> {
    let mut spans = Vec::new();
    for request in requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
        let decoded = ExportTraceServiceRequest::decode(request.body.as_slice()).unwrap();
        for resource in decoded.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .map(|r| attrs(&r.attributes))
                .and_then(|a| a.get("service.name").cloned())
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
    }
    spans
}

#[test]
fn spans_reach_an_otlp_collector_configured_by_the_builder() {
    let rt = collector_runtime();
    let server = collector(&rt);
    let (layer, guard) = Telemetry::new()
        .otlp(
            OtlpExporter::new()
                .endpoint(format!("http://{}", server.addr()))
                .header("authorization", "Bearer collector-token")
                .service_name("otlp-test"),
        )
        .layer()
        .unwrap();
    assert!(!format!("{guard:?}").contains("collector-token"));
    let subscriber = tracing_subscriber::registry().with(layer);
    let text = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let model = ScriptedModel::named("gpt-4o")
                    .then_tool_call("echo", json!({"text": "hi"}))
                    .then_text("said hi");
                let agent = LlmAgent::builder(Arc::new(model))
                    .name("echoer")
                    .tool(tool_fn("echo", "Echoes.", |x: Echo, _| async move {
                        Ok(x.text)
                    }))
                    .build()
                    .unwrap();
                agent.ask("echo hi").await.unwrap().text
            })
    });
    assert_eq!(text, "said hi");
    // Nothing is sent before the batch is flushed; shutting down flushes it.
    guard.shutdown().unwrap();

    let requests = server.requests();
    assert!(!requests.is_empty(), "the collector received nothing");
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer collector-token"))
    );
    let spans = received(&requests);
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(spans.len(), 4, "{names:?}");
    assert!(spans.iter().all(|(service, _)| service == "otlp-test"));
    let find = |name: &str| &spans.iter().find(|(_, s)| s.name == name).unwrap().1;
    let root = find("invoke_agent echoer");
    assert_eq!(root.kind, SpanKind::Internal as i32);
    assert!(root.parent_span_id.is_empty());
    let tool = find("execute_tool echo");
    assert_eq!(tool.kind, SpanKind::Internal as i32);
    assert_eq!(tool.parent_span_id, root.span_id);
    assert_eq!(attrs(&tool.attributes)["gen_ai.tool.name"], "echo");
    let chats: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "chat gpt-4o")
        .collect();
    assert_eq!(chats.len(), 2);
    for chat in chats {
        assert_eq!(chat.kind, SpanKind::Client as i32);
        assert_eq!(chat.parent_span_id, root.span_id);
        assert_eq!(chat.trace_id, root.trace_id);
        let a = attrs(&chat.attributes);
        assert_eq!(a["gen_ai.operation.name"], "chat");
        assert_eq!(a["gen_ai.provider.name"], "scripted");
        assert_eq!(a["gen_ai.request.model"], "gpt-4o");
        assert!(a.contains_key("gen_ai.usage.input_tokens"));
    }
}

// The quickstart binary of this package is built with `otel` here: `cargo test` builds the
// package's binaries with its dev-dependencies' features, which turn `otel` on.
#[test]
fn the_standard_otel_variables_configure_the_export() {
    let rt = collector_runtime();
    let server = collector(&rt);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quickstart_e2e"))
        .env_remove("AGENT_MODEL")
        .env_remove("AGENT_TRACE_FILE")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", server.addr()),
        )
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-token=abc123")
        .env("OTEL_SERVICE_NAME", "quickstart-service")
        .output()
        .unwrap();
    agent_tests::stdout_of_success(&out);
    let requests = server.requests();
    assert!(!requests.is_empty(), "the collector received nothing");
    assert!(
        requests
            .iter()
            .all(|r| r.header("x-collector-token") == Some("abc123"))
    );
    let spans = received(&requests);
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "quickstart-service")
    );
    assert!(
        spans
            .iter()
            .any(|(_, s)| s.name == "invoke_agent quickstart"),
        "{:?}",
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
}
