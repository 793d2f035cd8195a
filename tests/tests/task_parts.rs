//! A task made of parts (text, an image by URL, an image by bytes, a PDF) reaches each
//! provider in its own shape, through fake servers on 127.0.0.1; a backend that cannot
//! take a part refuses the run with a typed error and sends nothing.

// Test helpers outside #[test] functions unwrap and panic on purpose: a failure is the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;

use agent_core::prelude::*;
use agent_core::{AgentError, ContentPart, ModelErrorKind, ModelRegistry};
use agent_tests::fake_server::{FakeServer, Recorded, Reply};
use serde_json::{Value, json};

const PNG: &[u8] = &[0x89, b'P', b'N', b'G'];
const PNG_B64: &str = "iVBORw==";
const PDF: &[u8] = b"%PDF-1.7";
const PDF_B64: &str = "JVBERi0xLjc=";

fn task() -> Vec<ContentPart> {
    vec![
        ContentPart::text("Does the photo match the invoice?"),
        ContentPart::image_url("https://example.com/photo.jpg"),
        ContentPart::image_bytes("image/png", PNG),
        ContentPart::pdf("invoice.pdf", PDF),
    ]
}

/// A text answer in each provider's format.
fn answer(req: &Recorded, _: usize) -> Reply {
    let body = match req.path.as_str() {
        p if p.ends_with("/messages") => json!({"type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "yes"}], "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}),
        p if p.contains(":generateContent") => json!({"candidates": [{"content": {"role": "model",
            "parts": [{"text": "yes"}]}, "finishReason": "STOP"}]}),
        p if p.ends_with("/responses") => {
            json!({"status": "completed", "output": [{"type": "message",
            "content": [{"type": "output_text", "text": "yes"}]}]})
        }
        _ => {
            json!({"choices": [{"message": {"role": "assistant", "content": "yes"}, "finish_reason": "stop"}]})
        }
    };
    Reply::json(200, &body)
}

/// Runs the task on `provider:model`, configured at the fake server; returns the result
/// and the requests the server got.
async fn run(
    spec: &str,
    parts: Vec<ContentPart>,
) -> (Result<RunResult, AgentError>, Vec<Recorded>) {
    let server = FakeServer::start(answer).await;
    let base = server.base_url();
    let vars: HashMap<String, String> = [
        ("OPENAI_API_KEY", "sk-test"),
        ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ("GEMINI_API_KEY", "AIza-test"),
        ("DEEPSEEK_API_KEY", "d-test"),
        ("MISTRAL_API_KEY", "m-test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain(
        [
            "OPENAI_BASE_URL",
            "ANTHROPIC_BASE_URL",
            "GEMINI_BASE_URL",
            "DEEPSEEK_BASE_URL",
            "MISTRAL_BASE_URL",
        ]
        .map(|k| (k.to_owned(), base.clone())),
    )
    .collect();
    let registry =
        ModelRegistry::builtin_with_env(Arc::new(move |name: &str| vars.get(name).cloned()));
    let agent = LlmAgent::builder(registry.create(spec).unwrap())
        .build()
        .unwrap();
    let result = agent.ask_parts(parts).await;
    (result, server.requests())
}

async fn user_content(spec: &str) -> Value {
    let (result, requests) = run(spec, task()).await;
    assert_eq!(result.unwrap().text, "yes", "{spec}");
    let body = requests[0].json();
    match spec.split(':').next() {
        Some("gemini") => body["contents"][0]["parts"].clone(),
        Some("openai-responses") => body["input"][0]["content"].clone(),
        _ => {
            let messages = body["messages"].as_array().unwrap();
            messages.last().unwrap()["content"].clone()
        }
    }
}

#[tokio::test]
async fn openai_gets_image_url_and_file_parts() {
    assert_eq!(
        user_content("openai:gpt-4o").await,
        json!([
            {"type": "text", "text": "Does the photo match the invoice?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/photo.jpg"}},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}},
            {"type": "file", "file": {"filename": "invoice.pdf", "file_data": format!("data:application/pdf;base64,{PDF_B64}")}}
        ])
    );
}

#[tokio::test]
async fn anthropic_gets_image_and_document_blocks() {
    let content = user_content("anthropic:claude-sonnet-4-5").await;
    let mut blocks = content.as_array().unwrap().clone();
    // The last block carries the cache breakpoint of the growing history.
    assert_eq!(blocks[3]["cache_control"], json!({"type": "ephemeral"}));
    blocks[3].as_object_mut().unwrap().remove("cache_control");
    assert_eq!(
        blocks,
        [
            json!({"type": "text", "text": "Does the photo match the invoice?"}),
            json!({"type": "image", "source": {"type": "url", "url": "https://example.com/photo.jpg"}}),
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}),
            json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64},
                   "title": "invoice.pdf"})
        ]
    );
}

#[tokio::test]
async fn gemini_gets_file_data_and_inline_data_parts() {
    assert_eq!(
        user_content("gemini:gemini-2.5-flash").await,
        json!([
            {"text": "Does the photo match the invoice?"},
            {"fileData": {"fileUri": "https://example.com/photo.jpg", "mimeType": "image/jpeg"}},
            {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
            {"inlineData": {"mimeType": "application/pdf", "data": PDF_B64}}
        ])
    );
}

#[tokio::test]
async fn the_responses_api_gets_input_image_and_input_file_parts() {
    assert_eq!(
        user_content("openai-responses:gpt-5").await,
        json!([
            {"type": "input_text", "text": "Does the photo match the invoice?"},
            {"type": "input_image", "image_url": "https://example.com/photo.jpg", "detail": "auto"},
            {"type": "input_image", "image_url": format!("data:image/png;base64,{PNG_B64}"), "detail": "auto"},
            {"type": "input_file", "filename": "invoice.pdf", "file_data": format!("data:application/pdf;base64,{PDF_B64}")}
        ])
    );
}

#[tokio::test]
async fn a_backend_that_cannot_read_a_part_refuses_the_run_and_sends_nothing() {
    for (spec, part, what) in [
        (
            "deepseek:deepseek-chat",
            ContentPart::image_bytes("image/png", PNG),
            "images",
        ),
        (
            "mistral:mistral-small-latest",
            ContentPart::pdf("a.pdf", PDF),
            "documents",
        ),
    ] {
        let (result, requests) = run(spec, vec![ContentPart::text("Look."), part]).await;
        let Err(AgentError::Model { source: error, .. }) = result else {
            panic!("{spec}: {result:?}");
        };
        assert_eq!(error.kind, ModelErrorKind::Unsupported, "{spec}");
        assert!(!error.is_retryable());
        assert!(error.message.contains(what), "{spec}: {error}");
        assert!(requests.is_empty(), "{spec}: a request was sent");
    }
}
