//! The contract every [`RunStore`] keeps, as checks another store's tests run unchanged.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn my_store_conforms() {
//! // In a test of your store: a fresh, empty store for each check.
//! let dir = std::env::temp_dir().join("conformance");
//! let n = std::sync::atomic::AtomicU32::new(0);
//! agent_store::conformance::run_all(|| {
//!     let path = dir.join(format!("{}.db", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
//!     async move { Arc::new(agent_store::SqliteStore::open(path).unwrap()) }
//! })
//! .await;
//! # }
//! ```
//!
//! Each check takes a fresh, empty store and panics (with what failed) when the store breaks
//! the contract: round trips, ordering and paging, isolation of runs and sessions, idempotent
//! outcome records, leases and fencing, typed errors for bad requests, delete cascades, and a
//! crash after every single write a run makes, resumed to the same history with no side
//! effect repeated. [`fixtures`] holds the parts the checks use (a model that is a pure
//! function of its request, tools that keep a ledger of their effects), public so that
//! process-level crash tests can use the very same run.

// Test support: a failed check panics with what failed, as an assertion does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::Arc;

use agent_core::durable::{
    JournalEntry, Lease, NewRun, OutcomeRecord, RunQuery, RunStatus, RunStore, Step, StoreErrorKind,
};
use agent_core::{Message, RunContext, check_history};

pub mod fixtures;

use fixtures::{FailingStore, Ledger, Outcome};

/// Runs every check, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: RunStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    round_trip(make().await).await;
    steps_append_deltas_and_journal_follows_the_last_step(make().await).await;
    a_second_outcome_for_the_same_call_is_ignored(make().await).await;
    runs_list_newest_first_with_filters_and_paging(make().await).await;
    runs_and_sessions_are_isolated(make().await).await;
    leases_fence_late_writers_and_typed_errors_say_why(make().await).await;
    sessions_receive_whole_finished_runs_only(make().await).await;
    delete_removes_a_run_with_its_journal_and_its_place_in_the_session(make().await).await;
    a_crash_after_any_write_resumes_to_the_same_history(&make).await;
}

fn messages(n: usize, tag: &str) -> Vec<Message> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                Message::user(format!("{tag} question {i}"))
            } else {
                Message::assistant(format!("{tag} answer {i}"))
            }
        })
        .collect()
}

async fn create(store: &dyn RunStore, run_id: &str, session: Option<&str>) -> Lease {
    let context = messages(1, run_id);
    store
        .create_run(NewRun {
            run_id,
            agent: "agent",
            session,
            input: "task",
            control: "{\"control\":true}",
            messages: &context,
            new_from: 1,
            owner: &Lease::new_owner(),
        })
        .await
        .expect("create_run")
}

fn step<'a>(n: u64, from: usize, messages: &'a [Message], status: RunStatus) -> Step<'a> {
    Step {
        step: n,
        control: "{\"control\":\"later\"}",
        messages_from: from,
        messages,
        status,
        end: None,
        session: None,
    }
}

fn outcome_entry(turn: u32, call_id: &str, content: &str) -> JournalEntry {
    JournalEntry::ToolOutcome {
        turn,
        call_id: call_id.into(),
        outcome: outcome(content),
    }
}

fn outcome(content: &str) -> OutcomeRecord {
    OutcomeRecord {
        is_error: false,
        content: content.into(),
        error_kind: None,
        duration_ms: 1,
    }
}

/// A run reads back as it was written: its info, context, control state and status.
pub async fn round_trip(store: Arc<impl RunStore>) {
    let store: &dyn RunStore = &*store;
    create(store, "run_a", Some("s")).await;
    let run = store.load_run("run_a").await.expect("load_run");
    assert_eq!(run.info.run_id, "run_a");
    assert_eq!(run.info.agent, "agent");
    assert_eq!(run.info.session.as_deref(), Some("s"));
    assert_eq!(run.info.input, "task");
    assert_eq!(run.info.status, RunStatus::Running);
    assert_eq!(run.info.steps, 0);
    assert_eq!(run.control, "{\"control\":true}");
    assert_eq!(run.messages, messages(1, "run_a"));
    assert!(run.journal.is_empty());
    let missing = store
        .load_run("run_missing")
        .await
        .expect_err("a missing run");
    assert_eq!(missing.kind, StoreErrorKind::NotFound);
    let twice = store
        .create_run(NewRun {
            run_id: "run_a",
            agent: "agent",
            session: None,
            input: "again",
            control: "{}",
            messages: &[],
            new_from: 0,
            owner: "someone",
        })
        .await
        .expect_err("a second run with the same id");
    assert_eq!(twice.kind, StoreErrorKind::Invalid);
}

/// Each step stores only the messages added since the last one; the journal returned on
/// load is what was written after the last committed step, in order.
pub async fn steps_append_deltas_and_journal_follows_the_last_step(store: Arc<impl RunStore>) {
    let store: &dyn RunStore = &*store;
    let lease = create(store, "run_d", None).await;
    let added = messages(3, "d");
    let early = JournalEntry::Approvals {
        decisions: Vec::new(),
    };
    store
        .journal("run_d", &lease, &early)
        .await
        .expect("journal");
    store
        .commit("run_d", &lease, step(1, 1, &added[..2], RunStatus::Running))
        .await
        .expect("commit 1");
    let late = outcome_entry(1, "c1", "r1");
    let later = outcome_entry(1, "c2", "r2");
    store
        .journal("run_d", &lease, &late)
        .await
        .expect("journal");
    store
        .journal("run_d", &lease, &later)
        .await
        .expect("journal");
    let run = store.load_run("run_d").await.expect("load");
    assert_eq!(run.info.steps, 1);
    assert_eq!(run.messages.len(), 3);
    assert_eq!(run.control, "{\"control\":\"later\"}");
    assert_eq!(
        run.journal,
        vec![late.clone(), later.clone()],
        "only what follows step 1"
    );
    // A step out of place is refused: wrong number, or a delta that does not start where
    // the stored messages end.
    let gap = store
        .commit("run_d", &lease, step(3, 3, &added[2..], RunStatus::Running))
        .await
        .expect_err("a step that skips one");
    assert_eq!(gap.kind, StoreErrorKind::Invalid);
    let overlap = store
        .commit("run_d", &lease, step(2, 2, &added[2..], RunStatus::Running))
        .await
        .expect_err("a delta that overlaps");
    assert_eq!(overlap.kind, StoreErrorKind::Invalid);
    store
        .commit("run_d", &lease, step(2, 3, &added[2..], RunStatus::Running))
        .await
        .expect("commit 2");
    let run = store.load_run("run_d").await.expect("load");
    let mut expected = messages(1, "run_d");
    expected.extend(added);
    assert_eq!(run.messages, expected);
    assert!(
        run.journal.is_empty(),
        "the journal of earlier steps is not returned"
    );
}

/// Writing the same intent or outcome twice keeps the first; the same call id in another
/// turn is another call.
pub async fn a_second_outcome_for_the_same_call_is_ignored(store: Arc<impl RunStore>) {
    let store: &dyn RunStore = &*store;
    let lease = create(store, "run_i", None).await;
    let first = outcome_entry(1, "c", "first");
    let second = outcome_entry(1, "c", "second");
    let next_turn = outcome_entry(2, "c", "next turn");
    let intent = JournalEntry::ToolIntent {
        turn: 1,
        call_id: "c".into(),
        name: "t".into(),
        args: serde_json::json!({}),
    };
    for entry in [&intent, &first, &second, &intent, &next_turn] {
        store
            .journal("run_i", &lease, entry)
            .await
            .expect("journal");
    }
    let run = store.load_run("run_i").await.expect("load");
    assert_eq!(run.journal, vec![intent, first, next_turn]);
}

/// Newest first; filters by status and session; `before` + `limit` pages through every run
/// once.
pub async fn runs_list_newest_first_with_filters_and_paging(store: Arc<impl RunStore>) {
    let store: &dyn RunStore = &*store;
    let mut ids = Vec::new();
    for i in 0..7 {
        let id = format!("run_{i}");
        let session = if i % 2 == 0 { "even" } else { "odd" };
        let lease = create(store, &id, Some(session)).await;
        if i % 3 == 0 {
            store
                .commit(&id, &lease, step(1, 1, &[], RunStatus::Paused))
                .await
                .expect("pause");
        }
        ids.push(id);
    }
    ids.reverse();
    let all = store.list_runs(&RunQuery::new()).await.expect("list");
    let listed: Vec<&str> = all.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let mut paged = Vec::new();
    let mut query = RunQuery::new().limit(3);
    loop {
        let page = store.list_runs(&query).await.expect("page");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        query = RunQuery::new().limit(3).before(last.run_id.clone());
        paged.extend(page.into_iter().map(|r| r.run_id));
    }
    assert_eq!(paged, ids);
    let paused = store
        .list_runs(&RunQuery::new().status(RunStatus::Paused))
        .await
        .expect("paused");
    let paused: Vec<&str> = paused.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(paused, ["run_6", "run_3", "run_0"]);
    let odd = store
        .list_runs(&RunQuery::new().session("odd"))
        .await
        .expect("odd");
    assert!(odd.iter().all(|r| r.session.as_deref() == Some("odd")));
    assert_eq!(odd.len(), 3);
    let unknown = store
        .list_runs(&RunQuery::new().before("run_unknown"))
        .await
        .expect_err("paging from a run that does not exist");
    assert_eq!(unknown.kind, StoreErrorKind::NotFound);
}

/// One run's messages and journal, and one session's history, never show up in another's.
pub async fn runs_and_sessions_are_isolated(store: Arc<impl RunStore>) {
    let store: &dyn RunStore = &*store;
    let a = create(store, "run_x", Some("sx")).await;
    let b = create(store, "run_y", Some("sy")).await;
    let entry = outcome_entry(1, "c", "x only");
    store.journal("run_x", &a, &entry).await.expect("journal");
    let own = messages(2, "x");
    let mut end = step(1, 1, &own, RunStatus::Finished);
    end.session = Some("sx");
    let summary = agent_core::durable::RunEnd::default();
    end.end = Some(&summary);
    store.commit("run_x", &a, end).await.expect("finish x");
    let y = store.load_run("run_y").await.expect("load y");
    assert!(y.journal.is_empty());
    assert_eq!(y.messages, messages(1, "run_y"));
    assert_eq!(store.load("sy").await.expect("sy"), Vec::new());
    assert_eq!(store.load("sx").await.expect("sx"), own);
    // A lease of one run is no lease of another.
    let wrong = store
        .journal("run_y", &a, &entry)
        .await
        .expect_err("another run's lease");
    assert_eq!(wrong.kind, StoreErrorKind::Fenced);
    drop(b);
}

/// A live driver's run cannot be claimed; a claim raises the epoch and fences the old
/// lease; an ended run cannot be claimed; each refusal is typed.
pub async fn leases_fence_late_writers_and_typed_errors_say_why(store: Arc<impl RunStore>) {
    let store: &dyn RunStore = &*store;
    let held = create(store, "run_l", None).await;
    let busy = store
        .claim_run("run_l", &Lease::new_owner())
        .await
        .expect_err("a run held by a live driver");
    assert_eq!(busy.kind, StoreErrorKind::Busy);
    store.release("run_l", &held).await.expect("release");
    let (_, taken) = store
        .claim_run("run_l", &Lease::new_owner())
        .await
        .expect("claim after release");
    assert!(taken.epoch > held.epoch);
    let late = store
        .commit("run_l", &held, step(1, 1, &[], RunStatus::Running))
        .await
        .expect_err("a write under the old lease");
    assert_eq!(late.kind, StoreErrorKind::Fenced);
    let entry = JournalEntry::Approvals {
        decisions: Vec::new(),
    };
    let late = store
        .journal("run_l", &held, &entry)
        .await
        .expect_err("a journal write under the old lease");
    assert_eq!(late.kind, StoreErrorKind::Fenced);
    // A driver whose process is gone does not hold its run.
    let context = messages(1, "o");
    store
        .create_run(NewRun {
            run_id: "run_orphan",
            agent: "agent",
            session: None,
            input: "task",
            control: "{}",
            messages: &context,
            new_from: 0,
            owner: &fixtures::dead_owner(),
        })
        .await
        .expect("create");
    store
        .claim_run("run_orphan", &Lease::new_owner())
        .await
        .expect("a run whose driver's process is gone can be claimed");
    let summary = agent_core::durable::RunEnd::default();
    let mut end = step(1, 1, &[], RunStatus::Failed);
    end.end = Some(&summary);
    store.commit("run_l", &taken, end).await.expect("end");
    let over = store
        .claim_run("run_l", &Lease::new_owner())
        .await
        .expect_err("an ended run");
    assert_eq!(over.kind, StoreErrorKind::Finished);
    let missing = store
        .claim_run("run_nope", &Lease::new_owner())
        .await
        .expect_err("a missing run");
    assert_eq!(missing.kind, StoreErrorKind::NotFound);
    assert!(
        !store.delete_run("run_nope").await.expect("delete"),
        "deleting a missing run says so"
    );
}

/// A session's history is its finished runs' own messages, in the order they finished;
/// failed runs do not join; `Memory::append` adds whole, valid histories only; `clear`
/// empties it and the runs remain.
pub async fn sessions_receive_whole_finished_runs_only(store: Arc<impl RunStore>) {
    let store: &dyn RunStore = &*store;
    let summary = agent_core::durable::RunEnd::default();
    let mut expected = Vec::new();
    for (i, status) in [RunStatus::Finished, RunStatus::Failed, RunStatus::Finished]
        .into_iter()
        .enumerate()
    {
        let id = format!("run_s{i}");
        let lease = create(store, &id, Some("chat")).await;
        let own = messages(2, &id);
        let mut end = step(1, 1, &own, status);
        end.end = Some(&summary);
        end.session = Some("chat");
        store.commit(&id, &lease, end).await.expect("end");
        if status == RunStatus::Finished {
            expected.extend(own);
        }
    }
    assert_eq!(store.load("chat").await.expect("load"), expected);
    let info = store.session_info("chat").await.expect("info");
    assert_eq!(info.runs, 2);
    assert_eq!(info.messages, 4);
    let extra = messages(2, "direct");
    store.append("chat", &extra).await.expect("append");
    expected.extend(extra);
    assert_eq!(store.load("chat").await.expect("load"), expected);
    let call = agent_core::ToolCall::raw("c1", "t", "{}");
    let unanswered = vec![
        Message::user("q"),
        Message::Assistant(agent_core::AssistantMessage::with_tool_calls(
            "",
            vec![call],
        )),
    ];
    assert!(store.append("chat", &unanswered).await.is_err());
    assert!(check_history(&store.load("chat").await.expect("load")).is_ok());
    store.clear("chat").await.expect("clear");
    assert!(store.load("chat").await.expect("load").is_empty());
    assert_eq!(store.session_info("chat").await.expect("info").messages, 0);
    assert_eq!(
        store
            .list_runs(&RunQuery::new().session("chat"))
            .await
            .expect("list")
            .len(),
        3,
        "clearing a session keeps its runs"
    );
}

/// Deleting a run removes it, its journal and its messages from its session; its id can
/// be used again, with an empty journal.
pub async fn delete_removes_a_run_with_its_journal_and_its_place_in_the_session(
    store: Arc<impl RunStore>,
) {
    let store: &dyn RunStore = &*store;
    let summary = agent_core::durable::RunEnd::default();
    let lease = create(store, "run_del", Some("sd")).await;
    let entry = outcome_entry(1, "c", "x");
    store
        .journal("run_del", &lease, &entry)
        .await
        .expect("journal");
    let own = messages(2, "del");
    let mut end = step(1, 1, &own, RunStatus::Finished);
    end.end = Some(&summary);
    end.session = Some("sd");
    store.commit("run_del", &lease, end).await.expect("end");
    assert_eq!(store.load("sd").await.expect("load").len(), 2);
    assert!(store.delete_run("run_del").await.expect("delete"));
    assert_eq!(
        store.load_run("run_del").await.expect_err("gone").kind,
        StoreErrorKind::NotFound
    );
    assert!(store.load("sd").await.expect("load").is_empty());
    let lease = create(store, "run_del", None).await;
    drop(lease);
    let again = store.load_run("run_del").await.expect("load");
    assert!(again.journal.is_empty());
    assert_eq!(again.messages.len(), 1);
}

/// The heart of durability, in process: a run whose store stops taking writes after its
/// first k writes (for every k short of all the writes the run makes), then resumed by a new
/// agent on the same store, and that resume stopped the same way after its first j writes
/// (for every j), then resumed again: it ends with the history of an uninterrupted run,
/// except for the one side-effecting call that may have run before its outcome was lost
/// (which reads "outcome unknown"), every finished call in the ledger exactly once, and no
/// side-effecting call run twice.
pub async fn a_crash_after_any_write_resumes_to_the_same_history<S, F, Fut>(make: &F)
where
    S: RunStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    let baseline_store = make().await;
    let ledger = Ledger::default();
    let counting = Arc::new(FailingStore::new(baseline_store.clone(), u32::MAX));
    let agent = fixtures::agent(counting.clone(), &ledger, Default::default());
    let baseline = agent
        .ask("Do the errand.")
        .await
        .expect("uninterrupted run");
    let writes = counting.writes();
    assert!(
        writes >= 8,
        "the errand run writes at least 8 times, made {writes}"
    );
    for k in 0..writes {
        // j = None: the first resume runs to the end.
        let mut j = None;
        loop {
            let store = make().await;
            let ledger = Ledger::default();
            let failing = Arc::new(FailingStore::new(store.clone(), k));
            let first = fixtures::agent(failing.clone(), &ledger, Default::default());
            let error = first
                .ask("Do the errand.")
                .await
                .expect_err("the store failed");
            assert!(
                matches!(error, agent_core::AgentError::Store(_)),
                "write {k}: {error}"
            );
            drop(first);
            let Some(run_id) = failing.run_id() else {
                // The creation itself failed: nothing was stored, nothing ran.
                assert!(
                    ledger.is_empty(),
                    "write {k}: tools ran for a run never stored"
                );
                break;
            };
            let case = format!("crash after write {k}, then after resume write {j:?}");
            let mut resumed_fully = true;
            if let Some(j) = j {
                let failing = Arc::new(FailingStore::new(store.clone(), j));
                let second = fixtures::agent(failing, &ledger, Default::default());
                resumed_fully = second.resume_run(&run_id, &RunContext::new()).await.is_ok();
            }
            let last = fixtures::agent(store.clone(), &ledger, Default::default());
            let resumed = match last.resume_run(&run_id, &RunContext::new()).await {
                Ok(resumed) => resumed,
                // The interrupted resume got to the end: the run is over.
                Err(agent_core::AgentError::Store(e))
                    if resumed_fully && e.kind == StoreErrorKind::Finished =>
                {
                    break;
                }
                Err(e) => panic!("{case}: resume failed: {e}"),
            };
            check_resumed(
                &case,
                &baseline.new_messages,
                &resumed.new_messages,
                &ledger,
            );
            let stored = store.load_run(&run_id).await.expect("load");
            assert_eq!(stored.info.status, RunStatus::Finished, "{case}");
            let mut all = stored.messages;
            let own = all.split_off(stored.new_from);
            assert_eq!(
                own, resumed.new_messages,
                "{case}: the store has the history"
            );
            j = Some(j.map_or(0, |j| j + 1));
        }
    }
}

fn check_resumed(case: &str, baseline: &[Message], resumed: &[Message], ledger: &Ledger) {
    assert!(check_history(resumed).is_ok(), "{case}");
    let expected = fixtures::expected_after_crash(baseline, resumed);
    assert_eq!(
        resumed, expected,
        "{case}: the resumed history differs from an uninterrupted run's"
    );
    let Outcome {
        side_effects,
        idempotent_keys,
        idempotent_runs: _,
    } = ledger.outcome();
    if expected == baseline {
        assert_eq!(
            side_effects, 1,
            "{case}: the email was sent {side_effects} times"
        );
    } else {
        assert!(
            side_effects <= 1,
            "{case}: the email was sent {side_effects} times"
        );
    }
    assert_eq!(idempotent_keys, 1, "{case}: one charge, by key");
}
