//! Prompt caching against fake servers on 127.0.0.1: Anthropic's automatic `cache_control`
//! breakpoints (after the stable prefix, on the growing history; off on request) and the
//! cache reads and writes every provider reports, added up over a run.

// Test helpers outside #[test] functions unwrap and panic on purpose: a failure is the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use agent_core::backends::anthropic::Anthropic;
use agent_core::backends::gemini::Gemini;
use agent_core::backends::openai::OpenAiCompatible;
use agent_core::backends::{ApiKey, HttpConfig};
use agent_core::prelude::*;
use agent_core::{ChatRequest, ToolSpec};
use agent_tests::fake_server::{FakeServer, Recorded, Reply};
use agent_tools::Calculator;
use serde_json::{Value, json};

/// Every `cache_control` in a request body, as the JSON path of the block that carries it.
fn breakpoints(body: &Value) -> Vec<String> {
    fn walk(v: &Value, path: String, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(c) = map.get("cache_control") {
                    assert_eq!(c, &json!({"type": "ephemeral"}), "{path}");
                    out.push(path.clone());
                }
                for (k, child) in map {
                    walk(child, format!("{path}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, format!("{path}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(body, String::new(), &mut out);
    out
}

/// Turn 1 calls the calculator and writes the prefix to the cache; turn 2 reads it back
/// and writes the new turn.
fn cached_calculator(req: &Recorded, _: usize) -> Reply {
    let body = req.json();
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    if last["content"][0]["type"] == "tool_result" {
        return Reply::json(
            200,
            &json!({"id": "msg_2", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "5"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 20, "cache_read_input_tokens": 1800, "cache_creation_input_tokens": 60, "output_tokens": 2}}),
        );
    }
    Reply::json(
        200,
        &json!({"id": "msg_1", "type": "message", "role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "calculator", "input": {"expression": "2+3"}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 12, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 1800, "output_tokens": 30}}),
    )
}

fn anthropic(server: &FakeServer) -> Anthropic {
    Anthropic::with_config(
        "claude-sonnet-4-5",
        ApiKey::new("sk-ant-test"),
        Some(&server.base_url()),
        HttpConfig::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn anthropic_breakpoints_follow_the_instructions_and_the_growing_history() {
    let server = FakeServer::start(cached_calculator).await;
    let agent = LlmAgent::builder(Arc::new(anthropic(&server)))
        .instructions("Use the calculator.")
        .tool(Calculator::new())
        .build()
        .unwrap();
    let result = agent.ask("What is 2+3?").await.unwrap();
    assert_eq!(result.text, "5");

    let requests = server.requests();
    let first = requests[0].json();
    assert_eq!(
        first["system"],
        json!([{"type": "text", "text": "Use the calculator.", "cache_control": {"type": "ephemeral"}}])
    );
    assert_eq!(breakpoints(&first), ["/messages/0/content/0", "/system/0"]);
    let second = requests[1].json();
    // The history grew by two turns: the breakpoint moved to its new end (the tool result).
    assert_eq!(second["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(breakpoints(&second), ["/messages/2/content/0", "/system/0"]);

    // Reads and writes are reported apart, and both are part of the input.
    assert_eq!(result.usage.cached_input_tokens, 1800);
    assert_eq!(result.usage.cache_write_input_tokens, 1860);
    assert_eq!(result.usage.input_tokens, 12 + 1800 + 20 + 1800 + 60);
    assert_eq!(result.usage.output_tokens, 32);
}

#[tokio::test]
async fn without_instructions_the_tools_end_the_cached_prefix_and_caching_can_be_turned_off() {
    let server = FakeServer::start(|_, _| {
        Reply::json(
            200,
            &json!({"type": "message", "role": "assistant", "content": [{"type": "text", "text": "ok"}],
                    "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 1}}),
        )
    })
    .await;
    let tools: Arc<[ToolSpec]> = vec![
        ToolSpec {
            name: "a".into(),
            description: "A.".into(),
            parameters: json!({"type": "object", "properties": {}}),
            strict: false,
            examples: Vec::new(),
        },
        ToolSpec {
            name: "b".into(),
            description: "B.".into(),
            parameters: json!({"type": "object", "properties": {}}),
            strict: false,
            examples: Vec::new(),
        },
    ]
    .into();
    let request = ChatRequest {
        messages: vec![Message::user("hi")].into(),
        tools,
        ..Default::default()
    };
    anthropic(&server).chat(&request).await.unwrap();
    let with = server.requests()[0].json();
    assert_eq!(breakpoints(&with), ["/messages/0/content/0", "/tools/1"]);

    let off = anthropic(&server).with_prompt_caching(false);
    off.chat(&ChatRequest {
        messages: vec![Message::system("Be brief."), Message::user("hi")].into(),
        ..request
    })
    .await
    .unwrap();
    let without = server.requests()[1].json();
    assert!(breakpoints(&without).is_empty(), "{without}");
    assert_eq!(without["system"], "Be brief.");
}

#[tokio::test]
async fn openai_and_gemini_report_what_their_automatic_caches_served() {
    let server = FakeServer::start(|req: &Recorded, _| {
        if req.path.contains("generateContent") {
            Reply::json(
                200,
                &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
                        "usageMetadata": {"promptTokenCount": 4000, "cachedContentTokenCount": 3072, "candidatesTokenCount": 3}}),
            )
        } else {
            Reply::json(
                200,
                &json!({"choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 2231, "completion_tokens": 3,
                                  "prompt_tokens_details": {"cached_tokens": 1920, "cache_write_tokens": 0}}}),
            )
        }
    })
    .await;
    let request = ChatRequest {
        messages: vec![Message::user("hi")].into(),
        ..Default::default()
    };
    let openai = OpenAiCompatible::builder("openai")
        .unwrap()
        .model("gpt-4o-mini")
        .base_url(server.base_url())
        .api_key("sk-test")
        .build()
        .unwrap();
    let usage = openai.chat(&request).await.unwrap().usage;
    assert_eq!(
        (usage.input_tokens, usage.cached_input_tokens),
        (2231, 1920)
    );
    let gemini = Gemini::new("gemini-2.5-flash", "AIza-test", Some(&server.base_url())).unwrap();
    let usage = gemini.chat(&request).await.unwrap().usage;
    assert_eq!(
        (usage.input_tokens, usage.cached_input_tokens),
        (4000, 3072)
    );
    assert_eq!(
        usage.cache_write_input_tokens, 0,
        "implicit caching writes for free"
    );
}
