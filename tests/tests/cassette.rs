//! Record and replay (`agent_core::testing::CassetteModel`): sessions recorded against the
//! fake OpenAI-compatible server on 127.0.0.1, then replayed with no server running. Keys
//! never reach the file; mismatches and unused interactions fail loudly.

use std::sync::Arc;
use std::time::Duration;

use agent_core::backends::openai::OpenAiCompatible;
use agent_core::prelude::*;
use agent_core::testing::{CassetteError, CassetteMode, CassetteModel};
use agent_core::{ChatRequest, ModelErrorKind, StreamEvent};
use agent_tests::fake_server::{FakeServer, Recorded, Reply};
use agent_tools::Calculator;
use futures::StreamExt;
use serde_json::{Value, json};

const KEY: &str = "sk-test-4f9d2c7e1a8b3f6d0e5c9a2b7d4e1f8c";

fn real_model(server: &FakeServer) -> Arc<dyn ChatModel> {
    Arc::new(
        OpenAiCompatible::builder("openai-compatible")
            .unwrap()
            .model("fake-model")
            .base_url(server.base_url())
            .api_key(KEY)
            .build()
            .unwrap(),
    )
}

fn no_real_model() -> Result<Arc<dyn ChatModel>, agent_core::ModelError> {
    Err(agent_core::ModelError::new(
        ModelErrorKind::Configuration,
        "replay must never build the real model",
    ))
}

fn text_reply(text: &str) -> Reply {
    Reply::json(
        200,
        &json!({"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 5}}),
    )
}

/// The calculator agent's two turns; the final answer echoes the bearer key the server got
/// (a provider that echoes credentials must not put them in a cassette).
fn calculator_server_echoing_the_key(req: &Recorded, _: usize) -> Reply {
    let body = req.json();
    let last = body["messages"].as_array().and_then(|m| m.last()).cloned();
    if last.as_ref().is_some_and(|m| m["role"] == "tool") {
        let auth = req.header("authorization").unwrap_or_default().to_owned();
        let result = last.map(|m| m["content"].clone()).unwrap_or(Value::Null);
        text_reply(&format!(
            "2 + 3 = {} (request signed with {auth})",
            result.as_str().unwrap_or_default()
        ))
    } else {
        Reply::json(
            200,
            &json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": "{\"expression\":\"2+3\"}"}}]},
                "finish_reason": "tool_calls"}]}),
        )
    }
}

async fn ask(model: Arc<CassetteModel>, question: &str) -> Result<RunResult, AgentError> {
    let agent = LlmAgent::builder(model).tool(Calculator).build().unwrap();
    agent.ask(question).await
}

#[tokio::test]
async fn a_recorded_session_replays_offline_with_the_echoed_key_scrubbed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calc.json");
    let server = FakeServer::start(calculator_server_echoing_the_key).await;
    let recorder = Arc::new(
        CassetteModel::builder(&path)
            .mode(CassetteMode::RecordAll)
            .secret(KEY)
            .build(|| Ok(real_model(&server)))
            .unwrap(),
    );
    let live = ask(recorder.clone(), "What is 2+3?").await.unwrap();
    recorder.finish().unwrap();
    assert_eq!(server.requests().len(), 2);
    assert_eq!(
        live.text,
        "2 + 3 = 5 (request signed with Bearer <redacted>)".replace("<redacted>", KEY)
    );
    drop(server); // replay runs with no server at all

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(KEY), "the key reached the cassette");
    assert!(text.contains("<redacted>"));
    assert!(
        text.contains("\"format\": \"agent-cassette/1\""),
        "pretty, versioned JSON"
    );

    let replayer = Arc::new(
        CassetteModel::builder(&path)
            .mode(CassetteMode::Replay)
            .build(no_real_model)
            .unwrap(),
    );
    assert_eq!(replayer.model(), "fake-model");
    let replayed = ask(replayer.clone(), "What is 2+3?").await.unwrap();
    assert_eq!(
        replayed.text,
        "2 + 3 = 5 (request signed with Bearer <redacted>)"
    );
    assert_eq!(replayed.new_messages.len(), live.new_messages.len());
    replayer.finish().unwrap();
}

#[tokio::test]
async fn a_key_shape_that_survives_scrubbing_refuses_the_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leak.json");
    let server = FakeServer::start(|_, _| {
        text_reply("debug: upstream key sk-live-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d")
    })
    .await;
    let recorder = CassetteModel::builder(&path)
        .mode(CassetteMode::RecordAll)
        .build(|| Ok(real_model(&server)))
        .unwrap();
    recorder
        .chat(&ChatRequest {
            messages: vec![Message::user("hi")].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let error = recorder.finish().unwrap_err();
    assert!(
        matches!(&error, CassetteError::KeyFound { interaction: 0, pattern, .. } if pattern == "sk-"),
        "{error}"
    );
    assert!(
        !error.to_string().contains("9a8b7c6d"),
        "the error shows the key: {error}"
    );
    assert!(!path.exists(), "a cassette holding a key was written");
}

async fn record_questions(path: &std::path::Path, questions: &[&str]) {
    let server = FakeServer::start(|req, _| {
        let q = req.json()["messages"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        text_reply(&format!("answer to {q}"))
    })
    .await;
    let recorder = CassetteModel::builder(path)
        .mode(CassetteMode::RecordAll)
        .build(|| Ok(real_model(&server)))
        .unwrap();
    for q in questions {
        recorder.chat(&user(q)).await.unwrap();
    }
    recorder.finish().unwrap();
}

fn user(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user(text)].into(),
        ..Default::default()
    }
}

async fn answer(model: &CassetteModel, question: &str) -> String {
    model.chat(&user(question)).await.unwrap().message.content
}

fn replayer(path: &std::path::Path) -> CassetteModel {
    CassetteModel::builder(path)
        .mode(CassetteMode::Replay)
        .build(no_real_model)
        .unwrap()
}

#[tokio::test]
async fn a_request_that_matches_nothing_fails_loudly_naming_the_first_differing_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.json");
    record_questions(&path, &["What is 6 times 7?"]).await;
    let model = replayer(&path);
    let error = model.chat(&user("What is 6 times 8?")).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("request #1 matches no recorded interaction"),
        "{message}"
    );
    assert!(
        message.contains("at `messages/0/content/0/text`"),
        "{message}"
    );
    assert!(
        message.contains("recorded \"What is 6 times 7?\", got \"What is 6 times 8?\""),
        "{message}"
    );
    assert!(message.contains("AGENT_CASSETTE=new"), "{message}");
    // The session fails at the end too, even if the agent had swallowed the error.
    assert!(matches!(model.finish(), Err(CassetteError::Mismatch(_))));
}

#[tokio::test]
async fn an_interaction_recorded_but_never_used_fails_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.json");
    record_questions(&path, &["first", "second"]).await;
    let model = replayer(&path);
    assert_eq!(answer(&model, "first").await, "answer to first");
    let error = model.finish().unwrap_err();
    assert!(
        matches!(&error, CassetteError::Unused { unused, .. } if unused == &[1]),
        "{error}"
    );
    assert!(error.to_string().contains("never used: #1"), "{error}");
}

#[test]
fn dropping_a_replay_with_unused_interactions_fails_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drop.json");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(record_questions(&path, &["only"]));
    let model = replayer(&path);
    let panic =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(model))).unwrap_err();
    let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("never used: #0"), "{text}");
}

#[tokio::test]
async fn ignored_fields_let_a_request_that_changes_every_run_match() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dated.json");
    record_questions(&path, &["Today is 2026-12-01. Plan my day."]).await;
    let model = CassetteModel::builder(&path)
        .mode(CassetteMode::Replay)
        .ignore_field("messages/0/content/*/text")
        .build(no_real_model)
        .unwrap();
    let answer = model
        .chat(&user("Today is 2026-12-02. Plan my day."))
        .await
        .unwrap();
    assert_eq!(
        answer.message.content,
        "answer to Today is 2026-12-01. Plan my day."
    );
    model.finish().unwrap();
}

#[tokio::test]
async fn record_new_replays_what_exists_and_records_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grow.json");
    record_questions(&path, &["old"]).await;
    let server = FakeServer::start(|_, _| text_reply("fresh")).await;
    let model = CassetteModel::builder(&path)
        .mode(CassetteMode::RecordNew)
        .build(|| Ok(real_model(&server)))
        .unwrap();
    assert_eq!(answer(&model, "old").await, "answer to old");
    assert_eq!(answer(&model, "new").await, "fresh");
    model.finish().unwrap();
    assert_eq!(
        server.requests().len(),
        1,
        "only the new request reached the server"
    );

    let model = replayer(&path);
    assert_eq!(answer(&model, "old").await, "answer to old");
    assert_eq!(answer(&model, "new").await, "fresh");
    model.finish().unwrap();
}

/// An SSE answer (text, then a tool call) cut into pieces of `piece` bytes (0: whole).
fn sse_in_pieces(piece: usize) -> Reply {
    let events = [
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Grüße, "}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "I will add."}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_9", "type": "function", "function": {"name": "calculator", "arguments": "{\"expression\":"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": "\"2+3\"}"}}]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7}}),
    ];
    let mut body: Vec<u8> = events
        .iter()
        .flat_map(|e| format!("data: {e}\n\n").into_bytes())
        .collect();
    body.extend_from_slice(b"data: [DONE]\n\n");
    let chunks = if piece == 0 {
        vec![(Duration::ZERO, body)]
    } else {
        body.chunks(piece)
            .map(|c| (Duration::ZERO, c.to_vec()))
            .collect()
    };
    Reply::stream_chunks(chunks)
}

async fn read_stream(model: &dyn ChatModel, request: &ChatRequest) -> Vec<StreamEvent> {
    let mut stream = model.chat_stream(request).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    events
}

#[tokio::test]
async fn a_stream_replays_event_for_event_whether_recorded_whole_or_one_byte_at_a_time() {
    for piece in [1, 0] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stream.json");
        let server = FakeServer::start(move |_, _| sse_in_pieces(piece)).await;
        let recorder = CassetteModel::builder(&path)
            .mode(CassetteMode::RecordAll)
            .build(|| Ok(real_model(&server)))
            .unwrap();
        let request = user("Add 2 and 3");
        let live = read_stream(&recorder, &request).await;
        recorder.finish().unwrap();
        drop(server);
        assert!(
            matches!(live.last(), Some(StreamEvent::Completed(r)) if r.message.tool_calls.len() == 1)
        );

        let replay = replayer(&path);
        let replayed = read_stream(&replay, &request).await;
        assert_eq!(replayed, live, "piece size {piece}");
        replay.finish().unwrap();
    }
}

#[tokio::test]
async fn a_stream_that_broke_replays_its_events_then_the_same_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    let server = FakeServer::start(|_, _| {
        Reply::stream_chunks(vec![
            (
                Duration::ZERO,
                b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n".to_vec(),
            ),
            (
                Duration::ZERO,
                b"data: {\"error\":{\"message\":\"upstream died\",\"type\":\"server_error\"}}\n\n"
                    .to_vec(),
            ),
        ])
    })
    .await;
    let recorder = CassetteModel::builder(&path)
        .mode(CassetteMode::RecordAll)
        .build(|| Ok(real_model(&server)))
        .unwrap();
    let mut live = recorder.chat_stream(&user("hi")).await.unwrap();
    let mut seen = Vec::new();
    while let Some(item) = live.next().await {
        seen.push(item.map_err(|e| e.kind));
    }
    drop(live);
    recorder.finish().unwrap();

    let replay = replayer(&path);
    let mut stream = replay.chat_stream(&user("hi")).await.unwrap();
    let mut again = Vec::new();
    while let Some(item) = stream.next().await {
        again.push(item.map_err(|e| e.kind));
    }
    assert_eq!(again, seen);
    assert!(matches!(again.last(), Some(Err(_))), "{again:?}");
    replay.finish().unwrap();
}

/// Runs in a child process only (see the next test): the key comes from the environment,
/// under a name the recorder knows to scrub, and the server echoes it.
#[tokio::test]
async fn child_records_with_a_key_from_the_environment() {
    let Ok(path) = std::env::var("CASSETTE_CHILD_PATH") else {
        return; // not the child
    };
    let key = std::env::var("EXAMPLE_SERVICE_API_KEY").unwrap();
    let server = FakeServer::start(move |_, _| text_reply(&format!("your key is {key}"))).await;
    let recorder = CassetteModel::builder(&path)
        .mode(CassetteMode::RecordAll)
        .build(|| Ok(real_model(&server)))
        .unwrap();
    recorder.chat(&user("who am I?")).await.unwrap();
    recorder.finish().unwrap();
}

#[tokio::test]
async fn keys_named_by_the_environment_are_scrubbed_without_being_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env.json");
    let env_key = "svc-7f3a9c1e5b2d8f4a6c0e";
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_records_with_a_key_from_the_environment"])
        .env("CASSETTE_CHILD_PATH", &path)
        .env("EXAMPLE_SERVICE_API_KEY", env_key)
        .output()
        .await
        .unwrap();
    agent_tests::stdout_of_success(&out);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(env_key), "{text}");
    assert!(text.contains("your key is <redacted>"), "{text}");
}

#[tokio::test]
async fn another_backends_answer_with_signed_reasoning_replays_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anthropic.json");
    let server = FakeServer::start(|_, _| {
        Reply::json(
            200,
            &json!({"id": "msg_1", "type": "message", "role": "assistant", "content": [
                {"type": "thinking", "thinking": "add them", "signature": "sig-abc"},
                {"type": "tool_use", "id": "toolu_01", "name": "calculator", "input": {"expression": "2+3"}}],
                "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5}}),
        )
    })
    .await;
    let base = format!("http://{}", server.addr());
    let recorder = CassetteModel::builder(&path)
        .mode(CassetteMode::RecordAll)
        .build(|| {
            let model = agent_core::backends::anthropic::Anthropic::with_config(
                "claude-test",
                agent_core::backends::ApiKey::new(KEY),
                Some(&base),
                Default::default(),
            )?;
            Ok(Arc::new(model) as Arc<dyn ChatModel>)
        })
        .unwrap();
    let live = recorder.chat(&user("2+3?")).await.unwrap();
    recorder.finish().unwrap();
    drop(server);
    assert!(live.message.reasoning.is_some());

    let replay = replayer(&path);
    assert_eq!(replay.provider(), "anthropic");
    assert_eq!(replay.chat(&user("2+3?")).await.unwrap(), live);
    replay.finish().unwrap();
}
