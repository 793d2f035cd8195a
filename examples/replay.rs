//! Record and replay: an agent's session is recorded to a cassette file, then replayed
//! offline (under the network guard) with the same answer, as a test in CI would.
//!
//! ```text
//! cargo run --example replay
//! AGENT_MODEL=openai:gpt-4o-mini cargo run --example replay -- /tmp/calc.json
//! ```
//!
//! It records against the model named by `AGENT_MODEL`, or offline against the scripted
//! stand-in; the cassette goes to the path given on the command line (default: a file in the
//! system's temporary folder). Open it: it is readable JSON, and holds no key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agent_core::backends::guard::NetworkGuard;
use agent_core::testing::{CassetteMode, CassetteModel, ScriptedModel};
use agent_core::{ChatResponse, LlmAgent, ModelError, ModelErrorKind, RunResult};
use agent_examples::{choose_model, exit_code, last_tool_output, print_transcript};
use agent_tools::Calculator;

const QUESTION: &str = "What is 6 times 7?";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("agent-replay-example.json"));
    exit_code(run(path).await)
}

async fn run(path: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    println!("1. recording to {}", path.display());
    let recorder = Arc::new(
        CassetteModel::builder(&path)
            .mode(CassetteMode::RecordAll)
            .build(|| choose_model(offline_script))?,
    );
    let live = ask(recorder.clone()).await?;
    print_transcript(&live);
    recorder.finish()?;
    let size = std::fs::metadata(&path)?.len();
    println!("saved {size} bytes");

    println!("2. replaying offline (the network guard refuses anything but loopback)");
    let _guard = NetworkGuard::loopback_only();
    let replayer = Arc::new(
        CassetteModel::builder(&path)
            .mode(CassetteMode::Replay)
            .build(|| {
                Err(ModelError::new(
                    ModelErrorKind::Configuration,
                    "replay never builds a model",
                ))
            })?,
    );
    let replayed = ask(replayer.clone()).await?;
    print_transcript(&replayed);
    replayer.finish()?;
    if replayed.text != live.text {
        return Err(format!("the replay answered `{}`", replayed.text).into());
    }
    println!("replayed offline: the same answer, every recorded interaction used");
    Ok(())
}

async fn ask(model: Arc<CassetteModel>) -> Result<RunResult, Box<dyn std::error::Error>> {
    let agent = LlmAgent::builder(model)
        .instructions("Use the calculator for every calculation, then answer in one sentence.")
        .tool(Calculator::new())
        .build()?;
    println!("question: {QUESTION}");
    Ok(agent.ask(QUESTION).await?)
}

/// The offline stand-in: one calculator call, then the answer from its result.
fn offline_script() -> ScriptedModel {
    ScriptedModel::new()
        .then_tool_call("calculator", serde_json::json!({"expression": "6 * 7"}))
        .then_reply(|req| {
            Ok(ChatResponse::text(match last_tool_output(req) {
                Some((value, false)) => format!("6 times 7 is {value}."),
                _ => "I could not compute that.".to_owned(),
            }))
        })
}
