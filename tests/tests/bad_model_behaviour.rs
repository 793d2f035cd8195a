//! A model that sends garbage gets a precise tool-result message back, never a panic, and
//! never a silent end of the run.

use std::sync::Arc;
use std::time::Duration;

use agent_core::Tool;
use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{AgentError, Message, ToolMeta, ToolResult};
use agent_tools::Calculator;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, schemars::JsonSchema)]
struct Nothing {}

fn tool_results(result: &[Message]) -> Vec<&ToolResult> {
    result.iter().filter_map(Message::as_tool_result).collect()
}

async fn run_with(
    model: ScriptedModel,
    extra: Vec<Arc<dyn Tool>>,
) -> (Arc<ScriptedModel>, RunResult) {
    let model = Arc::new(model);
    let agent = LlmAgent::builder(model.clone())
        .tool(Calculator::new())
        .tools(extra)
        .build()
        .unwrap();
    let result = agent.ask("go").await.unwrap();
    model.assert_complete();
    (model, result)
}

#[tokio::test]
async fn invalid_json_arguments_are_reported_back_to_the_model() {
    let (model, result) = run_with(
        ScriptedModel::new()
            .then_raw_tool_call("calculator", r#"{"expression": "1+1""#)
            .then_text("sorry"),
        vec![],
    )
    .await;
    let results = tool_results(&result.new_messages);
    assert_eq!(results.len(), 1);
    assert!(results[0].is_error);
    assert!(
        results[0].content.contains("not valid JSON"),
        "{}",
        results[0].content
    );
    assert!(results[0].content.contains("`calculator`"));
    // The model saw the error in its next request, paired with its call.
    let second = &model.requests()[1];
    assert_eq!(second.last_tool_results().count(), 1);
    assert_eq!(result.text, "sorry");
}

#[tokio::test]
async fn arguments_that_are_not_an_object_are_reported_back() {
    let (_, result) = run_with(
        ScriptedModel::new()
            .then_raw_tool_call("calculator", r#"["1+1"]"#)
            .then_text("ok"),
        vec![],
    )
    .await;
    let r = tool_results(&result.new_messages)[0];
    assert!(r.is_error);
    assert!(
        r.content.contains("must be a JSON object, not an array"),
        "{}",
        r.content
    );
}

#[tokio::test]
async fn unknown_tool_is_reported_back_with_the_available_tools() {
    let (_, result) = run_with(
        ScriptedModel::new()
            .then_tool_call("calculater", json!({"expression": "1"}))
            .then_text("ok"),
        vec![],
    )
    .await;
    let r = tool_results(&result.new_messages)[0];
    assert!(r.is_error);
    assert!(
        r.content.contains("no tool named `calculater`"),
        "{}",
        r.content
    );
    assert!(
        r.content.contains("Available tools: calculator"),
        "{}",
        r.content
    );
}

#[tokio::test]
async fn arguments_that_break_the_schema_are_rejected_before_the_tool_runs() {
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    #[derive(Deserialize, schemars::JsonSchema)]
    struct Args {
        #[allow(dead_code)]
        count: u32,
    }
    let counting = tool_fn("count", "Counts.", move |_: Args, _| {
        let flag = flag.clone();
        async move {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok("counted")
        }
    });
    let (_, result) = run_with(
        ScriptedModel::new()
            .then_tool_call("count", json!({"count": "three"}))
            .then_tool_call("calculator", json!({"expr": "1"}))
            .then_text("ok"),
        vec![Arc::new(counting)],
    )
    .await;
    assert!(
        !ran.load(std::sync::atomic::Ordering::SeqCst),
        "the tool must not run"
    );
    let results = tool_results(&result.new_messages);
    assert!(
        results[0].content.contains("`/count`"),
        "{}",
        results[0].content
    );
    assert!(results[0].content.contains("do not match its parameters"));
    assert!(
        results[1].content.contains("expression"),
        "{}",
        results[1].content
    );
}

#[tokio::test]
async fn a_tool_error_is_reported_back_with_its_message() {
    let (_, result) = run_with(
        ScriptedModel::new()
            .then_tool_call("calculator", json!({"expression": "1/0"}))
            .then_text("ok"),
        vec![],
    )
    .await;
    let r = tool_results(&result.new_messages)[0];
    assert!(r.is_error);
    assert_eq!(r.content, "Error: at character 2: division by zero");
}

#[tokio::test]
async fn a_panicking_tool_is_contained_and_reported() {
    let boom = tool_fn("boom", "Explodes.", |_: Nothing, _| async move {
        if true {
            panic!("the tool exploded");
        }
        Ok("unreachable")
    });
    let (_, result) = run_with(
        ScriptedModel::new()
            .then_tool_call("boom", json!({}))
            .then_text("recovered"),
        vec![Arc::new(boom)],
    )
    .await;
    let r = tool_results(&result.new_messages)[0];
    assert!(r.is_error);
    assert!(
        r.content.contains("`boom` failed with an internal error"),
        "{}",
        r.content
    );
    // The panic message is for the operator, not the model.
    assert!(!r.content.contains("exploded"));
    assert_eq!(result.text, "recovered");
}

#[tokio::test(start_paused = true)]
async fn a_tool_that_exceeds_its_timeout_is_stopped_and_reported() {
    let hang = tool_fn("hang", "Never returns.", |_: Nothing, _| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok("late")
    })
    .with_meta(ToolMeta::read_only().with_timeout(Duration::from_millis(500)));
    let (_, result) = run_with(
        ScriptedModel::new()
            .then_tool_call("hang", json!({}))
            .then_text("gave up"),
        vec![Arc::new(hang)],
    )
    .await;
    let r = tool_results(&result.new_messages)[0];
    assert!(r.is_error);
    assert!(
        r.content.contains("did not finish within 500ms"),
        "{}",
        r.content
    );
}

#[tokio::test]
async fn repeated_failures_of_one_tool_end_the_run_with_the_history() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call("calculator", json!({"expression": "1/0"}))
            .then_tool_call("calculator", json!({"expression": "2/0"}))
            .then_tool_call("calculator", json!({"expression": "3/0"}))
            .then_text("never requested"),
    );
    let agent = LlmAgent::builder(model.clone())
        .tool(Calculator::new())
        .build()
        .unwrap();
    let err = agent.ask("divide").await.unwrap_err();
    let AgentError::ToolFailureLimit {
        tool,
        failures,
        last_error,
        partial,
    } = &err
    else {
        panic!("unexpected {err:?}")
    };
    assert_eq!((tool.as_str(), *failures), ("calculator", 3));
    assert!(last_error.contains("division by zero"));
    // user + 3 × (assistant call + tool result); every call answered.
    assert_eq!(partial.new_messages.len(), 7);
    agent_core::check_history(&partial.new_messages).unwrap();
    assert_eq!(model.remaining(), 1);
}

#[tokio::test]
async fn a_success_resets_the_failure_count() {
    let (_, result) = run_with(
        ScriptedModel::new()
            .then_tool_call("calculator", json!({"expression": "1/0"}))
            .then_tool_call("calculator", json!({"expression": "2/0"}))
            .then_tool_call("calculator", json!({"expression": "2/1"}))
            .then_tool_call("calculator", json!({"expression": "3/0"}))
            .then_tool_call("calculator", json!({"expression": "4/0"}))
            .then_text("done"),
        vec![],
    )
    .await;
    assert_eq!(result.text, "done");
    assert_eq!(result.turns, 6);
}

#[tokio::test]
async fn a_model_error_ends_the_run_with_a_typed_error_and_the_history() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call("calculator", json!({"expression": "6*7"}))
            .then_error(
                ModelError::new(ModelErrorKind::Authentication, "invalid key").with_status(401),
            ),
    );
    let agent = LlmAgent::builder(model)
        .tool(Calculator::new())
        .build()
        .unwrap();
    let err = agent.ask("x").await.unwrap_err();
    let AgentError::Model { source, partial } = &err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(source.kind, ModelErrorKind::Authentication);
    assert!(!source.is_retryable());
    assert_eq!(partial.new_messages.last().unwrap().text(), "42");
    assert_eq!(partial.turns, 1);
}

#[tokio::test]
async fn calls_without_ids_or_with_repeated_ids_get_unique_ones() {
    let calls = vec![
        agent_core::ToolCall::new("", "calculator", &json!({"expression": "1+1"})),
        agent_core::ToolCall::new("", "calculator", &json!({"expression": "2+2"})),
    ];
    let (_, result) = run_with(
        ScriptedModel::new()
            .then_response(agent_core::ChatResponse::tool_calls(calls.clone()))
            .then_response(agent_core::ChatResponse::tool_calls(
                calls
                    .iter()
                    .map(|c| agent_core::ToolCall {
                        id: "same".into(),
                        ..c.clone()
                    })
                    .collect(),
            ))
            .then_text("ok"),
        vec![],
    )
    .await;
    agent_core::check_history(&result.new_messages).unwrap();
    let contents: Vec<_> = tool_results(&result.new_messages)
        .iter()
        .map(|r| r.content.clone())
        .collect();
    assert_eq!(contents, ["2", "4", "2", "4"]);
}

use agent_core::{ModelError, ModelErrorKind};
