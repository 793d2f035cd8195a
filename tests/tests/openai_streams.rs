//! Stream shapes over the wire: the OpenAI-compatible backend reading SSE from a fake
//! server on 127.0.0.1 that writes in timed pieces, so events and UTF-8 characters really
//! cross network reads.

use std::time::Duration;

use agent_core::backends::HttpConfig;
use agent_core::backends::openai::OpenAiCompatible;
use agent_core::prelude::*;
use agent_core::{ChatRequest, ModelErrorKind, StreamEvent};
use agent_tests::fake_server::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::json;

fn ok_text(text: &str) -> Reply {
    Reply::json(
        200,
        &json!({"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}),
    )
}

async fn stream_events(
    reply: Reply,
    config: HttpConfig,
) -> (Vec<StreamEvent>, Option<agent_core::ModelError>) {
    let server = FakeServer::start(move |_, _| reply.clone()).await;
    let model = OpenAiCompatible::builder("openai-compatible")
        .unwrap()
        .model("m")
        .base_url(server.base_url())
        .http_config(config)
        .build()
        .unwrap();
    let mut stream = model.chat_stream(&ChatRequest::default()).await.unwrap();
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(e) => events.push(e),
            Err(e) => return (events, Some(e)),
        }
    }
    (events, None)
}

fn completed(events: &[StreamEvent]) -> &agent_core::ChatResponse {
    match events.last() {
        Some(StreamEvent::Completed(r)) => r,
        other => panic!("no Completed event: {other:?}"),
    }
}

#[tokio::test]
async fn crlf_comments_and_a_character_split_across_reads() {
    let text = "data: {\"choices\":[{\"delta\":{\"content\":\"Grüße €\"}}]}\r\n\r\n"
        .as_bytes()
        .to_vec();
    let euro = text.iter().position(|&b| b == 0xE2).unwrap();
    let pause = Duration::from_millis(20);
    let reply = Reply::stream_chunks(vec![
        (Duration::ZERO, b": OPENROUTER PROCESSING\r\n\r\n".to_vec()),
        (Duration::ZERO, text[..euro + 1].to_vec()),
        (pause, text[euro + 1..].to_vec()),
        (pause, b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"\"}]}\r\n\r\n".to_vec()),
        (pause, b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r\n\r\ndata: [DONE]\r\n\r\n".to_vec()),
    ]);
    let (events, error) = stream_events(reply, HttpConfig::default()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(events[0], StreamEvent::TextDelta("Grüße €".into()));
    let done = completed(&events);
    assert_eq!(done.message.content, "Grüße €");
    assert_eq!(done.usage.total_tokens(), 3);
}

#[tokio::test]
async fn a_mid_stream_error_object_ends_the_stream_with_an_error() {
    let reply = Reply::stream_chunks(vec![
        (Duration::ZERO, b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n".to_vec()),
        (Duration::ZERO, b"data: {\"error\":{\"message\":\"upstream died\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n".to_vec()),
    ]);
    let (events, error) = stream_events(reply, HttpConfig::default()).await;
    assert_eq!(events, [StreamEvent::TextDelta("Hel".into())]);
    let error = error.unwrap();
    assert_eq!(error.message, "upstream died");
}

#[tokio::test]
async fn a_truncated_stream_is_an_error_not_a_short_answer() {
    let reply = Reply::stream_chunks(vec![(
        Duration::ZERO,
        b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n".to_vec(),
    )]);
    let (_, error) = stream_events(reply, HttpConfig::default()).await;
    let error = error.unwrap();
    assert_eq!(error.kind, ModelErrorKind::StreamInterrupted);
    assert!(
        error.message.contains("before the answer was complete"),
        "{error}"
    );
}

#[tokio::test]
async fn keep_alives_do_not_hold_a_stalled_stream_open() {
    let mut chunks = vec![(
        Duration::ZERO,
        b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n".to_vec(),
    )];
    for _ in 0..100 {
        chunks.push((Duration::from_millis(20), b": keep-alive\n\n".to_vec()));
    }
    chunks.push((Duration::ZERO, b"data: [DONE]\n\n".to_vec()));
    let config = HttpConfig {
        stream_idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (_, error) = stream_events(Reply::stream_chunks(chunks), config).await;
    let error = error.expect("the idle timeout must fire despite keep-alives");
    assert_eq!(error.kind, ModelErrorKind::StreamInterrupted);
    assert!(
        error.message.contains("keep-alives do not count"),
        "{error}"
    );
}

#[tokio::test]
async fn a_json_answer_to_a_stream_request_is_accepted() {
    let (events, error) = stream_events(ok_text("whole"), HttpConfig::default()).await;
    assert!(error.is_none());
    assert_eq!(completed(&events).message.content, "whole");
}

#[tokio::test]
async fn whole_tool_calls_in_one_chunk_without_index_in_a_stream() {
    let reply = Reply::sse(&[
        json!({"choices": [{"delta": {"tool_calls": [{"id": "g1", "type": "function", "function": {"name": "a", "arguments": "{\"x\":1}"}}]}}]}),
        json!({"choices": [{"delta": {"tool_calls": [{"id": "g2", "type": "function", "function": {"name": "b", "arguments": {"y": 2}}}]}}]}),
        json!({"choices": [{"delta": {}, "finish_reason": "stop"}]}),
    ]);
    let (events, error) = stream_events(reply, HttpConfig::default()).await;
    assert!(error.is_none());
    let calls = &completed(&events).message.tool_calls;
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].id.as_str(), calls[1].arguments.as_str()),
        ("g1", "{\"y\":2}")
    );
    assert_eq!(
        completed(&events).finish_reason,
        agent_core::FinishReason::ToolCalls
    );
}
