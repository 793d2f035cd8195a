//! web_search against fake SearxNG and Brave servers on 127.0.0.1.

use std::sync::Arc;

use agent_core::{Tool, ToolContext};
use agent_tests::fake_server::{FakeServer, Reply};
use agent_tools::{Brave, SearxNg, WebSearch};
use serde_json::{Value, json};

async fn search(tool: &WebSearch, args: Value) -> Result<Value, agent_core::ToolError> {
    let out = Tool::call(tool, args, &ToolContext::detached())
        .await?
        .into_content();
    Ok(serde_json::from_str(&out).unwrap_or(Value::String(out)))
}

#[tokio::test]
async fn searxng_results_come_back_as_title_url_and_snippet() {
    let server = FakeServer::start(|_, _| {
        Reply::json(200, &json!({"query": "rust", "results": [
            {"title": "Rust <b>Programming</b>", "url": "https://www.rust-lang.org/", "content": "A language &amp; more", "engine": "x"},
            {"title": "The Book", "url": "https://doc.rust-lang.org/book/", "content": "Learn Rust"},
            {"title": "Third", "url": "https://example.com/", "content": "c"}
        ]}))
    })
    .await;
    let tool = WebSearch::new(Arc::new(
        SearxNg::new(format!("http://{}", server.addr())).unwrap(),
    ));
    let out = search(&tool, json!({"query": "rust lang", "max_results": 2}))
        .await
        .unwrap();
    assert_eq!(
        out,
        json!([
            {"title": "Rust Programming", "url": "https://www.rust-lang.org/", "snippet": "A language & more"},
            {"title": "The Book", "url": "https://doc.rust-lang.org/book/", "snippet": "Learn Rust"}
        ])
    );
    let request = &server.requests()[0];
    assert!(request.path.starts_with("/search?"), "{}", request.path);
    assert!(
        request.path.contains("q=rust+lang") && request.path.contains("format=json"),
        "{}",
        request.path
    );
}

#[tokio::test]
async fn brave_sends_its_key_in_the_header_and_maps_results() {
    let server = FakeServer::start(|req, _| {
        if req.header("x-subscription-token") != Some("brave-key") {
            return Reply::json(401, &json!({"error": "bad key"}));
        }
        Reply::json(200, &json!({"type": "search", "web": {"results": [
            {"title": "Tokio", "url": "https://tokio.rs/", "description": "An <strong>async</strong> runtime", "age": "1 day"}
        ]}}))
    })
    .await;
    let base = format!("http://{}", server.addr());
    let tool = WebSearch::new(Arc::new(Brave::new("brave-key", Some(&base)).unwrap()));
    let out = search(&tool, json!({"query": "tokio"})).await.unwrap();
    assert_eq!(
        out,
        json!([{"title": "Tokio", "url": "https://tokio.rs/", "snippet": "An async runtime"}])
    );
    assert!(
        server.requests()[0]
            .path
            .starts_with("/res/v1/web/search?q=tokio&count=5"),
        "{}",
        server.requests()[0].path
    );

    let wrong = WebSearch::new(Arc::new(Brave::new("wrong", Some(&base)).unwrap()));
    let err = search(&wrong, json!({"query": "tokio"})).await.unwrap_err();
    assert!(
        err.message.contains("refused the request (HTTP 401)"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("wrong"));
}

#[tokio::test]
async fn empty_results_and_empty_queries_are_explained() {
    let server = FakeServer::start(|_, _| Reply::json(200, &json!({"results": []}))).await;
    let tool = WebSearch::new(Arc::new(
        SearxNg::new(format!("http://{}", server.addr())).unwrap(),
    ));
    assert_eq!(
        search(&tool, json!({"query": "zzz"})).await.unwrap(),
        json!("SearxNG found nothing for `zzz`")
    );
    let err = search(&tool, json!({"query": "  "})).await.unwrap_err();
    assert!(err.message.contains("must not be empty"));
}

#[tokio::test]
async fn an_oversized_answer_is_dropped_and_long_fields_are_cut() {
    let huge = format!(
        "{{\"results\": [{{\"title\": \"{}\"}}]}}",
        "x".repeat(5 << 20)
    );
    let server =
        FakeServer::start(move |_, _| Reply::raw(200, "application/json", huge.clone())).await;
    let tool = WebSearch::new(Arc::new(
        SearxNg::new(format!("http://{}", server.addr())).unwrap(),
    ));
    let err = search(&tool, json!({"query": "q"})).await.unwrap_err();
    assert!(err.message.contains("more than"), "{}", err.message);

    let server = FakeServer::start(|_, _| {
        Reply::json(
            200,
            &json!({"results": [
                {"title": "t".repeat(50_000), "url": "https://example.com/", "content": "c"}
            ]}),
        )
    })
    .await;
    let tool = WebSearch::new(Arc::new(
        SearxNg::new(format!("http://{}", server.addr())).unwrap(),
    ));
    let out = search(&tool, json!({"query": "q"})).await.unwrap();
    assert_eq!(out[0]["title"].as_str().unwrap().len(), 1000);
}
