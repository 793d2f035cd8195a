//! `FallbackModel`: which errors move on to the next model and which do not, streams that
//! break before or after their first event, cooldowns, context-length routing, the final
//! error listing every attempt, and the answer (and its price) naming the model that gave it.

use std::sync::Arc;
use std::time::Duration;

use agent_core::message::{AssistantMessage, Reasoning, ToolCall, ToolResult};
use agent_core::resilience::FallbackModel;
use agent_core::run::{Budget, BudgetTracker, Price, Prices};
use agent_core::testing::ScriptedModel;
use agent_core::{Agent, ChatModel, ChatResponse, Message};
use agent_core::{
    ChatRequest, ChatStream, LlmAgent, ModelError, ModelErrorKind, RunContext, StreamEvent,
    async_trait,
};
use futures::StreamExt;
use serde_json::json;

fn err(kind: ModelErrorKind, status: u16) -> ModelError {
    ModelError::new(kind, "nope").with_status(status)
}

fn hi() -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user("hi")].into(),
        ..Default::default()
    }
}

fn pair(first: ScriptedModel, second: ScriptedModel) -> (Arc<ScriptedModel>, Arc<ScriptedModel>) {
    (Arc::new(first), Arc::new(second))
}

#[tokio::test]
async fn a_rate_limit_falls_back_and_each_model_is_called_once() {
    let (a, b) = pair(
        ScriptedModel::named("a").then_error(err(ModelErrorKind::RateLimited, 429)),
        ScriptedModel::named("b").then_text("from b"),
    );
    let model = FallbackModel::builder()
        .model(a.clone())
        .model(b.clone())
        .build()
        .unwrap();
    let answer = model.chat(&hi()).await.unwrap();
    assert_eq!(answer.message.content, "from b");
    assert_eq!(answer.model.as_deref(), Some("b"));
    assert_eq!((a.requests().len(), b.requests().len()), (1, 1));
}

#[tokio::test]
async fn each_provider_trouble_falls_back() {
    for (kind, status) in [
        (ModelErrorKind::Overloaded, 529),
        (ModelErrorKind::Server, 500),
        (ModelErrorKind::Timeout, 0),
        (ModelErrorKind::Connection, 0),
        (ModelErrorKind::InvalidResponse, 200),
        (ModelErrorKind::StreamInterrupted, 200),
    ] {
        let (a, b) = pair(
            ScriptedModel::named("a").then_error(err(kind, status)),
            ScriptedModel::named("b").then_text("ok"),
        );
        let model = FallbackModel::builder().model(a).model(b).build().unwrap();
        assert_eq!(
            model.chat(&hi()).await.unwrap().message.content,
            "ok",
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn a_bad_request_or_a_bad_key_does_not_fall_back_unless_opted_in() {
    for kind in [
        ModelErrorKind::BadRequest,
        ModelErrorKind::Authentication,
        ModelErrorKind::Cancelled,
    ] {
        let (a, b) = pair(
            ScriptedModel::named("a").then_error(err(kind, 400)),
            ScriptedModel::named("b").then_text("hidden bug"),
        );
        let model = FallbackModel::builder()
            .model(a)
            .model(b.clone())
            .build()
            .unwrap();
        assert_eq!(model.chat(&hi()).await.unwrap_err().kind, kind);
        assert_eq!(b.requests().len(), 0, "{kind:?} reached the second model");
    }
    let (a, b) = pair(
        ScriptedModel::named("a").then_error(err(ModelErrorKind::BadRequest, 400)),
        ScriptedModel::named("b").then_text("tolerant"),
    );
    let model = FallbackModel::builder()
        .model(a)
        .model(b)
        .fallback_on_bad_request(true)
        .build()
        .unwrap();
    assert_eq!(model.chat(&hi()).await.unwrap().message.content, "tolerant");
}

#[tokio::test]
async fn when_every_model_fails_one_error_lists_every_attempt() {
    let (a, b) = pair(
        ScriptedModel::named("a").then_error(err(ModelErrorKind::RateLimited, 429)),
        ScriptedModel::named("b").then_error(err(ModelErrorKind::Server, 502)),
    );
    let model = FallbackModel::builder().model(a).model(b).build().unwrap();
    let error = model.chat(&hi()).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::Server);
    let text = error.to_string();
    assert!(text.contains("all 2 models failed"), "{text}");
    assert!(
        text.contains("[1] scripted:a: rate limited (HTTP 429): nope"),
        "{text}"
    );
    assert!(
        text.contains("[2] scripted:b: server error (HTTP 502): nope"),
        "{text}"
    );
}

#[tokio::test]
async fn a_context_length_error_goes_only_to_a_long_context_model() {
    let a = Arc::new(
        ScriptedModel::named("a").then_error(err(ModelErrorKind::ContextLengthExceeded, 400)),
    );
    let small = Arc::new(ScriptedModel::named("small").then_text("never"));
    let long = Arc::new(ScriptedModel::named("long").then_text("read it all"));
    let model = FallbackModel::builder()
        .model(a)
        .model(small.clone())
        .long_context_model(long.clone())
        .build()
        .unwrap();
    let answer = model.chat(&hi()).await.unwrap();
    assert_eq!(answer.model.as_deref(), Some("long"));
    assert_eq!(small.requests().len(), 0);
}

/// `a` fails once with `error`, then would answer; `b` answers twice. Returns how often
/// `a` was asked over two requests, and the two answers.
async fn after_one_failure(error: ModelError, cooldown: Duration) -> (usize, [String; 2]) {
    let a = Arc::new(
        ScriptedModel::named("a")
            .then_error(error)
            .then_text("a is back"),
    );
    let b = Arc::new(ScriptedModel::named("b").then_text("b1").then_text("b2"));
    let model = FallbackModel::builder()
        .model(a.clone())
        .model(b)
        .cooldown(cooldown)
        .build()
        .unwrap();
    let first = model.chat(&hi()).await.unwrap().message.content;
    let second = model.chat(&hi()).await.unwrap().message.content;
    (a.requests().len(), [first, second])
}

#[tokio::test]
async fn a_failing_model_cools_down_and_is_tried_again_after() {
    let overloaded = || err(ModelErrorKind::Overloaded, 503);
    // Within the cooldown the failing model is not asked first.
    let (asked, answers) = after_one_failure(overloaded(), Duration::from_secs(3600)).await;
    assert_eq!((asked, answers), (1, ["b1".into(), "b2".into()]));
    // Without a cooldown it is asked first again.
    let (asked, answers) = after_one_failure(overloaded(), Duration::ZERO).await;
    assert_eq!((asked, answers), (2, ["b1".into(), "a is back".into()]));
}

#[tokio::test]
async fn a_providers_retry_after_longer_than_the_cooldown_sets_it() {
    let limited = err(ModelErrorKind::RateLimited, 429).with_retry_after(Duration::from_secs(3600));
    let (asked, answers) = after_one_failure(limited, Duration::ZERO).await;
    assert_eq!((asked, answers), (1, ["b1".into(), "b2".into()]));
}

/// A model whose stream yields `before` events, then fails.
struct BreakingStream {
    name: &'static str,
    before: usize,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl ChatModel for BreakingStream {
    fn provider(&self) -> &str {
        "test"
    }
    fn model(&self) -> &str {
        self.name
    }
    async fn chat(&self, _: &ChatRequest) -> Result<ChatResponse, ModelError> {
        Err(err(ModelErrorKind::Server, 500))
    }
    async fn chat_stream(&self, _: &ChatRequest) -> Result<ChatStream, ModelError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut items: Vec<Result<StreamEvent, ModelError>> = (0..self.before)
            .map(|i| Ok(StreamEvent::TextDelta(format!("part {i} "))))
            .collect();
        items.push(Err(ModelError::new(
            ModelErrorKind::StreamInterrupted,
            "connection reset",
        )));
        Ok(Box::pin(futures::stream::iter(items)))
    }
}

async fn read_all(stream: ChatStream) -> (String, Option<ModelError>) {
    let mut stream = stream;
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::TextDelta(t)) => text.push_str(&t),
            Ok(StreamEvent::Completed(r)) => text.push_str(&format!("[done by {:?}]", r.model)),
            Ok(_) => {}
            Err(e) => return (text, Some(e)),
        }
    }
    (text, None)
}

#[tokio::test]
async fn a_stream_broken_before_its_first_event_falls_back() {
    let a = Arc::new(BreakingStream {
        name: "a",
        before: 0,
        calls: Default::default(),
    });
    let b = Arc::new(ScriptedModel::named("b").then_text("whole answer"));
    let model = FallbackModel::builder().model(a).model(b).build().unwrap();
    let (text, error) = read_all(model.chat_stream(&hi()).await.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(text, "whole answer[done by Some(\"b\")]");
}

#[tokio::test]
async fn a_stream_broken_after_its_first_event_is_an_error_not_a_second_answer() {
    let a = Arc::new(BreakingStream {
        name: "a",
        before: 1,
        calls: Default::default(),
    });
    let b = Arc::new(ScriptedModel::named("b").then_text("second answer"));
    let model = FallbackModel::builder()
        .model(a.clone())
        .model(b.clone())
        .build()
        .unwrap();
    let (text, error) = read_all(model.chat_stream(&hi()).await.unwrap()).await;
    assert_eq!(text, "part 0 ");
    assert_eq!(
        error.map(|e| e.kind),
        Some(ModelErrorKind::StreamInterrupted)
    );
    assert_eq!(b.requests().len(), 0);
}

#[tokio::test]
async fn another_providers_reasoning_is_dropped_and_odd_call_ids_are_mapped() {
    let b = Arc::new(ScriptedModel::named("b").then_text("ok"));
    let a = Arc::new(ScriptedModel::named("a").then_error(err(ModelErrorKind::Server, 500)));
    let model = FallbackModel::builder()
        .model(a.clone())
        .model(b.clone())
        .build()
        .unwrap();
    let call = ToolCall::raw("toolu:01/odd id", "calc", "{}");
    let mut turn = AssistantMessage::with_tool_calls("", vec![call.clone()]);
    turn.reasoning = Some(Reasoning {
        provider: "anthropic".into(),
        text: Some("hmm".into()),
        data: json!([{"type": "thinking", "signature": "sig"}]),
    });
    let request = ChatRequest {
        messages: vec![
            Message::user("2+3"),
            Message::Assistant(turn),
            Message::tool_result(ToolResult::ok(&call, "5")),
        ]
        .into(),
        ..Default::default()
    };
    model.chat(&request).await.unwrap();
    let sent = &b.requests()[0];
    let Message::Assistant(turn) = &sent.messages[1] else {
        panic!()
    };
    assert_eq!(
        turn.reasoning, None,
        "anthropic's signed reasoning went to another provider"
    );
    let id = turn.tool_calls[0].id.clone();
    assert!(
        id.len() == 9 && id.bytes().all(|c| c.is_ascii_alphanumeric()),
        "{id}"
    );
    let Message::Tool(result) = &sent.messages[2] else {
        panic!()
    };
    assert_eq!(result.call_id, id, "the call and its result keep one id");
}

#[tokio::test]
async fn the_result_names_and_the_budget_prices_the_model_that_answered() {
    let a =
        Arc::new(ScriptedModel::named("cheap").then_error(err(ModelErrorKind::RateLimited, 429)));
    let b = Arc::new(ScriptedModel::named("pricey").then_reply(|_| {
        let mut r = ChatResponse::text("expensive words");
        r.usage.input_tokens = 1_000_000;
        r.usage.output_tokens = 10;
        Ok(r)
    }));
    let price = |input: f64| Price::new(input, 0.0).with_cached_input(0.0);
    let mut prices = Prices::empty();
    prices.set("cheap", price(0.0));
    prices.set("pricey", price(5.0));
    let tracker = Arc::new(BudgetTracker::with_prices(Budget::default(), prices));
    let model = Arc::new(FallbackModel::builder().model(a).model(b).build().unwrap());
    let agent = LlmAgent::builder(model).build().unwrap();
    let result = agent
        .run("hi", &RunContext::new().with_budget(tracker.clone()))
        .await
        .unwrap();
    assert_eq!(result.text, "expensive words");
    assert_eq!(
        result.turn_models,
        ["pricey"],
        "the result says who answered"
    );
    assert!(
        (tracker.spent().cost_usd - 5.0).abs() < 1e-9,
        "{:?}",
        tracker.spent()
    );
}
