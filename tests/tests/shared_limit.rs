//! `SharedLimit`: 200 agents behind one limit of 8 never have more than 8 requests at the
//! server; starts per minute are spread; a retry-after holds everyone; waits are
//! cancellable and show in the run's events. Time-dependent checks run on tokio's paused
//! clock, so nothing here depends on the machine's speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agent_core::backends::openai::OpenAiCompatible;
use agent_core::resilience::{LimitedModel, SharedLimit};
use agent_core::run::RunEvent;
use agent_core::testing::ScriptedModel;
use agent_core::{
    ChatModel, ChatRequest, LlmAgent, Message, ModelError, ModelErrorKind, RunContext,
};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Barrier;

/// A server that holds every request until `group` requests are in flight at once, then
/// answers them: with a working limit of `group` each group fills exactly; without one,
/// far more than `group` pile up. Returns its address and the most seen in flight.
async fn grouping_server(group: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(group));
    let seen = most.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (in_flight, most, barrier) = (in_flight.clone(), seen.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then a body of content-length bytes.
                let body_len = loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break end + 4 + len;
                    }
                };
                while buf.len() < body_len {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                barrier.wait().await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let body = r#"{"choices":[{"message":{"content":"done"},"finish_reason":"stop"}]}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/v1"), most)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_agents_behind_a_limit_of_eight_never_exceed_eight_at_the_server() {
    let (base_url, most) = grouping_server(8).await;
    let limit = SharedLimit::builder("fake").max_in_flight(8).build();
    let backend: Arc<dyn ChatModel> = Arc::new(
        OpenAiCompatible::builder("openai-compatible")
            .unwrap()
            .model("m")
            .base_url(base_url)
            .build()
            .unwrap(),
    );
    let runs = (0..200).map(|_| {
        let model = Arc::new(LimitedModel::new(backend.clone(), limit.clone()));
        async move {
            let agent = LlmAgent::builder(model).build().unwrap();
            agent.ask("go").await.map(|r| r.text)
        }
    });
    let answers = futures::future::join_all(runs).await;
    assert!(
        answers.iter().all(|a| matches!(a.as_deref(), Ok("done"))),
        "{:?}",
        answers.iter().find(|a| a.is_err())
    );
    assert_eq!(
        most.load(Ordering::SeqCst),
        8,
        "the server saw more (or fewer) than 8 at once"
    );
}

fn hi() -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user("hi")].into(),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn starts_per_minute_are_spread_over_the_minute() {
    let limit = SharedLimit::builder("rpm").per_minute(5).build();
    let mut script = ScriptedModel::new();
    for _ in 0..12 {
        script = script.then_text("ok");
    }
    let model = LimitedModel::new(Arc::new(script), limit.clone());
    let start = tokio::time::Instant::now();
    let mut started = Vec::new();
    for _ in 0..12 {
        model.chat(&hi()).await.unwrap();
        started.push(start.elapsed().as_secs());
    }
    assert_eq!(started, [0, 0, 0, 0, 0, 60, 60, 60, 60, 60, 120, 120]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_holds_every_model_behind_the_limit() {
    let limit = SharedLimit::builder("shared").max_in_flight(4).build();
    let limited = ModelError::new(ModelErrorKind::RateLimited, "slow down")
        .with_status(429)
        .with_retry_after(Duration::from_secs(30));
    let first = LimitedModel::new(
        Arc::new(ScriptedModel::new().then_error(limited)),
        limit.clone(),
    );
    let other = LimitedModel::new(
        Arc::new(ScriptedModel::new().then_text("later")),
        limit.clone(),
    );
    let start = tokio::time::Instant::now();
    assert!(first.chat(&hi()).await.is_err());
    assert_eq!(other.chat(&hi()).await.unwrap().message.content, "later");
    assert_eq!(
        start.elapsed().as_secs(),
        30,
        "another model of the same limit waited"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_is_cancellable_and_shows_in_the_run_events() {
    let limit = SharedLimit::builder("rpm").per_minute(1).build();
    let model = |text: &str| {
        Arc::new(LimitedModel::new(
            Arc::new(ScriptedModel::new().then_text(text)),
            limit.clone(),
        ))
    };
    // Dropping a waiting call (as a cancelled run does) ends the wait at once.
    let waiting = model("never");
    let _ = model("first").chat(&hi()).await.unwrap();
    let gave_up = tokio::time::timeout(Duration::from_secs(5), waiting.chat(&hi())).await;
    assert!(gave_up.is_err(), "the call did not wait for its slot");

    let agent = LlmAgent::builder(model("waited")).build().unwrap();
    let ctx = RunContext::new();
    let events: Vec<RunEvent> = agent.run_stream("go", &ctx).collect().await;
    let waited = events.iter().find_map(|e| match e {
        RunEvent::ModelWaited {
            limit,
            reason,
            waited,
        } => Some((limit.clone(), reason.clone(), *waited)),
        _ => None,
    });
    let (name, reason, waited) = waited.expect("no ModelWaited event");
    assert_eq!(
        (name.as_str(), reason.as_str()),
        ("rpm", "requests per minute")
    );
    assert!(waited >= Duration::from_secs(55), "{waited:?}");
    let position = |f: fn(&RunEvent) -> bool| events.iter().position(f);
    assert!(
        position(|e| matches!(e, RunEvent::ModelWaited { .. }))
            < position(|e| matches!(e, RunEvent::TextDelta(_))),
        "the wait comes before the answer"
    );
    assert!(matches!(events.last(), Some(RunEvent::Finished(r)) if r.text == "waited"));
}

#[tokio::test]
async fn a_retry_after_the_http_layer_retries_itself_still_pauses_the_limit() {
    use agent_tests::fake_server::{FakeServer, Reply};
    let server = FakeServer::start(|_, n| {
        if n == 0 {
            Reply::json(429, &serde_json::json!({"error": {"message": "slow down", "type": "rate_limit_error"}}))
                .header("retry-after", "1")
        } else {
            Reply::json(200, &serde_json::json!({"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}))
        }
    })
    .await;
    let limit = SharedLimit::builder("shared").max_in_flight(2).build();
    let backend = OpenAiCompatible::builder("openai-compatible")
        .unwrap()
        .model("m")
        .base_url(server.base_url())
        .build()
        .unwrap();
    let model = LimitedModel::new(Arc::new(backend), limit.clone());
    assert_eq!(model.chat(&hi()).await.unwrap().message.content, "ok");
    assert_eq!(
        server.requests().len(),
        2,
        "the HTTP layer retried the 429 itself"
    );
    assert_eq!(
        limit.retry_after_pauses(),
        1,
        "and the limit heard of its retry-after"
    );
}
