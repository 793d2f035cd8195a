//! Quickstart: an agent with a calculator answers a question.
//!
//! ```text
//! cargo run --example quickstart
//! cargo run --example quickstart -- "What is 2^10 minus 24?"
//! AGENT_MODEL=openai:gpt-4o-mini cargo run --example quickstart
//! AGENT_TRACE_FILE=run.jsonl cargo run --example quickstart   # then: trace_view run.jsonl
//! ```
//!
//! With `AGENT_MODEL` unset it runs offline on a scripted model that turns the question into
//! one calculator call; with a real model, the model decides.

use std::process::ExitCode;

use agent_core::testing::ScriptedModel;
use agent_core::{ChatResponse, LlmAgent, ToolCall};
use agent_examples::{choose_model, exit_code, last_tool_output, print_transcript, task_from_args};
use agent_tools::Calculator;

const DEFAULT_QUESTION: &str = "What is 12.5% of 3,280, plus the square root of 1,764?";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Traces go where the environment says (AGENT_TRACE_FILE), and nowhere otherwise.
    let _telemetry = match agent_core::telemetry::init() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let question = task_from_args(DEFAULT_QUESTION);
    exit_code(run(&question).await)
}

async fn run(question: &str) -> Result<(), Box<dyn std::error::Error>> {
    let model = choose_model(offline_script)?;
    let agent = LlmAgent::builder(model)
        .name("quickstart")
        .instructions(
            "You are a careful assistant. Use the calculator tool for every calculation, \
             then answer in one short sentence.",
        )
        .tool(Calculator::new())
        .build()?;
    println!("question: {question}");
    let result = agent.ask(question).await?;
    print_transcript(&result);
    Ok(())
}

/// The offline stand-in: rewrites the question into a calculator expression, then reports
/// whatever the calculator returned.
fn offline_script() -> ScriptedModel {
    ScriptedModel::new()
        .then_reply(|req| {
            let question = req.last_user_text().unwrap_or_default();
            let args = serde_json::json!({ "expression": to_expression(&question) });
            Ok(ChatResponse::tool_calls(vec![ToolCall::new(
                "",
                "calculator",
                &args,
            )]))
        })
        .then_reply(|req| {
            let text = match last_tool_output(req) {
                Some((value, false)) => format!("The answer is {value}."),
                Some((error, true)) => format!("I could not compute that. {error}"),
                None => "I have no result to report.".to_owned(),
            };
            Ok(ChatResponse::text(text))
        })
}

/// "What is 12.5% of 3,280, plus the square root of 1,764?" → "12.5% of 3,280 + sqrt 1,764".
fn to_expression(question: &str) -> String {
    let mut s = question.trim().to_lowercase();
    for prefix in ["what is", "what's", "calculate", "compute", "how much is"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.to_owned();
        }
    }
    let s = s.trim_end_matches(['?', '.', '!']).replace(", ", " ");
    [
        ("the square root of", "sqrt"),
        ("square root of", "sqrt"),
        ("to the power of", "^"),
        ("multiplied by", "*"),
        ("divided by", "/"),
        ("plus", "+"),
        ("minus", "-"),
        ("times", "*"),
    ]
    .iter()
    .fold(s, |acc, (from, to)| acc.replace(from, to))
    .trim()
    .to_owned()
}
