//! The SQLite store and durable agents on it: bad input gets a typed error that says what
//! to do, approvals survive a process, and sessions persist in the file.

// The helpers below are test code too: a failure panics, as an assertion does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use agent_core::durable::{InterruptedCalls, RunQuery, RunStatus, RunStore, StoreErrorKind};
use agent_core::testing::ScriptedModel;
use agent_core::{AgentError, Approval, LlmAgent, Message, RunContext, StopReason};
use agent_store::SqliteStore;
use agent_store::conformance::fixtures::{self, FailingStore, Ledger};
use serde_json::json;

fn store_in(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(dir.path().join("runs.db")).unwrap())
}

fn store_error(error: AgentError) -> agent_core::durable::StoreError {
    match error {
        AgentError::Store(e) => e,
        other => panic!("expected a store error, got {other}"),
    }
}

/// The agent of the approval tests, on this store.
fn janitor(store: Arc<SqliteStore>, model: ScriptedModel) -> LlmAgent {
    fixtures::janitor(store, model)
}

/// A run that crashed after its email's intent (the store stopped after that write).
async fn crashed_in_email(store: Arc<SqliteStore>, ledger: &Ledger) -> String {
    // Writes: create, 3 records and commits of turn 1, then model response, commit, intent.
    for limit in 1..64 {
        let failing = Arc::new(FailingStore::new(store.clone(), limit));
        let agent = fixtures::agent(failing.clone(), ledger, InterruptedCalls::ReportUnknown);
        if agent.ask("Do the errand.").await.is_ok() {
            break;
        }
        let run_id = failing.run_id().unwrap();
        let run = store.load_run(&run_id).await.unwrap();
        let intent = run.journal.iter().any(|e| {
            matches!(e, agent_core::durable::JournalEntry::ToolIntent { name, .. } if name == "send_email")
        });
        let outcome = run.journal.iter().any(|e| {
            matches!(e, agent_core::durable::JournalEntry::ToolOutcome { call_id, .. } if call_id == "call_2_0")
        });
        if intent && !outcome {
            return run_id;
        }
        store.delete_run(&run_id).await.unwrap();
    }
    panic!("no write limit stops the run between the email's intent and its outcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_file_of_a_newer_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    drop(SqliteStore::open(&path).unwrap());
    damage(
        &path,
        "UPDATE agent_store_meta SET value = '99' WHERE key = 'format'",
    );
    let error = SqliteStore::open(&path).unwrap_err();
    assert_eq!(error.kind, StoreErrorKind::NewerFormat);
    assert!(error.message.contains("upgrade agent-store"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are not the runs you are looking for\n".repeat(200),
    )
    .unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    assert_eq!(error.kind, StoreErrorKind::Unavailable);
    assert!(error.message.contains("notes.txt"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_a_typed_error_naming_the_run_never_a_wrong_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let ledger = Ledger::default();
    let run_id = crashed_in_email(store.clone(), &ledger).await;
    damage(
        &dir.path().join("runs.db"),
        &format!(
            "UPDATE messages SET body = '{{\"role\": 7' WHERE run_id = '{run_id}' AND seq = 2"
        ),
    );
    let error = store.load_run(&run_id).await.unwrap_err();
    assert_eq!(error.kind, StoreErrorKind::Corrupt);
    assert!(
        error.message.contains(&run_id) && error.message.contains("message 2"),
        "{error}"
    );
    let agent = fixtures::agent(store.clone(), &ledger, InterruptedCalls::ReportUnknown);
    let error = store_error(
        agent
            .resume_run(&run_id, &RunContext::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(error.kind, StoreErrorKind::Corrupt);
    damage(
        &dir.path().join("runs.db"),
        &format!("DELETE FROM messages WHERE run_id = '{run_id}' AND seq = 2"),
    );
    let error = store.load_run(&run_id).await.unwrap_err();
    assert_eq!(error.kind, StoreErrorKind::Corrupt, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_missing_a_finished_or_a_held_run_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let ledger = Ledger::default();
    let agent = fixtures::agent(store.clone(), &ledger, InterruptedCalls::ReportUnknown);
    let missing = store_error(
        agent
            .resume_run("run_nope", &RunContext::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(missing.kind, StoreErrorKind::NotFound);
    assert!(missing.message.contains("run_nope"));

    let done = agent.ask("Do the errand.").await.unwrap();
    let finished = store_error(
        agent
            .resume_run(&done.run_id, &RunContext::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(finished.kind, StoreErrorKind::Finished);
    assert!(finished.message.contains("nothing to resume"), "{finished}");

    // A run held by a live driver (this process) cannot be taken over.
    let run_id = crashed_in_email(store.clone(), &ledger).await;
    let (_, lease) = store
        .claim_run(&run_id, &agent_core::durable::Lease::new_owner())
        .await
        .unwrap();
    let busy = store_error(
        agent
            .resume_run(&run_id, &RunContext::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(busy.kind, StoreErrorKind::Busy);
    store.release(&run_id, &lease).await.unwrap();

    // Only an agent of the same name resumes a run.
    let other = LlmAgent::builder(Arc::new(ScriptedModel::new()))
        .name("someone-else")
        .store(store.clone())
        .build()
        .unwrap();
    let wrong = store_error(
        other
            .resume_run(&run_id, &RunContext::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(wrong.kind, StoreErrorKind::Invalid);
    assert!(wrong.message.contains("errand"), "{wrong}");

    // Refusals let go of the run: the right agent resumes it.
    let resumed = agent.resume_run(&run_id, &RunContext::new()).await.unwrap();
    assert_eq!(resumed.stop_reason, StopReason::Completed);

    let no_store = LlmAgent::builder(Arc::new(ScriptedModel::new()))
        .build()
        .unwrap();
    assert!(matches!(
        no_store.resume_run(&run_id, &RunContext::new()).await,
        Err(AgentError::InvalidState(m)) if m.contains(".store(")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_side_effect_goes_to_a_human_when_asked_and_runs_only_if_approved() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let ledger = Ledger::default();
    let run_id = crashed_in_email(store.clone(), &ledger).await;
    let sent_before = ledger.outcome().side_effects;
    let agent = fixtures::agent(store.clone(), &ledger, InterruptedCalls::AskHuman);
    let paused = agent.resume_run(&run_id, &RunContext::new()).await.unwrap();
    assert_eq!(paused.stop_reason, StopReason::AwaitingApproval);
    let pending = &paused.interruption.as_ref().unwrap().pending;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].name, "send_email");
    assert!(
        pending[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("interrupted")
    );
    assert_eq!(
        store.load_run(&run_id).await.unwrap().info.status,
        RunStatus::Paused
    );
    assert_eq!(
        ledger.outcome().side_effects,
        sent_before,
        "nothing ran yet"
    );

    // Another agent (as in another process) takes the decision.
    let later = fixtures::agent(store.clone(), &ledger, InterruptedCalls::AskHuman);
    let done = later
        .resume_run_with_approvals(
            &run_id,
            vec![(pending[0].call_id.clone(), Approval::Approve)],
            &RunContext::new(),
        )
        .await
        .unwrap();
    assert_eq!(done.stop_reason, StopReason::Completed);
    assert_eq!(ledger.outcome().side_effects, sent_before + 1);
    assert_eq!(
        store.load_run(&run_id).await.unwrap().info.status,
        RunStatus::Finished
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_pause_a_durable_run_and_any_agent_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let first = janitor(
        store.clone(),
        ScriptedModel::new()
            .then_tool_call("delete", json!({"path": "a.txt"}))
            .then_text("Deleted."),
    );
    let paused = first.ask("Clean up a.txt").await.unwrap();
    assert_eq!(paused.stop_reason, StopReason::AwaitingApproval);
    let call_id = paused.interruption.as_ref().unwrap().pending[0]
        .call_id
        .clone();
    drop(first);
    let listed = store
        .list_runs(&RunQuery::new().status(RunStatus::Paused))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    // The first process's scripted model is gone; a second one answers the rest.
    let second = janitor(store.clone(), ScriptedModel::new().then_text("Deleted."));
    let done = second
        .resume_run_with_approvals(
            &listed[0].run_id,
            vec![(call_id, Approval::Approve)],
            &RunContext::new(),
        )
        .await
        .unwrap();
    assert_eq!(done.text, "Deleted.");
    let stored = store.load_run(&done.run_id).await.unwrap();
    assert_eq!(stored.info.status, RunStatus::Finished);
    assert!(
        stored
            .messages
            .iter()
            .any(|m| matches!(m, Message::Tool(r) if r.content == "deleted"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_persist_in_the_file_across_store_instances() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = RunContext::new().with_session("user-7");
    {
        let store = store_in(&dir);
        let agent = LlmAgent::builder(Arc::new(ScriptedModel::new().then_text("Noted: blue.")))
            .store(store)
            .build()
            .unwrap();
        agent.run_with("My favourite colour is blue.", &ctx).await;
    }
    let store = store_in(&dir);
    let model = Arc::new(ScriptedModel::new().then_text("Blue.").then_text("Sure."));
    let agent = LlmAgent::builder(model.clone())
        .store(store.clone())
        .build()
        .unwrap();
    agent.run_with("What is my favourite colour?", &ctx).await;
    let sent = model.requests();
    let first_request = &sent[0].messages;
    assert!(
        first_request
            .iter()
            .any(|m| m.text().contains("favourite colour is blue")),
        "the earlier run is in the context"
    );
    let info = store.session_info("user-7").await.unwrap();
    assert_eq!((info.runs, info.messages), (2, 4));
    // A run that names no session does not join one.
    agent.run_with("Unrelated.", &RunContext::new()).await;
    assert_eq!(model.requests()[1].messages.len(), 1, "no history sent");
    assert_eq!(store.session_info("user-7").await.unwrap().runs, 2);
    assert_eq!(store.list_runs(&RunQuery::new()).await.unwrap().len(), 3);
}

trait RunWith {
    async fn run_with(&self, input: &str, ctx: &RunContext);
}

impl RunWith for LlmAgent {
    async fn run_with(&self, input: &str, ctx: &RunContext) {
        agent_core::Agent::run(self, input, ctx).await.unwrap();
    }
}

/// Edits the file with SQLite directly, as damage from outside the store would.
fn damage(path: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_based_apis_are_durable_on_an_agent_with_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let agent = janitor(
        store.clone(),
        ScriptedModel::new()
            .then_text("Started by hand.")
            .then_tool_call("delete", json!({"path": "a.txt"}))
            .then_text("Deleted."),
    );
    // A state started by hand is recorded before it runs.
    let state = agent.start("Say hi.", &[]);
    let run_id = state.run_id().to_owned();
    let done = agent.resume(state, &RunContext::new()).await.unwrap();
    assert_eq!(done.text, "Started by hand.");
    let stored = store.load_run(&run_id).await.unwrap();
    assert_eq!(stored.info.status, RunStatus::Finished);
    assert_eq!(stored.info.input, "Say hi.");
    // The paused state's own API journals the decisions and finishes the stored run.
    let paused = agent.ask("Clean up a.txt").await.unwrap();
    let interruption = paused.interruption.unwrap();
    let decisions = vec![(interruption.pending[0].call_id.clone(), Approval::Approve)];
    let done = agent
        .resume_with_approvals(interruption.state, decisions, &RunContext::new())
        .await
        .unwrap();
    assert_eq!(done.text, "Deleted.");
    let stored = store.load_run(&done.run_id).await.unwrap();
    assert_eq!(stored.info.status, RunStatus::Finished);
    assert_eq!(
        stored.info.steps, 4,
        "paused, approved, the turn answered, finished"
    );
}
