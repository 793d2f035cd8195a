//! A worker of a pool on PostgreSQL: start as many as you like, on as many machines; kill
//! any of them at any moment; each run is finished exactly once by the others.
//!
//! ```text
//! export AGENT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
//! cargo run --example worker -- --enqueue "Summarise ticket 42" --enqueue "Close ticket 7"
//! cargo run --example worker                 # works until Ctrl-C, then drains
//! cargo run --example worker -- --list       # the runs and where they stand
//! ```
//!
//! The agent is `assistant`; offline (no `AGENT_MODEL`) a stand-in model answers each task
//! by echoing it. Runs, their journals and the queue live in the schema `agent_store`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_core::durable::{RunQuery, RunStore};
use agent_core::{
    CancellationToken, ChatModel, ChatRequest, ChatResponse, LlmAgent, Message, ModelError,
    ModelRegistry, async_trait,
};
use agent_examples::exit_code;
use agent_store::{Job, PostgresStore, Worker};

/// Offline stand-in: answers a task by repeating it.
#[derive(Debug)]
struct Echo;

#[async_trait]
impl ChatModel for Echo {
    fn provider(&self) -> &str {
        "scripted"
    }

    fn model(&self) -> &str {
        "echo"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let task = request
            .messages
            .iter()
            .rev()
            .find(|m| matches!(m, Message::User { .. }))
            .map(Message::text)
            .unwrap_or_default();
        Ok(ChatResponse::text(format!("Done: {task}")))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("AGENT_DATABASE_URL") else {
        return Err("set AGENT_DATABASE_URL to a postgres:// URL (e.g. \
                    postgres://postgres@127.0.0.1:5432/postgres)"
            .into());
    };
    let store = Arc::new(PostgresStore::builder(url).connect().await?);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tasks: Vec<&String> = args
        .iter()
        .zip(args.iter().skip(1))
        .filter(|(flag, _)| *flag == "--enqueue")
        .map(|(_, task)| task)
        .collect();
    if !tasks.is_empty() {
        for task in tasks {
            let job = Job::new("assistant", task.as_str());
            store.enqueue(&job).await?;
            println!("enqueued {}", job.run_id);
        }
        return Ok(());
    }
    if args.iter().any(|a| a == "--list") {
        for run in store.list_runs(&RunQuery::new()).await? {
            println!("{} {:<9} {}", run.run_id, run.status, run.input);
        }
        return Ok(());
    }
    let model: Arc<dyn ChatModel> = match ModelRegistry::builtin().from_env() {
        Some(model) => model?,
        None => {
            println!(
                "model: offline stand-in (echo). Set AGENT_MODEL=provider:model for a real one."
            );
            Arc::new(Echo)
        }
    };
    let agent = LlmAgent::builder(model)
        .name("assistant")
        .store(store.clone())
        .build()?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            println!("draining: finishing or letting go of the runs held here");
            on_signal.cancel();
        }
    });
    let worker = Worker::builder(store)
        .agent(Arc::new(agent))
        .concurrency(8)
        .lease(Duration::from_secs(15))
        .on_report(|r| println!("{} {:?}", r.run_id, r.status))
        .build();
    println!("worker: waiting for runs (Ctrl-C to stop)");
    let summary = worker.run(shutdown).await;
    println!("{summary:?}");
    Ok(())
}
