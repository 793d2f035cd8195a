//! A team of agents: a triage agent hands the conversation to one of two specialists; the
//! technical one uses a researcher agent as a tool. Prints what happens, then what each
//! agent spent, as a tree (run → sub-agents → model calls).
//!
//! ```text
//! cargo run --example team
//! cargo run --example team -- "I was charged twice for my plan"
//! ```
//!
//! Offline: every agent runs on a scripted model (a fixed script, not a real LLM) that
//! reports usage under a real model's name, so the costs come from the default price table.
//! With real models the wiring is the same: give each `LlmAgent::builder` a model from
//! `ModelRegistry`.

use std::process::ExitCode;
use std::sync::Arc;

use agent_core::prelude::*;
use agent_core::run::{Prices, RunEvent};
use agent_core::testing::ScriptedModel;
use agent_core::{AgentTool, ChatResponse, Handoff, Team, ToolCall, Usage};
use agent_examples::{exit_code, task_from_args};
use futures::StreamExt;
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let question = task_from_args("My app crashes when I open the settings page.");
    exit_code(run(&question).await)
}

/// An answer with the usage a provider would report.
fn costing(response: ChatResponse, input: u64, output: u64) -> ChatResponse {
    ChatResponse {
        usage: Usage {
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        },
        ..response
    }
}

fn call(name: &str, args: serde_json::Value) -> ChatResponse {
    ChatResponse::tool_calls(vec![ToolCall::new("", name, &args)])
}

fn team() -> Result<Team, Box<dyn std::error::Error>> {
    // Triage reads the request and transfers it.
    let triage_model = ScriptedModel::named("gpt-4o-mini").then_reply(|request| {
        let text = request.last_user_text().unwrap_or_default().to_lowercase();
        let to = if ["charge", "invoice", "refund", "bill", "pay"]
            .iter()
            .any(|w| text.contains(w))
        {
            "transfer_to_billing"
        } else {
            "transfer_to_tech"
        };
        Ok(costing(call(to, json!({})), 180, 12))
    });
    let triage = LlmAgent::builder(Arc::new(triage_model))
        .name("triage")
        .instructions("Route each request to the right specialist. Do not answer yourself.")
        .handoff(Handoff::to("billing").description("Charges, invoices and refunds."))
        .handoff(Handoff::to("tech").description("Crashes, errors and how-to questions."))
        .build()?;

    let billing_model = ScriptedModel::named("gpt-4o-mini").then_response(costing(
        ChatResponse::text("I have refunded the duplicate charge; it shows within 5 days."),
        240,
        30,
    ));
    let billing = LlmAgent::builder(Arc::new(billing_model))
        .name("billing")
        .instructions("You handle charges, invoices and refunds.")
        .build()?;

    // The researcher looks things up for the technical specialist.
    let researcher_model = ScriptedModel::named("gpt-4o-mini").then_response(costing(
        ChatResponse::text("Known issue #812: the settings page crashes when the cache is corrupt; clearing it fixes it."),
        320,
        40,
    ));
    let researcher = LlmAgent::builder(Arc::new(researcher_model))
        .name("researcher")
        .description("Searches the issue tracker and the docs; give it a precise question.")
        .instructions("Answer with the most relevant known issue.")
        .build()?;

    let tech_model = ScriptedModel::named("gpt-4o")
        .then_response(costing(
            call(
                "researcher",
                json!({"input": "Known crashes when opening settings?"}),
            ),
            410,
            25,
        ))
        .then_reply(|request| {
            let found = request
                .last_tool_results()
                .next()
                .map(|r| r.content.clone())
                .unwrap_or_default();
            Ok(costing(
                ChatResponse::text(format!(
                    "{found} Go to Settings > Storage > Clear cache, then restart the app."
                )),
                520,
                45,
            ))
        });
    let tech = LlmAgent::builder(Arc::new(tech_model))
        .name("tech")
        .instructions("You fix technical problems. Ask the researcher before answering.")
        .tool(AgentTool::new(Arc::new(researcher))?)
        .build()?;

    Ok(Team::new([
        Arc::new(triage),
        Arc::new(billing),
        Arc::new(tech),
    ])?)
}

async fn run(question: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("model: built-in scripted models (offline; fixed scripts, not real LLMs)");
    let team = team()?;
    println!("question: {question}");
    let ctx = RunContext::new();
    let mut events = team.run_stream("triage", question, &ctx);
    let mut active = String::from("triage");
    let result = loop {
        let Some(event) = events.next().await else {
            return Err("the run ended without a result".into());
        };
        match event {
            RunEvent::Handoff { from, to } => {
                println!("handoff: {from} -> {to}");
                active = to;
            }
            RunEvent::ToolCallStarted { name, .. } if !name.starts_with("transfer_to_") => {
                println!("{active} calls {name}");
            }
            RunEvent::SubAgent {
                agent,
                depth,
                event,
            } => {
                if let RunEvent::TextDelta(text) = *event {
                    println!("{}{agent} says: {text}", "  ".repeat(depth as usize));
                }
            }
            RunEvent::Finished(result) => break result,
            RunEvent::Failed(error) => return Err(error.into()),
            _ => {}
        }
    };
    println!("answer ({active}): {}", result.text);
    println!("\nusage (default price table):");
    // The run's own calls are triage's and the specialist's; the researcher's run is a
    // sub-agent of it.
    let tree = result.usage_tree(&format!("triage -> {active}"));
    print!("{}", tree.render(&Prices::default()));
    Ok(())
}
