//! Attacks on durable runs from a hostile model: arguments nested as deep as the parser
//! allows, a tool result far over the cap, and call ids reused every turn, each with a
//! crash at the worst moment (between a call's intent and its outcome, or right after the
//! outcome), then a resume.

// Test helpers: a failure panics, as an assertion does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agent_core::durable::{JournalEntry, RunStore};
use agent_core::{
    ChatModel, ChatRequest, ChatResponse, LlmAgent, Message, ModelError, RunContext, ToolCall,
    async_trait, check_history, tool_fn,
};
use agent_store::SqliteStore;
use agent_store::conformance::fixtures::FailingStore;
use serde_json::{Value, json};

/// Calls `tool` with `args` under the id `id` in each of its first `calls` turns, then
/// answers; a pure function of the request, as a model replayed after a crash must be.
struct Caller {
    tool: &'static str,
    args: Value,
    id: &'static str,
    calls: usize,
}

#[async_trait]
impl ChatModel for Caller {
    fn provider(&self) -> &str {
        "scripted"
    }

    fn model(&self) -> &str {
        "caller"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let turn = request
            .messages
            .iter()
            .filter(|m| matches!(m, Message::Assistant(_)))
            .count();
        Ok(if turn < self.calls {
            ChatResponse::tool_calls(vec![ToolCall::new(self.id, self.tool, &self.args)])
        } else {
            ChatResponse::text("done")
        })
    }
}

type Build = dyn Fn(Arc<dyn RunStore>) -> LlmAgent;

/// Runs the agent on stores that stop after 1, 2, ... writes until `crashed` says the
/// journal left behind is the moment wanted; returns that run's id.
async fn crash_when(
    store: &Arc<SqliteStore>,
    build: &Build,
    crashed: impl Fn(&[JournalEntry]) -> bool,
) -> String {
    for limit in 1..200 {
        let failing = Arc::new(FailingStore::new(store.clone(), limit));
        let agent = build(failing.clone());
        if agent.ask("go").await.is_ok() {
            break;
        }
        let Some(run_id) = failing.run_id() else {
            continue;
        };
        if crashed(&store.load_run(&run_id).await.unwrap().journal) {
            return run_id;
        }
        store.delete_run(&run_id).await.unwrap();
    }
    panic!("no write limit stops the run at the wanted moment");
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!({ "a": inner }))
}

/// The `save` agent: one call of `save` with a document nested `depth` levels deep.
fn saver(store: Arc<dyn RunStore>, depth: usize, ran: Arc<AtomicUsize>) -> LlmAgent {
    LlmAgent::builder(Arc::new(Caller {
        tool: "save",
        args: json!({ "doc": nested(depth) }),
        id: "c1",
        calls: 1,
    }))
    .store(store)
    .tool(tool_fn("save", "Saves a document.", move |_: Value, _| {
        let ran = ran.clone();
        async move {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok("saved")
        }
    }))
    .build()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_nested_deeper_than_a_saved_state_can_hold_are_refused_before_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("runs.db")).unwrap());
    let ran = Arc::new(AtomicUsize::new(0));
    // 125 levels parse (the reader stops at 128), but the saved state adds its own.
    let result = saver(store.clone(), 125, ran.clone())
        .ask("go")
        .await
        .unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "never run");
    let refusal = result.new_messages[2].text();
    assert!(refusal.contains("nest deeper than 64 levels"), "{refusal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_nested_up_to_the_limit_survive_a_crash_and_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("runs.db")).unwrap());
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    // 63 levels under `doc`, 64 with the arguments object itself.
    let build = move |store: Arc<dyn RunStore>| saver(store, 63, counter.clone());
    // Killed after the call's intent: the pending call and its arguments are in the
    // committed state.
    let run_id = crash_when(&store, &build, |journal| {
        journal
            .iter()
            .any(|e| matches!(e, JournalEntry::ToolIntent { .. }))
    })
    .await;
    let resumed = build(store.clone())
        .resume_run(&run_id, &RunContext::new())
        .await
        .expect("a state the machine accepted can be read back");
    assert!(check_history(&resumed.new_messages).is_ok());
    assert_eq!(resumed.text, "done");
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "saved once, before the crash"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_tool_result_is_journalled_capped_and_replays_to_the_same_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let build = |store: Arc<dyn RunStore>| {
        LlmAgent::builder(Arc::new(Caller {
            tool: "dump",
            args: json!({}),
            id: "c1",
            calls: 1,
        }))
        .store(store)
        .tool(
            tool_fn("dump", "Dumps a log.", |_: Value, _| async move {
                Ok("log line é\n".repeat(300_000))
            })
            .read_only(),
        )
        .build()
        .unwrap()
    };
    let uninterrupted = build(store.clone()).ask("go").await.unwrap();
    // Killed right after the outcome was journalled, before the step that uses it.
    let run_id = crash_when(&store, &build, |journal| {
        journal
            .iter()
            .any(|e| matches!(e, JournalEntry::ToolOutcome { .. }))
    })
    .await;
    let resumed = build(store.clone())
        .resume_run(&run_id, &RunContext::new())
        .await
        .unwrap();
    assert_eq!(resumed.new_messages, uninterrupted.new_messages);
    let result = resumed.new_messages[2].text();
    assert!(result.len() < 256 * 1024 + 200, "{}", result.len());
    assert!(result.contains("more bytes of this result were not shown"));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let largest: i64 = conn
        .query_row("SELECT MAX(LENGTH(body)) FROM journal", [], |r| r.get(0))
        .unwrap();
    assert!(largest < 300 * 1024, "a journal record of {largest} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_id_reused_every_turn_marks_only_the_interrupted_call_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("runs.db")).unwrap());
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let build = move |store: Arc<dyn RunStore>| {
        let counter = counter.clone();
        LlmAgent::builder(Arc::new(Caller {
            tool: "send",
            args: json!({}),
            id: "same",
            calls: 3,
        }))
        .store(store)
        .tool(tool_fn("send", "Sends.", move |_: Value, _| {
            let counter = counter.clone();
            async move {
                Ok(format!(
                    "sent {}",
                    counter.fetch_add(1, Ordering::SeqCst) + 1
                ))
            }
        }))
        .build()
        .unwrap()
    };
    // Killed between the second turn's intent and its outcome.
    let run_id = crash_when(&store, &build, |journal| {
        journal
            .iter()
            .any(|e| matches!(e, JournalEntry::ToolIntent { turn: 2, .. }))
            && !journal
                .iter()
                .any(|e| matches!(e, JournalEntry::ToolOutcome { turn: 2, .. }))
    })
    .await;
    let before = sent.load(Ordering::SeqCst);
    let resumed = build(store.clone())
        .resume_run(&run_id, &RunContext::new())
        .await
        .unwrap();
    let results: Vec<(String, bool)> = resumed
        .new_messages
        .iter()
        .filter_map(|m| match m {
            Message::Tool(r) => Some((r.content.clone(), r.is_error)),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 3);
    assert!(!results[0].1, "turn 1 kept its result: {results:?}");
    assert!(
        results[1].1 && results[1].0.contains("outcome of this call is unknown"),
        "{results:?}"
    );
    assert!(!results[2].1, "turn 3 ran: {results:?}");
    assert_eq!(
        sent.load(Ordering::SeqCst),
        before + 1,
        "only turn 3 ran after the resume"
    );
}
