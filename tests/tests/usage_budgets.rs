//! Usage is never silently zero: a token budget stops the same run streaming and not
//! streaming, on every OpenAI-compatible preset, against fake servers on 127.0.0.1 that
//! report usage the way real ones do (in a stream only when asked with
//! `stream_options.include_usage`; Mistral always, on the finishing chunk). Where a server
//! reports nothing, the run counts an estimate and says so.

use std::collections::HashMap;
use std::sync::Arc;

use agent_core::backends::openai::{OpenAiCompatible, PRESETS};
use agent_core::prelude::*;
use agent_core::run::{Budget, BudgetKind};
use agent_core::{ChatRequest, ModelRegistry};
use agent_tests::fake_server::{FakeServer, Recorded, Reply};
use agent_tools::Calculator;
use serde_json::{Value, json};

/// A calculator call whose real cost is 9 output tokens; usage in streams only when the
/// request asks for it (or always, for Mistral, which refuses the field).
fn one_tool_call(provider: &'static str) -> impl Fn(&Recorded, usize) -> Reply + Send + Sync {
    move |req, _| {
        let id = if provider == "mistral" {
            "Ab3dE6gH9"
        } else {
            "call_1"
        };
        let usage = json!({"prompt_tokens": 30, "completion_tokens": 9});
        let call = json!({"id": id, "type": "function",
            "function": {"name": "calculator", "arguments": "{\"expression\": \"2+3\"}"}});
        if !req.wants_stream() {
            return Reply::json(
                200,
                &json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                    "tool_calls": [call]}, "finish_reason": "tool_calls"}], "usage": usage}),
            );
        }
        let asked = req.json()["stream_options"]["include_usage"] == Value::Bool(true);
        let mut call = call;
        call["index"] = json!(0);
        let mut last = json!({"choices": [{"index": 0, "delta": {"tool_calls": [call]},
            "finish_reason": "tool_calls"}]});
        if provider == "mistral" {
            last["usage"] = usage.clone();
        }
        let mut events = vec![last];
        if asked {
            events.push(json!({"choices": [], "usage": usage}));
        }
        Reply::sse(&events)
    }
}

fn env_for(provider: &str, server: &FakeServer) -> HashMap<String, String> {
    let preset = agent_core::backends::openai::preset(provider).unwrap();
    let mut vars = HashMap::new();
    let base = if provider == "ollama" {
        server.addr().to_string()
    } else {
        server.base_url()
    };
    vars.insert(preset.base_url_env.to_owned(), base);
    if let Some(key) = preset.key_env {
        vars.insert(key.to_owned(), "k-test".to_owned());
    }
    vars
}

fn agent_on(model: Arc<dyn ChatModel>, stream: bool) -> LlmAgent {
    LlmAgent::builder(model)
        .tool(Calculator::new())
        .streaming(stream)
        .budget(Budget {
            max_output_tokens: Some(5),
            ..Default::default()
        })
        .build()
        .unwrap()
}

fn assert_output_budget_stopped(result: Result<RunResult, AgentError>, what: &str) -> f64 {
    match result {
        Err(AgentError::BudgetExceeded {
            kind: BudgetKind::OutputTokens,
            used,
            ..
        }) => used,
        other => panic!("{what}: expected the output-token budget to stop the run: {other:?}"),
    }
}

#[tokio::test]
async fn the_same_5_output_token_budget_stops_the_run_streaming_and_not_streaming_on_every_preset()
{
    for preset in PRESETS {
        for stream in [false, true] {
            let provider = preset.provider;
            let server = FakeServer::start(one_tool_call(provider)).await;
            let vars = env_for(provider, &server);
            let registry = ModelRegistry::builtin_with_env(Arc::new(move |name: &str| {
                vars.get(name).cloned()
            }));
            let model = registry.create(&format!("{provider}:m")).unwrap();
            let what = format!("{provider} stream={stream}");
            let used = assert_output_budget_stopped(
                agent_on(model, stream).ask("What is 2+3?").await,
                &what,
            );
            assert_eq!(used, 9.0, "{what}: the provider's own count");
            assert_eq!(server.requests().len(), 1, "{what}: the tool never ran");
        }
    }
}

#[tokio::test]
async fn a_server_that_refuses_stream_options_is_asked_again_without_and_usage_is_estimated() {
    let server = FakeServer::start(|req: &Recorded, _| {
        if req.json().get("stream_options").is_some() {
            Reply::json(
                400,
                &json!({"error": {"message": "Unrecognized request argument supplied: stream_options",
                    "type": "invalid_request_error"}}),
            )
        } else {
            one_tool_call("openai-compatible")(req, 0)
        }
    })
    .await;
    let model = Arc::new(
        OpenAiCompatible::builder("openai-compatible")
            .unwrap()
            .model("m")
            .base_url(server.base_url())
            .build()
            .unwrap(),
    );
    // Streamed, without usage: the estimate (a 10-character name and 21 characters of
    // arguments, about 8 tokens) still trips the budget.
    let used = assert_output_budget_stopped(
        agent_on(model.clone(), true).ask("What is 2+3?").await,
        "refused stream_options",
    );
    assert_eq!(used, 8.0);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "one refusal, one retry");
    assert!(requests[1].json().get("stream_options").is_none());

    // The model remembers: the next stream does not ask again, and says its usage is an
    // estimate.
    let request = ChatRequest {
        messages: vec![Message::user("What is 2+3?")].into(),
        ..Default::default()
    };
    let stream = model.chat_stream(&request).await.unwrap();
    let response = agent_core::collect_stream(stream).await.unwrap();
    assert_eq!(server.requests().len(), 3);
    assert!(response.usage.estimated, "{:?}", response.usage);
    assert_eq!(response.usage.output_tokens, 8);
}

#[tokio::test]
async fn usage_a_server_does_not_report_is_an_estimate_not_zero() {
    let server = FakeServer::start(|_: &Recorded, _| {
        Reply::json(
            200,
            &json!({"choices": [{"index": 0, "message": {"role": "assistant",
                "content": "The answer is five."}, "finish_reason": "stop"}]}),
        )
    })
    .await;
    let model = Arc::new(
        OpenAiCompatible::builder("openai-compatible")
            .unwrap()
            .model("m")
            .base_url(server.base_url())
            .build()
            .unwrap(),
    );
    let result = LlmAgent::builder(model)
        .build()
        .unwrap()
        .ask("What is 2+3?")
        .await
        .unwrap();
    assert!(result.usage.estimated, "{:?}", result.usage);
    assert_eq!(
        result.usage.output_tokens, 5,
        "19 characters, about 5 tokens"
    );
    assert!(result.usage.input_tokens > 0);
}
