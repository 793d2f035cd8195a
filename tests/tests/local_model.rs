//! The real default local model (Gemma 3 270M through llama.cpp), with the `local` feature:
//! `cargo test -p agent-tests --features local --test local_model`.
//!
//! When the weights are not installed, each test says so on stderr and returns without
//! checking anything, unless `AGENT_LOCAL_REQUIRED=1` (set by `.ci/run`, which installs
//! them), where a missing model fails the test.

#![cfg(feature = "local")]

use std::sync::Arc;
use std::time::Duration;

use agent_core::backends::local::{DEFAULT_MODEL, INSTALL_HINT, resolve_model_path};
use agent_core::{
    ChatModel, ChatRequest, LlmAgent, Message, ModelRegistry, StreamEvent, Tool, ToolContext,
};
use agent_tools::Calculator;
use futures::StreamExt;

const QUESTION: &str = "What is 12.5% of 3,280, plus the square root of 1,764?";

fn model() -> Option<Arc<dyn ChatModel>> {
    let home = std::env::var("HOME").ok().map(std::path::PathBuf::from);
    let override_path = std::env::var("AGENT_LOCAL_MODEL").ok();
    if let Err(e) = resolve_model_path(DEFAULT_MODEL, override_path.as_deref(), home.as_deref()) {
        assert!(
            std::env::var("AGENT_LOCAL_REQUIRED").as_deref() != Ok("1"),
            "AGENT_LOCAL_REQUIRED=1 but the local model is missing: {}",
            e.message
        );
        eprintln!(
            "SKIPPED: the local model is not installed ({}); install it with: {INSTALL_HINT}",
            e.message
        );
        return None;
    }
    Some(
        ModelRegistry::builtin()
            .create(&format!("local:{DEFAULT_MODEL}"))
            .unwrap(),
    )
}

#[tokio::test]
async fn the_quickstart_question_gets_a_calculator_call_and_the_answer_452() {
    let Some(model) = model() else { return };
    let agent = LlmAgent::builder(model)
        .instructions(
            "You are a careful assistant. Use the calculator tool for every calculation, \
             then answer in one short sentence.",
        )
        .tool(Calculator::new())
        .build()
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(300), agent.ask(QUESTION))
        .await
        .expect("the local model took more than 5 minutes")
        .unwrap();
    let call = result
        .new_messages
        .iter()
        .find_map(|m| match m {
            Message::Assistant(a) => a.tool_calls.first().cloned(),
            _ => None,
        })
        .expect("the model called no tool");
    assert_eq!(call.name, "calculator");
    // The expression it wrote evaluates to 452 (checked with the calculator itself).
    let value = Calculator::new()
        .call(call.parse_arguments().unwrap(), &ToolContext::detached())
        .await
        .unwrap()
        .into_content();
    assert_eq!(value, "452", "expression: {}", call.arguments);
    assert!(result.text.contains("452"), "answer: {}", result.text);
}

#[tokio::test]
async fn the_kv_cache_is_reused_across_turns_and_answers_stream() {
    let Some(model) = model() else { return };
    let first = ChatRequest {
        messages: vec![
            Message::system("Answer in one short sentence."),
            Message::user("Name a primary colour."),
        ]
        .into(),
        ..Default::default()
    };
    let mut stream = model.chat_stream(&first).await.unwrap();
    let mut deltas = String::new();
    let mut response = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::TextDelta(d) => deltas.push_str(&d),
            StreamEvent::Completed(r) => response = Some(r),
            _ => {}
        }
    }
    let response = response.expect("the stream did not complete");
    assert!(!response.message.content.is_empty());
    assert_eq!(
        deltas, response.message.content,
        "the streamed text is the answer"
    );

    let mut messages = first.messages.as_ref().clone();
    messages.push(Message::Assistant(response.message.clone()));
    messages.push(Message::user("Name another one."));
    let second = ChatRequest {
        messages: messages.into(),
        ..Default::default()
    };
    let again = model.chat(&second).await.unwrap();
    // The instructions, the example and the first exchange come from the cache.
    assert!(
        again.usage.cached_input_tokens >= response.usage.input_tokens,
        "reused {} of {} tokens; the first prompt had {}",
        again.usage.cached_input_tokens,
        again.usage.input_tokens,
        response.usage.input_tokens
    );
}

#[tokio::test]
async fn twenty_extractions_under_the_answer_grammar_all_parse_and_follow_the_type() {
    use agent_core::output::Output;
    use agent_tests::extraction::{INSTRUCTIONS, Order, is_correct, tasks};
    let Some(model) = model() else { return };
    let agent = LlmAgent::builder(model)
        .instructions(INSTRUCTIONS)
        .build()
        .unwrap();
    // No second chance: every answer counts as the model first wrote it.
    let output = Output::<Order>::new().max_retries(0);
    let (mut valid, mut correct) = (0, 0);
    let ctx = agent_core::RunContext::new();
    for (sentence, want) in tasks() {
        let run = agent.run_as(sentence, &ctx, &output);
        let outcome = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("one extraction took more than 2 minutes");
        match outcome {
            Ok(typed) => {
                valid += 1;
                if is_correct(&typed.value, &want) {
                    correct += 1;
                } else {
                    eprintln!("{sentence} -> {:?}", typed.value);
                }
            }
            Err(e) => eprintln!("{sentence} -> {e}"),
        }
    }
    eprintln!("typed answers on the local model: {valid}/20 valid, {correct}/20 correct");
    assert_eq!(
        valid, 20,
        "every answer line is decoded under the answer's grammar"
    );
}
