//! A durable run: kill it at any moment (Ctrl-C, `kill -9`), then finish it with `--resume`.
//!
//! ```text
//! cargo run --example durable_agent                      # prints the run id, then works
//! cargo run --example durable_agent -- --resume RUN_ID   # finishes a killed run
//! cargo run --example durable_agent -- --list            # the runs in the store
//! AGENT_STORE_PATH=./runs.db cargo run --example durable_agent
//! ```
//!
//! The agent ships three parcels: `check_stock` (read-only) and `ship_parcel`
//! (side-effecting: it appends to an outbox file, once per idempotency key), each a second
//! long so there is time to kill it. Every step is journalled in a SQLite file
//! (`AGENT_STORE_PATH`, default `agent-durable-example.db` in the temp folder). A resumed
//! run goes on from its last step; a parcel whose shipping was cut off is not shipped
//! again blindly: the model is told its outcome is unknown.
//!
//! Offline (no `AGENT_MODEL`), a scripted model plays the agent. It decides from the
//! conversation alone, so the resuming process gives the same answers as the killed one.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_core::durable::{RunQuery, RunStore};
use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{ChatRequest, ChatResponse, ToolCall};
use agent_examples::{choose_model, exit_code, print_transcript, task_from_args};
use agent_store::SqliteStore;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

const TASK: &str = "Ship parcels 1, 2 and 3: check each is in stock, then ship it.";
const PARCELS: [u32; 3] = [1, 2, 3];

#[derive(Deserialize, JsonSchema)]
struct Parcel {
    /// The parcel number.
    parcel: u32,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let resume = args
        .iter()
        .position(|a| a == "--resume")
        .and_then(|i| args.get(i + 1).cloned());
    if args.iter().any(|a| a == "--resume") && resume.is_none() {
        eprintln!("usage: durable_agent [--list | --resume RUN_ID | TASK]");
        return ExitCode::FAILURE;
    }
    let list = args.iter().any(|a| a == "--list");
    exit_code(run(resume.as_deref(), list).await)
}

async fn run(resume: Option<&str>, list: bool) -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var_os("AGENT_STORE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("agent-durable-example.db"));
    let store = Arc::new(SqliteStore::open(&path)?);
    println!("store: {}", path.display());
    if list {
        for run in store.list_runs(&RunQuery::new().limit(20)).await? {
            println!("{}  {:<9}  {}", run.run_id, run.status, run.input);
        }
        return Ok(());
    }
    let outbox = path.with_extension("outbox");
    let agent = LlmAgent::builder(choose_model(offline_script)?)
        .name("shipper")
        .instructions(
            "You ship parcels. For each parcel: call check_stock, then ship_parcel. Ship each \
             parcel once. When all are shipped, say so in one sentence.",
        )
        .store(store)
        .max_turns(12)
        .tool(
            tool_fn(
                "check_stock",
                "Checks that a parcel is in stock.",
                |p: Parcel, _ctx| async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok(format!("parcel {} is in stock", p.parcel))
                },
            )
            .read_only(),
        )
        .tool(tool_fn(
            "ship_parcel",
            "Ships a parcel (cannot be undone).",
            move |p: Parcel, ctx| {
                let outbox = outbox.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    // A real carrier API would take the key as an Idempotency-Key header.
                    let line = format!(
                        "parcel {} shipped (key {})\n",
                        p.parcel,
                        ctx.idempotency_key()
                    );
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&outbox)
                        .and_then(|mut f| f.write_all(line.as_bytes()))
                        .map_err(|e| ToolError::failed(format!("the outbox failed: {e}")))?;
                    println!("  shipped parcel {}", p.parcel);
                    Ok(format!("parcel {} shipped", p.parcel))
                }
            },
        ))
        .build()?;
    let result = match resume {
        Some(run_id) => {
            println!("run: {run_id} (resumed)");
            agent.resume_run(run_id, &RunContext::new()).await?
        }
        None => {
            let task = task_from_args(TASK);
            // Chosen here, so it is known before the run starts.
            let run_id = agent_core::run::new_run_id();
            println!("task: {task}");
            println!(
                "run: {run_id} (kill this process at any moment, then: cargo run --example \
                 durable_agent -- --resume {run_id})"
            );
            agent
                .run(&task, &RunContext::new().with_run_id(&run_id))
                .await?
        }
    };
    print_transcript(&result);
    Ok(())
}

/// The offline stand-in, a pure function of the conversation: check the first parcel not
/// yet checked, ship the first checked parcel not yet shipped (or reported unknown), and
/// report when none is left. Enough steps for every turn of the run.
fn offline_script() -> ScriptedModel {
    let mut model = ScriptedModel::new();
    for _ in 0..=12 {
        model = model.then_reply(|req| Ok(next_move(req)));
    }
    model
}

fn next_move(request: &ChatRequest) -> ChatResponse {
    let results: Vec<&agent_core::ToolResult> = request
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::Tool(r) => Some(r),
            _ => None,
        })
        .collect();
    let done = |tool: &str, parcel: u32| {
        results
            .iter()
            .any(|r| r.name == tool && r.content.contains(&format!("parcel {parcel} ")))
    };
    let unknown = results
        .iter()
        .filter(|r| r.name == "ship_parcel" && r.is_error)
        .count();
    for parcel in PARCELS {
        if !done("check_stock", parcel) {
            return ChatResponse::tool_calls(vec![ToolCall::new(
                "",
                "check_stock",
                &json!({ "parcel": parcel }),
            )]);
        }
        let shipped_or_unknown = done("ship_parcel", parcel)
            || results.iter().any(|r| {
                r.name == "ship_parcel"
                    && r.is_error
                    && request.messages.iter().any(|m| {
                        m.as_assistant().is_some_and(|a| {
                            a.tool_calls.iter().any(|c| {
                                c.id == r.call_id && c.arguments.contains(&format!(":{parcel}"))
                            })
                        })
                    })
            });
        if !shipped_or_unknown {
            return ChatResponse::tool_calls(vec![ToolCall::new(
                "",
                "ship_parcel",
                &json!({ "parcel": parcel }),
            )]);
        }
    }
    ChatResponse::text(if unknown == 0 {
        "All three parcels are checked and shipped.".to_owned()
    } else {
        format!(
            "All parcels are checked; {unknown} shipment(s) were interrupted and their outcome \
             is unknown: check the outbox before shipping them again."
        )
    })
}
