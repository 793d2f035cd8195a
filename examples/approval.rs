//! Human approval: the agent may only write files after you say yes.
//!
//! ```text
//! cargo run --example approval                      # asks in the terminal
//! cargo run --example approval -- --auto approve    # non-interactive
//! cargo run --example approval -- --auto deny
//! ```
//!
//! `write_file` is marked as needing approval, so the run pauses before each call and
//! returns the pending calls with a state you could save and resume elsewhere. You approve,
//! reject (the model reads why) or edit the arguments; then the run resumes.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{Approval, ChatResponse, PendingApproval, StopReason};
use agent_examples::{choose_model, exit_code, last_tool_output, print_transcript};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, JsonSchema)]
struct WriteArgs {
    /// A plain file name, e.g. "todo.txt" (no directories).
    name: String,
    /// The text to write.
    content: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let auto = match args
        .iter()
        .position(|a| a == "--auto")
        .map(|i| args.get(i + 1))
    {
        None => None,
        Some(Some(mode)) if mode == "approve" || mode == "deny" => Some(mode.clone()),
        Some(_) => {
            eprintln!("usage: approval [--auto approve|deny]");
            return ExitCode::FAILURE;
        }
    };
    exit_code(run(auto.as_deref()).await)
}

async fn run(auto: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = std::env::temp_dir().join("agent-approval-example");
    std::fs::create_dir_all(&dir)?;
    let root = dir.clone();
    let write_file = tool_fn(
        "write_file",
        "Writes a text file in the notes folder.",
        move |a: WriteArgs, _ctx| {
            let root = root.clone();
            async move {
                if a.name.contains(['/', '\\']) || a.name.starts_with('.') {
                    return Err(ToolError::permission_denied(
                        "use a plain file name, without directories",
                    ));
                }
                let path = root.join(&a.name);
                tokio::fs::write(&path, a.content.as_bytes())
                    .await
                    .map_err(|e| ToolError::failed(format!("could not write {}: {e}", a.name)))?;
                Ok(format!(
                    "wrote {} bytes to {}",
                    a.content.len(),
                    path.display()
                ))
            }
        },
    )
    .with_meta(ToolMeta::side_effecting().with_approval());

    let model = choose_model(|| {
        ScriptedModel::new()
            .then_tool_call(
                "write_file",
                json!({"name": "todo.txt", "content": "1. Buy milk\n2. Call Ada\n"}),
            )
            .then_reply(|req| {
                Ok(ChatResponse::text(match last_tool_output(req) {
                    Some((out, false)) => format!("Done: {out}."),
                    Some((why, true)) => format!("I did not write the file. {why}"),
                    None => "Nothing happened.".into(),
                }))
            })
    })?;
    let agent = LlmAgent::builder(model)
        .instructions("Keep the user's notes with the write_file tool.")
        .tool(write_file)
        .build()?;
    let ctx = RunContext::new();
    let mut result = agent
        .run("Save my to-do list: buy milk, call Ada.", &ctx)
        .await?;
    while result.stop_reason == StopReason::AwaitingApproval {
        let Some(interruption) = result.interruption.take() else {
            break;
        };
        let mut decisions = Vec::new();
        for call in &interruption.pending {
            decisions.push((call.call_id.clone(), decide(call, auto)?));
        }
        result = agent
            .resume_with_approvals(interruption.state, decisions, &ctx)
            .await?;
    }
    print_transcript(&result);
    Ok(())
}

fn decide(call: &PendingApproval, auto: Option<&str>) -> Result<Approval, std::io::Error> {
    println!(
        "The agent wants to call `{}` with {}",
        call.name, call.arguments
    );
    if let Some(problem) = &call.problem {
        println!("  (its arguments are invalid: {problem})");
    }
    match auto {
        Some("approve") => {
            println!("  approved (--auto approve)");
            return Ok(Approval::Approve);
        }
        Some(_) => {
            println!("  denied (--auto deny)");
            return Ok(Approval::Reject {
                message: "the user denied it".into(),
            });
        }
        None => {}
    }
    print!("Approve? [y]es / [n]o / [e]dit arguments: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(match line.trim() {
        "y" | "yes" => Approval::Approve,
        "e" | "edit" => {
            print!("New arguments (JSON): ");
            std::io::stdout().flush()?;
            let mut args = String::new();
            std::io::stdin().lock().read_line(&mut args)?;
            match serde_json::from_str(args.trim()) {
                Ok(args) => Approval::Edit { args },
                Err(e) => Approval::Reject {
                    message: format!("the user's edit was not valid JSON ({e})"),
                },
            }
        }
        _ => {
            print!("Why not? (the agent will read this): ");
            std::io::stdout().flush()?;
            let mut why = String::new();
            std::io::stdin().lock().read_line(&mut why)?;
            let why = why.trim();
            Approval::Reject {
                message: if why.is_empty() {
                    "the user said no".into()
                } else {
                    why.into()
                },
            }
        }
    })
}
