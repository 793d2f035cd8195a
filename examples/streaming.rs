//! Streaming: text as it arrives, and a line per tool call.
//!
//! ```text
//! cargo run --example streaming
//! AGENT_MODEL=openai:gpt-4o-mini cargo run --example streaming -- "What is 17% of 240?"
//! ```
//!
//! With a streaming backend the answer appears piece by piece; the offline scripted model
//! sends each answer whole.

use std::io::Write;
use std::process::ExitCode;

use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{ChatResponse, RunEvent};
use agent_examples::{choose_model, exit_code, last_tool_output, task_from_args};
use agent_tools::Calculator;
use futures::StreamExt;
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let question = task_from_args("What is 17% of 240, times 3?");
    exit_code(run(&question).await)
}

async fn run(question: &str) -> Result<(), Box<dyn std::error::Error>> {
    let model = choose_model(|| {
        ScriptedModel::new()
            .then_tool_call("calculator", json!({"expression": "17% of 240 * 3"}))
            .then_reply(|req| {
                let value = last_tool_output(req).map_or_else(String::new, |(v, _)| v);
                Ok(ChatResponse::text(format!(
                    "17% of 240 is 40.8, and three times that is {value}."
                )))
            })
    })?;
    let agent = LlmAgent::builder(model)
        .instructions("Use the calculator for arithmetic. Explain briefly.")
        .tool(Calculator::new())
        .streaming(true)
        .build()?;
    println!("question: {question}");
    let ctx = RunContext::new();
    let mut events = std::pin::pin!(agent.run_stream(question, &ctx));
    let mut stdout = std::io::stdout();
    // Whether streamed text left the cursor mid-line.
    let mut mid_line = false;
    while let Some(event) = events.next().await {
        if mid_line && !matches!(event, RunEvent::TextDelta(_)) {
            println!();
            mid_line = false;
        }
        match event {
            RunEvent::TextDelta(text) => {
                print!("{text}");
                stdout.flush()?;
                mid_line = true;
            }
            RunEvent::ToolCallStarted {
                name, arguments, ..
            } => {
                println!("→ {name}({arguments})");
            }
            RunEvent::ToolCallFinished {
                name,
                content,
                duration,
                ..
            } => {
                println!("← {name}: {content} ({} µs)", duration.as_micros());
            }
            RunEvent::Finished(result) => {
                let tokens = result.usage.total_tokens();
                println!("({} model calls, {tokens} tokens)", result.turns);
            }
            RunEvent::Failed(error) => return Err(error.into()),
            _ => {}
        }
    }
    Ok(())
}
