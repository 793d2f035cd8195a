//! What durability costs on SQLite (agent-store): the latency of one step commit and one
//! journal record (p50, p99), and the bytes a 100-turn run writes compared with the bytes of
//! its messages.
//!
//! ```text
//! cargo run --release -p agent-tests --example store_bench
//! cargo run --release -p agent-tests --example store_bench -- --steps 5000 --dir /var/tmp
//! ```
//!
//! Step commits: one run, `--steps` commits (default 2000), each adding one 1 KiB message,
//! as a turn adds its answer. Journal records: as many tool outcomes of 1 KiB. Each is one
//! transaction with `synchronous=FULL`, so the time is mostly the disk's fsync.
//!
//! Bytes: a real agent run of 100 model turns on an in-process model, each turn a tool call
//! whose arguments are about 1 KiB and a tool result of 1 KiB. Reported: the message bytes
//! (their JSON), the bytes the store handed SQLite (message rows, journal rows, control
//! states), the file size after a checkpoint, and what the process wrote to storage
//! (`/proc/self/io` `write_bytes`: database and WAL pages, each page a whole 4 KiB).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_core::durable::{JournalEntry, Lease, NewRun, OutcomeRecord, RunStatus, RunStore, Step};
use agent_core::{
    ChatModel, ChatRequest, ChatResponse, LlmAgent, Message, ModelError, RunLimits, ToolCall,
    async_trait, tool_fn,
};
use agent_store::SqliteStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let steps: usize = option("--steps").map_or(Ok(2000), |s| s.parse())?;
    let base = option("--dir").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let dir = tempfile::tempdir_in(base)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        commits(&dir.path().join("commits.db"), steps).await?;
        bytes(&dir.path().join("bytes.db")).await
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let total: Duration = times.iter().sum();
    println!(
        "{what}: p50 {:.3} ms, p99 {:.3} ms, mean {:.3} ms over {}",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3 / times.len() as f64,
        times.len()
    );
}

async fn commits(path: &std::path::Path, steps: usize) -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open(path)?;
    let context = vec![Message::system("Be brief."), Message::user("Go.")];
    let lease = store
        .create_run(NewRun {
            run_id: "run_bench",
            agent: "bench",
            session: None,
            input: "Go.",
            control: "{}",
            messages: &context,
            new_from: 1,
            owner: &Lease::new_owner(),
        })
        .await?;
    let control = format!(
        "{{\"phase\":\"call_model\",\"pad\":\"{}\"}}",
        "c".repeat(300)
    );
    let mut commit_times = Vec::with_capacity(steps);
    let mut journal_times = Vec::with_capacity(steps);
    for i in 0..steps {
        let entry = JournalEntry::ToolOutcome {
            turn: i as u32 + 1,
            call_id: "call_1".into(),
            outcome: OutcomeRecord {
                is_error: false,
                content: "r".repeat(1024),
                error_kind: None,
                duration_ms: 1,
            },
        };
        let started = Instant::now();
        store.journal("run_bench", &lease, &entry).await?;
        journal_times.push(started.elapsed());
        let message = [Message::assistant("a".repeat(1024))];
        let started = Instant::now();
        store
            .commit(
                "run_bench",
                &lease,
                Step {
                    step: i as u64 + 1,
                    control: &control,
                    messages_from: context.len() + i,
                    messages: &message,
                    status: RunStatus::Running,
                    end: None,
                    session: None,
                },
            )
            .await?;
        commit_times.push(started.elapsed());
    }
    report("step commit (1 KiB message + control state)", commit_times);
    report("journal record (1 KiB tool outcome)", journal_times);
    Ok(())
}

/// A model that makes 99 tool calls with ~1 KiB of arguments, one a turn, then answers.
#[derive(Debug)]
struct LongModel;

#[async_trait]
impl ChatModel for LongModel {
    fn provider(&self) -> &str {
        "bench"
    }

    fn model(&self) -> &str {
        "long"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let turn = request
            .messages
            .iter()
            .filter(|m| matches!(m, Message::Assistant(_)))
            .count();
        if turn >= 99 {
            return Ok(ChatResponse::text("x".repeat(1024)));
        }
        let args = serde_json::json!({ "note": format!("{turn:04}{}", "n".repeat(1000)) });
        Ok(ChatResponse::tool_calls(vec![ToolCall::new(
            format!("call_{turn}"),
            "record",
            &args,
        )]))
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Note {
    note: String,
}

fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| {
                    l.strip_prefix("write_bytes: ")
                        .map(|v| v.trim().parse().ok())
                })
                .flatten()
        })
        .unwrap_or(0)
}

async fn bytes(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(SqliteStore::open(path)?);
    let agent = LlmAgent::builder(Arc::new(LongModel))
        .store(store.clone())
        .tool(
            tool_fn("record", "Records a note.", |n: Note, _| async move {
                Ok(n.note.replace('n', "r"))
            })
            .read_only(),
        )
        .limits(RunLimits {
            max_turns: 101,
            ..Default::default()
        })
        .build()?;
    let before = write_bytes();
    let started = Instant::now();
    let result = agent.ask("Record 99 notes.").await?;
    let wall = started.elapsed();
    let written = write_bytes() - before;
    let message_bytes: usize = result
        .new_messages
        .iter()
        .map(|m| serde_json::to_string(m).map_or(0, |s| s.len()))
        .sum();
    let stored = store.load_run(&result.run_id).await?;
    let db = path.metadata()?.len();
    let wal = path
        .with_extension("db-wal")
        .metadata()
        .map_or(0, |m| m.len());
    println!(
        "100-turn run: {} turns, {} messages, {:.1} KiB of messages (JSON), {:.0} ms",
        result.turns,
        result.new_messages.len(),
        message_bytes as f64 / 1024.0,
        wall.as_secs_f64() * 1e3
    );
    println!(
        "  stored: {} messages; database {:.1} KiB + WAL {:.1} KiB on disk ({:.2}x the message bytes)",
        stored.messages.len(),
        db as f64 / 1024.0,
        wal as f64 / 1024.0,
        (db + wal) as f64 / message_bytes as f64
    );
    let payload = payload_bytes(path)?;
    println!(
        "  handed to SQLite: {:.1} KiB ({:.2}x the message bytes: messages once, the journal's model answers and outcomes once, control states)",
        payload as f64 / 1024.0,
        payload as f64 / message_bytes as f64
    );
    println!(
        "  written to storage by the process (/proc/self/io, pages of database and WAL): {:.1} KiB ({:.2}x)",
        written as f64 / 1024.0,
        written as f64 / message_bytes as f64
    );
    Ok(())
}

/// Every byte of every row the store kept: message bodies, journal bodies, the run row's
/// control state (the one of the last step; earlier ones were overwritten, and their sizes
/// are counted from the number of steps).
fn payload_bytes(path: &std::path::Path) -> Result<u64, Box<dyn std::error::Error>> {
    let conn = rusqlite::Connection::open(path)?;
    let sum = |sql: &str| -> Result<i64, rusqlite::Error> { conn.query_row(sql, [], |r| r.get(0)) };
    let messages = sum("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM messages")?;
    let journal = sum("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM journal")?;
    let controls = sum("SELECT COALESCE(SUM(LENGTH(control) * step), 0) FROM runs")?;
    Ok((messages + journal + controls) as u64)
}
