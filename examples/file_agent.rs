//! A file agent: file tools and an allow-listed shell in a sandbox folder it creates.
//!
//! ```text
//! cargo run --example file_agent
//! AGENT_MODEL=openai:gpt-4o-mini cargo run --example file_agent -- "Which file is longest?"
//! ```
//!
//! The sandbox holds a few small Rust files. The default task: count the lines of every
//! `.rs` file and write a summary to `report.md`. Paths cannot leave the sandbox, and the
//! shell runs only `wc`, `ls` and `grep`, without a shell (so no globs: the agent lists the
//! folder first).

use std::process::ExitCode;

use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{ChatResponse, ToolCall};
use agent_examples::{choose_model, exit_code, last_tool_output, print_transcript, task_from_args};
use agent_tools::{FileTools, Shell};
use serde_json::json;

const TASK: &str = "Count the lines of every .rs file and write a summary to report.md.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let task = task_from_args(TASK);
    exit_code(run(&task).await)
}

async fn run(task: &str) -> Result<(), Box<dyn std::error::Error>> {
    let sandbox = std::env::temp_dir().join(format!("agent-file-example-{}", std::process::id()));
    std::fs::create_dir_all(&sandbox)?;
    std::fs::write(sandbox.join("main.rs"), "fn main() {\n    greet();\n}\n")?;
    std::fs::write(
        sandbox.join("greet.rs"),
        "pub fn greet() {\n    println!(\"hello\");\n}\n\n// end\n",
    )?;
    std::fs::write(sandbox.join("notes.txt"), "not Rust\n")?;
    println!("sandbox: {}", sandbox.display());

    let files = FileTools::new(&sandbox)?;
    let shell = Shell::new(&sandbox, ["wc", "ls", "grep"])?;
    let model = choose_model(offline_script)?;
    let agent = LlmAgent::builder(model)
        .instructions(
            "You work in a sandbox folder with file tools and a shell that runs wc, ls and grep \
             (no shell syntax, no globs: list the folder to find file names).",
        )
        .tools(files.all_tools())
        .tool(shell)
        .max_turns(12)
        .build()?;
    println!("task: {task}");
    let result = agent.ask(task).await;
    let report = std::fs::read_to_string(sandbox.join("report.md")).ok();
    let _ = std::fs::remove_dir_all(&sandbox);
    let result = result?;
    print_transcript(&result);
    if let Some(report) = report {
        println!("report.md:\n{report}");
    }
    Ok(())
}

/// Offline: list the folder, count lines of the .rs files it lists, write the report, and
/// say what was written: each step built from the previous tool result.
fn offline_script() -> ScriptedModel {
    let call = |name: &str, args: serde_json::Value| {
        Ok(ChatResponse::tool_calls(vec![ToolCall::new(
            "", name, &args,
        )]))
    };
    ScriptedModel::new()
        .then_tool_call("list_files", json!({}))
        .then_reply(move |req| {
            let listing = last_tool_output(req)
                .map(|(out, _)| out)
                .unwrap_or_default();
            let mut args = vec!["-l".to_owned()];
            args.extend(
                listing
                    .lines()
                    .filter_map(|l| l.strip_prefix("file   "))
                    .filter_map(|l| l.split(' ').next())
                    .filter(|name| name.ends_with(".rs"))
                    .map(str::to_owned),
            );
            call("shell", json!({"program": "wc", "args": args}))
        })
        .then_reply(move |req| {
            let counts = last_tool_output(req)
                .map(|(out, _)| out)
                .unwrap_or_default();
            let table = counts
                .lines()
                .filter_map(|l| l.trim().split_once(' '))
                .filter(|(n, _)| n.parse::<u32>().is_ok())
                .map(|(n, file)| format!("| {} | {n} |", file.trim()))
                .collect::<Vec<_>>()
                .join("\n");
            let content = format!("# Line counts\n\n| file | lines |\n|---|---|\n{table}\n");
            call(
                "write_file",
                json!({"path": "report.md", "content": content}),
            )
        })
        .then_reply(|req| {
            let outcome = last_tool_output(req)
                .map(|(out, _)| out)
                .unwrap_or_default();
            Ok(ChatResponse::text(format!(
                "Counted the lines of the .rs files; {outcome}."
            )))
        })
}
