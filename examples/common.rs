//! Helpers shared by the examples: model selection from `AGENT_MODEL`, with an offline
//! fallback, and printing a run's transcript.

use std::sync::Arc;

use agent_core::testing::ScriptedModel;
use agent_core::{ChatModel, Message, ModelError, ModelRegistry, RunResult};

/// Picks the model: the one named by `AGENT_MODEL` (`provider:model`), or, when it is unset,
/// the scripted stand-in built by `offline`. Prints one line saying which.
pub fn choose_model(
    offline: impl FnOnce() -> ScriptedModel,
) -> Result<Arc<dyn ChatModel>, ModelError> {
    match ModelRegistry::builtin().from_env() {
        Some(model) => {
            let model = model?;
            println!(
                "model: {}:{} (from AGENT_MODEL)",
                model.provider(),
                model.model()
            );
            Ok(model)
        }
        None => {
            println!(
                "model: built-in scripted model (offline; a fixed script, not a real LLM). \
                 Set AGENT_MODEL=provider:model to use a real one."
            );
            Ok(Arc::new(offline()))
        }
    }
}

/// The question or task given on the command line, or `default` when there is none.
pub fn task_from_args(default: &str) -> String {
    let given = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    if given.trim().is_empty() {
        default.to_owned()
    } else {
        given
    }
}

/// Turns an example's outcome into its exit code, printing the error in one line.
pub fn exit_code(outcome: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints each tool call, its result, and the final answer of a run.
pub fn print_transcript(result: &RunResult) {
    for message in &result.new_messages {
        match message {
            Message::Assistant(a) => {
                for call in &a.tool_calls {
                    println!("→ {}({})", call.name, call.arguments);
                }
            }
            Message::Tool(r) if r.is_error => println!("← {} failed: {}", r.name, r.content),
            Message::Tool(r) => println!("← {}: {}", r.name, r.content),
            _ => {}
        }
    }
    println!("answer: {}", result.text);
    println!(
        "({} model calls, {} input + {} output tokens)",
        result.turns, result.usage.input_tokens, result.usage.output_tokens
    );
}

/// The text of the last tool result in a request, if any.
pub fn last_tool_output(request: &agent_core::ChatRequest) -> Option<(String, bool)> {
    request
        .last_tool_results()
        .last()
        .map(|r| (r.content.clone(), r.is_error))
}
