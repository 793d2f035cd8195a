//! The spans of a run, as an OpenTelemetry exporter receives them: names, kinds,
//! parent/child links and attributes of the GenAI semantic conventions, retries, tool
//! errors, and no content unless asked (content capture is never turned on in this
//! binary; `telemetry_content.rs` turns it on in its own process).

// Test helpers outside #[test] fns unwrap and panic: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../telemetry_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use agent_core::backends::RetryPolicy;
use agent_core::prelude::*;
use agent_core::{ChatModel, ToolErrorKind};
use agent_tests::fake_server::{FakeServer, Recorded, Reply, openai_on, quick_retries};
use opentelemetry::trace::{SpanKind, Status};
use serde_json::json;
use support::{all_text, attrs, span, with_spans};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Shout {
    text: String,
}

const KEY: &str = "sk-test-0123456789abcdef";

/// Turn 1 calls `add` and `shout`; turn 2 (tool results present) answers.
fn two_tools(req: &Recorded, _n: usize) -> Reply {
    let has_results = req.json()["messages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
    if has_results {
        Reply::json(
            200,
            &json!({
                "choices": [{"message": {"content": "5 and HI"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 120, "completion_tokens": 8,
                          "prompt_tokens_details": {"cached_tokens": 100}},
            }),
        )
    } else {
        Reply::json(
            200,
            &json!({
                "choices": [{"message": {"content": null, "tool_calls": [
                    {"id": "call_add", "type": "function",
                     "function": {"name": "add", "arguments": "{\"a\":2,\"b\":3}"}},
                    {"id": "call_shout", "type": "function",
                     "function": {"name": "shout", "arguments": "{\"text\":\"hi\"}"}},
                ]}, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20,
                          "completion_tokens_details": {"reasoning_tokens": 12}},
            }),
        )
    }
}

fn model(server: &FakeServer, retry: RetryPolicy) -> Arc<dyn ChatModel> {
    Arc::new(openai_on(server, "gpt-4o-mini", KEY, retry).unwrap())
}

fn agent(model: Arc<dyn ChatModel>) -> LlmAgent {
    LlmAgent::builder(model)
        .name("calc")
        .instructions("Add, then shout.")
        .tool(tool_fn(
            "add",
            "Adds two numbers.",
            |x: Add, _| async move { Ok(x.a + x.b) },
        ))
        .tool(tool_fn(
            "shout",
            "Upper-cases text.",
            |x: Shout, _| async move { Ok(x.text.to_uppercase()) },
        ))
        .tool(tool_fn(
            "broken",
            "Always fails.",
            |_: Shout, _| async move { Err::<String, _>(ToolError::failed("the disk is on fire")) },
        ))
        .build()
        .unwrap()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_two_turn_run_with_two_tools_exports_the_conventional_spans() {
    let (result, spans) = with_spans(async {
        let server = FakeServer::start(two_tools).await;
        agent(model(&server, RetryPolicy::none()))
            .run(
                "What is 2+3? Shout hi.",
                &RunContext::new().with_session("conv-7"),
            )
            .await
    });
    let result = result.unwrap();
    assert_eq!(result.text, "5 and HI");
    assert_eq!(spans.len(), 5, "{spans:#?}");

    let root = span(&spans, "invoke_agent calc");
    assert_eq!(root.span_kind, SpanKind::Internal);
    assert_eq!(root.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    assert_eq!(root.status, Status::Unset);
    let run_id = result.run_id.clone();
    // gpt-4o-mini at $0.15 / $0.60 per Mtok, cached input at $0.075.
    let cost_1 = (100.0 * 0.15 + 20.0 * 0.60) / 1e6;
    let cost_2 = (20.0 * 0.15 + 100.0 * 0.075 + 8.0 * 0.60) / 1e6;
    let total = cost_1 + cost_2;
    assert_eq!(
        attrs(root),
        map(&[
            ("gen_ai.operation.name", "invoke_agent"),
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o-mini"),
            ("gen_ai.agent.name", "calc"),
            ("gen_ai.conversation.id", "conv-7"),
            ("gen_ai.usage.input_tokens", "220"),
            ("gen_ai.usage.output_tokens", "28"),
            ("gen_ai.usage.cache_read.input_tokens", "100"),
            ("gen_ai.usage.reasoning.output_tokens", "12"),
            ("agentic.run.id", &run_id),
            ("agentic.turns", "2"),
            ("agentic.usage.cost_usd", &total.to_string()),
        ])
    );

    let chats: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "chat gpt-4o-mini")
        .collect();
    assert_eq!(chats.len(), 2);
    let (first, second) = if attrs(chats[0])["agentic.turn"] == "1" {
        (chats[0], chats[1])
    } else {
        (chats[1], chats[0])
    };
    for chat in [first, second] {
        assert_eq!(chat.span_kind, SpanKind::Client);
        assert_eq!(chat.parent_span_id, root.span_context.span_id());
        assert_eq!(chat.span_context.trace_id(), root.span_context.trace_id());
        assert!(chat.events.is_empty(), "{:?}", chat.events);
    }
    assert_eq!(
        attrs(first),
        map(&[
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o-mini"),
            ("gen_ai.response.model", "gpt-4o-mini"),
            ("gen_ai.response.finish_reasons", r#"["tool_calls"]"#),
            ("gen_ai.usage.input_tokens", "100"),
            ("gen_ai.usage.output_tokens", "20"),
            ("gen_ai.usage.reasoning.output_tokens", "12"),
            ("agentic.turn", "1"),
            ("agentic.usage.cost_usd", &cost_1.to_string()),
        ])
    );
    assert_eq!(
        attrs(second),
        map(&[
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o-mini"),
            ("gen_ai.response.model", "gpt-4o-mini"),
            ("gen_ai.response.finish_reasons", r#"["stop"]"#),
            ("gen_ai.usage.input_tokens", "120"),
            ("gen_ai.usage.output_tokens", "8"),
            ("gen_ai.usage.cache_read.input_tokens", "100"),
            ("agentic.turn", "2"),
            ("agentic.usage.cost_usd", &cost_2.to_string()),
        ])
    );
    assert!(first.end_time <= second.start_time);

    for (tool, call, description) in [
        ("add", "call_add", "Adds two numbers."),
        ("shout", "call_shout", "Upper-cases text."),
    ] {
        let s = span(&spans, &format!("execute_tool {tool}"));
        assert_eq!(s.span_kind, SpanKind::Internal);
        assert_eq!(s.parent_span_id, root.span_context.span_id());
        assert_eq!(s.status, Status::Unset);
        assert!(first.end_time <= s.start_time && s.end_time <= second.start_time);
        assert_eq!(
            attrs(s),
            map(&[
                ("gen_ai.operation.name", "execute_tool"),
                ("gen_ai.tool.name", tool),
                ("gen_ai.tool.call.id", call),
                ("gen_ai.tool.type", "function"),
                ("gen_ai.tool.description", description),
                ("agentic.turn", "1"),
            ])
        );
    }
}

#[test]
fn a_rate_limited_request_then_success_marks_the_retry() {
    let (result, spans) = with_spans(async {
        let server = FakeServer::start(|req, n| {
            if n == 0 {
                Reply::json(429, &json!({"error": {"message": "slow down"}}))
                    .header("retry-after", "0")
            } else {
                two_tools(req, n)
            }
        })
        .await;
        agent(model(&server, quick_retries()))
            .ask("2+3, shout hi")
            .await
    });
    result.unwrap();
    let chats: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("chat "))
        .collect();
    assert_eq!(
        chats.len(),
        2,
        "a retry is inside its call's span, not a call of its own"
    );
    let retried = chats
        .iter()
        .find(|s| attrs(s)["agentic.turn"] == "1")
        .unwrap();
    let a = attrs(retried);
    assert_eq!(a.get("agentic.retries").map(String::as_str), Some("1"));
    assert!(
        !a.contains_key("error.type"),
        "the call succeeded in the end"
    );
    assert_eq!(retried.status, Status::Unset);
    assert_eq!(retried.events.len(), 1);
    let event = &retried.events.events[0];
    let event_attrs: BTreeMap<String, String> = event
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), support::text(&kv.value)))
        .collect();
    assert_eq!(event_attrs["error.type"], "rate_limited");
    assert_eq!(event_attrs["http.response.status_code"], "429");
    assert_eq!(event_attrs["retry.attempt"], "1");
    assert_eq!(event_attrs["level"], "WARN");
    let other = chats
        .iter()
        .find(|s| attrs(s)["agentic.turn"] == "2")
        .unwrap();
    assert!(!attrs(other).contains_key("agentic.retries"));
}

#[test]
fn a_failing_tool_sets_the_error_type_on_its_span() {
    let (result, spans) = with_spans(async {
        let model = agent_core::testing::ScriptedModel::named("m")
            .then_tool_call("broken", json!({"text": "x"}))
            .then_text("It failed.");
        agent(Arc::new(model)).ask("try").await
    });
    assert_eq!(result.unwrap().text, "It failed.");
    let tool = span(&spans, "execute_tool broken");
    assert_eq!(attrs(tool)["error.type"], "failed");
    assert!(
        matches!(tool.status, Status::Error { .. }),
        "{:?}",
        tool.status
    );
    let root = span(&spans, "invoke_agent calc");
    assert_eq!(root.status, Status::Unset, "the run itself went on");
    assert_eq!(ToolErrorKind::Failed, ToolError::failed("x").kind);
}

#[test]
fn a_failed_model_call_marks_the_chat_and_the_agent() {
    let (result, spans) = with_spans(async {
        let server =
            FakeServer::start(|_, _| Reply::json(401, &json!({"error": {"message": "bad key"}})))
                .await;
        agent(model(&server, RetryPolicy::none())).ask("hi").await
    });
    assert!(result.is_err());
    let chat = span(&spans, "chat gpt-4o-mini");
    assert_eq!(attrs(chat)["error.type"], "authentication");
    assert!(matches!(chat.status, Status::Error { .. }));
    let root = span(&spans, "invoke_agent calc");
    assert_eq!(attrs(root)["error.type"], "authentication");
    assert!(matches!(root.status, Status::Error { .. }));
}

#[test]
fn no_content_is_recorded_unless_asked_and_no_key_ever() {
    let (result, spans) = with_spans(async {
        let server = FakeServer::start(|req, n| {
            if n == 0 {
                // A provider that echoes the key in its error body.
                Reply::json(
                    429,
                    &json!({"error": {"message": format!("limit for key {KEY}")}}),
                )
                .header("retry-after", "0")
            } else {
                two_tools(req, n)
            }
        })
        .await;
        agent(model(&server, quick_retries()))
            .ask("What is 2+3? My secret word is PINEAPPLE.")
            .await
    });
    result.unwrap();
    assert_eq!(spans.len(), 5);
    for span in &spans {
        let text = all_text(span);
        for content in [
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.system_instructions",
            "gen_ai.tool.definitions",
            "gen_ai.tool.call.arguments",
            "gen_ai.tool.call.result",
            "PINEAPPLE",
            "Add, then shout",
        ] {
            assert!(!text.contains(content), "{content} in {text}");
        }
        assert!(!text.contains(KEY), "the key in {text}");
        assert!(!text.contains("sk-test"), "part of the key in {text}");
    }
}
