//! The PostgreSQL store's queue, leases and worker in one process, and its answers to bad
//! input: typed errors that say what to do, and no half-written step when a connection
//! dies mid-transaction. Each test has a database of its own (skipped without a server,
//! see `support/pg.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/pg.rs"]
mod pg;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_core::durable::{JournalEntry, Lease, NewRun, RunStatus, RunStore, Step, StoreErrorKind};
use agent_core::testing::ScriptedModel;
use agent_core::{Approval, CancellationToken, LlmAgent, Message, tool_fn};
use agent_store::{Job, PostgresStore, RunReport, RunReportStatus, Worker};
use serde_json::json;

const SECOND: Duration = Duration::from_secs(1);

async fn create(store: &PostgresStore, run_id: &str, owner: &str) -> Lease {
    let context = [Message::user("task")];
    store
        .create_run(NewRun {
            run_id,
            agent: "agent",
            session: Some("s"),
            input: "task",
            control: "{}",
            messages: &context,
            new_from: 0,
            owner,
        })
        .await
        .unwrap()
}

fn step(n: u64, from: usize, messages: &[Message]) -> Step<'_> {
    Step {
        step: n,
        control: "{\"step\":true}",
        messages_from: from,
        messages,
        status: RunStatus::Running,
        end: None,
        session: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_take_the_highest_priority_first_and_never_one_run_twice() {
    let Some(db) = pg::TestDb::create("claims").await else {
        return;
    };
    let store = Arc::new(db.store("q").await);
    let agents = vec!["a".to_owned()];
    store
        .enqueue(&Job::new("a", "low").run_id("low"))
        .await
        .unwrap();
    store
        .enqueue(&Job::new("a", "high").run_id("high").priority(5))
        .await
        .unwrap();
    store
        .enqueue(&Job::new("a", "low 2").run_id("low2"))
        .await
        .unwrap();
    store
        .enqueue(&Job::new("other", "x").run_id("other"))
        .await
        .unwrap();
    let twice = store
        .enqueue(&Job::new("a", "again").run_id("low"))
        .await
        .unwrap_err();
    assert_eq!(
        twice.kind,
        StoreErrorKind::Invalid,
        "a job submitted twice runs once"
    );
    let mut order = Vec::new();
    while let Some(claimed) = store.claim_next("w", &agents, SECOND * 30).await.unwrap() {
        assert!(!claimed.started);
        assert_eq!(claimed.lease.epoch, 1);
        order.push(claimed.run_id);
    }
    assert_eq!(
        order,
        ["high", "low", "low2"],
        "priority, then age; other agents' runs left"
    );
    // Many claimers at once: each run goes to exactly one.
    for i in 0..24 {
        store
            .enqueue(&Job::new("a", "many").run_id(format!("m{i}")))
            .await
            .unwrap();
    }
    let claims = (0..24).map(|i| {
        let store = store.clone();
        let agents = agents.clone();
        tokio::spawn(async move {
            store
                .claim_next(&format!("w{i}"), &agents, SECOND * 30)
                .await
                .unwrap()
        })
    });
    let mut ids: Vec<String> = Vec::new();
    for claim in claims {
        if let Some(c) = claim.await.unwrap() {
            ids.push(c.run_id);
        }
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "a run claimed twice: {ids:?}");
    while let Some(c) = store
        .claim_next("late", &agents, SECOND * 30)
        .await
        .unwrap()
    {
        ids.push(c.run_id);
    }
    assert_eq!(ids.len(), 24, "every run claimed once");
    drop(store);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_claimable_the_epoch_rises_and_the_late_writer_is_fenced() {
    let Some(db) = pg::TestDb::create("leases").await else {
        return;
    };
    let store = PostgresStore::builder(&db.url)
        .schema("l")
        .lease(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let agents = vec!["agent".to_owned()];
    // An owner that is not a process of this machine: liveness is the lease alone.
    let a = create(&store, "run_l", "host-a:worker-1").await;
    assert!(
        store
            .claim_next("b", &agents, SECOND)
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    let busy = store.claim_run("run_l", "b").await.unwrap_err();
    assert_eq!(busy.kind, StoreErrorKind::Busy);
    store.heartbeat("run_l", &a.owner).await.unwrap();
    let one = [Message::assistant("first")];
    store.commit("run_l", &a, step(1, 1, &one)).await.unwrap();
    // A falls silent; its lease runs out and B claims the run.
    let start = Instant::now();
    let b = loop {
        if let Some(b) = store.claim_next("b", &agents, 10 * SECOND).await.unwrap() {
            break b;
        }
        assert!(start.elapsed() < 10 * SECOND, "the lease did not run out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(b.started);
    assert!(b.lease.epoch > a.epoch, "the epoch rises at every claim");
    let late = [Message::assistant("late")];
    let e = store
        .commit("run_l", &a, step(2, 2, &late))
        .await
        .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Fenced, "{e}");
    let entry = JournalEntry::Approvals { decisions: vec![] };
    let e = store.journal("run_l", &a, &entry).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Fenced);
    let e = store.heartbeat("run_l", &a.owner).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Fenced);
    // B goes on from A's last committed step.
    let (stored, lease) = store.claim_run("run_l", &b.lease.owner).await.unwrap();
    assert!(lease.epoch > b.lease.epoch);
    assert_eq!(stored.info.steps, 1);
    assert_eq!(stored.messages.len(), 2);
    let next = [Message::assistant("second")];
    store
        .commit("run_l", &lease, step(2, 2, &next))
        .await
        .unwrap();
    let run = store.load_run("run_l").await.unwrap();
    assert_eq!(
        run.messages[1..],
        [Message::assistant("first"), Message::assistant("second")]
    );
    drop(store);
    db.drop_db().await;
}

/// The janitor agent; `first` is whether its model starts the run (else it answers after
/// the approved call, as the model of the worker that finishes the run).
fn janitor(store: Arc<PostgresStore>, first: bool) -> Arc<LlmAgent> {
    let model = if first {
        ScriptedModel::new().then_tool_call("delete", json!({"path": "a.txt"}))
    } else {
        ScriptedModel::new().then_text("Deleted.")
    };
    Arc::new(agent_store::conformance::fixtures::janitor(store, model))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_pause_lets_the_run_go_and_a_posted_decision_lets_any_worker_finish_it() {
    let Some(db) = pg::TestDb::create("approvals").await else {
        return;
    };
    let store = Arc::new(db.store("a").await);
    let reports: Arc<Mutex<Vec<RunReport>>> = Arc::default();
    let worker = |store: Arc<PostgresStore>, first: bool| {
        let reports = reports.clone();
        Worker::builder(store.clone())
            .agent(janitor(store, first))
            .poll_interval(Duration::from_millis(20))
            .on_report(move |r| reports.lock().unwrap().push(r.clone()))
            .build()
    };
    store
        .enqueue(
            &Job::new("janitor", "Clean up a.txt")
                .run_id("run_j")
                .session("ops"),
        )
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let first = worker(store.clone(), true);
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { first.run(shutdown).await }
    });
    pg::until(10 * SECOND, "the pause", || async {
        !reports.lock().unwrap().is_empty()
    })
    .await;
    shutdown.cancel();
    let summary = task.await.unwrap();
    assert_eq!(summary.paused, 1);
    assert_eq!(reports.lock().unwrap()[0].status, RunReportStatus::Paused);
    let paused = store.load_run("run_j").await.unwrap();
    assert_eq!(paused.info.status, RunStatus::Paused);
    assert!(
        store
            .claim_next("x", &["janitor".into()], SECOND)
            .await
            .unwrap()
            .is_none(),
        "a paused run waits for a decision"
    );
    let call_id = paused
        .messages
        .iter()
        .find_map(|m| match m {
            Message::Assistant(a) => a.tool_calls.first().map(|c| c.id.clone()),
            _ => None,
        })
        .unwrap();
    let e = store.post_approvals("nope", &[]).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::NotFound);
    store
        .post_approvals("run_j", &[(call_id, Approval::Approve)])
        .await
        .unwrap();
    // Another worker (a fresh agent: the first one's script is spent) finishes it.
    let second_store = Arc::new(db.store("a").await);
    let second = worker(second_store, false);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { second.run(shutdown).await }
    });
    pg::until(10 * SECOND, "the finish", || async {
        reports.lock().unwrap().len() == 2
    })
    .await;
    shutdown.cancel();
    assert_eq!(task.await.unwrap().ended, 1);
    assert_eq!(reports.lock().unwrap()[1].status, RunReportStatus::Finished);
    let done = store.load_run("run_j").await.unwrap();
    assert_eq!(done.info.status, RunStatus::Finished);
    assert!(
        done.messages
            .iter()
            .any(|m| matches!(m, Message::Tool(r) if r.content == "deleted"))
    );
    assert_eq!(
        store.session_info("ops").await.unwrap().runs,
        1,
        "the run joined its session"
    );
    let e = store.post_approvals("run_j", &[]).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Invalid, "{e}");
    drop(store);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_lets_go_of_its_runs_for_others_at_once() {
    let Some(db) = pg::TestDb::create("drain").await else {
        return;
    };
    let store = Arc::new(db.store("d").await);
    let started = Arc::new(tokio::sync::Notify::new());
    let signal = started.clone();
    let slow = Arc::new(
        LlmAgent::builder(Arc::new(
            ScriptedModel::new().then_tool_call("wait", json!({})),
        ))
        .name("slow")
        .store(store.clone())
        .tool(tool_fn("wait", "Waits.", move |_: serde_json::Value, _| {
            let signal = signal.clone();
            async move {
                signal.notify_one();
                std::future::pending::<()>().await;
                Ok("never")
            }
        }))
        .build()
        .unwrap(),
    );
    store
        .enqueue(&Job::new("slow", "wait").run_id("run_s"))
        .await
        .unwrap();
    let reports: Arc<Mutex<Vec<RunReport>>> = Arc::default();
    let seen = reports.clone();
    let worker = Worker::builder(store.clone())
        .agent(slow)
        .lease(SECOND * 60)
        .grace(Duration::ZERO)
        .poll_interval(Duration::from_millis(20))
        .on_report(move |r| seen.lock().unwrap().push(r.clone()))
        .build();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { worker.run(shutdown).await }
    });
    started.notified().await;
    shutdown.cancel();
    let summary = tokio::time::timeout(10 * SECOND, task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.handed_over, 1);
    assert_eq!(reports.lock().unwrap()[0].status, RunReportStatus::Released);
    // Not a minute later (the lease): as soon as no one is writing the row (a claim skips
    // a row locked by a write still in flight, such as the dropped run's own release).
    let start = Instant::now();
    let next = loop {
        if let Some(c) = store
            .claim_next("other", &["slow".into()], SECOND)
            .await
            .unwrap()
        {
            break c;
        }
        assert!(start.elapsed() < 10 * SECOND, "the run was not let go");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(next.run_id, "run_s");
    drop(store);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_missing_permissions_and_newer_schemas_get_typed_errors() {
    let Some(db) = pg::TestDb::create("bad").await else {
        return;
    };
    let e = PostgresStore::builder("mysql://nobody@localhost/x?password=hunter2")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Invalid, "{e}");
    assert!(
        !e.to_string().contains("hunter2"),
        "no secret in errors: {e}"
    );
    let e = PostgresStore::builder("postgres://postgres:hunter2@127.0.0.1:1/x")
        .connect_timeout(SECOND * 2)
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Unavailable, "{e}");
    assert!(
        !e.to_string().contains("hunter2"),
        "no secret in errors: {e}"
    );
    assert!(
        !format!("{:?}", PostgresStore::builder("postgres://u:hunter2@h/d")).contains("hunter2")
    );
    let e = PostgresStore::builder(&db.url)
        .schema("Robert'); DROP TABLE runs;--")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Invalid);
    // A schema migrated by a newer version.
    let store = db.store("newer").await;
    drop(store);
    let owner = admin(&db.url).await;
    owner
        .batch_execute("INSERT INTO newer.agent_store_migrations (version) VALUES (99)")
        .await
        .unwrap();
    let e = PostgresStore::builder(&db.url)
        .schema("newer")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::NewerFormat, "{e}");
    assert!(e.to_string().contains("upgrade"), "{e}");
    // A user who may not create anything in this database.
    let role = format!("{}_nopriv", db.name);
    owner
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; REVOKE ALL ON DATABASE {} FROM PUBLIC; \
             REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            db.name
        ))
        .await
        .unwrap();
    owner
        .batch_execute(&format!("GRANT CONNECT ON DATABASE {} TO {role}", db.name))
        .await
        .unwrap();
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let e = PostgresStore::builder(&url)
        .schema("mine")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Unavailable, "{e}");
    assert!(
        e.to_string().contains("permission"),
        "the message says why: {e}"
    );
    drop(owner);
    db.drop_db().await;
    let server = admin(&pg_admin_url()).await;
    server
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .unwrap();
}

fn pg_admin_url() -> String {
    std::env::var("AGENT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_commit_writes_no_half_step_and_the_pool_reconnects() {
    let Some(db) = pg::TestDb::create("dropped").await else {
        return;
    };
    let store = db.store("c").await;
    let lease = create(&store, "run_c", "host-a:w").await;
    let admin = admin(&db.url).await;
    // Hold the session's counter so that the final commit stops inside its transaction,
    // after writing its messages.
    admin
        .batch_execute("BEGIN; INSERT INTO c.sessions VALUES ('s', 0)")
        .await
        .unwrap();
    let added = [Message::assistant("the answer")];
    let end = agent_core::durable::RunEnd::default();
    let commit = {
        let store = store.clone();
        let lease = lease.clone();
        tokio::spawn(async move {
            let mut last = step(1, 1, &added);
            last.status = RunStatus::Finished;
            last.end = Some(&end);
            last.session = Some("s");
            store.commit("run_c", &lease, last).await
        })
    };
    let stuck = "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()";
    pg::until(
        10 * SECOND,
        "the commit waiting inside its transaction",
        || async { !admin.query(stuck, &[]).await.unwrap().is_empty() },
    )
    .await;
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM ({stuck}) w"
        ))
        .await
        .unwrap();
    admin.batch_execute("ROLLBACK").await.unwrap();
    let e = commit.await.unwrap().unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Unavailable, "{e}");
    // Nothing half-written, as a fresh pool reads it too.
    let fresh = db.store("c").await;
    let run = fresh.load_run("run_c").await.unwrap();
    assert_eq!((run.info.steps, run.messages.len()), (0, 1));
    // The pool replaces the dead connection: the same commit goes through (a call that
    // meets the dying connection first gets `Unavailable`, as above).
    let start = Instant::now();
    loop {
        let added = [Message::assistant("the answer")];
        let end = agent_core::durable::RunEnd::default();
        let mut last = step(1, 1, &added);
        last.status = RunStatus::Finished;
        last.end = Some(&end);
        last.session = Some("s");
        match store.commit("run_c", &lease, last).await {
            Ok(()) => break,
            Err(e) if e.kind == StoreErrorKind::Unavailable => {
                assert!(
                    start.elapsed() < 10 * SECOND,
                    "the pool did not recover: {e}"
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    let run = fresh.load_run("run_c").await.unwrap();
    assert_eq!(run.info.status, RunStatus::Finished);
    assert_eq!(run.messages.len(), 2);
    assert_eq!(fresh.session_info("s").await.unwrap().runs, 1);
    drop(fresh);
    drop((admin, store));
    db.drop_db().await;
}
