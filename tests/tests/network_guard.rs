//! The network guard: while it is alive, our HTTP client (every backend) and `http_fetch`
//! refuse any non-loopback address at once, and loopback still works. The guard is
//! process-wide, so this file is its own test binary.

use std::sync::Arc;

use agent_core::backends::guard::NetworkGuard;
use agent_core::backends::openai::OpenAiCompatible;
use agent_core::backends::{HttpConfig, RetryPolicy};
use agent_core::prelude::*;
use agent_core::testing::call_tool;
use agent_core::{ChatRequest, ModelErrorKind};
use agent_tests::fake_server::{FakeServer, Reply};
use agent_tools::HttpFetch;
use serde_json::json;

fn model_at(base_url: &str) -> OpenAiCompatible {
    OpenAiCompatible::builder("openai-compatible")
        .unwrap()
        .model("m")
        .base_url(base_url)
        .http_config(HttpConfig {
            retry: RetryPolicy::none(),
            ..HttpConfig::default()
        })
        .build()
        .unwrap()
}

fn hi() -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user("hi")].into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_guard_refuses_a_public_address_and_allows_loopback() {
    let _guard = NetworkGuard::loopback_only();

    let error = model_at("http://93.184.216.34/v1")
        .chat(&hi())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::Configuration);
    assert!(!error.is_retryable());
    let text = error.to_string();
    assert!(
        text.contains("network guard: `93.184.216.34` is not a loopback address"),
        "{text}"
    );

    let error = model_at("https://api.openai.com/v1")
        .chat(&hi())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`api.openai.com` is not a loopback"),
        "{error}"
    );

    let server = FakeServer::start(|_, _| {
        Reply::json(
            200,
            &json!({"choices": [{"message": {"content": "local"}, "finish_reason": "stop"}]}),
        )
    })
    .await;
    let answer = model_at(&server.base_url()).chat(&hi()).await.unwrap();
    assert_eq!(answer.message.content, "local");

    // A redirect out of loopback is refused too (http_fetch follows hops itself; here the
    // tool is allowed 127.0.0.1 and the guard stops the public hop).
    let redirect = FakeServer::start(|_, _| {
        Reply::raw(302, "text/plain", "").header("location", "http://93.184.216.34/")
    })
    .await;
    let fetch = HttpFetch::new()
        .allow_host("127.0.0.1")
        .allow_host("93.184.216.34");
    let error = call_tool(
        fetch,
        json!({"url": format!("http://{}/", redirect.addr())}),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("network guard"), "{error}");
    let model: Arc<dyn ChatModel> = Arc::new(model_at(&redirect.base_url()));
    let error = model.chat(&hi()).await.unwrap_err();
    assert!(error.to_string().contains("network guard"), "{error}");
}
