//! The OpenAI-compatible backend against a fake server on 127.0.0.1 that speaks each
//! preset's format: the full agent loop, stream shapes, errors, retries and each provider's
//! request rules. Nothing here touches the internet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agent_core::Tool;
use agent_core::backends::openai::OpenAiCompatible;
use agent_core::backends::{HttpConfig, RetryPolicy};
use agent_core::prelude::*;
use agent_core::{ChatRequest, ModelErrorKind, ModelRegistry, ToolChoice, collect_stream};
use agent_tests::fake_server::{FakeServer, Recorded, Reply};
use agent_tools::Calculator;
use serde_json::{Value, json};

// ---------------------------------------------------------------- a scripted fake provider

/// The first turn calls the calculator with "2+3"; once a tool result is present the answer
/// quotes it. Answers as a stream when the request asks for one.
fn calculator_turns(provider: &'static str) -> impl Fn(&Recorded, usize) -> Reply + Send + Sync {
    move |req, _| {
        let body = req.json();
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.last().cloned().unwrap_or(Value::Null);
        let (id, reasoning) = match provider {
            "mistral" => ("Ab3dE6gH9", None),
            "deepseek" => ("call_0_5f1c", Some("I should use the calculator.")),
            _ => ("call_Wq3xK8vN2mPz7LbR5tYc1DhE", None),
        };
        if last["role"] == "tool" {
            let result = last["content"].as_str().unwrap_or_default().to_owned();
            let text = format!("2 + 3 = {result}");
            if req.wants_stream() {
                Reply::sse(&[
                    json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
                    json!({"choices": [{"index": 0, "delta": {"content": "2 + 3 = "}}]}),
                    json!({"choices": [{"index": 0, "delta": {"content": result}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 40, "completion_tokens": 6}}),
                ])
            } else {
                Reply::json(
                    200,
                    &json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop"}], "usage": {"prompt_tokens": 40, "completion_tokens": 6}}),
                )
            }
        } else if req.wants_stream() {
            let mut events = Vec::new();
            if let Some(r) = reasoning {
                events.push(json!({"choices": [{"index": 0, "delta": {"content": null, "reasoning_content": r}}]}));
            }
            events.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": id, "type": "function", "function": {"name": "calculator", "arguments": ""}}]}}]}));
            events.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": "{\"expression\": "}}]}}]}));
            events.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": "\"2+3\"}"}}]}, "finish_reason": "tool_calls"}]}));
            events.push(
                json!({"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 9}}),
            );
            Reply::sse(&events)
        } else {
            let mut message = json!({"role": "assistant", "content": if provider == "mistral" { json!("") } else { Value::Null },
                "tool_calls": [{"id": id, "type": "function", "function": {"name": "calculator", "arguments": "{\"expression\": \"2+3\"}"}}]});
            if let Some(r) = reasoning {
                message["reasoning_content"] = json!(r);
            }
            Reply::json(
                200,
                &json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": message,
                "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 30, "completion_tokens": 9,
                "prompt_tokens_details": {"cached_tokens": 8}}}),
            )
        }
    }
}

fn env(pairs: &[(&str, String)]) -> agent_core::backends::registry::EnvLookup {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Arc::new(move |name: &str| map.get(name).cloned())
}

/// The model a `provider:model` string names, configured through the preset's variables.
fn model_for(provider: &str, model: &str, server: &FakeServer) -> Arc<dyn ChatModel> {
    let vars = match provider {
        "openai" => vec![
            ("OPENAI_BASE_URL", server.base_url()),
            ("OPENAI_API_KEY", "sk-test".into()),
        ],
        "mistral" => vec![
            ("MISTRAL_BASE_URL", server.base_url()),
            ("MISTRAL_API_KEY", "m-test".into()),
        ],
        "deepseek" => vec![
            ("DEEPSEEK_BASE_URL", server.base_url()),
            ("DEEPSEEK_API_KEY", "d-test".into()),
        ],
        "ollama" => vec![("OLLAMA_HOST", server.addr().to_string())],
        "groq" => vec![
            ("GROQ_BASE_URL", server.base_url()),
            ("GROQ_API_KEY", "g-test".into()),
        ],
        "openrouter" => vec![
            ("OPENROUTER_BASE_URL", server.base_url()),
            ("OPENROUTER_API_KEY", "o-test".into()),
        ],
        "together" => vec![
            ("TOGETHER_BASE_URL", server.base_url()),
            ("TOGETHER_API_KEY", "t-test".into()),
        ],
        "openai-compatible" => vec![("OPENAI_COMPATIBLE_BASE_URL", server.base_url())],
        other => panic!("no test setup for {other}"),
    };
    ModelRegistry::builtin_with_env(env(&vars))
        .create(&format!("{provider}:{model}"))
        .unwrap()
}

async fn full_loop(
    provider: &'static str,
    model: &str,
    stream: bool,
) -> (RunResult, Vec<Recorded>) {
    let server = FakeServer::start(calculator_turns(provider)).await;
    let agent = LlmAgent::builder(model_for(provider, model, &server))
        .instructions("Use the calculator.")
        .tool(Calculator::new())
        .max_output_tokens_for_test()
        .streaming(stream)
        .build()
        .unwrap();
    let result = agent.ask("What is 2+3?").await.unwrap();
    assert_eq!(result.text, "2 + 3 = 5", "{provider} stream={stream}");
    assert_eq!(result.turns, 2);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.json()["stream"], json!(stream));
    }
    (result, requests)
}

trait TestBuilder {
    fn max_output_tokens_for_test(self) -> Self;
}

impl TestBuilder for agent_core::LlmAgentBuilder {
    fn max_output_tokens_for_test(self) -> Self {
        self.settings(agent_core::ModelSettings {
            max_output_tokens: Some(256),
            ..Default::default()
        })
    }
}

// ---------------------------------------------------------------- the full loop, per preset

#[tokio::test]
async fn openai_runs_the_full_loop_with_and_without_streaming() {
    for stream in [false, true] {
        let (result, requests) = full_loop("openai", "gpt-4o-mini", stream).await;
        let first = requests[0].json();
        assert_eq!(requests[0].header("authorization"), Some("Bearer sk-test"));
        assert_eq!(first["model"], "gpt-4o-mini");
        assert_eq!(first["max_completion_tokens"], 256);
        assert!(first.get("max_tokens").is_none());
        assert_eq!(first["tool_choice"], "auto");
        assert_eq!(first["tools"][0]["function"]["name"], "calculator");
        assert_eq!(first.get("stream_options").is_some(), stream);
        let second = requests[1].json();
        let assistant = &second["messages"][2];
        assert_eq!(
            assistant["content"],
            Value::Null,
            "tool-only turn sends content: null"
        );
        assert!(assistant.as_object().unwrap().contains_key("content"));
        assert_eq!(
            assistant["tool_calls"][0]["function"]["arguments"],
            "{\"expression\": \"2+3\"}"
        );
        assert_eq!(
            second["messages"][3],
            json!({"role": "tool", "tool_call_id": "call_Wq3xK8vN2mPz7LbR5tYc1DhE", "content": "5"})
        );
        assert_eq!(result.usage.input_tokens, 70);
        if !stream {
            assert_eq!(result.usage.cached_input_tokens, 8);
        }
    }
}

#[tokio::test]
async fn mistral_runs_the_full_loop_and_gets_only_fields_it_accepts() {
    for stream in [false, true] {
        let (_, requests) = full_loop("mistral", "mistral-small-latest", stream).await;
        for r in &requests {
            let body = r.json();
            for forbidden in [
                "max_completion_tokens",
                "stream_options",
                "store",
                "parallel_tool_calls",
            ] {
                assert!(body.get(forbidden).is_none(), "{forbidden} sent to Mistral");
            }
            assert_eq!(body["max_tokens"], 256);
        }
        let second = requests[1].json();
        assert_eq!(second["messages"][2]["content"], "");
        assert_eq!(second["messages"][3]["name"], "calculator");
        assert_eq!(second["messages"][3]["tool_call_id"], "Ab3dE6gH9");
    }
}

#[tokio::test]
async fn deepseek_chat_and_reasoner_run_the_full_loop() {
    for model in ["deepseek-chat", "deepseek-reasoner"] {
        for stream in [false, true] {
            let (result, requests) = full_loop("deepseek", model, stream).await;
            let assistant = result.new_messages[1].as_assistant().unwrap();
            assert_eq!(
                assistant.reasoning.as_ref().unwrap().text.as_deref(),
                Some("I should use the calculator.")
            );
            // The tool-calling turn's reasoning goes back to DeepSeek.
            assert_eq!(
                requests[1].json()["messages"][2]["reasoning_content"],
                "I should use the calculator."
            );
            assert_eq!(requests[0].header("authorization"), Some("Bearer d-test"));
        }
    }
}

#[tokio::test]
async fn ollama_runs_the_full_loop_without_a_key_or_tool_choice() {
    for stream in [false, true] {
        let (_, requests) = full_loop("ollama", "qwen2.5", stream).await;
        assert!(requests[0].header("authorization").is_none());
        assert!(requests[0].json().get("tool_choice").is_none());
    }
}

#[tokio::test]
async fn generic_servers_and_the_other_presets_run_the_full_loop() {
    for provider in ["openai-compatible", "groq", "openrouter", "together"] {
        for stream in [false, true] {
            let (_, requests) = full_loop(provider, "some-model", stream).await;
            let body = requests[0].json();
            // Every one of them is asked for usage in streams (a generic server that
            // refuses the field is asked again without it: tests/usage_budgets.rs).
            assert_eq!(body.get("stream_options").is_some(), stream, "{provider}");
            if provider == "openai-compatible" {
                assert!(requests[0].header("authorization").is_none());
            }
        }
    }
}

// ---------------------------------------------------------------- request rules

fn generic_model(provider: &str, server: &FakeServer) -> OpenAiCompatible {
    OpenAiCompatible::builder(provider)
        .unwrap()
        .model("m")
        .base_url(server.base_url())
        .api_key("k")
        .http_config(HttpConfig {
            retry: RetryPolicy::none(),
            ..Default::default()
        })
        .build()
        .unwrap()
}

fn ok_text(text: &str) -> Reply {
    Reply::json(
        200,
        &json!({"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}),
    )
}

fn history_with_tool_turn(call_id: &str) -> Vec<agent_core::Message> {
    let call = agent_core::ToolCall::raw(call_id, "calculator", "{\"expression\":\"1\"}");
    let mut assistant = agent_core::AssistantMessage::with_tool_calls("", vec![call.clone()]);
    assistant.reasoning = Some(agent_core::Reasoning {
        provider: "deepseek".into(),
        text: Some("thinking".into()),
        data: Value::Null,
    });
    vec![
        agent_core::Message::user("q1"),
        agent_core::Message::Assistant(assistant),
        agent_core::Message::Tool(agent_core::ToolResult::ok(&call, "1")),
        agent_core::Message::user("q2"),
        agent_core::Message::Assistant(agent_core::AssistantMessage {
            content: "plain".into(),
            tool_calls: vec![],
            reasoning: Some(agent_core::Reasoning {
                provider: "deepseek".into(),
                text: Some("x".into()),
                data: Value::Null,
            }),
        }),
        agent_core::Message::user("q3"),
    ]
}

#[tokio::test]
async fn mistral_ids_are_mapped_and_a_bridge_separates_tool_and_user() {
    let server = FakeServer::start(|_, _| ok_text("ok")).await;
    let model = generic_model("mistral", &server);
    let request = ChatRequest {
        messages: history_with_tool_turn("call_Wq3xK8vN2mPz7LbR5tYc1DhE").into(),
        tool_choice: ToolChoice::Required,
        tools: vec![agent_core::ToolSpec {
            name: "calculator".into(),
            description: "c".into(),
            parameters: json!({"type": "object", "properties": {}}),
            strict: false,
            examples: Vec::new(),
        }]
        .into(),
        ..Default::default()
    };
    model.chat(&request).await.unwrap();
    let body = server.requests()[0].json();
    let messages = body["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant",
            "user"
        ]
    );
    let id = messages[1]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(id.len(), 9);
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(messages[2]["tool_call_id"], id);
    assert_eq!(body["tool_choice"], "any");
    assert!(!body.to_string().contains("reasoning_content"));
    // The stored history is untouched.
    assert_eq!(request.messages.len(), 6);
}

#[tokio::test]
async fn reasoning_goes_back_only_to_deepseek_and_only_on_tool_calling_turns() {
    let server = FakeServer::start(|_, _| ok_text("ok")).await;
    let request = ChatRequest {
        messages: history_with_tool_turn("call_1").into(),
        ..Default::default()
    };
    generic_model("deepseek", &server)
        .chat(&request)
        .await
        .unwrap();
    generic_model("openai", &server)
        .chat(&request)
        .await
        .unwrap();
    let deepseek = server.requests()[0].json();
    assert_eq!(deepseek["messages"][1]["reasoning_content"], "thinking");
    assert!(deepseek["messages"][4].get("reasoning_content").is_none());
    assert!(
        !server.requests()[1]
            .json()
            .to_string()
            .contains("reasoning_content")
    );
}

#[tokio::test]
async fn strict_tools_get_openai_strict_schemas() {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Args {
        city: String,
        days: Option<u8>,
    }
    let strict = agent_core::tool_fn("forecast", "Forecast.", |_: Args, _| async { Ok("sunny") })
        .with_meta(ToolMeta::read_only().strict(true));
    let tools = agent_core::ToolSet::new([Arc::new(strict) as Arc<dyn Tool>]).unwrap();
    let server = FakeServer::start(|_, _| ok_text("ok")).await;
    let request = ChatRequest {
        messages: vec![agent_core::Message::user("x")].into(),
        tools: tools.specs().clone(),
        ..Default::default()
    };
    generic_model("openai", &server)
        .chat(&request)
        .await
        .unwrap();
    generic_model("mistral", &server)
        .chat(&request)
        .await
        .unwrap();
    let openai = server.requests()[0].json();
    let function = &openai["tools"][0]["function"];
    assert_eq!(function["strict"], true);
    assert_eq!(function["parameters"]["additionalProperties"], false);
    assert_eq!(function["parameters"]["required"], json!(["city", "days"]));
    assert_eq!(
        function["parameters"]["properties"]["days"]["type"],
        json!(["integer", "null"])
    );
    let mistral = server.requests()[1].json();
    assert!(mistral["tools"][0]["function"].get("strict").is_none());
}

#[tokio::test]
async fn extra_fields_are_merged_and_win_over_ours() {
    let server = FakeServer::start(|_, _| ok_text("ok")).await;
    let mut request = ChatRequest {
        messages: vec![agent_core::Message::user("x")].into(),
        max_output_tokens: Some(5),
        ..Default::default()
    };
    request.extra.insert("max_tokens".into(), json!(7));
    request.extra.insert("random_seed".into(), json!(42));
    generic_model("mistral", &server)
        .chat(&request)
        .await
        .unwrap();
    let raw = String::from_utf8(server.requests()[0].body.clone()).unwrap();
    assert_eq!(raw.matches("max_tokens").count(), 1, "{raw}");
    let body = server.requests()[0].json();
    assert_eq!(
        (body["max_tokens"].clone(), body["random_seed"].clone()),
        (json!(7), json!(42))
    );
}

// ---------------------------------------------------------------- errors and retries

async fn status_error(status: u16, body: Value) -> (agent_core::ModelError, usize) {
    let server = FakeServer::start(move |_, _| Reply::json(status, &body)).await;
    let model = generic_model("openai", &server);
    let error = model.chat(&ChatRequest::default()).await.unwrap_err();
    (error, server.requests().len())
}

#[tokio::test]
async fn error_statuses_are_classified_with_the_providers_message() {
    let cases = [
        (400, ModelErrorKind::BadRequest),
        (401, ModelErrorKind::Authentication),
        (403, ModelErrorKind::PermissionDenied),
        (404, ModelErrorKind::NotFound),
        (422, ModelErrorKind::BadRequest),
        (429, ModelErrorKind::RateLimited),
        (500, ModelErrorKind::Server),
        (503, ModelErrorKind::Overloaded),
        (529, ModelErrorKind::Overloaded),
    ];
    for (status, kind) in cases {
        let (error, _) = status_error(
            status,
            json!({"error": {"message": format!("m{status}"), "type": "t", "code": "c"}}),
        )
        .await;
        assert_eq!(error.kind, kind, "HTTP {status}");
        assert_eq!(error.status, Some(status));
        assert_eq!(error.message, format!("m{status}"));
        assert_eq!(
            (error.provider.as_str(), error.model.as_str()),
            ("openai", "m")
        );
    }
}

fn retrying_model(server: &FakeServer) -> OpenAiCompatible {
    OpenAiCompatible::builder("openai")
        .unwrap()
        .model("m")
        .base_url(server.base_url())
        .api_key("k")
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_with_backoff_until_success() {
    let server = FakeServer::start(|_, n| {
        if n < 2 {
            Reply::json(503, &json!({"error": {"message": "busy"}}))
        } else {
            ok_text("finally")
        }
    })
    .await;
    let response = retrying_model(&server)
        .chat(&ChatRequest::default())
        .await
        .unwrap();
    assert_eq!(response.message.content, "finally");
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2].header("x-retry-count"), Some("2"));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let server = FakeServer::start(|_, n| {
        if n == 0 {
            Reply::json(429, &json!({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}})).header("retry-after", "7")
        } else if n == 1 {
            Reply::json(429, &json!({"error": {"message": "slow down"}})).header("retry-after-ms", "1500")
        } else {
            ok_text("ok")
        }
    })
    .await;
    let started = tokio::time::Instant::now();
    retrying_model(&server)
        .chat(&ChatRequest::default())
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(server.requests().len(), 3);
    assert!(waited >= Duration::from_millis(8500), "{waited:?}");
    assert!(waited < Duration::from_millis(9500), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_never_retried() {
    for status in [400, 401, 403, 404, 422] {
        let server = FakeServer::start(move |_, _| {
            Reply::json(status, &json!({"error": {"message": "no"}}))
        })
        .await;
        let error = retrying_model(&server)
            .chat(&ChatRequest::default())
            .await
            .unwrap_err();
        assert!(!error.is_retryable());
        assert_eq!(server.requests().len(), 1, "HTTP {status} was retried");
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_is_returned_not_waited() {
    let server = FakeServer::start(|_, _| {
        Reply::json(429, &json!({"error": {"message": "daily limit"}}))
            .header("retry-after", "3600")
    })
    .await;
    let error = retrying_model(&server)
        .chat(&ChatRequest::default())
        .await
        .unwrap_err();
    assert_eq!(server.requests().len(), 1);
    assert_eq!(error.retry_after, Some(Duration::from_secs(3600)));
}

#[tokio::test(start_paused = true)]
async fn retries_give_up_after_the_limit() {
    let server =
        FakeServer::start(|_, _| Reply::raw(502, "text/html", "<html>bad gateway</html>")).await;
    let error = retrying_model(&server)
        .chat(&ChatRequest::default())
        .await
        .unwrap_err();
    assert_eq!(server.requests().len(), 4, "one attempt and three retries");
    assert_eq!(
        (error.kind, error.message.as_str()),
        (ModelErrorKind::Server, "Bad Gateway")
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connection_error_naming_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let model = OpenAiCompatible::builder("openai-compatible")
        .unwrap()
        .model("m")
        .base_url(format!("http://{addr}/v1"))
        .http_config(HttpConfig {
            retry: RetryPolicy::none(),
            ..Default::default()
        })
        .build()
        .unwrap();
    let error = model.chat(&ChatRequest::default()).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::Connection);
    assert!(error.message.contains(&addr.to_string()), "{error}");
}

// ---------------------------------------------------------------- secrets

#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_api_key_never_appears_in_debug_errors_or_traces() {
    const KEY: &str = "sk-proj-SECRET-0123456789";
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // A server that fails twice, echoes the key back in its error, then rejects it.
    let server = FakeServer::start(|req, n| {
        let auth = req.header("authorization").unwrap_or_default().to_owned();
        if n < 2 {
            Reply::json(503, &json!({"error": {"message": format!("overloaded for {auth}")}}))
        } else {
            Reply::json(401, &json!({"error": {"message": format!("Incorrect API key provided: {auth}"), "code": "invalid_api_key"}}))
        }
    })
    .await;
    let vars = env(&[
        ("OPENAI_BASE_URL", server.base_url()),
        ("OPENAI_API_KEY", KEY.to_owned()),
    ]);
    let model = ModelRegistry::builtin_with_env(vars)
        .create("openai:gpt-4o-mini")
        .unwrap();
    let agent = LlmAgent::builder(model.clone()).build().unwrap();
    let error = agent.ask("hi").await.unwrap_err();

    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying"), "the retries were traced: {logs}");
    for text in [
        format!("{error}"),
        format!("{error:?}"),
        format!(
            "{:?}",
            OpenAiCompatible::builder("openai")
                .unwrap()
                .model("m")
                .api_key(KEY)
                .build()
                .unwrap()
        ),
        format!(
            "{:?}",
            OpenAiCompatible::builder("openai")
                .unwrap()
                .model("m")
                .api_key(KEY)
        ),
        format!("{agent:?}"),
        logs,
    ] {
        assert!(!text.contains(KEY), "key leaked in: {text}");
        assert!(!text.contains("SECRET"), "key leaked in: {text}");
    }
}

// ---------------------------------------------------------------- registry

#[test]
fn the_registry_knows_every_preset_and_names_missing_keys() {
    let registry = ModelRegistry::builtin_with_env(env(&[]));
    let providers: Vec<&str> = registry.providers().collect();
    for p in [
        "openai",
        "mistral",
        "deepseek",
        "ollama",
        "groq",
        "openrouter",
        "together",
        "openai-compatible",
    ] {
        assert!(providers.contains(&p), "{p}");
    }
    for (model, var) in [
        ("openai:gpt-4o-mini", "OPENAI_API_KEY"),
        ("mistral:mistral-small-latest", "MISTRAL_API_KEY"),
        ("deepseek:deepseek-chat", "DEEPSEEK_API_KEY"),
        ("groq:llama-3.3-70b-versatile", "GROQ_API_KEY"),
        ("openrouter:x/y", "OPENROUTER_API_KEY"),
        ("together:x", "TOGETHER_API_KEY"),
    ] {
        let error = registry.create(model).err().unwrap();
        assert_eq!(error.kind, ModelErrorKind::Configuration);
        assert!(error.to_string().contains(var), "{error}");
    }
    let error = registry.create("nope:x").err().unwrap();
    assert!(
        error
            .to_string()
            .contains("available providers: anthropic, deepseek, gemini, groq"),
        "{error}"
    );
    assert_eq!(
        registry.create("ollama:qwen2.5:7b").unwrap().model(),
        "qwen2.5:7b"
    );
}

#[tokio::test]
async fn a_streamed_answer_collects_to_the_same_response_as_a_whole_one() {
    let server = FakeServer::start(calculator_turns("openai")).await;
    let model = generic_model("openai", &server);
    let request = ChatRequest {
        messages: vec![agent_core::Message::user("2+3?")].into(),
        ..Default::default()
    };
    let whole = model.chat(&request).await.unwrap();
    let streamed = collect_stream(model.chat_stream(&request).await.unwrap())
        .await
        .unwrap();
    assert_eq!(whole.message.tool_calls, streamed.message.tool_calls);
    assert_eq!(whole.finish_reason, streamed.finish_reason);
}
