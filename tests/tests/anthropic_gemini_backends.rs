//! Anthropic Messages and Gemini against fake servers on 127.0.0.1 that speak their formats:
//! the full loop (streaming and not, with parallel calls), errors and retries, and each
//! provider's request rules.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agent_core::prelude::*;
use agent_core::{ChatRequest, ModelErrorKind, ModelRegistry};
use agent_tests::fake_server::{FakeServer, Recorded, Reply};
use agent_tools::Calculator;
use serde_json::{Value, json};

fn registry(pairs: &[(&str, String)]) -> ModelRegistry {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    ModelRegistry::builtin_with_env(Arc::new(move |name: &str| map.get(name).cloned()))
}

fn sse(events: &[Value], named: bool) -> Reply {
    let chunks = events
        .iter()
        .map(|e| {
            let text = if named {
                format!(
                    "event: {}\r\ndata: {e}\r\n\r\n",
                    e["type"].as_str().unwrap_or("message")
                )
            } else {
                format!("data: {e}\r\n\r\n")
            };
            (Duration::ZERO, text.into_bytes())
        })
        .collect();
    Reply::stream_chunks(chunks)
}

// ---------------------------------------------------------------- Anthropic

fn anthropic_turns(req: &Recorded, _: usize) -> Reply {
    let body = req.json();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let results: Vec<String> = last["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    let stream = body["stream"] == true;
    if !results.is_empty() {
        let text = format!("The results are {}.", results.join(" and "));
        if stream {
            return sse(
                &[
                    json!({"type": "message_start", "message": {"id": "msg_2", "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 50, "output_tokens": 1}}}),
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    json!({"type": "ping"}),
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "The results are "}}),
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("{}.", results.join(" and "))}}),
                    json!({"type": "content_block_stop", "index": 0}),
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
                    json!({"type": "message_stop"}),
                ],
                true,
            );
        }
        return Reply::json(
            200,
            &json!({"id": "msg_2", "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 50, "output_tokens": 9}}),
        );
    }
    if stream {
        return sse(
            &[
                json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 30, "cache_read_input_tokens": 10, "output_tokens": 1}}}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Two sums."}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBSig=="}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "calculator", "input": {}}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"expression\": "}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"2+3\"}"}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "calculator", "input": {}}}),
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"expression\": \"4*5\"}"}}),
                json!({"type": "content_block_stop", "index": 2}),
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 40}}),
                json!({"type": "message_stop"}),
            ],
            true,
        );
    }
    Reply::json(
        200,
        &json!({"id": "msg_1", "type": "message", "role": "assistant", "content": [
        {"type": "thinking", "thinking": "Two sums.", "signature": "EqQBSig=="},
        {"type": "tool_use", "id": "toolu_a", "name": "calculator", "input": {"expression": "2+3"}},
        {"type": "tool_use", "id": "toolu_b", "name": "calculator", "input": {"expression": "4*5"}}
    ], "stop_reason": "tool_use", "usage": {"input_tokens": 30, "cache_read_input_tokens": 10, "output_tokens": 40}}),
    )
}

async fn full_loop(
    provider: &str,
    handler: fn(&Recorded, usize) -> Reply,
    stream: bool,
) -> (RunResult, Vec<Recorded>) {
    let server = FakeServer::start(handler).await;
    let base = format!("http://{}", server.addr());
    let vars = match provider {
        "anthropic" => vec![
            ("ANTHROPIC_API_KEY", "sk-ant-test".to_owned()),
            ("ANTHROPIC_BASE_URL", base),
        ],
        _ => vec![
            ("GEMINI_API_KEY", "AIza-test".to_owned()),
            ("GEMINI_BASE_URL", base),
        ],
    };
    let model_name = if provider == "anthropic" {
        "anthropic:claude-sonnet-4-5"
    } else {
        "gemini:gemini-2.5-flash"
    };
    let model = registry(&vars).create(model_name).unwrap();
    let agent = LlmAgent::builder(model)
        .instructions("Use the calculator.")
        .tool(Calculator::new())
        .streaming(stream)
        .build()
        .unwrap();
    let result = agent.ask("Compute 2+3 and 4*5").await.unwrap();
    assert_eq!(
        result.text, "The results are 5 and 20.",
        "{provider} stream={stream}"
    );
    (result, server.requests())
}

#[tokio::test]
async fn anthropic_runs_the_full_loop_with_parallel_calls_streaming_and_not() {
    for stream in [false, true] {
        let (result, requests) = full_loop("anthropic", anthropic_turns, stream).await;
        assert_eq!(requests.len(), 2);
        let first = &requests[0];
        assert_eq!(first.path, "/v1/messages");
        assert_eq!(first.header("x-api-key"), Some("sk-ant-test"));
        assert_eq!(first.header("anthropic-version"), Some("2023-06-01"));
        assert!(first.header("authorization").is_none());
        let body = first.json();
        assert_eq!(body["system"][0]["text"], "Use the calculator.");
        assert_eq!(body["max_tokens"], 4096, "max_tokens is required");
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(body["tool_choice"], json!({"type": "auto"}));
        assert!(
            body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["role"] != "system")
        );

        let second = requests[1].json();
        let assistant = &second["messages"][1];
        assert_eq!(
            assistant["content"][0],
            json!({"type": "thinking", "thinking": "Two sums.", "signature": "EqQBSig=="})
        );
        assert_eq!(
            assistant["content"][1]["input"],
            json!({"expression": "2+3"})
        );
        let results = second["messages"][2]["content"].as_array().unwrap();
        assert_eq!(
            results.len(),
            2,
            "consecutive results merge into one user turn"
        );
        assert_eq!(
            results[0],
            json!({"type": "tool_result", "tool_use_id": "toolu_a", "content": "5"})
        );
        assert_eq!(results[1]["tool_use_id"], "toolu_b");
        assert_eq!(result.usage.input_tokens, 90);
        assert_eq!(result.usage.cached_input_tokens, 10);
        assert_eq!(result.usage.output_tokens, 49);
    }
}

async fn anthropic_error(status: u16, kind: &str) -> (agent_core::ModelError, usize) {
    let kind = kind.to_owned();
    let server = FakeServer::start(move |_, _| {
        Reply::json(status, &json!({"type": "error", "error": {"type": kind, "message": format!("m {status}")}, "request_id": "req_1"}))
    })
    .await;
    let model = agent_core::backends::anthropic::Anthropic::with_config(
        "claude",
        agent_core::backends::ApiKey::new("k"),
        Some(&format!("http://{}", server.addr())),
        agent_core::backends::HttpConfig {
            retry: agent_core::backends::RetryPolicy::none(),
            ..Default::default()
        },
    )
    .unwrap();
    let error = model.chat(&ChatRequest::default()).await.unwrap_err();
    (error, server.requests().len())
}

#[tokio::test]
async fn anthropic_error_statuses_are_classified() {
    for (status, kind, expected) in [
        (400, "invalid_request_error", ModelErrorKind::BadRequest),
        (401, "authentication_error", ModelErrorKind::Authentication),
        (402, "billing_error", ModelErrorKind::QuotaExceeded),
        (403, "permission_error", ModelErrorKind::PermissionDenied),
        (404, "not_found_error", ModelErrorKind::NotFound),
        (413, "request_too_large", ModelErrorKind::BadRequest),
        (429, "rate_limit_error", ModelErrorKind::RateLimited),
        (500, "api_error", ModelErrorKind::Server),
        (504, "timeout_error", ModelErrorKind::Server),
        (529, "overloaded_error", ModelErrorKind::Overloaded),
    ] {
        let (error, _) = anthropic_error(status, kind).await;
        assert_eq!(error.kind, expected, "HTTP {status}");
        assert_eq!(error.code.as_deref(), Some(kind));
        assert_eq!(error.message, format!("m {status}"));
    }
}

#[tokio::test(start_paused = true)]
async fn anthropic_529_is_retried_and_401_is_not() {
    let server = FakeServer::start(|_, n| {
        if n == 0 {
            Reply::json(529, &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})).header("retry-after", "2")
        } else {
            Reply::json(200, &json!({"content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}))
        }
    })
    .await;
    let model = agent_core::backends::anthropic::Anthropic::new(
        "c",
        "k",
        Some(&format!("http://{}", server.addr())),
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(
        model
            .chat(&ChatRequest::default())
            .await
            .unwrap()
            .message
            .content,
        "ok"
    );
    assert_eq!(server.requests().len(), 2);
    assert!(started.elapsed() >= Duration::from_secs(2));

    let server = FakeServer::start(|_, _| Reply::json(401, &json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}))).await;
    let model = agent_core::backends::anthropic::Anthropic::new(
        "c",
        "k",
        Some(&format!("http://{}", server.addr())),
    )
    .unwrap();
    assert_eq!(
        model.chat(&ChatRequest::default()).await.unwrap_err().kind,
        ModelErrorKind::Authentication
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn anthropic_mid_stream_error_and_truncation_are_errors() {
    let server = FakeServer::start(|_, n| {
        let events = if n == 0 {
            vec![
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 1}}}),
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ]
        } else {
            vec![
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 1}}}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hel"}}),
            ]
        };
        sse(&events, true)
    })
    .await;
    let model = agent_core::backends::anthropic::Anthropic::new(
        "c",
        "k",
        Some(&format!("http://{}", server.addr())),
    )
    .unwrap();
    let e = agent_core::collect_stream(model.chat_stream(&ChatRequest::default()).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ModelErrorKind::Overloaded);
    let e = agent_core::collect_stream(model.chat_stream(&ChatRequest::default()).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ModelErrorKind::StreamInterrupted);
}

// ---------------------------------------------------------------- Gemini

fn gemini_turns(req: &Recorded, _: usize) -> Reply {
    let body = req.json();
    let contents = body["contents"].as_array().cloned().unwrap_or_default();
    let last = contents.last().cloned().unwrap_or(Value::Null);
    let outputs: Vec<String> = last["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.pointer("/functionResponse/response/output"))
        .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned))
        .collect();
    let stream = req.path.contains("streamGenerateContent");
    if !outputs.is_empty() {
        let text = format!("The results are {}.", outputs.join(" and "));
        if stream {
            return sse(
                &[
                    json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "The results are "}]}}]}),
                    json!({"candidates": [{"content": {"role": "model", "parts": [{"text": format!("{}.", outputs.join(" and "))}]}, "finishReason": "STOP"}],
                        "usageMetadata": {"promptTokenCount": 60, "candidatesTokenCount": 9}}),
                ],
                false,
            );
        }
        return Reply::json(
            200,
            &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 60, "candidatesTokenCount": 9}}),
        );
    }
    let parts = json!([
        {"functionCall": {"name": "calculator", "args": {"expression": "2+3"}}, "thoughtSignature": "CiwBjz1rX2Vp"},
        {"functionCall": {"name": "calculator", "args": {"expression": "4*5"}}}
    ]);
    let chunk = json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 12, "thoughtsTokenCount": 20, "cachedContentTokenCount": 8}});
    if stream {
        sse(&[chunk], false)
    } else {
        Reply::json(200, &chunk)
    }
}

#[tokio::test]
async fn gemini_runs_the_full_loop_with_parallel_calls_streaming_and_not() {
    for stream in [false, true] {
        let (result, requests) = full_loop("gemini", gemini_turns, stream).await;
        assert_eq!(requests.len(), 2);
        let first = &requests[0];
        let expected_path = if stream {
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        } else {
            "/v1beta/models/gemini-2.5-flash:generateContent"
        };
        assert_eq!(first.path, expected_path);
        assert_eq!(first.header("x-goog-api-key"), Some("AIza-test"));
        let body = first.json();
        assert_eq!(
            body["systemInstruction"]["parts"][0]["text"],
            "Use the calculator."
        );
        let params = &body["tools"][0]["functionDeclarations"][0]["parameters"];
        assert_eq!(params["type"], "object");
        assert_eq!(params["properties"]["expression"]["type"], "string");
        assert_eq!(params["required"], json!(["expression"]));
        for gone in ["$schema", "title", "additionalProperties", "$defs"] {
            assert!(params.get(gone).is_none(), "{gone} sent to Gemini");
        }
        assert_eq!(body["toolConfig"]["functionCallingConfig"]["mode"], "AUTO");

        let second = requests[1].json();
        let model_turn = &second["contents"][1];
        assert_eq!(model_turn["role"], "model");
        assert_eq!(
            model_turn["parts"][0]["thoughtSignature"], "CiwBjz1rX2Vp",
            "signature echoed exactly"
        );
        assert!(model_turn["parts"][0]["functionCall"].get("id").is_none());
        let responses = second["contents"][2]["parts"].as_array().unwrap();
        assert_eq!(responses.len(), 2);
        assert_eq!(
            responses[0],
            json!({"functionResponse": {"name": "calculator", "response": {"output": "5"}}})
        );
        assert_eq!(result.usage.reasoning_tokens, 20);
        assert_eq!(result.usage.cached_input_tokens, 8);
    }
}

async fn gemini_error(status: u16, body: Value) -> agent_core::ModelError {
    let server = FakeServer::start(move |_, _| Reply::json(status, &body)).await;
    let model = agent_core::backends::gemini::Gemini::with_config(
        "gemini-2.5-flash",
        agent_core::backends::ApiKey::new("k"),
        Some(&format!("http://{}/v1beta", server.addr())),
        agent_core::backends::HttpConfig {
            retry: agent_core::backends::RetryPolicy::none(),
            ..Default::default()
        },
    )
    .unwrap();
    model.chat(&ChatRequest::default()).await.unwrap_err()
}

#[tokio::test]
async fn gemini_error_statuses_are_classified_and_a_bad_key_is_authentication() {
    let e = gemini_error(400, json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}})).await;
    assert_eq!(e.kind, ModelErrorKind::Authentication);
    assert!(!e.is_retryable());
    for (status, rpc, kind) in [
        (400, "INVALID_ARGUMENT", ModelErrorKind::BadRequest),
        (403, "PERMISSION_DENIED", ModelErrorKind::PermissionDenied),
        (404, "NOT_FOUND", ModelErrorKind::NotFound),
        (429, "RESOURCE_EXHAUSTED", ModelErrorKind::RateLimited),
        (500, "INTERNAL", ModelErrorKind::Server),
        (503, "UNAVAILABLE", ModelErrorKind::Overloaded),
        (504, "DEADLINE_EXCEEDED", ModelErrorKind::Server),
    ] {
        let e = gemini_error(
            status,
            json!({"error": {"code": status, "message": format!("m{status}"), "status": rpc}}),
        )
        .await;
        assert_eq!(
            (e.kind, e.code.as_deref()),
            (kind, Some(rpc)),
            "HTTP {status}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn gemini_retry_delay_from_the_body_is_honoured() {
    let server = FakeServer::start(|_, n| {
        if n == 0 {
            Reply::json(429, &json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "39s"}]}}))
        } else {
            Reply::json(200, &json!({"candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}]}))
        }
    })
    .await;
    let model = agent_core::backends::gemini::Gemini::new(
        "g",
        "k",
        Some(&format!("http://{}", server.addr())),
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(
        model
            .chat(&ChatRequest::default())
            .await
            .unwrap()
            .message
            .content,
        "ok"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(39),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn gemini_stream_errors_as_bare_json_and_truncation_are_errors() {
    let server = FakeServer::start(|_, n| {
        if n == 0 {
            Reply::stream_chunks(vec![
                (Duration::ZERO, b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}]}}]}\r\n\r\n".to_vec()),
                (Duration::ZERO, b"{\n  \"error\": {\n    \"code\": 503,\n    \"message\": \"The model is overloaded.\",\n    \"status\": \"UNAVAILABLE\"\n  }\n}\n".to_vec()),
            ])
        } else {
            Reply::stream_chunks(vec![(Duration::ZERO, b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}]}}]}\r\n\r\n".to_vec())])
        }
    })
    .await;
    let model = agent_core::backends::gemini::Gemini::new(
        "g",
        "k",
        Some(&format!("http://{}", server.addr())),
    )
    .unwrap();
    let e = agent_core::collect_stream(model.chat_stream(&ChatRequest::default()).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ModelErrorKind::Overloaded, "The model is overloaded.")
    );
    let e = agent_core::collect_stream(model.chat_stream(&ChatRequest::default()).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ModelErrorKind::StreamInterrupted);
}

#[test]
fn missing_keys_name_their_variables() {
    let r = registry(&[]);
    let e = r.create("anthropic:claude-sonnet-4-5").err().unwrap();
    assert!(e.to_string().contains("ANTHROPIC_API_KEY"), "{e}");
    let e = r.create("gemini:gemini-2.5-flash").err().unwrap();
    assert!(e.to_string().contains("GEMINI_API_KEY"), "{e}");
    let with_google = registry(&[("GOOGLE_API_KEY", "x".into())]);
    assert_eq!(
        with_google
            .create("gemini:gemini-2.5-flash")
            .unwrap()
            .provider(),
        "gemini"
    );
}
