//! One conformance table for every wire protocol: each case (a character split across
//! reads, CRLF line endings, keep-alives during a stall, a stream cut before its end, an
//! error in the middle of a stream, JSON where a stream was asked for, usage only in the
//! last event, two parallel tool calls, a tool call without arguments) runs against every
//! row, through a fake server on 127.0.0.1 speaking that protocol's documented stream.
//! A new backend gets the whole suite by adding one row.

// Test helpers outside #[test] functions unwrap and panic on purpose: a failure is the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use agent_core::backends::anthropic::Anthropic;
use agent_core::backends::gemini::Gemini;
use agent_core::backends::openai::OpenAiCompatible;
use agent_core::backends::{ApiKey, HttpConfig, OpenAiResponses};
use agent_core::{ChatModel, ChatRequest, ChatResponse, FinishReason, Message, ModelError};
use agent_core::{ModelErrorKind, StreamEvent};
use agent_tests::fake_server::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

/// A call in a test stream: id, tool name, arguments as JSON text (`""`: none).
type Call = (&'static str, &'static str, &'static str);

/// One wire protocol, as the suite needs to speak it.
struct Row {
    name: &'static str,
    /// The model, at a fake server's base URL.
    model: fn(&str, HttpConfig) -> Arc<dyn ChatModel>,
    /// The SSE blocks of a text answer in these pieces, with usage (input, output) in the
    /// last block that carries usage and nowhere else.
    text: fn(&[&str], (u64, u64)) -> Vec<String>,
    /// How many trailing blocks of `text` complete the answer (cut them: a truncated stream).
    completes_with: usize,
    /// The SSE blocks of an answer that calls these tools.
    calls: fn(&[Call]) -> Vec<String>,
    /// An error event whose message is "upstream died", that a retry could cure.
    error: fn() -> String,
    /// A whole JSON answer with this text and usage.
    json: fn(&str, (u64, u64)) -> Value,
}

fn data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

fn named(event: &str, v: &Value) -> String {
    format!("event: {event}\ndata: {v}\n\n")
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "openai chat completions",
            model: |base, http| {
                Arc::new(
                    OpenAiCompatible::builder("openai")
                        .unwrap()
                        .model("gpt-test")
                        .base_url(base)
                        .api_key("sk-test")
                        .http_config(http)
                        .build()
                        .unwrap(),
                )
            },
            text: |pieces, (input, output)| {
                let mut blocks: Vec<String> = pieces
                    .iter()
                    .map(|p| data(&json!({"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}], "usage": null})))
                    .collect();
                blocks.push(data(&json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}})));
                blocks.push("data: [DONE]\n\n".into());
                blocks
            },
            completes_with: 2,
            calls: |calls| {
                let mut blocks = Vec::new();
                for (i, (id, name, args)) in calls.iter().enumerate() {
                    blocks.push(data(&json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                        {"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}}]})));
                    let (a, b) = args.split_at(args.len() / 2);
                    for piece in [a, b].into_iter().filter(|p| !p.is_empty()) {
                        blocks.push(data(
                            &json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                            {"index": i, "function": {"arguments": piece}}]}}]}),
                        ));
                    }
                }
                blocks.push(data(
                    &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
                ));
                blocks.push("data: [DONE]\n\n".into());
                blocks
            },
            error: || {
                data(
                    &json!({"error": {"message": "upstream died", "type": "server_error", "param": null, "code": null}}),
                )
            },
            json: |text, (input, output)| {
                json!({"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0,
                    "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": input, "completion_tokens": output}})
            },
        },
        Row {
            name: "anthropic messages",
            model: |base, http| {
                Arc::new(
                    Anthropic::with_config(
                        "claude-test",
                        ApiKey::new("sk-ant-test"),
                        Some(base),
                        http,
                    )
                    .unwrap(),
                )
            },
            text: |pieces, (input, output)| {
                let mut blocks = vec![
                    named(
                        "message_start",
                        &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                        "role": "assistant", "content": [], "model": "claude-test", "stop_reason": null}}),
                    ),
                    named(
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}),
                    ),
                ];
                for p in pieces {
                    blocks.push(named(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": p}}),
                    ));
                }
                blocks.push(named(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                ));
                blocks.push(named(
                    "message_delta",
                    &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                    "usage": {"input_tokens": input, "output_tokens": output}}),
                ));
                blocks.push(named("message_stop", &json!({"type": "message_stop"})));
                blocks
            },
            completes_with: 1,
            calls: |calls| {
                let mut blocks = vec![named(
                    "message_start",
                    &json!({"type": "message_start",
                    "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                    "usage": {"input_tokens": 20, "output_tokens": 1}}}),
                )];
                for (i, (id, name, args)) in calls.iter().enumerate() {
                    blocks.push(named("content_block_start", &json!({"type": "content_block_start", "index": i,
                        "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})));
                    let (a, b) = args.split_at(args.len() / 2);
                    for piece in [a, b] {
                        blocks.push(named(
                            "content_block_delta",
                            &json!({"type": "content_block_delta", "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": piece}}),
                        ));
                    }
                    blocks.push(named(
                        "content_block_stop",
                        &json!({"type": "content_block_stop", "index": i}),
                    ));
                }
                blocks.push(named(
                    "message_delta",
                    &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 30}}),
                ));
                blocks.push(named("message_stop", &json!({"type": "message_stop"})));
                blocks
            },
            error: || {
                named(
                    "error",
                    &json!({"type": "error", "error": {"type": "overloaded_error", "message": "upstream died"}}),
                )
            },
            json: |text, (input, output)| {
                json!({"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn", "usage": {"input_tokens": input, "output_tokens": output}})
            },
        },
        Row {
            name: "gemini generateContent",
            model: |base, http| {
                Arc::new(
                    Gemini::with_config("gemini-test", ApiKey::new("AIza-test"), Some(base), http)
                        .unwrap(),
                )
            },
            text: |pieces, (input, output)| {
                let mut blocks: Vec<String> = pieces
                    .iter()
                    .map(|p| data(&json!({"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}, "index": 0}]})))
                    .collect();
                blocks.push(data(&json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                    "finishReason": "STOP", "index": 0}],
                    "usageMetadata": {"promptTokenCount": input, "candidatesTokenCount": output, "totalTokenCount": input + output}})));
                blocks
            },
            completes_with: 1,
            calls: |calls| {
                let parts: Vec<Value> = calls
                    .iter()
                    .map(|(id, name, args)| {
                        let args: Value = if args.is_empty() {
                            json!({})
                        } else {
                            serde_json::from_str(args).unwrap()
                        };
                        json!({"functionCall": {"id": id, "name": name, "args": args}})
                    })
                    .collect();
                vec![data(
                    &json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
                    "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 30}}),
                )]
            },
            error: || {
                data(
                    &json!({"error": {"code": 503, "message": "upstream died", "status": "UNAVAILABLE"}}),
                )
            },
            json: |text, (input, output)| {
                json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
                    "usageMetadata": {"promptTokenCount": input, "candidatesTokenCount": output}})
            },
        },
        Row {
            name: "openai responses",
            model: |base, http| {
                Arc::new(
                    OpenAiResponses::with_config(
                        "gpt-test",
                        ApiKey::new("sk-test"),
                        Some(base),
                        http,
                    )
                    .unwrap(),
                )
            },
            text: |pieces, (input, output)| {
                let mut blocks = vec![
                    named(
                        "response.created",
                        &json!({"type": "response.created", "sequence_number": 0,
                        "response": {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}}),
                    ),
                    named(
                        "response.output_item.added",
                        &json!({"type": "response.output_item.added", "output_index": 0,
                        "item": {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}}),
                    ),
                ];
                for p in pieces {
                    blocks.push(named(
                        "response.output_text.delta",
                        &json!({"type": "response.output_text.delta",
                        "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": p}),
                    ));
                }
                let text: String = pieces.concat();
                let message = json!({"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]});
                blocks.push(named(
                    "response.output_item.done",
                    &json!({"type": "response.output_item.done",
                    "output_index": 0, "item": message}),
                ));
                blocks.push(named("response.completed", &json!({"type": "response.completed", "response": {
                    "id": "resp_1", "object": "response", "status": "completed", "output": [message],
                    "usage": {"input_tokens": input, "output_tokens": output, "total_tokens": input + output}}})));
                blocks
            },
            completes_with: 1,
            calls: |calls| {
                let mut blocks = Vec::new();
                let mut items = Vec::new();
                for (i, (id, name, args)) in calls.iter().enumerate() {
                    let item_id = format!("fc_{i}");
                    blocks.push(named("response.output_item.added", &json!({"type": "response.output_item.added",
                        "output_index": i, "item": {"id": item_id, "type": "function_call", "call_id": id, "name": name,
                        "arguments": "", "status": "in_progress"}})));
                    let (a, b) = args.split_at(args.len() / 2);
                    for piece in [a, b].into_iter().filter(|p| !p.is_empty()) {
                        blocks.push(named("response.function_call_arguments.delta", &json!({
                            "type": "response.function_call_arguments.delta", "item_id": item_id, "output_index": i, "delta": piece})));
                    }
                    let item = json!({"id": item_id, "type": "function_call", "call_id": id, "name": name,
                        "arguments": args, "status": "completed"});
                    blocks.push(named(
                        "response.output_item.done",
                        &json!({"type": "response.output_item.done",
                        "output_index": i, "item": item}),
                    ));
                    items.push(item);
                }
                blocks.push(named(
                    "response.completed",
                    &json!({"type": "response.completed", "response": {
                    "id": "resp_1", "status": "completed", "output": items,
                    "usage": {"input_tokens": 20, "output_tokens": 30}}}),
                ));
                blocks
            },
            error: || {
                named(
                    "error",
                    &json!({"type": "error", "code": "server_error", "message": "upstream died", "param": null}),
                )
            },
            json: |text, (input, output)| {
                json!({"id": "resp_1", "object": "response", "status": "completed", "output": [
                    {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                     "content": [{"type": "output_text", "text": text, "annotations": []}]}],
                    "usage": {"input_tokens": input, "output_tokens": output, "total_tokens": input + output}})
            },
        },
    ]
}

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user("Go.")].into(),
        ..Default::default()
    }
}

/// Streams one answer from `reply`: the events before the end, and the error if any.
async fn stream(
    row: &Row,
    reply: Reply,
    http: HttpConfig,
) -> (Vec<StreamEvent>, Option<ModelError>) {
    let server = FakeServer::start(move |_, _| reply.clone()).await;
    let model = (row.model)(&server.base_url(), http);
    let mut stream = model
        .chat_stream(&request())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", row.name));
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(e) => events.push(e),
            Err(e) => return (events, Some(e)),
        }
    }
    (events, None)
}

fn completed<'a>(
    row: &Row,
    events: &'a [StreamEvent],
    error: Option<ModelError>,
) -> &'a ChatResponse {
    if let Some(error) = error {
        panic!("{}: {error}", row.name);
    }
    match events.last() {
        Some(StreamEvent::Completed(r)) => r,
        other => panic!("{}: no Completed event: {other:?}", row.name),
    }
}

fn in_one_write(blocks: &[String]) -> Reply {
    Reply::stream_chunks(vec![(Duration::ZERO, blocks.concat().into_bytes())])
}

/// A body written in pieces that end inside multi-byte characters, with pauses between.
fn split_inside_characters(body: &str) -> Reply {
    let bytes = body.as_bytes();
    let cuts: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b >= 0xC0)
        .map(|(i, _)| i + 1)
        .collect();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push((Duration::from_millis(10), bytes[start..cut].to_vec()));
        start = cut;
    }
    chunks.push((Duration::from_millis(10), bytes[start..].to_vec()));
    Reply::stream_chunks(chunks)
}

#[tokio::test]
async fn a_character_split_across_reads_survives() {
    for row in rows() {
        let body = (row.text)(&["Grüße ", "€ und ☃"], (11, 7)).concat();
        let (events, error) =
            stream(&row, split_inside_characters(&body), HttpConfig::default()).await;
        let done = completed(&row, &events, error);
        assert_eq!(done.message.content, "Grüße € und ☃", "{}", row.name);
    }
}

#[tokio::test]
async fn crlf_line_endings_are_read_like_lf() {
    for row in rows() {
        let body = (row.text)(&["Hello", ", world"], (11, 7))
            .concat()
            .replace('\n', "\r\n");
        let reply = Reply::stream_chunks(vec![(Duration::ZERO, body.into_bytes())]);
        let (events, error) = stream(&row, reply, HttpConfig::default()).await;
        let done = completed(&row, &events, error);
        assert_eq!(done.message.content, "Hello, world", "{}", row.name);
        let deltas: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deltas, ["Hello", ", world"], "{}", row.name);
    }
}

#[tokio::test]
async fn keep_alives_do_not_hold_a_stalled_stream_open() {
    for row in rows() {
        let blocks = (row.text)(&["a"], (1, 1));
        let mut chunks = vec![(
            Duration::ZERO,
            blocks[..blocks.len() - row.completes_with]
                .concat()
                .into_bytes(),
        )];
        for _ in 0..100 {
            chunks.push((Duration::from_millis(20), b": keep-alive\n\n".to_vec()));
        }
        chunks.push((
            Duration::ZERO,
            blocks[blocks.len() - row.completes_with..]
                .concat()
                .into_bytes(),
        ));
        let http = HttpConfig {
            stream_idle_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let (_, error) = stream(&row, Reply::stream_chunks(chunks), http).await;
        let error = error.unwrap_or_else(|| {
            panic!(
                "{}: the idle timeout must fire despite keep-alives",
                row.name
            )
        });
        assert_eq!(
            error.kind,
            ModelErrorKind::StreamInterrupted,
            "{}",
            row.name
        );
        assert!(
            error.message.contains("keep-alives do not count"),
            "{}: {error}",
            row.name
        );
    }
}

#[tokio::test]
async fn a_stream_cut_before_its_end_is_an_error_not_a_short_answer() {
    for row in rows() {
        let blocks = (row.text)(&["Half an ", "answer"], (3, 4));
        let cut = &blocks[..blocks.len() - row.completes_with];
        let (events, error) = stream(&row, in_one_write(cut), HttpConfig::default()).await;
        let error =
            error.unwrap_or_else(|| panic!("{}: a cut stream completed: {events:?}", row.name));
        assert_eq!(
            error.kind,
            ModelErrorKind::StreamInterrupted,
            "{}: {error}",
            row.name
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, StreamEvent::Completed(_))),
            "{}",
            row.name
        );
    }
}

#[tokio::test]
async fn an_error_in_the_middle_of_a_stream_ends_it_with_that_error() {
    for row in rows() {
        let blocks = (row.text)(&["Hel", "lo"], (3, 4));
        // The opening blocks and the first text piece, then the error.
        let upto = blocks.iter().position(|b| b.contains("Hel")).unwrap() + 1;
        let mut body = blocks[..upto].to_vec();
        body.push((row.error)());
        body.extend(blocks[upto..].iter().cloned());
        let (events, error) = stream(&row, in_one_write(&body), HttpConfig::default()).await;
        let error = error.unwrap_or_else(|| panic!("{}: the error was swallowed", row.name));
        assert!(
            error.message.contains("upstream died"),
            "{}: {error}",
            row.name
        );
        assert!(error.is_retryable(), "{}: {error:?}", row.name);
        assert_eq!(
            events,
            [StreamEvent::TextDelta("Hel".into())],
            "{}: the text before the error arrives, nothing after it",
            row.name
        );
    }
}

#[tokio::test]
async fn a_json_answer_to_a_stream_request_is_accepted() {
    for row in rows() {
        let reply = Reply::json(200, &(row.json)("whole", (5, 6)));
        let (events, error) = stream(&row, reply, HttpConfig::default()).await;
        let done = completed(&row, &events, error);
        assert_eq!(done.message.content, "whole", "{}", row.name);
        assert_eq!(
            (done.usage.input_tokens, done.usage.output_tokens),
            (5, 6),
            "{}",
            row.name
        );
        assert!(!done.usage.estimated, "{}", row.name);
    }
}

#[tokio::test]
async fn usage_reported_only_in_the_last_event_is_the_answers_usage() {
    for row in rows() {
        let (events, error) = stream(
            &row,
            in_one_write(&(row.text)(&["a", "b"], (123, 45))),
            HttpConfig::default(),
        )
        .await;
        let done = completed(&row, &events, error);
        assert_eq!(
            (
                done.usage.input_tokens,
                done.usage.output_tokens,
                done.usage.estimated
            ),
            (123, 45, false),
            "{}",
            row.name
        );
    }
}

#[tokio::test]
async fn two_parallel_tool_calls_arrive_whole_and_announced() {
    for row in rows() {
        let calls = [
            ("call_w", "get_weather", r#"{"city":"Paris"}"#),
            ("call_t", "get_time", r#"{"tz":"Asia/Tokyo"}"#),
        ];
        let (events, error) = stream(
            &row,
            in_one_write(&(row.calls)(&calls)),
            HttpConfig::default(),
        )
        .await;
        let done = completed(&row, &events, error);
        assert_eq!(done.finish_reason, FinishReason::ToolCalls, "{}", row.name);
        let got: Vec<(&str, &str, Value)> = done
            .message
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.parse_arguments().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("call_w", "get_weather", json!({"city": "Paris"})),
                ("call_t", "get_time", json!({"tz": "Asia/Tokyo"}))
            ],
            "{}",
            row.name
        );
        let started: Vec<(usize, &str)> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallStarted { index, name, .. } => Some((*index, name.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            started,
            [(0, "get_weather"), (1, "get_time")],
            "{}",
            row.name
        );
        for (index, (_, _, arguments)) in got.iter().enumerate() {
            let streamed: String = events
                .iter()
                .filter_map(|e| match e {
                    StreamEvent::ToolCallDelta {
                        index: i,
                        arguments,
                    } if *i == index => Some(arguments.as_str()),
                    _ => None,
                })
                .collect();
            let streamed: Value = serde_json::from_str(&streamed).unwrap_or_else(|e| {
                panic!(
                    "{}: call {index}'s deltas are not its arguments ({e})",
                    row.name
                )
            });
            assert_eq!(&streamed, arguments, "{}", row.name);
        }
    }
}

#[tokio::test]
async fn a_tool_call_without_arguments_gets_an_empty_object() {
    for row in rows() {
        let (events, error) = stream(
            &row,
            in_one_write(&(row.calls)(&[("call_0", "now", "")])),
            HttpConfig::default(),
        )
        .await;
        let done = completed(&row, &events, error);
        let call = &done.message.tool_calls[0];
        assert_eq!(
            (call.name.as_str(), call.parse_arguments().unwrap()),
            ("now", json!({})),
            "{}",
            row.name
        );
        assert_eq!(call.arguments.trim(), "{}", "{}", row.name);
    }
}
