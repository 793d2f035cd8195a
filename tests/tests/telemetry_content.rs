//! Content capture, opted in: messages, tool arguments and results reach the spans, and a
//! key still never does, not even when a provider echoes it in an error body. Content
//! capture is process-wide, so it is turned on in this binary only.

// Test helpers outside #[test] fns unwrap and panic: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../telemetry_support.rs"]
mod support;

use std::sync::Arc;

use agent_core::prelude::*;
use agent_tests::fake_server::{FakeServer, Reply, openai_on, quick_retries};
use serde_json::{Value, json};
use support::{all_text, attrs, span, with_spans};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Shout {
    text: String,
}

const KEY: &str = "sk-live-9876543210fedcba";

#[test]
fn content_is_recorded_when_asked_and_a_key_never_is() {
    agent_core::telemetry::set_capture_content(true);
    let (result, spans) = with_spans(async {
        let server = FakeServer::start(|req, n| match n {
            // The provider echoes the key, in an error and in a retried one.
            0 => Reply::json(
                429,
                &json!({"error": {"message": format!("too fast for key {KEY}")}}),
            )
            .header("retry-after", "0"),
            1 => Reply::json(
                200,
                &json!({"choices": [{"message": {"content": null, "tool_calls": [
                    {"id": "c1", "type": "function",
                     "function": {"name": "shout", "arguments": "{\"text\":\"pineapple\"}"}},
                ]}, "finish_reason": "tool_calls"}]}),
            ),
            _ => {
                let saw_result = req.json()["messages"].to_string().contains("PINEAPPLE");
                let text = if saw_result { "PINEAPPLE!" } else { "?" };
                Reply::json(
                    200,
                    &json!({"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}),
                )
            }
        })
        .await;
        let model = openai_on(&server, "gpt-4o", KEY, quick_retries()).unwrap();
        let agent = LlmAgent::builder(Arc::new(model))
            .name("shouter")
            .instructions("Shout the word.")
            .tool(tool_fn(
                "shout",
                "Upper-cases text.",
                |x: Shout, _| async move { Ok(x.text.to_uppercase()) },
            ))
            .build()
            .unwrap();
        agent.ask("Shout pineapple").await
    });
    assert_eq!(result.unwrap().text, "PINEAPPLE!");

    let chats: Vec<_> = spans.iter().filter(|s| s.name == "chat gpt-4o").collect();
    let first = chats
        .iter()
        .find(|s| attrs(s)["agentic.turn"] == "1")
        .unwrap();
    let a = attrs(first);
    let system: Value = serde_json::from_str(&a["gen_ai.system_instructions"]).unwrap();
    assert_eq!(
        system,
        json!([{"type": "text", "content": "Shout the word."}])
    );
    let input: Value = serde_json::from_str(&a["gen_ai.input.messages"]).unwrap();
    assert_eq!(
        input,
        json!([{"role": "user", "parts": [{"type": "text", "content": "Shout pineapple"}]}])
    );
    let output: Value = serde_json::from_str(&a["gen_ai.output.messages"]).unwrap();
    assert_eq!(
        output,
        json!([{"role": "assistant", "finish_reason": "tool_calls", "parts": [
            {"type": "tool_call", "id": "c1", "name": "shout", "arguments": {"text": "pineapple"}}
        ]}])
    );
    let tools: Value = serde_json::from_str(&a["gen_ai.tool.definitions"]).unwrap();
    assert_eq!(tools[0]["name"], "shout");

    let tool = attrs(span(&spans, "execute_tool shout"));
    assert_eq!(
        tool["gen_ai.tool.call.arguments"],
        r#"{"text":"pineapple"}"#
    );
    assert_eq!(tool["gen_ai.tool.call.result"], "PINEAPPLE");

    let second = chats
        .iter()
        .find(|s| attrs(s)["agentic.turn"] == "2")
        .unwrap();
    let input = attrs(second)["gen_ai.input.messages"].clone();
    assert!(input.contains("tool_call_response"), "{input}");

    for span in &spans {
        let text = all_text(span);
        assert!(!text.contains(KEY), "the key in {text}");
        assert!(!text.contains("sk-live"), "part of the key in {text}");
    }
    assert!(
        spans
            .iter()
            .any(|s| all_text(s).contains("too fast for key")),
        "the error is there, without its key"
    );
}
