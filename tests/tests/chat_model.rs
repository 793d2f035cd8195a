//! The `ChatModel` contract: the default streaming wrapper and object safety.

use std::sync::Arc;

use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{ChatRequest, ChatResponse, StreamEvent, ToolCall};
use futures::StreamExt;
use serde_json::json;

#[tokio::test]
async fn a_model_without_native_streaming_streams_its_whole_answer() {
    let call = ToolCall::new("c1", "calculator", &json!({"expression": "1+1"}));
    let mut response = ChatResponse::tool_calls(vec![call.clone()]);
    response.message.content = "Let me compute.".into();
    let model: Arc<dyn ChatModel> = Arc::new(ScriptedModel::new().then_response(response));
    let events: Vec<StreamEvent> = model
        .chat_stream(&ChatRequest::default())
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(events[0], StreamEvent::TextDelta("Let me compute.".into()));
    assert_eq!(
        events[1],
        StreamEvent::ToolCallStarted {
            index: 0,
            id: "c1".into(),
            name: "calculator".into()
        }
    );
    assert_eq!(
        events[2],
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: call.arguments.clone()
        }
    );
    let Some(StreamEvent::Completed(done)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(done.message.tool_calls, vec![call]);
}

#[tokio::test]
async fn an_exhausted_script_is_an_error_not_a_panic() {
    let model = ScriptedModel::new();
    let err = model.chat(&ChatRequest::default()).await.unwrap_err();
    assert!(
        err.to_string().contains("no step left for request #1"),
        "{err}"
    );
    let err = model
        .chat_stream(&ChatRequest::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("request #2"), "{err}");
}

#[test]
#[should_panic(expected = "1 scripted step(s) were never requested")]
fn assert_complete_reports_unused_steps() {
    ScriptedModel::new().then_text("unused").assert_complete();
}
