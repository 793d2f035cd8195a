//! Typed answers on every remote backend, against fake servers on 127.0.0.1 speaking each
//! provider's format: the exact request field each one gets for the answer's schema, and
//! its response read back into the Rust type.

use std::collections::HashMap;
use std::sync::Arc;

use agent_core::output::{FINAL_ANSWER_TOOL, Output, OutputMode};
use agent_core::prelude::*;
use agent_core::{ModelErrorKind, ModelRegistry, ModelSettings};
use agent_tests::fake_server::{FakeServer, Recorded, Reply};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A booking extracted from a sentence.
#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
struct Booking {
    /// The guest's name.
    guest: String,
    nights: u32,
    /// A special request, if any.
    note: Option<String>,
}

const ANSWER: &str = r#"{"guest": "Ana", "nights": 3, "note": null}"#;

fn expected() -> Booking {
    Booking {
        guest: "Ana".into(),
        nights: 3,
        note: None,
    }
}

fn model(provider: &str, model: &str, server: &FakeServer) -> Arc<dyn ChatModel> {
    let base = server.base_url();
    let host = format!("http://{}", server.addr());
    let vars: Vec<(&str, String)> = match provider {
        "openai" => vec![
            ("OPENAI_BASE_URL", base),
            ("OPENAI_API_KEY", "sk-test".into()),
        ],
        "mistral" => vec![
            ("MISTRAL_BASE_URL", base),
            ("MISTRAL_API_KEY", "m-test".into()),
        ],
        "deepseek" => vec![
            ("DEEPSEEK_BASE_URL", base),
            ("DEEPSEEK_API_KEY", "d-test".into()),
        ],
        "ollama" => vec![("OLLAMA_HOST", server.addr().to_string())],
        "anthropic" => vec![
            ("ANTHROPIC_BASE_URL", host),
            ("ANTHROPIC_API_KEY", "sk-ant-test".into()),
        ],
        "gemini" => vec![
            ("GEMINI_BASE_URL", host),
            ("GEMINI_API_KEY", "AIza-test".into()),
        ],
        other => panic!("no setup for {other}"),
    };
    let map: HashMap<String, String> = vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    ModelRegistry::builtin_with_env(Arc::new(move |name: &str| map.get(name).cloned()))
        .create(&format!("{provider}:{model}"))
        .unwrap()
}

fn openai_text(_: &Recorded, _: usize) -> Reply {
    Reply::json(
        200,
        &json!({"id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32}}),
    )
}

fn openai_answer_call(_: &Recorded, _: usize) -> Reply {
    Reply::json(
        200,
        &json!({"id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_0_abc", "type": "function", "function": {"name": FINAL_ANSWER_TOOL, "arguments": ANSWER}}
            ]}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32}}),
    )
}

async fn ask(model: Arc<dyn ChatModel>, settings: ModelSettings) -> Booking {
    let agent = LlmAgent::builder(model).settings(settings).build().unwrap();
    agent
        .ask_as::<Booking>("Ana books 3 nights.")
        .await
        .unwrap()
        .value
}

/// Asks `provider:model` for a booking against a fake server answering with `handler`;
/// checks the answer came back as the type, and returns the request body sent.
async fn first_request(
    provider: &str,
    model_name: &str,
    handler: fn(&Recorded, usize) -> Reply,
) -> Value {
    let server = FakeServer::start(handler).await;
    let booking = ask(
        model(provider, model_name, &server),
        ModelSettings::default(),
    )
    .await;
    assert_eq!(booking, expected(), "{provider}:{model_name}");
    server.requests()[0].json()
}

#[tokio::test]
async fn openai_gets_a_strict_json_schema_response_format() {
    let body = first_request("openai", "gpt-4o", openai_text).await;
    let format = &body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["name"], "Booking");
    assert_eq!(format["json_schema"]["strict"], true);
    let schema = &format["json_schema"]["schema"];
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], json!(["guest", "nights", "note"]));
    assert_eq!(
        schema["properties"]["note"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(
        schema["properties"]["guest"]["description"],
        "The guest's name."
    );
    assert!(body.get("tools").is_none());
}

#[tokio::test]
async fn mistral_and_ollama_get_the_schema_without_openai_strictness() {
    for provider in ["mistral", "ollama"] {
        let body = first_request(provider, "m", openai_text).await;
        let format = &body["response_format"];
        assert_eq!(format["type"], "json_schema", "{provider}");
        assert_eq!(format["json_schema"]["strict"], false, "{provider}");
        let schema = &format["json_schema"]["schema"];
        assert_eq!(schema["required"], json!(["guest", "nights"]), "{provider}");
        assert!(schema.get("additionalProperties").is_none(), "{provider}");
    }
}

#[tokio::test]
async fn deepseek_without_schema_output_answers_through_the_final_answer_tool() {
    let body = first_request("deepseek", "deepseek-chat", openai_answer_call).await;
    assert!(body.get("response_format").is_none());
    assert_eq!(body["tools"][0]["function"]["name"], FINAL_ANSWER_TOOL);
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"],
        json!(["guest", "nights"])
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": FINAL_ANSWER_TOOL}})
    );
}

fn anthropic_reply(req: &Recorded, _: usize) -> Reply {
    let body = req.json();
    let content = if body.get("tools").is_some() {
        json!([{"type": "tool_use", "id": "toolu_01", "name": FINAL_ANSWER_TOOL, "input": serde_json::from_str::<Value>(ANSWER).unwrap()}])
    } else {
        json!([{"type": "text", "text": ANSWER}])
    };
    Reply::json(
        200,
        &json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": content,
            "stop_reason": "end_turn", "usage": {"input_tokens": 20, "output_tokens": 12}}),
    )
}

#[tokio::test]
async fn anthropic_gets_output_config_with_a_closed_schema() {
    let body = first_request("anthropic", "claude-sonnet-4-5", anthropic_reply).await;
    let format = &body["output_config"]["format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["schema"]["additionalProperties"], false);
    assert_eq!(
        format["schema"]["required"],
        json!(["guest", "nights", "note"])
    );
    assert!(body.get("tools").is_none());
}

#[tokio::test]
async fn older_claude_models_answer_through_a_forced_final_answer_tool() {
    let body = first_request("anthropic", "claude-3-5-haiku-latest", anthropic_reply).await;
    assert!(body.get("output_config").is_none());
    assert_eq!(body["tools"][0]["name"], FINAL_ANSWER_TOOL);
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": FINAL_ANSWER_TOOL})
    );
}

#[tokio::test]
async fn with_thinking_on_anthropic_gets_no_forced_tool_choice() {
    let server = FakeServer::start(anthropic_reply).await;
    let mut extra = Map::new();
    extra.insert(
        "thinking".into(),
        json!({"type": "enabled", "budget_tokens": 2048}),
    );
    let agent = LlmAgent::builder(model("anthropic", "claude-sonnet-4-5", &server))
        .settings(ModelSettings {
            extra,
            ..Default::default()
        })
        .build()
        .unwrap();
    let typed = agent
        .run_as::<Booking>(
            "Ana books 3 nights.",
            &RunContext::new(),
            &Output::new().mode(OutputMode::Tool),
        )
        .await
        .unwrap();
    assert_eq!(typed.value, expected());
    let body = server.requests()[0].json();
    assert_eq!(body["tool_choice"], json!({"type": "auto"}));
    assert_eq!(body["thinking"]["type"], "enabled");
}

fn gemini_text(_: &Recorded, _: usize) -> Reply {
    Reply::json(
        200,
        &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ANSWER}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 12, "totalTokenCount": 32}}),
    )
}

#[tokio::test]
async fn gemini_gets_a_response_mime_type_and_its_own_schema_subset() {
    let body = first_request("gemini", "gemini-2.5-flash", gemini_text).await;
    let generation = &body["generationConfig"];
    assert_eq!(generation["responseMimeType"], "application/json");
    let schema = &generation["responseSchema"];
    assert_eq!(schema["required"], json!(["guest", "nights"]));
    assert_eq!(schema["properties"]["note"]["nullable"], true);
    assert!(schema.get("additionalProperties").is_none());
    assert!(body.get("tools").is_none());
}

#[tokio::test]
async fn gemini_before_3_refuses_a_schema_beside_function_tools_before_sending() {
    #[derive(Deserialize, JsonSchema)]
    struct Q {
        q: String,
    }
    let server = FakeServer::start(gemini_text).await;
    let agent = LlmAgent::builder(model("gemini", "gemini-2.5-flash", &server))
        .tool(tool_fn(
            "lookup",
            "Looks up.",
            |a: Q, _| async move { Ok(a.q) },
        ))
        .build()
        .unwrap();
    let native = Output::<Booking>::new().mode(OutputMode::Native);
    let error = agent
        .run_as("Ana books 3 nights.", &RunContext::new(), &native)
        .await
        .unwrap_err();
    let AgentError::Model { source, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(source.kind, ModelErrorKind::Configuration);
    assert!(source.message.contains("tool mode"), "{source}");
    assert!(server.requests().is_empty());
    // Gemini 3 takes both in one request.
    let server = FakeServer::start(gemini_text).await;
    let agent = LlmAgent::builder(model("gemini", "gemini-3-pro-preview", &server))
        .tool(tool_fn(
            "lookup",
            "Looks up.",
            |a: Q, _| async move { Ok(a.q) },
        ))
        .build()
        .unwrap();
    let typed = agent
        .run_as("Ana books 3 nights.", &RunContext::new(), &native)
        .await
        .unwrap();
    assert_eq!(typed.value, expected());
    let body = server.requests()[0].json();
    assert!(body["generationConfig"].get("responseSchema").is_some());
    assert!(body.get("tools").is_some());
}
