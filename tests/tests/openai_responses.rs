//! The OpenAI Responses API backend (`openai-responses:MODEL`) against a fake server on
//! 127.0.0.1 that speaks its documented format: the full agent loop with two parallel tool
//! calls and a reasoning item carried to the next turn (streaming and not), statelessness,
//! and errors read like OpenAI's.

// Test helpers outside #[test] functions unwrap and panic on purpose: a failure is the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use agent_core::backends::{ApiKey, HttpConfig, OpenAiResponses, RetryPolicy};
use agent_core::prelude::*;
use agent_core::{ChatRequest, ModelErrorKind, ModelRegistry, RunEvent, StreamEvent};
use agent_tests::fake_server::{FakeServer, Recorded, Reply};
use agent_tools::Calculator;
use futures::StreamExt;
use serde_json::{Value, json};

/// The reasoning item of the first turn: it must come back on the second, untouched.
fn reasoning_item() -> Value {
    json!({"type": "reasoning", "id": "rs_68af", "summary": [{"type": "summary_text", "text": "Two sums, in parallel."}],
           "encrypted_content": "gAAAAABoEncryptedReasoning=="})
}

fn call_item(i: usize, call_id: &str, expression: &str) -> Value {
    json!({"type": "function_call", "id": format!("fc_{i}"), "call_id": call_id, "name": "calculator",
           "arguments": json!({"expression": expression}).to_string(), "status": "completed"})
}

fn named(event: &str, v: &Value) -> Vec<u8> {
    format!("event: {event}\ndata: {v}\n\n").into_bytes()
}

/// A response as a whole body, or as the event stream that produces it.
fn reply(req: &Recorded, output: Vec<Value>, usage: Value) -> Reply {
    let response = json!({"id": "resp_1", "object": "response", "status": "completed", "output": output, "usage": usage});
    if !req.wants_stream() {
        return Reply::json(200, &response);
    }
    let mut chunks = vec![named(
        "response.created",
        &json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}}),
    )];
    for (i, item) in output.iter().enumerate() {
        let mut added = item.clone();
        match item["type"].as_str() {
            Some("function_call") => added["arguments"] = json!(""),
            Some("message") => added["content"] = json!([]),
            _ => {}
        }
        chunks.push(named(
            "response.output_item.added",
            &json!({"type": "response.output_item.added", "output_index": i, "item": added}),
        ));
        if item["type"] == "reasoning" {
            chunks.push(named("response.reasoning_summary_text.delta", &json!({"type": "response.reasoning_summary_text.delta",
                "item_id": item["id"], "output_index": i, "summary_index": 0, "delta": item["summary"][0]["text"]})));
        }
        if let Some(args) = item["arguments"].as_str() {
            let (a, b) = args.split_at(args.len() / 2);
            for delta in [a, b] {
                chunks.push(named(
                    "response.function_call_arguments.delta",
                    &json!({"type": "response.function_call_arguments.delta",
                    "item_id": item["id"], "output_index": i, "delta": delta}),
                ));
            }
        }
        if let Some(text) = item.pointer("/content/0/text") {
            chunks.push(named(
                "response.output_text.delta",
                &json!({"type": "response.output_text.delta",
                "item_id": item["id"], "output_index": i, "content_index": 0, "delta": text}),
            ));
        }
        chunks.push(named(
            "response.output_item.done",
            &json!({"type": "response.output_item.done", "output_index": i, "item": item}),
        ));
    }
    chunks.push(named(
        "response.completed",
        &json!({"type": "response.completed", "response": response}),
    ));
    Reply::stream_chunks(
        chunks
            .into_iter()
            .map(|c| (std::time::Duration::ZERO, c))
            .collect(),
    )
}

/// First turn: reasoning and two calculator calls; then, once both results are in, the
/// answer quoting them.
fn two_sums(req: &Recorded, _: usize) -> Reply {
    let body = req.json();
    let input = body["input"].as_array().cloned().unwrap_or_default();
    let outputs: Vec<&Value> = input
        .iter()
        .filter(|i| i["type"] == "function_call_output")
        .collect();
    if outputs.is_empty() {
        return reply(
            req,
            vec![
                reasoning_item(),
                call_item(0, "call_sum", "2+3"),
                call_item(1, "call_product", "4*5"),
            ],
            json!({"input_tokens": 50, "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12}}),
        );
    }
    let text = format!(
        "{} and {}",
        outputs[0]["output"].as_str().unwrap(),
        outputs[1]["output"].as_str().unwrap()
    );
    reply(
        req,
        vec![
            json!({"type": "message", "id": "msg_2", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}),
        ],
        json!({"input_tokens": 90, "input_tokens_details": {"cached_tokens": 48}, "output_tokens": 5}),
    )
}

fn model(server: &FakeServer) -> Arc<dyn ChatModel> {
    let base = server.base_url();
    ModelRegistry::builtin_with_env(Arc::new(move |name: &str| match name {
        "OPENAI_BASE_URL" => Some(base.clone()),
        "OPENAI_API_KEY" => Some("sk-test".into()),
        _ => None,
    }))
    .create("openai-responses:o4-mini")
    .unwrap()
}

#[tokio::test]
async fn the_full_loop_runs_two_parallel_calls_and_carries_the_reasoning_item() {
    for stream in [false, true] {
        let server = FakeServer::start(two_sums).await;
        let agent = LlmAgent::builder(model(&server))
            .instructions("Use the calculator.")
            .tool(Calculator::new())
            .streaming(stream)
            .build()
            .unwrap();
        let result = agent.ask("What are 2+3 and 4*5?").await.unwrap();
        assert_eq!(result.text, "5 and 20", "stream={stream}");
        assert_eq!(result.turns, 2);
        assert_eq!(result.usage.input_tokens, 140);
        assert_eq!(result.usage.cached_input_tokens, 48);
        assert_eq!(result.usage.reasoning_tokens, 12);

        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        for r in &requests {
            assert_eq!(r.path, "/v1/responses");
            assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
            let body = r.json();
            assert_eq!(body["stream"], json!(stream));
            assert_eq!(body["store"], false, "stateless by default");
            assert!(body.get("previous_response_id").is_none());
            assert_eq!(body["include"], json!(["reasoning.encrypted_content"]));
            assert_eq!(body["instructions"], "Use the calculator.");
            assert_eq!(body["tools"][0]["type"], "function");
            assert_eq!(body["tools"][0]["name"], "calculator");
        }
        let second = requests[1].json();
        let input = second["input"].as_array().unwrap();
        assert_eq!(
            input[0],
            json!({"type": "message", "role": "user", "content": "What are 2+3 and 4*5?"})
        );
        assert_eq!(
            input[1],
            reasoning_item(),
            "the reasoning goes back exactly as received"
        );
        assert_eq!(input[2], call_item(0, "call_sum", "2+3"));
        assert_eq!(input[3], call_item(1, "call_product", "4*5"));
        assert_eq!(
            input[4],
            json!({"type": "function_call_output", "call_id": "call_sum", "output": "5"})
        );
        assert_eq!(
            input[5],
            json!({"type": "function_call_output", "call_id": "call_product", "output": "20"})
        );
        assert_eq!(input.len(), 6);
    }
}

#[tokio::test]
async fn a_stream_announces_both_calls_and_their_arguments() {
    let server = FakeServer::start(two_sums).await;
    let request = ChatRequest {
        messages: vec![Message::user("Sums?")].into(),
        ..Default::default()
    };
    let mut stream = model(&server).chat_stream(&request).await.unwrap();
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        events.push(e.unwrap());
    }
    assert_eq!(
        events[0],
        StreamEvent::ReasoningDelta("Two sums, in parallel.".into())
    );
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallStarted { index, id, name } => {
                Some((*index, id.as_str(), name.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        [
            (0, "call_sum", "calculator"),
            (1, "call_product", "calculator")
        ]
    );
    let Some(StreamEvent::Completed(done)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(
        done.message.reasoning.as_ref().unwrap().text.as_deref(),
        Some("Two sums, in parallel.")
    );
}

#[tokio::test]
async fn errors_are_read_like_openais() {
    let server = FakeServer::start(|req, n| {
        if n == 0 {
            return Reply::json(429, &json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}))
                .header("retry-after", "1");
        }
        if req.wants_stream() {
            return Reply::stream_chunks(vec![(
                std::time::Duration::ZERO,
                named("response.failed", &json!({"type": "response.failed", "response": {"id": "r", "status": "failed",
                    "error": {"code": "server_error", "message": "The model failed"}, "output": []}})),
            )]);
        }
        Reply::json(401, &json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}))
    })
    .await;
    let model = OpenAiResponses::with_config(
        "gpt-4.1",
        ApiKey::new("sk-test"),
        Some(&server.base_url()),
        HttpConfig {
            retry: RetryPolicy::none(),
            ..Default::default()
        },
    )
    .unwrap();
    let request = ChatRequest {
        messages: vec![Message::user("hi")].into(),
        ..Default::default()
    };
    let e = model.chat(&request).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref()),
        (ModelErrorKind::RateLimited, Some("rate_limit_exceeded"))
    );
    assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(1)));
    let e = model.chat(&request).await.unwrap_err();
    assert_eq!(e.kind, ModelErrorKind::Authentication);
    let e = agent_core::collect_stream(model.chat_stream(&request).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ModelErrorKind::Server, "The model failed")
    );
    assert_eq!(e.provider, "openai-responses");
}

#[test]
fn the_registry_names_the_missing_key() {
    let Err(e) =
        ModelRegistry::builtin_with_env(Arc::new(|_: &str| None)).create("openai-responses:gpt-5")
    else {
        panic!("a model without a key");
    };
    assert_eq!(e.kind, ModelErrorKind::Configuration);
    assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
}

#[tokio::test]
async fn a_streamed_run_shows_each_call_and_its_arguments_as_they_are_written() {
    let server = FakeServer::start(two_sums).await;
    let agent = LlmAgent::builder(model(&server))
        .tool(Calculator::new())
        .streaming(true)
        .build()
        .unwrap();
    let ctx = RunContext::new();
    let events: Vec<RunEvent> = agent.run_stream("Sums?", &ctx).collect().await;
    let streamed: Vec<(usize, &str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::ToolCallStreamed {
                index,
                call_id,
                name,
            } => Some((*index, call_id.as_str(), name.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        streamed,
        [
            (0, "call_sum", "calculator"),
            (1, "call_product", "calculator")
        ]
    );
    for (index, expression) in [(0, "2+3"), (1, "4*5")] {
        let arguments: String = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::ToolArgumentsDelta {
                    index: i,
                    arguments,
                } if *i == index => Some(arguments.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(arguments, json!({"expression": expression}).to_string());
    }
    // The announcement comes before the call runs.
    let announced = events
        .iter()
        .position(|e| matches!(e, RunEvent::ToolCallStreamed { .. }))
        .unwrap();
    let ran = events
        .iter()
        .position(|e| matches!(e, RunEvent::ToolCallStarted { .. }))
        .unwrap();
    assert!(announced < ran);
    assert!(matches!(events.last(), Some(RunEvent::Finished(r)) if r.text == "5 and 20"));
}
