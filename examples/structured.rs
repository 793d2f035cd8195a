//! Structured output: a Rust value extracted from a sentence, checked against its type.
//!
//! ```text
//! cargo run --example structured
//! cargo run --example structured -- "Tom stays 2 nights in Oslo."
//! AGENT_MODEL=openai:gpt-4o-mini cargo run --example structured
//! cargo run -p agent-examples --features local --example structured   # Gemma 3 270M
//! ```
//!
//! The agent is asked for a `Booking`; how depends on the model (the provider's schema
//! output, a `final_answer` tool, or the local model's grammar), and an answer that does not
//! fit the type goes back to the model with what is wrong. With `AGENT_MODEL` unset it runs
//! offline on a scripted model that reads the sentence word by word and answers through the
//! `final_answer` tool.

use std::process::ExitCode;

use agent_core::output::FINAL_ANSWER_TOOL;
use agent_core::testing::ScriptedModel;
use agent_core::{ChatResponse, LlmAgent, ToolCall};
use agent_examples::{choose_model, exit_code, task_from_args};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

const DEFAULT_SENTENCE: &str = "Ana books 3 nights in Lisbon.";

/// A hotel booking mentioned in a sentence.
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)] // Printed with Debug: that is what the example shows.
struct Booking {
    /// The guest's first name, as written, e.g. "Maria".
    guest: String,
    /// How many nights, as a number, e.g. 2.
    nights: u32,
    /// The city, as written, e.g. "Rome".
    city: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let sentence = task_from_args(DEFAULT_SENTENCE);
    exit_code(run(&sentence).await)
}

async fn run(sentence: &str) -> Result<(), Box<dyn std::error::Error>> {
    let model = choose_model(offline_script)?;
    let agent = LlmAgent::builder(model)
        .instructions("Extract the booking from the sentence.")
        .output_type::<Booking>()
        .validate(|b| {
            if b.nights == 0 {
                Err("a booking is for at least one night".into())
            } else {
                Ok(())
            }
        })
        .build()?;
    let typed = agent.ask(sentence).await?;
    println!("{:#?}", typed.value);
    println!("({} model calls)", typed.turns);
    Ok(())
}

/// The offline stand-in: the first word is the guest, the first number the nights, the word
/// after "in" the city; given as a `final_answer` call (the same reading each time it is
/// asked again, up to the default two retries).
fn offline_script() -> ScriptedModel {
    (0..3).fold(ScriptedModel::new(), |script, _| {
        script.then_reply(read_booking)
    })
}

fn read_booking(request: &agent_core::ChatRequest) -> Result<ChatResponse, agent_core::ModelError> {
    {
        // The task: the first user message (later ones are feedback on an answer).
        let text = request
            .messages
            .iter()
            .find(|m| matches!(m, agent_core::Message::User { .. }))
            .map(agent_core::Message::text)
            .unwrap_or_default();
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == '.' || c == ',')
            .filter(|w| !w.is_empty())
            .collect();
        let guest = words.first().copied().unwrap_or("someone");
        let nights = words
            .iter()
            .find_map(|w| w.parse::<u32>().ok())
            .unwrap_or(1);
        let city = words
            .iter()
            .position(|w| *w == "in")
            .and_then(|i| words.get(i + 1))
            .copied()
            .unwrap_or("nowhere");
        let args = json!({"guest": guest, "nights": nights, "city": city});
        Ok(ChatResponse::tool_calls(vec![ToolCall::new(
            "",
            FINAL_ANSWER_TOOL,
            &args,
        )]))
    }
}
